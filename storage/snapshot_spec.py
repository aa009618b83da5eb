"""What goes into a dataset snapshot: the filters and the split, one frozen dataclass.

Its own module so the row helpers (``snapshot_rows``) and the snapshot store (``snapshots``) both use
it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.inputs import MAX_COUNT, MAX_NAME_CHARS, MAX_SEED
from core.specs import check_fields, load_spec

RECORD_KINDS = ("preference", "sft", "kto", "prompts")
LABEL_RULES = ("prefer_human", "judge_only")
LENGTH_UNITS = ("chars", "tokens")


@dataclass(frozen=True)
class SnapshotSpec:
    """What goes into a snapshot. Every field is a filter or a split setting; see ``metadata["help"]``."""

    record_kind: str = field(default="preference", metadata={"help": "preference (DPO, reward, ORPO, CPO), sft, "
                             "kto (unpaired good/bad: chosen -> good, rejected -> bad, both bad -> two bad, a correction -> good; "
                             "SFT pairs a person reviewed as good or bad) or prompts (PPO, GRPO, RLOO).",
                             "choices": RECORD_KINDS})
    name: str | None = field(default=None, metadata={"help": "A label for people; not part of the content hash.",
                                                     "max_len": MAX_NAME_CHARS})
    generation_run_ids: tuple[str, ...] = field(default=(), metadata={"help": "Only pairs from these generation "
                                                "runs; empty means all runs."})
    only_human_reviewed: bool = field(default=False, metadata={"help": "Keep only records a person reviewed."})
    label_rule: str = field(default="prefer_human", metadata={"help": "prefer_human: a reviewed record uses the "
                            "human final label (swapped or corrected), others the judge's; judge_only: ignore reviews.",
                            "choices": LABEL_RULES})
    min_judge_confidence: float | None = field(default=None, metadata={"help": "Drop pairs the judge was less sure "
                                               "of (0-1); pairs without a confidence are dropped too.",
                                               "min": 0, "max": 1})
    min_reviewer_agreement: float | None = field(default=None, metadata={"help": "Drop reviewed records whose "
                                                 "reviewers agreed less than this (0-1); unreviewed records stay.",
                                                 "min": 0, "max": 1})
    exclude_flagged: bool = field(default=True, metadata={"help": "Drop pairs flagged during generation or review."})
    drop_identical: bool = field(default=True, metadata={"help": "Drop preference pairs whose chosen and rejected "
                                 "texts are the same (they teach nothing)."})
    drop_duplicates: bool = field(default=True, metadata={"help": "Keep one copy of rows with exactly the same "
                                  "content."})
    max_length: int | None = field(default=None, metadata={"help": "Drop rows longer than this (prompt + longest "
                                   "response), counted in max_length_unit.", "min": 1, "max": MAX_COUNT})
    max_length_unit: str = field(default="chars", metadata={"help": "chars, or tokens (needs a tokenizer model).",
                                                                 "choices": LENGTH_UNITS})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of rows held out for evaluation, 0 <= f < 1; "
                                 "at least one row when above 0.", "min": 0, "lt": 1})
    split_seed: int = field(default=42, metadata={"help": "Seed of the train/eval split: the same seed and data "
                            "give the same split.", "min": -MAX_SEED, "max": MAX_SEED})
    check_max_length: int = field(default=1024, metadata={"help": "The training max length in tokens: the checks "
                                  "count rows that will be truncated.", "min": 1, "max": MAX_COUNT})

    def validate(self) -> "SnapshotSpec":
        """Types, choices and bounds from the fields' metadata; the page and the CLI build a spec directly,
        ``from_dict`` is the YAML/JSON way in."""
        check_fields(self)
        return self

    def filters(self) -> dict[str, Any]:
        """The content-defining settings (everything except the name), as stored with the snapshot."""
        out = asdict(self)
        out.pop("name")
        out["generation_run_ids"] = list(self.generation_run_ids)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SnapshotSpec":
        return load_spec(cls, data, label="the snapshot settings")
