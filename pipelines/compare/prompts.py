"""Prompt sets for a comparison: a snapshot's held-out split, a generation run's instructions, or an
uploaded JSONL/CSV file (read with the seeds readers, so any encoding and bad rows by line).

Why fixed at creation: every model must answer exactly the same prompts, and votes refer to them,
so the set is copied into ``comparison_prompts`` once (with its source record and metadata for
slices) and never re-read from a source that may change later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import compare as store
from storage import generation as gen_store
from storage.db import Database
from core.errors import BadInput, NotFound

SOURCES = ("snapshot_eval", "generation_run", "upload")
MAX_PROMPTS = 100_000


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    reference: str | None = None
    source_record_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def prompt_text(payload: Any) -> str | None:
    """The user's prompt of a snapshot row in TRL's formats: conversational ``prompt`` (the last user
    turn), ``messages`` (the last user turn before the answer), or a plain ``prompt`` string."""
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict):
        return None
    for key in ("prompt", "messages", "instruction", "text"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list):
            users = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
            if users and isinstance(users[-1], str):
                return users[-1]
    return None


def reference_text(payload: Any) -> str | None:
    """A reference answer where the row has one: SFT ``completion`` or the preferred ``chosen``."""
    if not isinstance(payload, dict):
        return None
    for key in ("completion", "chosen", "reference"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            answers = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
            if answers:
                return answers[-1]
    return None


def from_snapshot(db: Database, snapshot_id: str, split: str = "eval") -> list[PromptItem]:
    if not snapshot_id or not store.snapshot_exists(db, snapshot_id):
        raise NotFound(f"There is no dataset snapshot {snapshot_id!r}.",
                       hint="Pick a snapshot made on the Review or Train page.")
    items = []
    for record_id, payload in store.snapshot_payloads(db, snapshot_id, split):
        text = prompt_text(payload)
        if text and text.strip():
            meta = payload.get("metadata") if isinstance(payload, dict) and isinstance(payload.get("metadata"), dict) else {}
            items.append(PromptItem(text, reference_text(payload), record_id,
                                    {**meta, "source": f"snapshot:{snapshot_id}"}))
    if not items:
        raise BadInput(f"Snapshot {snapshot_id} has no {split} prompts.",
                       hint="Make a snapshot with a held-out fraction above 0, or pick another prompt set.")
    return items


def from_generation_run(db: Database, run_id: str) -> list[PromptItem]:
    if not run_id or gen_store.get_run(db, run_id) is None:
        raise NotFound(f"There is no generation run {run_id!r}.", hint="`python -m studio generations list` lists them.")
    rows = gen_store.instructions_of(db, run_id, ["kept"])
    if not rows:
        raise BadInput(f"Generation run {run_id} has no kept instructions.", hint="Pick a run that finished.")
    return [PromptItem(r["text"], None, r["id"], {"source": f"generation:{run_id}", "method": r["method"],
                                                  "seed_id": r["seed_id"]}) for r in rows]


def from_upload(path: str | Path, text_column: str = "prompt", reference_column: str | None = None,
                metadata_columns: tuple[str, ...] = ()) -> tuple[list[PromptItem], list[str]]:
    """Prompts of a JSONL/CSV/Parquet file, and the problems of rows that were skipped (by line)."""
    from pipelines.generate.seeds_io import ColumnMapping, RowProblem, iter_seeds

    file = Path(path).expanduser()
    if not file.is_file():
        raise BadInput(f"The prompt file {file} does not exist.", hint="Give a JSONL or CSV file with a prompt column.")
    mapping = ColumnMapping(text=text_column, reference=reference_column, metadata=tuple(metadata_columns))
    items: list[PromptItem] = []
    problems: list[str] = []
    for row in iter_seeds(file, mapping):
        if isinstance(row, RowProblem):
            problems.append(str(row))
            continue
        meta = {k: v for k, v in row.metadata.items() if not k.startswith("_")}
        items.append(PromptItem(row.text, row.reference, None, {**meta, "source": f"upload:{file.name}"}))
        if len(items) > MAX_PROMPTS:
            raise BadInput(f"{file} has more than {MAX_PROMPTS:,} prompts.", hint="Compare on a sample of it.")
    if not items:
        raise BadInput(f"{file} has no usable prompts ({len(problems)} rows skipped).",
                       hint=f"Check that the column {text_column!r} holds the prompts.")
    return items, problems


def load_prompts(db: Database, source: str, source_id: str | None = None, **upload: Any
                 ) -> tuple[list[PromptItem], list[str]]:
    """Dispatch on the source; returns (prompts, problems of skipped rows)."""
    if source == "snapshot_eval":
        return from_snapshot(db, source_id or ""), []
    if source == "generation_run":
        return from_generation_run(db, source_id or ""), []
    if source == "upload":
        return from_upload(source_id or "", **upload)
    raise BadInput(f"prompt source {source!r} is not known.", hint=f"Use one of {list(SOURCES)}.")
