"""One loader for every config dataclass: a plain mapping (what YAML, JSON or a form gives) becomes the
dataclass, nested dataclasses included, or a ``StudioError`` that says what to change.

Why one loader: a typo in a config must never fall back to a default without a word, and every config
should refuse it the same way. ``load_spec`` checks each key in this order:

- the key is a field, else ``judge.rubric.parms: unknown key ...`` with a did-you-mean and the known keys;
- the value has the field's type, read from the type hints: ``bool``, ``int`` (true/false is not a number
  here), ``float`` (an int is taken as a float), ``str``, ``X | None``, ``list[...]`` / ``tuple[...]`` (either
  kind of sequence is taken), ``dict[...]``, ``Literal[...]`` and nested dataclasses; an empty YAML value
  (None) is an empty list, mapping or section unless the field allows None;
- the limits in the field's ``metadata``: ``min`` / ``max`` (inclusive), ``gt`` / ``lt`` (exclusive),
  ``choices``, ``min_len`` / ``max_len`` for text (any text is capped at MAX_TEXT_CHARS). On a list or a
  mapping they apply to each item. ``accepts_one: True`` lets a single value stand for a one-item list;
  ``deferred: True`` only checks that the value is a mapping and leaves it to the class to build (its
  shape depends on another field, as a training run's ``hyper`` depends on its recipe).

Rules between fields stay in each class's ``__post_init__`` / ``validate``, which call ``check_fields``
so that a dataclass built directly, not from a mapping, is held to the same types and limits. Every
message starts with the field's path (``responses.generators[0].sampling.temperature``) and quotes at
most QUOTE_CHARS characters of the bad value. ``describe_fields`` lists the fields (path, type, default,
help, limits) for forms and docs.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from core.errors import BadInput, StudioError

T = TypeVar("T")
QUOTE_CHARS = 60
MAX_TEXT_CHARS = 100_000
_NONE = type(None)
_AFTER_PATH = ("=", ".", "[", ":", " ")
_FIXES = {
    "true or false": "Write true or false, without quotes.",
    "a whole number": "Write a whole number such as 8, without quotes or a decimal point.",
    "a number": "Write a number such as 0.5, without quotes.",
    "text": "Write text; quote it if YAML reads it as a number, a date or true/false.",
    "a list": "Write a list such as [a, b].",
    "a mapping": "Write it as `key: value` lines.",
}


def quote(value: Any) -> str:
    """``repr(value)`` cut to QUOTE_CHARS characters: a message never carries a whole pasted document."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 3] + "..."


def bad_value(path: str, value: Any, problem: str, fix: str, error: type[StudioError] = BadInput) -> StudioError:
    """``{path}={short quote} {problem}.`` with ``fix`` as the hint: the one shape of a rule's message."""
    return error(f"{path}={quote(value)} {problem}.", hint=fix)


@dataclass(frozen=True)
class _Context:
    error: type[StudioError]
    label: str


# -- loading -------------------------------------------------------------------------------------------------
def load_spec(cls: type[T], data: Any, *, error: type[StudioError] = BadInput, label: str = "the config",
              path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``error`` is the class of the errors the loader raises itself,
    ``label`` names the whole config in messages, ``path`` is where ``data`` sits inside it."""
    return _load(cls, data, path, _Context(error, label))


def check_fields(obj: Any, *, error: type[StudioError] = BadInput) -> None:
    """Hold a dataclass built directly to its fields' types and limits, in place (an int becomes a float,
    a list a tuple, a mapping a nested dataclass). Call it first in ``__post_init__`` / ``validate``."""
    ctx = _Context(error, f"a {type(obj).__name__}")
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init or f.metadata.get("deferred"):
            continue
        value = getattr(obj, f.name)
        checked = _convert(hints[f.name], value, f.name, f.metadata, ctx)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def _load(cls: type, data: Any, path: str, ctx: _Context) -> Any:
    if not isinstance(data, dict):
        where = path or ctx.label[:1].upper() + ctx.label[1:]
        raise ctx.error(f"{where} must be a mapping of keys to values, not {type(data).__name__}.",
                        hint="Write it as `key: value` lines" + (f" under {path}." if path else "."))
    fields = _init_fields(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key(key, path, list(fields), ctx)
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise ctx.error(f"{_join(path, missing[0])} is missing from {path or ctx.label}.",
                        hint=f"Add `{missing[0]}: ...`.")
    hints = _hints(cls)
    kwargs = {key: _convert(hints[key], value, _join(path, key), fields[key].metadata, ctx)
              for key, value in data.items()}
    try:
        return cls(**kwargs)
    except StudioError as exc:  # a rule of the class itself: put the path in front of its message
        raise _located(exc, path, fields) from None


def _unknown_key(key: Any, path: str, names: list[str], ctx: _Context) -> StudioError:
    return ctx.error(f"{_join(path, key)}: unknown key in {ctx.label}.",
                     hint=f"{_suggest(str(key), names)}Known keys here: {', '.join(names)}.")


def _suggest(word: str, options: list[str]) -> str:
    """'Did you mean ...? ' for a typo or an abbreviation (temp -> temperature), else ''."""
    close = difflib.get_close_matches(word, options, n=1)
    if not close and len(word) >= 3:
        close = [o for o in options if o.startswith(word)][:1]
    return f"Did you mean {close[0]!r}? " if close else ""


def _located(exc: StudioError, path: str, fields: dict[str, Any]) -> StudioError:
    message = exc.message
    if not path or (message.startswith(path) and message[len(path):len(path) + 1] in _AFTER_PATH):
        return exc
    head = re.match(r"[A-Za-z_]\w*", message)
    if head and head.group(0) in fields and message[head.end():head.end() + 1] in _AFTER_PATH:
        return type(exc)(f"{path}.{message}", hint=exc.hint)
    return type(exc)(f"{path}: {message}", hint=exc.hint)


def _convert(hint: Any, value: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> Any:
    if meta.get("deferred"):
        if value is None:
            return {}
        if not isinstance(value, dict) and not dataclasses.is_dataclass(value):
            raise _type_error(path, value, "a mapping", ctx)
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(args, value, path, meta, ctx)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return _load(hint, {} if value is None else value, path, ctx)   # empty section = its defaults
    if origin is Literal:
        return _limited(value, value, path, {**meta, "choices": args}, ctx)
    if hint in (list, tuple) or origin in (list, tuple):   # an empty YAML value is an empty list
        return _sequence(origin or hint, args, [] if value is None else value, path, meta, ctx)
    if hint is dict or origin is dict:
        return _mapping(args, {} if value is None else value, path, meta, ctx)
    return _scalar(hint, value, path, meta, ctx)


def _union(args: tuple, value: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> Any:
    options = [a for a in args if a is not _NONE]
    if value is None and len(options) < len(args):
        return None
    if len(options) == 1:
        return _convert(options[0], value, path, meta, ctx)
    for option in options:
        if _fits(option, value):
            return _convert(option, value, path, meta, ctx)
    raise _type_error(path, value, " or ".join(_what(o) for o in options), ctx)


def _sequence(kind: type, args: tuple, value: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> Any:
    if meta.get("accepts_one") and not isinstance(value, (list, tuple)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _type_error(path, value, "a list", ctx)
    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise bad_value(path, value, f"must be a list of {len(args)} items", f"Give exactly {len(args)} items.",
                            ctx.error)
        item_hints = list(args)
    else:
        item_hints = [args[0] if args else Any] * len(value)
    items = [_convert(h, v, f"{path}[{i}]", meta, ctx) for i, (h, v) in enumerate(zip(item_hints, value))]
    return tuple(items) if kind is tuple else items


def _mapping(args: tuple, value: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> dict:
    if not isinstance(value, dict):
        raise _type_error(path, value, "a mapping", ctx)
    key_hint, value_hint = args if len(args) == 2 else (Any, Any)
    out = {}
    for key, item in value.items():
        if key_hint is str and not isinstance(key, str):
            raise ctx.error(f"{path} has the key {quote(key)}, which is not text.", hint="Quote the key.")
        out[key] = _convert(value_hint, item, _join(path, key), meta, ctx)
    return out


def _scalar(hint: Any, value: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> Any:
    original = value
    if hint is bool and not isinstance(value, bool):
        raise _type_error(path, value, "true or false", ctx)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _type_error(path, value, "a whole number", ctx)
    if hint is float:
        value = _number(value, path, ctx)
    if hint is str and not isinstance(value, str):
        raise _type_error(path, value, "text", ctx)
    if hint is not Any and isinstance(hint, type) and hint not in (bool, int, float, str, object) \
            and not isinstance(value, hint):
        raise _type_error(path, value, f"a {hint.__name__}", ctx)
    return _limited(value, original, path, meta, ctx)


def _number(value: Any, path: str, ctx: _Context) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(path, value, "a number", ctx)
    try:
        number = float(value)
    except OverflowError:
        raise bad_value(path, value, "is out of range", "Use a smaller number.", ctx.error) from None
    if not math.isfinite(number):
        raise bad_value(path, value, "must be a finite number", "Write an ordinary number such as 0.5 "
                        "(not nan or inf).", ctx.error)
    return number


def _limited(value: Any, original: Any, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> Any:
    """Choices, bounds and text length from the field's metadata; ``original`` is what the user wrote."""
    choices = meta.get("choices")
    if choices is not None and value not in tuple(choices):
        guess = _suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise bad_value(path, original, "is not one of the choices",
                        f"{guess}Use one of: {', '.join(map(str, choices))}.", ctx.error)
    if isinstance(value, str):
        _check_length(value, path, meta, ctx)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not _within(value, meta):
        kind = "a whole number" if isinstance(value, int) else "a number"
        raise bad_value(path, original, "is out of range", f"Use {kind} {range_text(meta)}.", ctx.error)
    return value


def _check_length(value: str, path: str, meta: typing.Mapping[str, Any], ctx: _Context) -> None:
    longest, shortest = meta.get("max_len", MAX_TEXT_CHARS), meta.get("min_len", 0)
    if len(value) > longest:
        raise ctx.error(f"{path} is {len(value):,} characters long ({quote(value)}).",
                        hint=f"Use at most {longest:,} characters.")
    if len(value) < shortest:
        raise bad_value(path, value, "is too short" if value else "is empty",
                        f"Use at least {shortest} character{'s' * (shortest != 1)}.", ctx.error)


def _within(value: float, meta: typing.Mapping[str, Any]) -> bool:
    low, high, above, below = (meta.get(k) for k in ("min", "max", "gt", "lt"))
    return ((low is None or value >= low) and (high is None or value <= high)
            and (above is None or value > above) and (below is None or value < below))


def range_text(meta: typing.Mapping[str, Any]) -> str:
    """'from 0 to 2', 'above 0 and at most 1', 'of at least 1': the bounds in ``meta`` in words."""
    low, high, above, below = (meta.get(k) for k in ("min", "max", "gt", "lt"))
    if low is not None and high is not None:
        return f"from {low} to {high}"
    parts = [f"at least {low}" if low is not None else f"above {above}" if above is not None else "",
             f"at most {high}" if high is not None else f"below {below}" if below is not None else ""]
    text = " and ".join(p for p in parts if p)
    return f"of {text}" if text.startswith("at ") else text


def _type_error(path: str, value: Any, what: str, ctx: _Context) -> StudioError:
    fix = _FIXES.get(what, f"Use {what}.")
    if isinstance(value, bool) and what in ("a whole number", "a number"):
        fix = "true and false are not numbers here. " + fix
    return bad_value(path, value, f"must be {what}", fix, ctx.error)


def _fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of one member of a union (before it is converted)."""
    origin = typing.get_origin(hint) or hint
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return hint is Any or (isinstance(origin, type) and isinstance(value, origin))


def _what(hint: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
             tuple: "a list", dict: "a mapping"}
    origin = typing.get_origin(hint) or hint
    return names.get(origin, "a mapping" if dataclasses.is_dataclass(hint) else _type_text(hint))


def _join(path: str, key: Any) -> str:
    key = str(key)
    key = key if len(key) <= QUOTE_CHARS else key[:QUOTE_CHARS - 3] + "..."
    return f"{path}.{key}" if path else key


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


# -- describing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldDoc:
    """One field, for a form or the docs."""

    path: str                            # 'judge.rubric.params'
    type: str                            # 'float', 'int | None', 'list[str]', or the section's class name
    kind: str                            # what a widget needs: bool, int, float, str, list, dict, section, any
    default: Any                         # plain data (a nested default as a dict); None when required
    help: str
    choices: tuple | None = None
    bounds: str = ""                     # 'from 0 to 2'; empty when unbounded

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def describe_fields(cls: type, prefix: str = "") -> list[FieldDoc]:
    """Every field of ``cls`` in declaration order, a nested section's fields after its own row."""
    rows = []
    hints = _hints(cls)
    for f in _init_fields(cls).values():
        hint, path, text = hints[f.name], prefix + f.name, f.metadata.get("help", "")
        if dataclasses.is_dataclass(hint):
            rows.append(FieldDoc(path, hint.__name__, "section", None, text))
            rows.extend(describe_fields(hint, path + "."))
            continue
        meta = f.metadata
        bounds = range_text(meta) if any(k in meta for k in ("min", "max", "gt", "lt")) else ""
        choices = tuple(meta["choices"]) if "choices" in meta else None
        rows.append(FieldDoc(path, _type_text(hint), _kind(hint), plain(default_of(f)), text, choices, bounds))
    return rows


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as plain dicts and lists (for YAML, JSON and the docs)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _kind(hint: Any) -> str:
    options = [a for a in typing.get_args(hint) if a is not _NONE]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(options) == 1:
        hint = options[0]
    origin = typing.get_origin(hint) or hint
    kinds = {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "list", dict: "dict"}
    return "str" if origin is Literal else kinds.get(origin, "any")


def _type_text(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")
