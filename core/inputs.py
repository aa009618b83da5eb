"""The one boundary every file and value from a user crosses on its way in.

Why one module: a config file, a guidelines file, a ``--params`` JSON string or a number typed on
the command line can each be hostile or just wrong: 50 MB, not UTF-8, a FIFO, an alias bomb that
expands to a billion list items, JSON nested 20,000 deep, a seed of 1e40, a 600-byte file name.
Each reader used to meet these on its own and some ended in a traceback, a hang or a 37 GiB
allocation. Here each check is written once:

* files: a regular file only (never a FIFO or a device), a size cap *before* reading, UTF-8 with a
  clear message (a byte-order mark is dropped);
* YAML: a ``yaml.SafeLoader`` that caps nesting while it composes, refuses an alias graph that
  would expand past :data:`MAX_NODES` (or that refers to itself), and a document size cap;
* JSON: the same size and depth caps, no NaN or Infinity;
* numbers: :func:`check_number` for services, :func:`bounded_int` / :func:`bounded_float` as
  argparse types, each with the bounds the field can use;
* names and paths: length caps (:func:`check_name`, :func:`check_path`);
* messages: :func:`quote` shows at most a short prefix of a bad value; :func:`one_line` keeps an
  error on one short line.

Everything raises :class:`BadInput` with what is wrong and what to change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

import yaml

from core.errors import BadInput

MAX_CONFIG_BYTES = 2 * 1024 * 1024      # a YAML or JSON document (configs, specs, params)
MAX_TEXT_FILE_BYTES = 2 * 1024 * 1024   # a text file such as reviewer guidelines
MAX_DEPTH = 64                          # nesting of YAML and JSON documents
MAX_NODES = 200_000                     # values a YAML document may expand to, aliases followed
MAX_PATH_BYTES = 4096                   # what Linux allows for a whole path
MAX_PART_BYTES = 255                    # what Linux, macOS and Windows allow for one path component
MAX_NAME_CHARS = 128                    # a name: run, endpoint, dataset, seed set
MAX_MODEL_NAME_CHARS = 256              # a model name as an endpoint reports it
MAX_MESSAGE_CHARS = 600                 # one error line
QUOTE_CHARS = 40                        # how much of a bad value a message shows
MAX_SEED = 2**31 - 1                    # what every RNG and a DuckDB INTEGER column take
MAX_COUNT = 10_000_000                  # records, prompts, rows, steps or a length a user may ask for
MAX_BOOTSTRAP = 10_000                  # bootstrap resamples (10^9 would allocate tens of GiB)


# -- messages -------------------------------------------------------------------------------------
def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, or a prefix of it with the full length, so a 50 MB value stays short."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value) if isinstance(value, (str, bytes, int, float, bool, type(None))) else type(value).__name__
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text):,} characters)"
    return text


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error message as one line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- numbers, names, paths ------------------------------------------------------------------------
def check_number(value: Any, what: str, low: float, high: float, *, integer: bool = False) -> int | float:
    """``value`` as a finite number in ``[low, high]`` (a whole number with ``integer``)."""
    kind = f"{'a whole number' if integer else 'a number'} from {_num(low)} to {_num(high)}"
    whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not whole):
        raise BadInput(f"{what}={quote(value)} is not {kind.split(' from ')[0]}.", hint=f"Use {kind}.")
    if not ((isinstance(value, int) or math.isfinite(value)) and low <= value <= high):
        raise BadInput(f"{what}={quote(value)} is out of range.", hint=f"Use {kind}.")
    return int(value) if integer else float(value)


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _argparse_type(name: str, parse: Callable[[str], float], low: float, high: float, integer: bool):
    def convert(text: str) -> int | float:
        try:
            value = parse(text) if len(text) <= 64 else math.nan
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {name} value: {quote(text)}") from None
        try:
            return check_number(value, "value", low, high, integer=integer)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(f"{quote(text)} is out of range; {exc.hint.rstrip('.').lower()}") from None

    convert.__name__ = name
    return convert


def bounded_int(low: int, high: int):
    """An argparse ``type=`` for a whole number in ``[low, high]``."""
    return _argparse_type("int", int, low, high, integer=True)


def bounded_float(low: float, high: float):
    """An argparse ``type=`` for a finite number in ``[low, high]``."""
    return _argparse_type("float", float, low, high, integer=False)


def check_name(value: Any, what: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A short one-line text (a name, a model name): stripped, non-empty, no control characters."""
    if not isinstance(value, str):
        raise BadInput(f"The {what} {quote(value)} is not text.", hint=f"Give the {what} as text.")
    text = value.strip()
    if not text:
        raise BadInput(f"The {what} is empty.", hint=f"Give a {what}.")
    if len(text) > max_chars:
        raise BadInput(f"The {what} {quote(text)} is too long.", hint=f"Use at most {max_chars} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise BadInput(f"The {what} {quote(text)} contains a control character.",
                       hint=f"Type the {what} on one line, without tabs or NUL.")
    return text


def check_path(value: Any, what: str = "path") -> Path:
    """A path a user typed, before the OS sees it: text, no NUL, each part under 255 bytes, the
    whole under 4096 (``~`` is expanded)."""
    if not isinstance(value, (str, os.PathLike)):
        raise BadInput(f"The {what} {quote(value)} is not a path.", hint=f"Give the {what} as text.")
    text = os.fspath(value)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not text.strip():
        raise BadInput(f"No {what} was given.", hint=f"Give a {what}.")
    if "\x00" in text:
        raise BadInput(f"The {what} {quote(text)} contains a NUL byte.", hint="Remove the NUL character.")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise BadInput(f"The {what} {quote(text)} is too long.", hint=f"Use a path under {MAX_PATH_BYTES} bytes.")
    for part in Path(text).parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
            raise BadInput(f"The {what} has a part of {len(part.encode('utf-8', 'surrogateescape'))} bytes: {quote(part)}.",
                           hint=f"Keep each folder or file name under {MAX_PART_BYTES} bytes.")
    return Path(text).expanduser()


def path_arg(text: str) -> str:
    """An argparse ``type=`` for a path argument: :func:`check_path`'s rules, and never a FIFO, a
    socket or a device (reading one can block forever; writing one is never what was meant)."""
    try:
        path = check_path(text)
        mode = os.stat(path).st_mode
    except BadInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    except (OSError, ValueError):  # missing, or a part that is not a folder: the command says what it needs
        return text
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise argparse.ArgumentTypeError(f"{quote(text, 200)} is {special_kind(mode)}; give a regular file or folder")
    return text


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, for a message."""
    kinds = {stat.S_IFLNK: "a link", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
             stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
    return kinds.get(stat.S_IFMT(mode), "not a regular file")


def name_arg(max_chars: int = MAX_NAME_CHARS):
    """An argparse ``type=`` for a name of at most ``max_chars`` characters."""
    def convert(text: str) -> str:
        try:
            return check_name(text, "name", max_chars)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(f"{exc.message} {exc.hint or ''}".strip()) from None

    convert.__name__ = "name"
    return convert


# -- files --------------------------------------------------------------------------------------
def read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refused before reading when it is larger than ``max_bytes``."""
    path = check_path(path, what)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadInput(f"The {what} {quote(str(path), 200)} does not exist.", hint="Check the path.") from None
    except OSError as exc:
        raise BadInput(f"The {what} {quote(str(path), 200)} cannot be read ({exc.strerror or exc}).",
                       hint="Check the path and its permissions.") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else special_kind(info.st_mode)
        raise BadInput(f"The {what} {quote(str(path), 200)} is {kind}.", hint="Give the path of a regular file.")
    if info.st_size > max_bytes:
        raise BadInput(f"The {what} {quote(str(path), 200)} is {info.st_size:,} bytes.",
                       hint=f"Keep it under {max_bytes:,} bytes.")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise BadInput(f"The {what} {quote(str(path), 200)} cannot be read ({exc.strerror or exc}).",
                       hint="Check the path and its permissions.") from None
    if len(data) > max_bytes:  # it grew since the stat
        raise BadInput(f"The {what} {quote(str(path), 200)} is over {max_bytes:,} bytes.",
                       hint=f"Keep it under {max_bytes:,} bytes.")
    return data


def decode_text(data: bytes, what: str = "file") -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a BadInput that says where it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"The {what} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}).",
                       hint="Save it as UTF-8.") from None


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A user's text file: regular, at most ``max_bytes``, UTF-8."""
    return decode_text(read_bytes(path, what, max_bytes), what)


def _text_of(source: str | bytes, what: str, max_bytes: int) -> str:
    if isinstance(source, bytes):
        source = decode_text(source, what)
    if not isinstance(source, str):
        raise BadInput(f"The {what} must be text, not {type(source).__name__}.", hint="Pass the document as text.")
    if len(source) > max_bytes or len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadInput(f"The {what} is {len(source):,} characters long.", hint=f"Keep it under {max_bytes:,} bytes.")
    return source


# -- YAML -----------------------------------------------------------------------------------------
class _TooComplex(yaml.YAMLError):
    pass


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that stops composing at :data:`MAX_DEPTH` and refuses a node graph whose
    aliases would expand to more than :data:`MAX_NODES` values or that contains itself."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooComplex(f"it is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_graph(node)
        return node


def _check_graph(root: yaml.Node) -> None:
    """Expanded size and depth of a composed node graph, shared nodes counted at every use."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise _TooComplex(f"its aliases expand to more than {MAX_NODES:,} values")
            if depth[key] > MAX_DEPTH:
                raise _TooComplex(f"its aliases nest it more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooComplex("an alias refers to the value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(source: str | bytes, what: str = "YAML document", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse one YAML document from a user with :class:`BoundedLoader`."""
    text = _text_of(source, what, max_bytes)
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except _TooComplex as exc:
        raise BadInput(f"The {what} is too complex: {exc}.",
                       hint="Write the values out; keep nesting and aliases (&name / *name) small.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"The {what} is not valid YAML{where}: {one_line(problem, 200)}.",
                       hint="Fix the YAML syntax (indentation, colons, quotes).") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise BadInput(f"The {what} holds a value YAML cannot read ({one_line(str(exc), 120)}).",
                       hint="Use shorter numbers and dates.") from None


def read_yaml(path: str | os.PathLike, what: str = "YAML file", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    return load_yaml(read_bytes(path, what, max_bytes), what, max_bytes)


# -- JSON -----------------------------------------------------------------------------------------
def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(source: str | bytes, what: str = "JSON", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse JSON from a user: size and depth caps, no NaN or Infinity."""
    text = _text_of(source, what, max_bytes)
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        value = None
        too_deep = True
    except ValueError as exc:  # JSONDecodeError, a 5000-digit integer, NaN
        raise BadInput(f"The {what} is not valid JSON: {one_line(str(exc), 160)}.",
                       hint='Write it like {"key": "value"}, with double quotes.') from None
    else:
        too_deep = _depth_exceeds(value, MAX_DEPTH)
    if too_deep:
        raise BadInput(f"The {what} is nested more than {MAX_DEPTH} levels deep.", hint="Flatten it.")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return False


def load_mapping(source: str | bytes, what: str, *, fmt: str = "yaml") -> dict:
    """A YAML (or JSON) mapping from a user, e.g. a rubric's parameters; empty text is ``{}``."""
    text = _text_of(source, what, MAX_CONFIG_BYTES)
    if not text.strip():
        return {}
    value = load_json(text, what) if fmt == "json" else load_yaml(text, what)
    if value is None:
        return {}
    if not isinstance(value, dict):
        example = '{"min_words": 20}' if fmt == "json" else "`min_words: 20`"
        raise BadInput(f"The {what} must be a mapping, not {type(value).__name__}.", hint=f"Write e.g. {example}.")
    return value
