"""What goes into a dataset snapshot: the filters and the split, one frozen dataclass.

Its own module so the row helpers (``snapshot_rows``) and the snapshot store (``snapshots``) both use
it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.errors import BadInput

RECORD_KINDS = ("preference", "sft", "kto", "prompts")
LABEL_RULES = ("prefer_human", "judge_only")
LENGTH_UNITS = ("chars", "tokens")


@dataclass(frozen=True)
class SnapshotSpec:
    """What goes into a snapshot. Every field is a filter or a split setting; see ``metadata["help"]``."""

    record_kind: str = field(default="preference", metadata={"help": "preference (DPO, reward, ORPO, CPO), sft, "
                             "kto (unpaired good/bad: chosen -> good, rejected -> bad, both bad -> two bad, a correction -> good; "
                             "SFT pairs a person reviewed as good or bad) or prompts (PPO, GRPO, RLOO)."})
    name: str | None = field(default=None, metadata={"help": "A label for people; not part of the content hash."})
    generation_run_ids: tuple[str, ...] = field(default=(), metadata={"help": "Only pairs from these generation "
                                                "runs; empty means all runs."})
    only_human_reviewed: bool = field(default=False, metadata={"help": "Keep only records a person reviewed."})
    label_rule: str = field(default="prefer_human", metadata={"help": "prefer_human: a reviewed record uses the "
                            "human final label (swapped or corrected), others the judge's; judge_only: ignore reviews."})
    min_judge_confidence: float | None = field(default=None, metadata={"help": "Drop pairs the judge was less sure "
                                               "of (0-1); pairs without a confidence are dropped too."})
    min_reviewer_agreement: float | None = field(default=None, metadata={"help": "Drop reviewed records whose "
                                                 "reviewers agreed less than this (0-1); unreviewed records stay."})
    exclude_flagged: bool = field(default=True, metadata={"help": "Drop pairs flagged during generation or review."})
    drop_identical: bool = field(default=True, metadata={"help": "Drop preference pairs whose chosen and rejected "
                                 "texts are the same (they teach nothing)."})
    drop_duplicates: bool = field(default=True, metadata={"help": "Keep one copy of rows with exactly the same "
                                  "content."})
    max_length: int | None = field(default=None, metadata={"help": "Drop rows longer than this (prompt + longest "
                                   "response), counted in max_length_unit."})
    max_length_unit: str = field(default="chars", metadata={"help": "chars, or tokens (needs a tokenizer model)."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of rows held out for evaluation, 0 <= f < 1; "
                                 "at least one row when above 0."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the train/eval split: the same seed and data "
                            "give the same split."})
    check_max_length: int = field(default=1024, metadata={"help": "The training max length in tokens: the checks "
                                  "count rows that will be truncated."})

    def validate(self) -> "SnapshotSpec":
        def bad(name: str, value: object, allowed: str) -> BadInput:
            return BadInput(f"{name}={value!r} is not allowed.", hint=f"Use {allowed}.")

        if self.record_kind not in RECORD_KINDS:
            raise bad("record_kind", self.record_kind, "one of: " + ", ".join(RECORD_KINDS))
        if self.label_rule not in LABEL_RULES:
            raise bad("label_rule", self.label_rule, "one of: " + ", ".join(LABEL_RULES))
        if self.max_length_unit not in LENGTH_UNITS:
            raise bad("max_length_unit", self.max_length_unit, "one of: " + ", ".join(LENGTH_UNITS))
        for name in ("min_judge_confidence", "min_reviewer_agreement"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise bad(name, value, "a number from 0 to 1, or leave it empty")
        if not 0 <= self.eval_fraction < 1:
            raise bad("eval_fraction", self.eval_fraction, "a number from 0 (no eval split) up to, not including, 1")
        if self.max_length is not None and self.max_length < 1:
            raise bad("max_length", self.max_length, "a whole number of at least 1, or leave it empty")
        if self.check_max_length < 1:
            raise bad("check_max_length", self.check_max_length, "a whole number of at least 1")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            raise bad("split_seed", self.split_seed, "a whole number")
        return self

    def filters(self) -> dict[str, Any]:
        """The content-defining settings (everything except the name), as stored with the snapshot."""
        out = asdict(self)
        out.pop("name")
        out["generation_run_ids"] = list(self.generation_run_ids)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SnapshotSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInput(f"Unknown snapshot setting(s): {', '.join(unknown)}.", hint=f"Known: {', '.join(sorted(known))}.")
        data = dict(data)
        data["generation_run_ids"] = tuple(data.get("generation_run_ids") or ())
        return cls(**data)
