"""A tolerant parser for LLM judge replies.

Why tolerant: small judge models rarely emit clean JSON. They wrap it in ```json fences, chat
before and after it, use single quotes or trailing commas, write scores as "4", "4/5" or 4.0,
spell keys "Instruction Following", nest them under "scores", or get cut off by ``max_tokens``.
All of that still carries a usable verdict, so it is accepted. What is not accepted: a reply with
no score for any asked aspect, a score outside 1-5, or a winner that names neither A, B nor a tie;
those raise ``JudgeParseError`` and the judge sends one repair prompt (see ``judge.py``).

Lenient JSON comes from ``json-repair`` (a maintained library that fixes quotes, commas, missing
brackets and unquoted keys); this module only finds the candidate objects and reads the fields.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from json_repair import repair_json

SCORE_MIN, SCORE_MAX = 1, 5
RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "justification", "comment", "comments",
                  "feedback", "analysis")
WINNER_KEYS = ("winner", "preferred", "better", "preference", "verdict", "choice", "best", "betterresponse",
               "preferredresponse", "decision", "result", "answer")
NESTED_SCORE_KEYS = ("score", "rating", "value", "grade")
TIE_WORDS = {"tie", "tied", "draw", "equal", "equally", "same", "both", "neither", "none", "c"}
LABEL_PREFIXES = ("response", "assistant", "output", "answer", "candidate", "model", "option", "completion")
_FILLER = LABEL_PREFIXES + ("the", "winner", "is", "preferred", "better")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|$)", re.S)
_SCORE_TEXT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:(/|out of)\s*(\d+(?:\.\d+)?))?\s*(?:points?|stars?)?\s*\.?\s*$",
                         re.I)
_GLUED_LABEL = re.compile(rf"(?:{'|'.join(LABEL_PREFIXES)})([ab])")
_BARE_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I)
_MAX_TEXT = 50_000    # a judge reply is short (max_tokens); longer input is cut rather than scanned forever
_MAX_REPAIR = 8_000   # json-repair is only run on candidates this long (it is slow on pathological input)


class JudgeParseError(ValueError):
    """The reply carries no usable verdict; ``reason`` says why (shown in the judgment's error)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class ParsedPointwise:
    aspect_scores: dict[str, int]      # only the aspects the reply scored
    rationale: str | None


@dataclass(frozen=True)
class ParsedPairwise:
    preferred: str                     # 'a' | 'b' | 'tie', as shown in the prompt (not yet un-swapped)
    rationale: str | None


def norm_key(key: object) -> str:
    """"Instruction Following", "instruction-following" and "instruction_following" are one key."""
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


# -- finding JSON objects in free text -------------------------------------------------------------
def _balanced_objects(text: str) -> Iterable[str]:
    """Top-level ``{...}`` spans, skipping braces inside quoted strings; an unclosed one (a reply
    cut off by max_tokens) runs to the end of the text."""
    depth, start, quote, escaped = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote or (ch == "\n" and quote == "'"):
                quote = ""
            continue
        if depth and (ch == '"' or (ch == "'" and not text[i - 1].isalnum())):
            quote = ch  # quotes only count inside an object: prose before it may hold a stray one
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start:i + 1]
    if depth and start >= 0:
        yield text[start:]


def _load(candidate: str) -> list[dict[str, Any]]:
    """Strict JSON first (exactly what was written); json-repair when that fails."""
    try:
        value = json.loads(candidate)
    except (ValueError, RecursionError):
        if len(candidate) > _MAX_REPAIR:
            return []
        try:
            value = json.loads(repair_json(candidate, skip_json_loads=True) or "null")
        except (ValueError, RecursionError):
            return []
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object the reply seems to contain, in order: fenced blocks, then balanced
    spans in the whole text. Duplicates (a fenced object is also a balanced span) are dropped."""
    text = text[:_MAX_TEXT]
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + list(_balanced_objects(text))
    found: list[dict[str, Any]] = []
    for candidate in candidates:
        for obj in _load(candidate):
            if obj not in found:
                found.append(obj)
    return found


# -- reading fields ------------------------------------------------------------------------------
def parse_score(value: Any, aspect: str) -> int | None:
    """4, 4.0, "4", "4/5", "4 out of 5" -> 4 (floats round half up); None/"" -> None (not scored).
    Anything else, or a score outside 1-5, raises ``JudgeParseError``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        inner = {norm_key(k): v for k, v in value.items()}
        for key in NESTED_SCORE_KEYS:
            if key in inner:
                return parse_score(inner[key], aspect)
        raise JudgeParseError(f"{aspect}: no score in {json.dumps(value)[:80]}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise JudgeParseError(f"{aspect}: {value!r:.60} is not a score")
    number = _number(value, aspect)
    if not math.isfinite(number):
        raise JudgeParseError(f"{aspect}: {value!r:.60} is not a score")
    score = int(math.floor(number + 0.5))
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise JudgeParseError(f"{aspect}: score {value!r:.20} is outside {SCORE_MIN}-{SCORE_MAX}")
    return score


def _number(value: int | float | str, aspect: str) -> float:
    if not isinstance(value, str):
        return float(value)
    match = _SCORE_TEXT.match(value)
    if not match:
        raise JudgeParseError(f"{aspect}: {value!r:.60} is not a score")
    if match.group(3) is not None and float(match.group(3)) != SCORE_MAX:
        raise JudgeParseError(f"{aspect}: {value!r:.20} is not on the 1-{SCORE_MAX} scale")
    return float(match.group(1))


def _rationale(obj: dict[str, Any]) -> str | None:
    by_key = {norm_key(k): v for k, v in obj.items()}
    for key in RATIONALE_KEYS:
        value = by_key.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, (dict, list)) and value:
            return json.dumps(value, ensure_ascii=False)
    return None


def _scores_in(obj: dict[str, Any], aspects: tuple[str, ...], depth: int = 0) -> tuple[dict[str, int], str | None]:
    """Aspect scores at this level, else in the first nested dict that has any (``{"scores": {...}}``).
    Per-aspect rationales (``{"honesty": {"score": 4, "reason": "..."}}``) are joined when the
    object has no top-level rationale."""
    wanted = {norm_key(a): a for a in aspects}
    scores: dict[str, int] = {}
    notes: list[str] = []
    for key, value in obj.items():
        aspect = wanted.get(norm_key(key))
        if aspect is None or aspect in scores:
            continue
        score = parse_score(value, aspect)
        if score is not None:
            scores[aspect] = score
            note = _rationale(value) if isinstance(value, dict) else None
            if note:
                notes.append(f"{aspect}: {note}")
    if not scores and depth < 2:
        for value in obj.values():
            if isinstance(value, dict):
                scores, nested_note = _scores_in(value, aspects, depth + 1)
                if scores:
                    return scores, nested_note
    return scores, ("; ".join(notes) or None)


def parse_pointwise(text: str, aspects: tuple[str, ...] | list[str]) -> ParsedPointwise:
    """Scores (1-5) for the asked aspects plus a rationale; aspects the reply left out are absent.
    The first object with at least one valid score wins (a model that echoes the format example
    before answering usually echoes placeholders, which do not parse)."""
    aspects = tuple(aspects)
    objects = json_objects(text or "")
    if not objects:
        raise JudgeParseError("no JSON object in the reply")
    errors: list[str] = []
    for obj in objects:
        try:
            scores, nested_note = _scores_in(obj, aspects)
        except JudgeParseError as exc:
            errors.append(exc.reason)
            continue
        if scores:
            return ParsedPointwise(scores, _rationale(obj) or nested_note)
    if errors:
        raise JudgeParseError(errors[0])
    raise JudgeParseError(f"no score for any of {', '.join(aspects)}")


# -- pairwise --------------------------------------------------------------------------------------
def parse_label(value: Any) -> str | None:
    """"A", "a", "Response A", "[[A]]", "Assistant B is better", "tie", "It's a tie" -> 'a'/'b'/'tie'.

    None for anything else, notably an echo of the format hint ("<A, B or tie>"), a winner named
    by its text instead of its letter, or a long sentence that merely contains "tie"."""
    if not isinstance(value, str):
        return None
    words = re.findall(r"[a-z0-9]+", value.lower())
    while words and words[0] in _FILLER:
        words = words[1:]
    if not words or "or" in words:
        return None
    glued = _GLUED_LABEL.fullmatch(words[0])  # "ResponseA"
    if glued:
        return glued.group(1)
    if words[0] in ("a", "b"):
        if len(words) == 1:
            return words[0]
        if words[1] in ("tie", "draw"):      # "a tie"
            return "tie"
        if words[1] not in ("a", "b"):       # "A is better than B", but not "A, B"
            return words[0]
        return None
    if len(words) <= 4 and any(w in TIE_WORDS for w in words):
        return "tie"
    return None


def parse_pairwise(text: str) -> ParsedPairwise:
    """The preferred response as shown ('a', 'b' or 'tie') from a winner-like key; with no such
    key anywhere, a single MT-Bench style verdict ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie) in the text."""
    seen_values: list[str] = []
    for obj in json_objects(text or ""):
        for container in (obj, *(v for v in obj.values() if isinstance(v, dict))):
            by_key = {norm_key(k): v for k, v in container.items()}
            for key in WINNER_KEYS:
                if key not in by_key:
                    continue
                label = parse_label(by_key[key])
                if label is not None:
                    return ParsedPairwise(label, _rationale(obj) or _rationale(container))
                seen_values.append(f"{key}={by_key[key]!r:.40}")
    verdicts = {m.group(1).lower() for m in _BARE_VERDICT.finditer((text or "")[:_MAX_TEXT])}
    if len(verdicts) == 1:
        verdict = verdicts.pop()
        return ParsedPairwise("tie" if verdict in ("c", "tie") else verdict, None)
    if seen_values:
        raise JudgeParseError(f"the winner names neither A, B nor a tie: {seen_values[0]}")
    if len(verdicts) > 1:
        raise JudgeParseError("the reply gives more than one verdict")
    raise JudgeParseError("no winner in the reply")


# -- listwise: all candidates of an instruction in one reply ---------------------------------------
INDEX_KEYS = ("candidate", "id", "index", "number", "position", "response", "answer", "item")
LIST_KEYS = ("ratings", "candidates", "scores", "results", "evaluations", "responses", "items")
_INDEX_TEXT = re.compile(r"^\s*(?:(?:candidate|response|answer|item|option)[\s_#-]*)?(\d{1,2})\s*$", re.I)


@dataclass(frozen=True)
class ParsedListwise:
    scores: list[dict[str, int]]       # per candidate IN THE SHOWN ORDER (index 0 = "candidate 1")
    rationales: list[str | None]


def _index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _INDEX_TEXT.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _entry_index(entry: dict[str, Any]) -> int | None:
    by_key = {norm_key(k): v for k, v in entry.items()}
    for key in INDEX_KEYS:
        if key in by_key and _index(by_key[key]) is not None:
            return _index(by_key[key])
    return None


def _groupings(objects: list[dict[str, Any]]) -> Iterable[list[tuple[int | None, dict[str, Any]]]]:
    """Ways a reply lists its per-candidate entries: a list under some key (``{"ratings": [...]}``),
    keys naming the candidates (``{"candidate 1": {...}}``), or the objects of a bare array in order."""
    for obj in objects:
        by_key = {norm_key(k): v for k, v in obj.items()}
        for key in (*LIST_KEYS, *by_key):
            value = by_key.get(key)
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                yield [(_entry_index(v), v) for v in value]
                break
        named = [(_index(k), v) for k, v in obj.items() if isinstance(v, dict)]
        if named and all(i is not None for i, _ in named):
            yield named
    loose = [obj for obj in objects if _entry_index(obj) is not None or len(objects) > 1]
    if loose:
        yield [(_entry_index(obj), obj) for obj in loose]


def _read_grouping(entries: list[tuple[int | None, dict[str, Any]]], aspects: tuple[str, ...],
                   count: int) -> ParsedListwise:
    indexed = all(i is not None for i, _ in entries)
    scores: list[dict[str, int] | None] = [None] * count
    notes: list[str | None] = [None] * count
    for n, (index, entry) in enumerate(entries):
        position = (index - 1) if indexed else n
        if not 0 <= position < count:
            raise JudgeParseError(f"candidate {position + 1} does not exist (there are {count})")
        found, nested_note = _scores_in(entry, aspects)
        if not found:
            continue
        if scores[position] is not None:
            raise JudgeParseError(f"candidate {position + 1} is rated twice")
        scores[position], notes[position] = found, _rationale(entry) or nested_note
    missing = [str(n + 1) for n, s in enumerate(scores) if s is None]
    if missing:
        raise JudgeParseError(f"no score for candidate {', '.join(missing)} of {count}")
    return ParsedListwise([s for s in scores if s is not None], notes)


def parse_listwise(text: str, aspects: tuple[str, ...] | list[str], count: int) -> ParsedListwise:
    """Scores of every one of ``count`` candidates, in the order shown to the judge. A reply that
    leaves any candidate unscored is not read (one repair prompt follows): a partial ranking would
    silently favour the candidates the judge got to first."""
    aspects = tuple(aspects)
    objects = json_objects(text or "")
    if not objects:
        raise JudgeParseError("no JSON object in the reply")
    errors: list[str] = []
    for grouping in _groupings(objects):
        try:
            return _read_grouping(grouping, aspects, count)
        except JudgeParseError as exc:
            errors.append(exc.reason)
    raise JudgeParseError(errors[0] if errors else f"no per-candidate scores for the {count} candidates")
