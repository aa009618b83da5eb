"""Export SFT and preference pairs in TRL's conversational format: JSONL, Parquet or a ``datasets`` folder.

Why this format: TRL's trainers read it unchanged (``trl.data_utils.is_conversational`` is true and
``apply_chat_template`` renders it with the model's own chat template), so an export goes straight
into ``SFTTrainer`` / ``DPOTrainer`` / ``RewardTrainer``:

* preference: ``{"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
  "rejected": [{"role": "assistant", ...}]}``
* SFT: ``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}``

Rows stream from DuckDB in id order a few thousand at a time, so memory stays flat for a million
pairs. Where it writes follows ``core.outputs`` (the rule the page and the CLI share): a temporary
folder next to the target, renamed into place at the end, so an interrupted export never leaves a
half file that looks complete; ``overwrite`` replaces only an export the studio wrote (its manifest
says so), never STUDIO_HOME, a folder or file of someone else's, a link, a FIFO or a device.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage import generation_queries as queries
from storage.db import Database, get_database
from storage.pairs import PairFilter
from core import outputs
from core.errors import BadInput
from core.inputs import quote

KINDS = ("preference", "sft")
FORMATS = ("jsonl", "parquet", "datasets")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMAS = {
    "preference": pa.schema([("prompt", pa.list_(MESSAGE)), ("chosen", pa.list_(MESSAGE)),
                             ("rejected", pa.list_(MESSAGE))]),
    "sft": pa.schema([("prompt", pa.list_(MESSAGE)), ("completion", pa.list_(MESSAGE))]),
}


@dataclass(frozen=True)
class ExportSummary:
    path: str
    rows: int
    fmt: str
    kind: str = "preference"


def to_trl(kind: str, row: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """One stored pair as a TRL conversational example."""
    prompt = [{"role": "user", "content": row["prompt"]}]
    if kind == "sft":
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": row["completion"]}]}
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


def _check(kind: str, fmt: str) -> None:
    if kind not in KINDS:
        raise BadInput(f"kind={quote(kind)} is not an export kind.", hint=f"Use one of: {', '.join(KINDS)}.")
    if fmt not in FORMATS:
        raise BadInput(f"format={quote(fmt)} is not an export format.", hint=f"Use one of: {', '.join(FORMATS)}.")


def _batches(db: Database, kind: str, filters: PairFilter | None) -> Iterator[list[dict]]:
    for rows in queries.iter_pairs(db, kind, filters):
        yield [to_trl(kind, row) for row in rows]


def _write_jsonl(batches: Iterator[list[dict]], target: Path) -> int:
    rows = 0
    with open(target, "w", encoding="utf-8") as out:
        for batch in batches:
            for example in batch:
                out.write(json.dumps(example, ensure_ascii=False) + "\n")
            rows += len(batch)
    return rows


def _write_parquet(batches: Iterator[list[dict]], target: Path, kind: str) -> int:
    rows = 0
    with pq.ParquetWriter(target, SCHEMAS[kind]) as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMAS[kind]))
            rows += len(batch)
    return rows


def _write_datasets(batches: Iterator[list[dict]], target: Path, kind: str) -> int:
    """A ``DatasetDict`` with one 'train' split: ``load_from_disk(folder)["train"]`` reads it, and so does
    ``load_dataset(folder, split="train")`` (hence TRL's ``--dataset_name folder``), which refuses a
    plain ``Dataset.save_to_disk`` folder."""
    import datasets

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        parquet = Path(tmp) / "pairs.parquet"
        rows = _write_parquet(batches, parquet, kind)
        dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(Path(tmp) / "cache"))
        datasets.DatasetDict({"train": dataset}).save_to_disk(str(target))
        del dataset
    return rows


def export_pairs(kind: str, fmt: str, path: str | Path, filters: PairFilter | None = None,
                 overwrite: bool = False, db: Database | None = None) -> ExportSummary:
    """Write the pairs matching ``filters`` to ``path`` (a file, or a folder for 'datasets')."""
    _check(kind, fmt)
    folder = fmt == "datasets"
    target = outputs.check_target(path, folder=folder, overwrite=overwrite)
    db = db or get_database()
    if queries.count_pairs(db, kind, filters) == 0:
        raise BadInput(f"No {kind} pairs match the filters.", hint="Run a generation first, or loosen the filters.")
    with outputs.staged_output(target, folder=folder, overwrite=overwrite,
                               details={"kind": kind, "format": fmt}) as staged:
        batches = _batches(db, kind, filters)
        if fmt == "jsonl":
            rows = _write_jsonl(batches, staged)
        elif fmt == "parquet":
            rows = _write_parquet(batches, staged, kind)
        else:
            rows = _write_datasets(batches, staged, kind)
    return ExportSummary(str(target), rows, fmt, kind)
