"""Export SFT and preference pairs in TRL's conversational format: JSONL, Parquet or a ``datasets`` folder.

Why this format: TRL's trainers read it unchanged (``trl.data_utils.is_conversational`` is true and
``apply_chat_template`` renders it with the model's own chat template), so an export goes straight
into ``SFTTrainer`` / ``DPOTrainer`` / ``RewardTrainer``:

* preference: ``{"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
  "rejected": [{"role": "assistant", ...}]}``
* SFT: ``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}``

Rows stream from DuckDB in id order a few thousand at a time, so memory stays flat for a million
pairs. Files are written next to the target under a ``.partial`` name and renamed at the end: an
interrupted export never leaves a half file that looks complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage import generation_queries as queries
from storage.db import Database, get_database
from storage.pairs import PairFilter
from core.errors import BadInput

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


def _check(kind: str, fmt: str, path: Path, overwrite: bool) -> None:
    if kind not in KINDS:
        raise BadInput(f"kind={kind!r} is not an export kind.", hint=f"Use one of: {', '.join(KINDS)}.")
    if fmt not in FORMATS:
        raise BadInput(f"format={fmt!r} is not an export format.", hint=f"Use one of: {', '.join(FORMATS)}.")
    if path.exists() and not overwrite:
        raise BadInput(f"{path} already exists.", hint="Choose another path, or allow overwriting (--overwrite).")
    if path.exists() and path.is_dir() != (fmt == "datasets"):
        what = "a folder" if path.is_dir() else "a file"
        raise BadInput(f"{path} is {what}; the {fmt} export writes {'a folder' if fmt == 'datasets' else 'a file'}.",
                       hint="Choose another path.")


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
    import datasets

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        parquet = Path(tmp) / "pairs.parquet"
        rows = _write_parquet(batches, parquet, kind)
        dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(Path(tmp) / "cache"))
        dataset.save_to_disk(str(target))
        del dataset
    return rows


def export_pairs(kind: str, fmt: str, path: str | Path, filters: PairFilter | None = None,
                 overwrite: bool = False, db: Database | None = None) -> ExportSummary:
    """Write the pairs matching ``filters`` to ``path`` (a file, or a folder for 'datasets')."""
    path = Path(path).expanduser()
    _check(kind, fmt, path, overwrite)
    db = db or get_database()
    if queries.count_pairs(db, kind, filters) == 0:
        raise BadInput(f"No {kind} pairs match the filters.", hint="Run a generation first, or loosen the filters.")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    _remove(partial)
    try:
        batches = _batches(db, kind, filters)
        if fmt == "jsonl":
            rows = _write_jsonl(batches, partial)
        elif fmt == "parquet":
            rows = _write_parquet(batches, partial, kind)
        else:
            rows = _write_datasets(batches, partial, kind)
        _remove(path)
        partial.rename(path)
    except BaseException:
        _remove(partial)
        raise
    return ExportSummary(str(path), rows, fmt, kind)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
