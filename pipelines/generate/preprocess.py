"""Preprocessing of generated text: normalize, scrub PII, filter by length, drop exact and near duplicates.

One pure function, :func:`preprocess`, over plain dicts, so the generation pipeline, the page's preview
and the CLI share it and tests need no database. Every step says what it removed and why
(:class:`StepReport`): a user who loses 30% of a run to "near duplicate" should see that, with examples.

Steps run in a fixed order, each on what the previous one kept: normalize -> pii -> length ->
exact_dedup -> near_dedup. Normalizing first lets duplicates that differ only in invisible characters
meet; PII before length and dedup means redacted text is what gets measured and compared. A step turned
off produces no report. Items whose text is missing or not a string cannot be processed: they are
removed up front by an ``input`` step, whose report appears only when it removed something, so a bad
row never fails the batch.

Report ``reasons`` count removed items for removal steps (they add up to ``removed``). For ``normalize``
and ``pii`` they count items per cause (an item with an email and a phone counts under both). Up to five
``examples`` per step show text before and after (clipped to 300 characters); for ``pii`` the "before"
is the original, so the user can judge what was matched: a report is as private as its input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from pipelines.generate.dedup import near_duplicates
from pipelines.generate.normalize import normalize_text
from pipelines.generate.pii import PII_KINDS, scrub_text
from core.errors import BadInput
from core.specs import bad_value, check_fields, load_spec

STEP_ORDER: tuple[str, ...] = ("normalize", "pii", "length", "exact_dedup", "near_dedup")
PII_ACTIONS: tuple[str, ...] = ("redact", "drop")
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 300  # reports are stored as JSON; a 5 MB field must not be copied into one


def _help(text: str, **limits: Any) -> dict[str, Any]:
    return {"help": text, **limits}


@dataclass(frozen=True)
class PreprocessConfig:
    """Which preprocessing steps run and with what bounds. Every field is validated on construction."""

    normalize_whitespace: bool = field(default=True, metadata=_help(
        "NFC unicode, drop zero-width/control characters, collapse runs of spaces and tabs, normalise "
        "newlines keeping paragraph breaks, trim. Indentation and fenced code blocks are kept."))
    strip_emoji: bool = field(default=False, metadata=_help(
        "Remove emoji and pictographs (the `emoji` library's list); (c), (R) and TM signs stay."))
    dedup_exact: bool = field(default=True, metadata=_help(
        "Drop texts equal to an earlier one ignoring case and whitespace."))
    dedup_near: bool = field(default=True, metadata=_help(
        "Drop texts whose shingle Jaccard similarity with an earlier one is at least near_threshold (MinHash LSH)."))
    near_threshold: float = field(default=0.8, metadata=_help(
        "Jaccard similarity from which two texts are near-duplicates (above 0, at most 1).", gt=0, max=1))
    num_perm: int = field(default=128, metadata=_help(
        "MinHash permutations (16 to 512): more finds more candidate pairs, slower.", min=16, max=512))
    shingle_size: int = field(default=3, metadata=_help(
        "Words per shingle (1 to 10); texts under 10 words use character 5-grams.", min=1, max=10))
    scrub_pii: bool = field(default=True, metadata=_help(
        "Find emails, phones, card numbers, IPs, IBANs, SSNs and URL credentials."))
    pii_action: str = field(default="redact", metadata=_help(
        "'redact' replaces each match with a placeholder such as [EMAIL]; 'drop' removes the item.",
        choices=PII_ACTIONS))
    pii_kinds: tuple[str, ...] = field(default=PII_KINDS, metadata=_help(
        f"Which kinds of personal data to look for: any of {', '.join(PII_KINDS)}.", choices=PII_KINDS))
    min_chars: int = field(default=1, metadata=_help("Fewest characters a kept text has (0 or more).", min=0))
    max_chars: int = field(default=20000, metadata=_help("Most characters a kept text has (at least min_chars, "
                                                         "at least 1).", min=1))
    min_words: int = field(default=0, metadata=_help("Fewest words a kept text has (0 or more).", min=0))
    max_words: int | None = field(default=None, metadata=_help("Most words a kept text has; empty = no limit.", min=1))

    def __post_init__(self):
        check_fields(self)
        if self.scrub_pii and not self.pii_kinds:
            raise BadInput("pii_kinds is empty while scrub_pii is on.",
                           hint="Pick at least one kind, or turn scrub_pii off.")
        object.__setattr__(self, "pii_kinds", tuple(dict.fromkeys(self.pii_kinds)))
        if self.max_chars < self.min_chars:
            raise bad_value("max_chars", self.max_chars, "is out of range",
                            f"Use a whole number of at least {self.min_chars} (min_chars).")
        if self.max_words is not None and self.max_words < self.min_words:
            raise bad_value("max_words", self.max_words, "is out of range",
                            f"Use a whole number of at least {self.min_words} (min_words).")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PreprocessConfig:
        """Build from a YAML/JSON mapping; unknown keys are an error (a typo must not silently do nothing)."""
        return load_spec(cls, {} if data is None else data, label="the preprocessing options")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["pii_kinds"] = list(self.pii_kinds)
        return out

    def enabled_steps(self) -> tuple[str, ...]:
        on = {
            "normalize": self.normalize_whitespace or self.strip_emoji,
            "pii": self.scrub_pii,
            "length": True,
            "exact_dedup": self.dedup_exact,
            "near_dedup": self.dedup_near,
        }
        return tuple(step for step in STEP_ORDER if on[step])


@dataclass
class StepReport:
    """What one step did: how many items came in, how many it removed or changed, and why."""

    step: str
    input_count: int
    removed: int = 0
    changed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PreprocessResult:
    kept: list[dict]
    removed: list[dict]
    reports: list[StepReport]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts and the step reports, for a run's ``report`` column."""
        return {"kept": len(self.kept), "removed": len(self.removed), "steps": [r.to_dict() for r in self.reports]}


@dataclass
class _Row:
    index: int
    id: Any
    item: dict
    text: str
    group: Any


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= EXAMPLE_CHARS:
        return text
    return text[:EXAMPLE_CHARS] + "…"


class _Step:
    """Collects one step's outcome: survivors, removals (with reasons) and the report."""

    def __init__(self, name: str, rows: list[_Row], removed: list[dict]):
        self.report = StepReport(step=name, input_count=len(rows))
        self.kept: list[_Row] = []
        self._removed = removed
        self._reasons: Counter[str] = Counter()

    def keep(self, row: _Row, new_text: str | None = None, causes: Iterable[str] = (), example_reason: str = "") -> None:
        causes = list(causes)
        self._reasons.update(causes)
        if new_text is not None and new_text != row.text:
            self.report.changed += 1
            self._example(row, example_reason or ", ".join(causes), row.text, new_text)
            row.text = new_text
        self.kept.append(row)

    def remove(self, row: _Row, reason: str, *, causes: Iterable[str] | None = None,
               duplicate_of: Any = None, extra: dict | None = None) -> None:
        self._reasons.update([reason] if causes is None else causes)
        self.report.removed += 1
        self._removed.append({"item": row.item, "step": self.report.step, "reason": reason, "duplicate_of": duplicate_of})
        more = {"duplicate_of": duplicate_of} if duplicate_of is not None else {}
        self._example(row, reason, row.text, None, {**more, **(extra or {})})

    def _example(self, row: _Row, reason: str, before: str, after: str | None, more: dict | None = None) -> None:
        if len(self.report.examples) < MAX_EXAMPLES:
            example = {"id": row.id, "reason": reason, "before": _clip(before), "after": _clip(after)}
            self.report.examples.append({**example, **(more or {})})

    def finish(self) -> list[_Row]:
        self.report.reasons = dict(self._reasons.most_common())
        return self.kept


def _hashable_group(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)


def _input_step(items: list[dict], text_key: str, id_key: str, group_key: str | None, removed: list[dict]) -> tuple[list[_Row], StepReport]:
    step = _Step("input", items, removed)
    for index, item in enumerate(items):
        fields = item if isinstance(item, dict) else {}
        item_id = fields.get(id_key)
        group = _hashable_group(fields.get(group_key)) if group_key else None
        row = _Row(index, item_id if item_id is not None else f"#{index}", item, "", group)
        text = fields.get(text_key)
        if isinstance(text, str):
            row.text = text
            step.keep(row)
        elif not isinstance(item, dict):
            row.text = repr(item)[:EXAMPLE_CHARS]
            step.remove(row, f"item is a {type(item).__name__}, not a mapping")
        else:
            row.text = "" if text is None else repr(text)[:EXAMPLE_CHARS]
            step.remove(row, f"no text under '{text_key}'" if text is None else f"'{text_key}' is a {type(text).__name__}, not text")
    return step.finish(), step.report


def _normalize_step(step: _Step, rows: list[_Row], config: PreprocessConfig) -> None:
    for row in rows:
        new_text, causes = normalize_text(row.text, whitespace=config.normalize_whitespace, emoji=config.strip_emoji)
        step.keep(row, new_text, causes)


def _pii_step(step: _Step, rows: list[_Row], config: PreprocessConfig) -> None:
    for row in rows:
        new_text, found = scrub_text(row.text, config.pii_kinds)
        kinds = [k for k in config.pii_kinds if found[k]]
        if not kinds:
            step.keep(row)
        elif config.pii_action == "drop":
            step.remove(row, "contains " + ", ".join(kinds), causes=kinds)
        else:
            step.keep(row, new_text, kinds, example_reason="redacted " + ", ".join(kinds))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def length_violation(text: str, config: PreprocessConfig) -> str | None:
    """Which bound ``text`` breaks, as the reason shown to the user; None when it fits."""
    chars = len(text)
    if chars < config.min_chars:
        return f"shorter than {_plural(config.min_chars, 'character')}"
    if chars > config.max_chars:
        return f"longer than {_plural(config.max_chars, 'character')}"
    if config.min_words or config.max_words is not None:
        words = len(text.split())
        if words < config.min_words:
            return f"fewer than {_plural(config.min_words, 'word')}"
        if config.max_words is not None and words > config.max_words:
            return f"more than {_plural(config.max_words, 'word')}"
    return None


def _length_step(step: _Step, rows: list[_Row], config: PreprocessConfig) -> None:
    for row in rows:
        reason = length_violation(row.text, config)
        if reason is None:
            step.keep(row)
        else:
            step.remove(row, reason)


def exact_key(text: str) -> bytes:
    """Case- and whitespace-insensitive fingerprint: runs of whitespace count as one space."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest()


def _exact_dedup_step(step: _Step, rows: list[_Row], config: PreprocessConfig) -> None:
    first_by_key: dict[tuple[Any, bytes], _Row] = {}
    for row in rows:
        first = first_by_key.setdefault((row.group, exact_key(row.text)), row)
        if first is row:
            step.keep(row)
        else:
            step.remove(row, "exact duplicate", duplicate_of=first.id)


def _near_dedup_step(step: _Step, rows: list[_Row], config: PreprocessConfig) -> None:
    matches = near_duplicates(
        [(row.group, row.text) for row in rows],
        threshold=config.near_threshold, num_perm=config.num_perm, shingle_size=config.shingle_size,
    )
    for position, row in enumerate(rows):
        match = matches.get(position)
        if match is None:
            step.keep(row)
        else:
            original, similarity = match
            step.remove(row, "near duplicate", duplicate_of=rows[original].id, extra={"similarity": round(similarity, 3)})


# --- normalization -------------------------------------------------------------------------------

# Invisible characters that only hide differences: zero-width space, word joiner, BOM, soft hyphen,
# Mongolian vowel separator, and the bidi embedding/override/isolate controls ("Trojan Source").
# ZWJ/ZWNJ (U+200D/U+200C) stay: they are meaningful in emoji sequences and in Persian and Indic text.
# C0/C1 control characters go too, except tab and newline.
_STEPS = {
    "normalize": _normalize_step,
    "pii": _pii_step,
    "length": _length_step,
    "exact_dedup": _exact_dedup_step,
    "near_dedup": _near_dedup_step,
}


def preprocess(items: list[dict], config: PreprocessConfig, text_key: str = "text", id_key: str = "id",
               group_key: str | None = None) -> PreprocessResult:
    """Run the enabled steps over ``items`` and say what each removed and why.

    Input dicts are never modified; kept items are new dicts with the processed text under
    ``text_key``, in input order. Of duplicates the first is kept; later ones are removed with
    ``duplicate_of`` naming the kept item's ``id_key`` value (``#<index>`` when it has none). With
    ``group_key``, duplicates are only looked for among items with the same value there (two different
    instructions may both rightly be answered "Yes.").
    """
    removed: list[dict] = []
    rows, input_report = _input_step(list(items), text_key, id_key, group_key, removed)
    reports = [input_report] if input_report.removed else []
    for name in config.enabled_steps():
        step = _Step(name, rows, removed)
        _STEPS[name](step, rows, config)
        rows = step.finish()
        reports.append(step.report)
    kept = [{**row.item, text_key: row.text} for row in rows]
    return PreprocessResult(kept=kept, removed=removed, reports=reports)
