"""Programmatic judges for verifiable tasks: length, JSON format, regex, keywords, reference match.

Why: when an answer can be checked by code (a word limit, valid JSON, the right number), a rule
is cheaper, faster and more trustworthy than an LLM judge. A rubric is a plain function

    fn(instruction: str, response: str, reference: str | None, **params) -> RubricResult

registered with ``@register_rubric("name")``. Scores use the LLM judge's 1-5 scale (5 = the check
passed, 1 = it failed completely, fractional in between for partial credit), so rubric and LLM
scores feed the same ``choose_pair`` and ``pair_confidence``.

Plug-ins: ``get_rubric("mypkg.module:function")`` imports ``mypkg.module`` and uses ``function``.
Importing runs that module's code, so a dotted path must only ever come from a config the user
wrote themselves (a run YAML, the Generate page), never from uploaded data or a model's output.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pipelines.judge.llm import PointwiseJudgment
from core.errors import BadInput, NotFound, StudioError
from core.specs import check_fields, load_spec

SCORE_MIN, SCORE_MAX = 1.0, 5.0


@dataclass(frozen=True)
class RubricResult:
    score: float       # 1..5: 5 = passed; partial credit in between
    passed: bool
    details: str       # what was checked and what was found, for the results browser


@dataclass(frozen=True)
class Rubric:
    name: str
    fn: Callable[..., RubricResult]
    params_type: type | None = None    # a dataclass that validates the params (built-ins)
    description: str = ""
    example: Mapping[str, Any] = field(default_factory=dict)   # valid params a form starts from

    def check_params(self, params: Mapping[str, Any], path: str = "") -> None:
        """Raise BadInput naming the first bad parameter (unknown name, wrong type, bad value); ``path``
        is where the params sit in a config (``rubric.params``), for the messages."""
        if self.params_type is not None:
            build_params(self.params_type, params, self.name, path)
            return
        extra = list(inspect.signature(self.fn).parameters.values())[3:]
        named = [p for p in extra if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in extra):
            for name in params:
                if name not in [p.name for p in named]:
                    raise BadInput(f"The rubric {self.name!r} has no parameter {name!r}.",
                                   hint=f"Its parameters: {[p.name for p in named] or 'none'}.")
        for p in named:
            if p.default is p.empty and p.name not in params:
                raise BadInput(f"The rubric {self.name!r} needs the parameter {p.name!r}.",
                               hint="Set it in the rubric's params.")

    def __call__(self, instruction: str, response: str, reference: str | None = None, **params: Any) -> RubricResult:
        result = self.fn(instruction, response, reference, **params)
        if not isinstance(result, RubricResult):
            raise BadInput(f"The rubric {self.name!r} returned {type(result).__name__}, not a RubricResult.",
                           hint="Return RubricResult(score=1..5, passed=..., details=...).")
        if not SCORE_MIN <= float(result.score) <= SCORE_MAX:
            raise BadInput(f"The rubric {self.name!r} returned the score {result.score!r}.",
                           hint="Rubric scores run from 1 (failed) to 5 (passed).")
        return result


_REGISTRY: dict[str, Rubric] = {}
# Rubrics in modules of their own, registered on first use: one line per module.
BUILTIN_MODULES = ("pipelines.judge.rubric_quality",)


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def register_rubric(name: str, *, params: type | None = None, description: str = "",
                    example: Mapping[str, Any] | None = None):
    """Decorator: make ``fn`` available as ``get_rubric(name)``. ``example``: parameters a form starts
    from when the defaults alone are not valid (a length rubric needs a bound). Registering a
    different function under a taken name is refused (re-importing the same module is fine)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise BadInput(f"The rubric name {name!r} is not valid.", hint="Use snake_case, at most 40 characters.")

    def decorate(fn: Callable[..., RubricResult]) -> Callable[..., RubricResult]:
        old = _REGISTRY.get(name)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise BadInput(f"A rubric named {name!r} exists already ({old.fn.__module__}.{old.fn.__qualname__}).",
                           hint="Register yours under another name.")
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[name] = Rubric(name, fn, params, doc, dict(example or {}))
        fn.__rubric__ = _REGISTRY[name]
        return fn

    return decorate


def list_rubrics() -> list[Rubric]:
    _load_builtins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_rubric(name: str) -> Rubric:
    """A registered rubric by name, or a plug-in by ``"package.module:function"`` (imports it: only
    for names from a config the user wrote)."""
    if not isinstance(name, str) or not name.strip():
        raise BadInput("The rubric name is empty.", hint=f"Use one of {[r.name for r in list_rubrics()]}.")
    if ":" not in name:
        _load_builtins()
        if name not in _REGISTRY:
            raise NotFound(f"There is no rubric named {name!r}.",
                           hint=f"Use one of {[r.name for r in list_rubrics()]} or 'package.module:function'.")
        return _REGISTRY[name]
    return _import_rubric(name)


def _import_rubric(path: str) -> Rubric:
    module_name, _, attr = path.partition(":")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", module_name) or not attr.isidentifier():
        raise BadInput(f"The rubric plug-in {path!r} is not 'package.module:function'.",
                       hint="Write the module's dotted import path, a colon, and the function name.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotFound(f"Cannot import the rubric module {module_name!r}: {exc}.",
                       hint="Install the package or put the module on PYTHONPATH.") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise NotFound(f"The module {module_name!r} has no function {attr!r}.", hint="Check the name after the colon.")
    registered = getattr(fn, "__rubric__", None)
    if isinstance(registered, Rubric):
        return registered
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY,
                                                                                    p.POSITIONAL_OR_KEYWORD)]
    if len(params) < 3:
        raise BadInput(f"The rubric plug-in {path!r} takes {len(params)} positional arguments.",
                       hint="Write it as fn(instruction, response, reference, **params) -> RubricResult.")
    return Rubric(path, fn, None, (inspect.getdoc(fn) or "").split("\n")[0])


class RubricJudge:
    """Runs one rubric with fixed params; params are checked on construction."""

    def __init__(self, name: str, params: Mapping[str, Any] | None = None):
        self.rubric = get_rubric(name)
        self.params = dict(params or {})
        self.rubric.check_params(self.params)

    @property
    def judge_model(self) -> str:
        return f"rubric:{self.rubric.name}"

    def judge(self, response_id: str, instruction: str, response: str, reference: str | None = None
              ) -> PointwiseJudgment:
        """Never raises for one item: a rubric that cannot judge it (no reference, a plug-in's
        own error) gives a 'failed' judgment with the reason."""
        try:
            result = self.rubric(instruction, response, reference, **self.params)
            score = round(float(result.score), 4)
        except Exception as exc:  # a plug-in bug on one row must not fail the batch
            message = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
            return PointwiseJudgment(
                response_id=response_id, aspect_scores={}, overall=None, rationale=None, raw_output="",
                parse_status="failed", judge_model=self.judge_model, judge_kind="rubric", error=message)
        raw = json.dumps({"score": score, "passed": bool(result.passed), "details": result.details},
                         ensure_ascii=False)
        return PointwiseJudgment(
            response_id=response_id, aspect_scores={self.rubric.name: score}, overall=score,
            rationale=result.details, raw_output=raw, parse_status="ok", judge_model=self.judge_model,
            judge_kind="rubric", passed=bool(result.passed))

    def judge_batch(self, items: list[tuple[str, str, str, str | None]]) -> list[PointwiseJudgment]:
        """``items``: (response_id, instruction, response, reference)."""
        return [self.judge(*item) for item in items]


# -- parameter checking for the built-ins -----------------------------------------------------------
def build_params(params_type: type, params: Mapping[str, Any], rubric: str, path: str = ""):
    """The params dataclass of a built-in rubric, through the one spec loader (unknown names, types, bounds)."""
    return load_spec(params_type, dict(params), label=f"the {rubric!r} rubric's params", path=path)


def _param(text: str, default: Any, **limits: Any) -> Any:
    return field(default=default, metadata={"help": text, **limits})


def _bad(rubric: str, name: str, value: Any, hint: str) -> BadInput:
    return BadInput(f"The rubric {rubric!r} got {name}={value!r}.", hint=hint)


def partial(fraction: float) -> float:
    """Share of checks passed -> 1..5."""
    return round(SCORE_MIN + (SCORE_MAX - SCORE_MIN) * max(0.0, min(1.0, fraction)), 4)


def _reference_required(rubric: str, reference: str | None) -> str:
    if reference is None or not str(reference).strip():
        raise BadInput(f"The rubric {rubric!r} needs a reference answer and this item has none.",
                       hint="Map a reference column when importing seeds, or pick another rubric.")
    return str(reference)


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def last_number(text: str) -> float | None:
    """The final number in a text ("... so the answer is 1,234.5." -> 1234.5); GSM8K-style
    "#### 42" works too. Thousands separators are dropped."""
    for match in reversed(_NUMBER.findall(text)):
        try:
            value = float(match.replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None



# -- the built-ins --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthParams:
    min_words: int | None = _param("Fewest words a passing answer has; empty = no limit.", None, min=0)
    max_words: int | None = _param("Most words a passing answer has; empty = no limit.", None, min=0)
    min_chars: int | None = _param("Fewest characters (stripped) a passing answer has; empty = no limit.", None, min=0)
    max_chars: int | None = _param("Most characters (stripped) a passing answer has; empty = no limit.", None, min=0)

    def __post_init__(self):
        check_fields(self)
        names = ("min_words", "max_words", "min_chars", "max_chars")
        if all(getattr(self, name) is None for name in names):
            raise BadInput("The rubric 'length' has no bound.", hint=f"Set at least one of {list(names)}.")
        for low, high in (("min_words", "max_words"), ("min_chars", "max_chars")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise _bad("length", low, lo, f"It must not exceed {high}={hi}.")


@register_rubric("length", params=LengthParams, example={"max_words": 100})
def length_rubric(instruction: str, response: str, reference: str | None = None, **params: Any) -> RubricResult:
    """Word and/or character count within bounds; a miss scores 1-4 by how close it came."""
    p = build_params(LengthParams, params, "length")
    words, chars = len(response.split()), len(response.strip())
    closeness, misses = 1.0, []
    for actual, low, high, unit in ((words, p.min_words, p.max_words, "words"),
                                    (chars, p.min_chars, p.max_chars, "characters")):
        if low is not None and actual < low:
            closeness, misses = min(closeness, actual / low), misses + [f"{actual} {unit}, fewer than {low}"]
        elif high is not None and actual > high:
            closeness, misses = min(closeness, high / actual), misses + [f"{actual} {unit}, more than {high}"]
    if not misses:
        return RubricResult(SCORE_MAX, True, f"{words} words, {chars} characters: within bounds")
    return RubricResult(round(SCORE_MIN + 3 * closeness, 4), False, "; ".join(misses))


@dataclass(frozen=True)
class JsonFormatParams:
    required_keys: tuple[str, ...] = _param("Keys the JSON object must have (a name or a list).", (),
                                            accepts_one=True, min_len=1)
    allow_fence: bool = _param("Accept the JSON inside one ```json fence.", True)

    def __post_init__(self):
        check_fields(self)


@register_rubric("json_format", params=JsonFormatParams)
def json_format_rubric(instruction: str, response: str, reference: str | None = None, **params: Any
                       ) -> RubricResult:
    """The response is valid JSON (an object with the required keys, if any). Partial credit:
    (1 for validity + 1 per required key present) / (1 + number of required keys)."""
    p = build_params(JsonFormatParams, params, "json_format")
    text = response.strip()
    fenced = re.fullmatch(r"```[A-Za-z]*[ \t]*\n?(.*?)\n?```", text, re.S) if p.allow_fence else None
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except (ValueError, RecursionError) as exc:  # a model's answer nested 20,000 deep is just not valid
        return RubricResult(SCORE_MIN, False, f"not valid JSON: {str(exc)[:200]}")
    if not p.required_keys:
        return RubricResult(SCORE_MAX, True, f"valid JSON ({type(value).__name__})")
    present = [k for k in p.required_keys if isinstance(value, dict) and k in value]
    missing = [k for k in p.required_keys if k not in present]
    if not missing:
        return RubricResult(SCORE_MAX, True, f"valid JSON object with {list(p.required_keys)}")
    shape = "object" if isinstance(value, dict) else f"{type(value).__name__}, not an object"
    return RubricResult(partial((1 + len(present)) / (1 + len(p.required_keys))), False,
                        f"valid JSON {shape}; missing keys {missing}")


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


@dataclass(frozen=True)
class RegexParams:
    must_match: tuple[str, ...] = _param("Patterns the answer must contain (re.search).", (),
                                         accepts_one=True, min_len=1)
    must_not_match: tuple[str, ...] = _param("Patterns the answer must not contain.", (), accepts_one=True, min_len=1)
    flags: str = _param("Any of i (ignore case), m (multiline), s (dot matches newline).", "", max_len=3)

    def __post_init__(self):
        check_fields(self)
        if set(self.flags) - set(_FLAGS):
            raise _bad("regex", "flags", self.flags, "Use letters from 'ims', e.g. 'i'.")
        for name in ("must_match", "must_not_match"):
            for i, pattern in enumerate(getattr(self, name)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise _bad("regex", f"{name}[{i}]", pattern, f"It is not a valid regular expression: {exc}.")
        if not self.must_match and not self.must_not_match:
            raise BadInput("The rubric 'regex' has no pattern.", hint="Set must_match and/or must_not_match.")

    def compiled_flags(self) -> int:
        out = 0
        for letter in self.flags:
            out |= _FLAGS[letter]
        return out


@register_rubric("regex", params=RegexParams, example={"must_not_match": [r"(?i)\bas an ai\b"]})
def regex_rubric(instruction: str, response: str, reference: str | None = None, **params: Any) -> RubricResult:
    """Every must_match pattern is found and no must_not_match pattern is (re.search); patterns come
    from the user's own config, so a pathological one is theirs to avoid."""
    p = build_params(RegexParams, params, "regex")
    flags = p.compiled_flags()
    failures = [f"no match for {pat!r}" for pat in p.must_match if not re.search(pat, response, flags)]
    failures += [f"forbidden match for {pat!r}" for pat in p.must_not_match if re.search(pat, response, flags)]
    total = len(p.must_match) + len(p.must_not_match)
    if not failures:
        return RubricResult(SCORE_MAX, True, f"all {total} pattern checks passed")
    return RubricResult(partial(1 - len(failures) / total), False, "; ".join(failures))


@dataclass(frozen=True)
class KeywordsParams:
    required: tuple[str, ...] = _param("Keywords the answer must contain (case-insensitive).", (),
                                       accepts_one=True, min_len=1)
    forbidden: tuple[str, ...] = _param("Keywords the answer must not contain.", (), accepts_one=True, min_len=1)
    whole_word: bool = _param('Match whole words only: "cat" does not count inside "concatenate".', False)

    def __post_init__(self):
        check_fields(self)
        if not self.required and not self.forbidden:
            raise BadInput("The rubric 'keywords' has no keyword.", hint="Set required and/or forbidden.")


def _contains(text: str, keyword: str, whole_word: bool) -> bool:
    if whole_word:
        return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE) is not None
    return keyword.casefold() in text.casefold()


@register_rubric("keywords", params=KeywordsParams, example={"forbidden": ["As an AI"]})
def keywords_rubric(instruction: str, response: str, reference: str | None = None, **params: Any) -> RubricResult:
    """All required keywords present, no forbidden one (case-insensitive); partial credit per keyword."""
    p = build_params(KeywordsParams, params, "keywords")
    missing = [k for k in p.required if not _contains(response, k, p.whole_word)]
    found = [k for k in p.forbidden if _contains(response, k, p.whole_word)]
    total = len(p.required) + len(p.forbidden)
    if not missing and not found:
        return RubricResult(SCORE_MAX, True, f"all {total} keyword checks passed")
    details = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                          f"forbidden {found}" if found else "") if part)
    return RubricResult(partial(1 - (len(missing) + len(found)) / total), False, details)


REFERENCE_MODES = ("exact", "contains", "f1", "numeric")


@dataclass(frozen=True)
class ReferenceMatchParams:
    mode: str = _param("exact or contains (after normalising case, punctuation, articles), f1 (token F1) or "
                       "numeric (the final number).", "exact", choices=REFERENCE_MODES)
    threshold: float = _param("f1: the token F1 needed to pass.", 0.8, gt=0, max=1)
    tolerance: float = _param("numeric: passes when |a - b| <= tolerance * max(1, |b|).", 1e-6, min=0)

    def __post_init__(self):
        check_fields(self)


@register_rubric("reference_match", params=ReferenceMatchParams)
def reference_match_rubric(instruction: str, response: str, reference: str | None = None, **params: Any
                           ) -> RubricResult:
    """Compare with the reference answer: exact or contained after normalisation (case,
    punctuation, articles, spaces), token F1 (partial credit), or the final number."""
    p = build_params(ReferenceMatchParams, params, "reference_match")
    ref = _reference_required("reference_match", reference)
    if p.mode == "numeric":
        expected = last_number(ref)
        if expected is None:
            raise BadInput(f"The reference {ref[:60]!r} holds no number.", hint="Use another mode for this item.")
        got = last_number(response)
        ok = got is not None and abs(got - expected) <= p.tolerance * max(1.0, abs(expected))
        return RubricResult(SCORE_MAX if ok else SCORE_MIN, ok, f"final number {got:g} vs {expected:g}"
                            if got is not None else f"no number in the response (expected {expected:g})")
    if p.mode == "f1":
        f1 = token_f1(response, ref)
        return RubricResult(partial(f1), f1 >= p.threshold, f"token F1 {f1:.3f} (pass at {p.threshold:g})")
    got, want = normalize_answer(response), normalize_answer(ref)
    ok = got == want if p.mode == "exact" else f" {want} " in f" {got} "
    return RubricResult(SCORE_MAX if ok else SCORE_MIN, ok,
                        f"normalised response {'matches' if ok else 'does not match'} the reference ({p.mode})")
