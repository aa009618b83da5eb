"""SQL for seed sets and seeds.

Why the ids are content-derived: a seed's id is ``stable_id("seed", seed_set_id, line, hash)``,
so importing the same file into the same set again inserts nothing (``ON CONFLICT DO NOTHING``)
and an import killed half-way can simply be run again.

Where a seed came from (its line in the file, or its position among typed seeds) is kept in the
``metadata`` JSON under the reserved key ``_line``; reads hand it back as ``line`` and order seeds
by it, so a seed set lists in file order. The rest of ``metadata`` is the user's mapped columns.
Only this module writes SQL for these two tables.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from storage.db import Database
from storage.ids import content_hash, new_id, stable_id

LINE_KEY = "_line"
SEED_COLUMNS = ("id", "seed_set_id", "text", "reference", "metadata", "content_hash")
SET_COLUMNS = "id, name, source, source_path, column_mapping, created_at"

INSERT_SEED_SET = ("INSERT INTO seed_sets (id, name, source, source_path, column_mapping) "
                   "VALUES (?, ?, ?, ?, ?::JSON)")
SELECT_SEED_SET = f"SELECT {SET_COLUMNS} FROM seed_sets WHERE id = ?"
SELECT_SEED_SET_BY_NAME = f"SELECT {SET_COLUMNS} FROM seed_sets WHERE name = ? ORDER BY created_at, id LIMIT 1"
LIST_SEED_SETS = """
SELECT s.id, s.name, s.source, s.source_path, s.column_mapping, s.created_at, coalesce(c.seeds, 0) AS seeds
FROM seed_sets s LEFT JOIN (SELECT seed_set_id, count(*) AS seeds FROM seeds GROUP BY seed_set_id) c
    ON c.seed_set_id = s.id
ORDER BY s.created_at DESC, s.id
"""
# Arrow in, JSON cast in SQL; a seed already there (same set, line and content) is left alone.
INSERT_SEEDS = """
INSERT INTO seeds (id, seed_set_id, text, reference, metadata, content_hash)
SELECT id, seed_set_id, text, reference, metadata::JSON, content_hash FROM incoming_seeds
ON CONFLICT (id) DO NOTHING
"""
# Rows of a set this import created: none of their ids can be stored yet, so no conflict check.
INSERT_NEW_SEEDS = INSERT_SEEDS.replace("ON CONFLICT (id) DO NOTHING", "")
SEED_SELECT = "SELECT id, seed_set_id, text, reference, metadata, content_hash, created_at FROM seeds"
LINE_ORDER = f"TRY_CAST(json_extract_string(metadata, '$.{LINE_KEY}') AS BIGINT) NULLS LAST, id"
LIST_SEEDS = f"{SEED_SELECT} WHERE seed_set_id = ? ORDER BY {LINE_ORDER} LIMIT ? OFFSET ?"
GET_SEED = f"{SEED_SELECT} WHERE id = ?"
COUNT_SEEDS = "SELECT count(*) FROM seeds WHERE seed_set_id = ?"


def seed_content_hash(text: str, reference: str | None, metadata: dict[str, Any] | None) -> str:
    """What makes two seeds the same: their text, reference and mapped metadata."""
    return content_hash(text, reference, metadata or {})


def seed_id(seed_set_id: str, line: int, hashed: str) -> str:
    return stable_id("seed", seed_set_id, line, hashed)


def new_seed_set_id() -> str:
    return new_id("seedset")


def create_seed_set(db: Database, name: str, source: str, source_path: str | None,
                    column_mapping: dict | None, set_id: str | None = None) -> str:
    """Create the set (under ``set_id`` when the caller already hashed seed ids with it)."""
    set_id = set_id or new_seed_set_id()
    with db.session() as cur:
        cur.execute(INSERT_SEED_SET, [set_id, name, source, source_path,
                                      json.dumps(column_mapping) if column_mapping is not None else None])
    return set_id


def _set_row(names: list[str], row: tuple) -> dict:
    out = dict(zip(names, row))
    if isinstance(out.get("column_mapping"), str):
        out["column_mapping"] = json.loads(out["column_mapping"])
    return out


def get_seed_set(db: Database, seed_set_id: str) -> dict | None:
    with db.session() as cur:
        row = cur.execute(SELECT_SEED_SET, [seed_set_id]).fetchone()
        return _set_row([d[0] for d in cur.description], row) if row else None


def find_seed_set(db: Database, name: str) -> dict | None:
    """The (oldest) seed set with this name, if any."""
    with db.session() as cur:
        row = cur.execute(SELECT_SEED_SET_BY_NAME, [name]).fetchone()
        return _set_row([d[0] for d in cur.description], row) if row else None


def list_seed_sets(db: Database) -> list[dict]:
    """Every seed set, newest first, with its number of seeds."""
    with db.session() as cur:
        rows = cur.execute(LIST_SEED_SETS).fetchall()
        names = [d[0] for d in cur.description]
    return [_set_row(names, row) for row in rows]


def _seed_table(seed_set_id: str, rows: list[dict]) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in SEED_COLUMNS}
    for row in rows:
        metadata = {**(row.get("metadata") or {}), LINE_KEY: int(row["line"])}
        hashed = seed_content_hash(row["text"], row.get("reference"), row.get("metadata"))
        columns["id"].append(seed_id(seed_set_id, int(row["line"]), hashed))
        columns["seed_set_id"].append(seed_set_id)
        columns["text"].append(row["text"])
        columns["reference"].append(row.get("reference"))
        columns["metadata"].append(json.dumps(metadata, ensure_ascii=False))
        columns["content_hash"].append(hashed)
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def insert_seeds(db: Database, seed_set_id: str, rows: list[dict]) -> int:
    """Insert ``{text, reference, metadata, line}`` rows in one transaction through Arrow.

    Returns how many were new; rows already stored (same set, line and content) are skipped.
    """
    if not rows:
        return 0
    return insert_seed_table(db, _seed_table(seed_set_id, rows))


def insert_seed_table(db: Database, table: pa.Table, new_set: bool = False) -> int:
    """Insert finished seed rows (the ``SEED_COLUMNS``, metadata as JSON text) in one transaction;
    returns how many were new. The bulk importer builds such tables in SQL, ``insert_seeds`` in Python.
    ``new_set``: the set was created by this import and these ids are not stored yet (faster)."""
    if table.num_rows == 0:
        return 0
    with db.session(transaction=True) as cur:
        cur.register("incoming_seeds", table)
        try:
            inserted = cur.execute(INSERT_NEW_SEEDS if new_set else INSERT_SEEDS).fetchone()[0]
        finally:
            cur.unregister("incoming_seeds")
    return int(inserted)


def _seed_row(names: list[str], row: tuple) -> dict:
    out = dict(zip(names, row))
    metadata = json.loads(out["metadata"]) if isinstance(out.get("metadata"), str) else (out.get("metadata") or {})
    out["line"] = metadata.pop(LINE_KEY, None)
    out["metadata"] = metadata
    return out


def list_seeds(db: Database, seed_set_id: str, limit: int = 50, offset: int = 0) -> list[dict]:
    """A page of a set's seeds in file order."""
    with db.session() as cur:
        rows = cur.execute(LIST_SEEDS, [seed_set_id, int(limit), int(offset)]).fetchall()
        names = [d[0] for d in cur.description]
    return [_seed_row(names, row) for row in rows]


def get_seed(db: Database, seed_id_: str) -> dict | None:
    with db.session() as cur:
        row = cur.execute(GET_SEED, [seed_id_]).fetchone()
        return _seed_row([d[0] for d in cur.description], row) if row else None


def count_seeds(db: Database, seed_set_id: str) -> int:
    with db.session() as cur:
        return int(cur.execute(COUNT_SEEDS, [seed_set_id]).fetchone()[0])
