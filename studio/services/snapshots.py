"""Training data snapshots: what the Train page and ``python -m studio snapshots`` call.

Why a service over ``storage.snapshots``: the page and the CLI both need "resolve a model name into a
tokenizer, then preview or create", and the lineage view joins a snapshot back to its pairs and
generation runs. Token counting loads only the tokenizer (cached per folder), never the weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from storage import snapshots as store
from storage.db import get_database
from storage.snapshots import SnapshotSpec, SnapshotSummary
from core.errors import BadInput, ModelLoadError
from studio import access

__all__ = ["SnapshotSpec", "SnapshotSummary", "SnapshotDetail", "create_snapshot", "preview_checks",
           "list_snapshots", "get_snapshot", "snapshot_rows"]


@dataclass
class SnapshotDetail:
    summary: SnapshotSummary
    sample: list[dict] = field(default_factory=list)       # the first few training rows, exactly as stored
    lineage: dict = field(default_factory=dict)             # generation runs and pair counts behind it

    def to_dict(self) -> dict:
        return {"summary": self.summary.to_dict(), "sample": self.sample, "lineage": self.lineage}


def _tokenizer_folder(model: str) -> Path:
    """A registry name (a transformers model, or an adapter's base) or a folder -> the tokenizer's folder."""
    from studio.services import models as model_service

    path = Path(model).expanduser()
    if path.is_dir():
        return path
    record = model_service.get_model(model)
    if record.kind == "adapter" and record.adapter_path:
        return Path(record.adapter_path)  # adapters saved by TRL/PEFT carry their tokenizer
    if not record.hf_path:
        raise BadInput(f"The model {model!r} has no transformers folder to count tokens with (it is {record.kind}).",
                       hint="Pick a model with a safetensors copy (e.g. a pulled or added folder).")
    return Path(record.hf_path)


@functools.lru_cache(maxsize=4)
def _load_counter(folder: str):
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"No tokenizer could be loaded from {folder} ({str(exc).splitlines()[0]}).",
                             hint="Pick another model, or count in characters.") from None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_counter(model: str | None):
    """A ``text -> token count`` function for a model, or None (checks then estimate)."""
    if not model:
        return None
    return _load_counter(str(_tokenizer_folder(model).resolve()))


def preview_checks(spec: SnapshotSpec, tokenizer_model: str | None = None) -> SnapshotSummary:
    """Counts after each filter and the pre-training checks, without storing anything."""
    summary, _ = store.preview_snapshot(get_database(), spec, token_counter(tokenizer_model))
    return summary


def create_snapshot(spec: SnapshotSpec, tokenizer_model: str | None = None) -> SnapshotSummary:
    """Store the snapshot (or return the existing one with the same content); blocking checks refuse."""
    return store.create_snapshot(get_database(), spec, token_counter(tokenizer_model))


def list_snapshots() -> list[SnapshotSummary]:
    return store.list_snapshots(get_database())


def get_snapshot(snapshot_id: str, sample: int = 3) -> SnapshotDetail:
    db = get_database()
    summary = store.get_snapshot(db, snapshot_id)
    rows = store.read_snapshot_rows(db, snapshot_id, "train")[:sample] if sample else []
    return SnapshotDetail(summary, rows, store.snapshot_lineage(db, snapshot_id))


def snapshot_rows(snapshot_id: str, split: str | None = "train") -> list[dict]:
    return store.read_snapshot_rows(get_database(), snapshot_id, split)


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "create_snapshot": "create a snapshot",
}, internal=("token_counter",))
