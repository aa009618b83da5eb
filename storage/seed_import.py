"""SQL of the bulk seed import: DuckDB reads, checks, numbers and hashes a seed file in a scratch
database; the finished rows then go to the studio's file in large batches.

Why a scratch database: parsing and hashing a 1 GB file takes seconds; done in the studio's file it
would hold the file lock all that time. Here the lock is held only while a finished batch is
inserted (``storage.seeds.insert_seed_table``), so the app and other jobs get turns in between.

Every staged row gets ``span`` (the physical lines it occupies: 1 + the newlines inside its fields),
``ok`` (SQL can make the seed exactly as the Python reader would) and, when not ok, what the Python
reader needs to decide about it (``raw``: the JSON line; ``t``: the text; ``blank_all``: every cell of
a CSV row is blank). Rows that are not ok are few in practice (empty texts, broken lines, numbers
where text was expected); the pipeline hands them to the Python reader's own rules.

Ids and content hashes equal ``storage.seeds.seed_id`` / ``seed_content_hash`` (sha256 of Python's
``json.dumps``) for text, references and metadata that are strings, integers, booleans or null, so a
file imported before this path existed is still recognised. Metadata that holds floats or nested
values hashes from DuckDB's JSON spelling instead; that only matters for one file imported by both
readers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa

from storage.db import scratch_connection

# Python's str.strip() set: a text that is only these is empty, in SQL as in the Python reader.
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                 "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
NULL_SENTINEL = "\x01studio-no-null\x01"   # DuckDB needs a null string; no real cell is this one
LINE_SEPARATOR = "\x01\x02\x03\x04"         # JSON Lines are read as one column: no line holds this
MAX_LINE_BYTES = 16 << 20                   # one CSV row / JSON line larger than this is a bad row
BUFFER_BYTES = 2 * MAX_LINE_BYTES           # DuckDB's read buffer (its default grows with the file: 1 GB for 1 GB)

# to_json writes \u000B where Python's json.dumps writes \u000b: lower-case them (rare: control chars).
_UPPER_HEX = ("000B", "000E", "000F", "001A", "001B", "001C", "001D", "001E", "001F")
_FIX = "j"
for _code in _UPPER_HEX:
    _FIX = f"replace({_FIX}, '\\u{_code}', '\\u{_code.lower()}')"
MACROS = (
    f"CREATE OR REPLACE TEMP MACRO py_json(j) AS CASE WHEN contains(j, '\\u00') THEN {_FIX} ELSE j END",
    # trim() with a character set is slow: only texts that start with whitespace pay for it
    "CREATE OR REPLACE TEMP MACRO blank(s) AS CASE WHEN s IS NULL OR s = '' THEN true "
    "WHEN ord(s) IN ({codes}) THEN trim(s, '{chars}') = '' ELSE false END".format(
        codes=", ".join(str(ord(c)) for c in PY_WHITESPACE), chars=PY_WHITESPACE),
)
PROGRESS_SETTINGS = ("SET enable_progress_bar = true", "SET enable_progress_bar_print = false",
                     "SET progress_bar_time = 0")
CSV_SOURCE = ("read_csv($path, columns={columns}, auto_detect=false, header=true, delim=$delim, quote=$quote, "
              "escape=$quote, nullstr=$null, allow_quoted_nulls=false, max_line_size=$max_line, "
              "buffer_size=$buffer, store_rejects=true, rejects_table='seed_rejects', rejects_scan='seed_reject_scans')")
JSONL_SOURCE = ("read_csv($path, columns={'l': 'VARCHAR'}, auto_detect=false, header=false, delim=$sep, quote='', "
                "escape='', nullstr=$null, allow_quoted_nulls=false, strict_mode=false, max_line_size=$max_line, "
                "buffer_size=$buffer, store_rejects=true, rejects_table='seed_rejects', rejects_scan='seed_reject_scans')")
SELECT_REJECTS = ("SELECT byte_position, error_type, csv_line, error_message FROM seed_rejects "
                  "ORDER BY byte_position")
COUNT_STAGED = "SELECT count(*), coalesce(sum(span), 0), count(*) FILTER (WHERE ok) FROM staged"
CREATE_EXTRAS = "CREATE OR REPLACE TEMP TABLE extras (p BIGINT, shift BIGINT)"
INSERT_EXTRA = "INSERT INTO extras VALUES (?, ?)"
# A row's line: where it would start with no extra lines before it (the header, then the spans of
# the rows before it), moved down by the blank lines and rejected rows that come before it.
NUMBER_LINES = """
CREATE OR REPLACE TEMP TABLE numbered AS
WITH base AS (
    SELECT rowid AS rid, $first + coalesce(sum(span) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING
           AND 1 PRECEDING), 0) AS base FROM staged)
SELECT base.rid, base.base + coalesce(extras.shift, 0) AS line
FROM base ASOF LEFT JOIN extras ON base.base >= extras.p ORDER BY base.rid
"""
# staged and numbered hold one row per rowid; joined on it (a POSITIONAL JOIN would run on one thread)
SELECT_ODD = ("SELECT n.line, s.raw, s.t, s.blank_all FROM staged s JOIN numbered n ON s.rowid = n.rid "
              "WHERE NOT s.ok ORDER BY n.line")


@dataclass(frozen=True)
class Reject:
    """A row DuckDB's reader refused: where it is (a byte offset), DuckDB's error type, the raw text."""

    byte_position: int
    error_type: str
    raw: str
    message: str


class SeedStage:
    """A scratch DuckDB holding one file's rows, from the read to the finished batches."""

    def __init__(self, temp_dir: Path, memory_limit: str = "1GB"):
        self.conn = scratch_connection(temp_dir, memory_limit)
        for setting in PROGRESS_SETTINGS:  # query_progress() reads the running statement's progress
            self.conn.execute(setting)
        for macro in MACROS:
            self.conn.execute(macro)
        self.meta_keys: list[str] = []

    def close(self) -> None:
        self.conn.close()

    def query_progress(self) -> float:
        """Percent done of the statement now running (-1 when none)."""
        try:
            return float(self.conn.query_progress())
        except Exception:  # noqa: BLE001 - progress is a nicety; a failed reading is just "unknown"
            return -1.0

    # -- staging ----------------------------------------------------------------------------
    def stage_csv(self, path: Path, n_columns: int, delimiter: str, quote: str, text: int,
                  reference: int | None, metadata: Sequence[int]) -> None:
        """Read every column as text (c0, c1, ... by position: no user string becomes an identifier)."""
        cols = [f"c{i}" for i in range(n_columns)]
        columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
        newlines = " + ".join(f"CASE WHEN contains({c}, chr(10)) THEN strlen({c}) - strlen(replace({c}, chr(10), '')) "
                              f"ELSE 0 END" for c in cols)
        ref = f"CASE WHEN blank(c{reference}) THEN NULL ELSE c{reference} END" if reference is not None else "NULL"
        metas = "".join(f", to_json(c{m})::VARCHAR AS m{k}" for k, m in enumerate(metadata))
        sql = (f"CREATE OR REPLACE TEMP TABLE staged AS SELECT c{text} AS t, {ref} AS r{metas}, "
               f"1 + {newlines} AS span, NOT blank(c{text}) AS ok, NULL::VARCHAR AS raw, "
               f"CASE WHEN blank(c{text}) THEN {' AND '.join(f'blank({c})' for c in cols)} ELSE false END AS blank_all "
               f"FROM {CSV_SOURCE.format(columns=columns)}")
        self.conn.execute(sql, {"path": str(path), "delim": delimiter, "quote": quote, "null": NULL_SENTINEL,
                                "max_line": MAX_LINE_BYTES, "buffer": BUFFER_BYTES})

    def stage_jsonl(self, path: Path, text: str, reference: str | None, metadata: Sequence[str]) -> None:
        """One row per non-empty line; ``ok`` when the line is an object whose text (and reference)
        is a non-blank string and nothing needs Python's reading (NaN, Infinity)."""
        keys = [text, reference or text, *metadata]
        pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]  # JSON pointers: any key
        metas = "".join(f", v[{3 + k}]::VARCHAR AS m{k}" for k in range(len(metadata)))
        ref_ok = "coalesce(ty[2], 'NULL') IN ('NULL', 'VARCHAR')" if reference else "true"
        ref = "CASE WHEN ty[2] = 'VARCHAR' AND NOT blank(v[2]->>'$') THEN v[2]->>'$' END" if reference else "NULL"
        ok = (f"v IS NOT NULL AND ty[1] = 'VARCHAR' AND NOT blank(v[1]->>'$') AND {ref_ok} "
              "AND NOT contains(l, 'NaN') AND NOT contains(l, 'Infinity')")
        sql = (f"CREATE OR REPLACE TEMP TABLE staged AS "
               f"WITH src AS (SELECT l, try(json_extract(l, $pointers)) AS v FROM {JSONL_SOURCE}), "
               f"typed AS (SELECT l, v, list_transform(v, lambda x: json_type(x)) AS ty FROM src), "
               f"judged AS (SELECT *, {ok} AS ok FROM typed) "
               f"SELECT CASE WHEN ok THEN v[1]->>'$' END AS t, CASE WHEN ok THEN {ref} END AS r{metas}, "
               f"1 AS span, ok, CASE WHEN ok THEN NULL ELSE l END AS raw, false AS blank_all FROM judged")
        self.conn.execute(sql, {"path": str(path), "sep": LINE_SEPARATOR, "null": NULL_SENTINEL,
                                "max_line": MAX_LINE_BYTES, "buffer": BUFFER_BYTES, "pointers": pointers})

    def stage_arrow(self, source: pa.Table | pa.RecordBatchReader, n_metadata: int, with_reference: bool,
                    float_columns: set[str]) -> None:
        """Parquet or a ``datasets`` folder as Arrow, its columns already renamed t, r, m0, m1, ... (so
        no user string becomes an identifier), of simple types only; ``float_columns`` (of those
        names) turn NaN and infinities into null, as the Python reader does."""
        def as_json(name: str) -> str:
            if name in float_columns:
                return f"to_json(CASE WHEN isnan({name}) OR isinf({name}) THEN NULL ELSE {name} END)::VARCHAR"
            return f"to_json({name})::VARCHAR"

        ref = "CASE WHEN blank(r::VARCHAR) THEN NULL ELSE r::VARCHAR END" if with_reference else "NULL"
        metas = "".join(f", {as_json(f'm{k}')} AS m{k}" for k in range(n_metadata))
        self.conn.register("arrow_source", source)
        try:
            self.conn.execute(f"CREATE OR REPLACE TEMP TABLE staged AS SELECT t::VARCHAR AS t, {ref} AS r{metas}, "
                              "1 AS span, NOT blank(t::VARCHAR) AS ok, NULL::VARCHAR AS raw, false AS blank_all "
                              "FROM arrow_source")
        finally:
            self.conn.unregister("arrow_source")

    # -- after the read -------------------------------------------------------------------------
    def rejects(self) -> list[Reject]:
        try:
            rows = self.conn.execute(SELECT_REJECTS).fetchall()
        except Exception:  # noqa: BLE001 - no rejects table: the reader stored none (Parquet, Arrow)
            return []
        return [Reject(int(pos or 0), str(kind), raw or "", msg or "") for pos, kind, raw, msg in rows]

    def counts(self) -> tuple[int, int, int]:
        """(rows, physical lines they span, rows SQL finishes)."""
        rows, span, ok = self.conn.execute(COUNT_STAGED).fetchone()
        return int(rows), int(span), int(ok)

    def number_lines(self, first_line: int, extras: Sequence[tuple[int, int]]) -> None:
        """Give each row its line. ``extras`` are (line, lines) of what DuckDB did not keep as rows
        (blank lines, rejected rows), sorted by line."""
        self.conn.execute(CREATE_EXTRAS)
        moved, shifted = 0, {}
        for line, span in extras:  # back to back extras share a position: the last shift counts
            moved += span
            shifted[line - (moved - span)] = moved
        if shifted:
            self.conn.executemany(INSERT_EXTRA, list(shifted.items()))
        self.conn.execute(NUMBER_LINES, {"first": first_line})

    def odd_rows(self, chunk: int = 2048) -> Iterator[tuple[int, str | None, str | None, bool]]:
        """(line, raw JSON line, text, every cell blank) of the rows SQL leaves to the Python reader."""
        cur = self.conn.execute(SELECT_ODD)
        while rows := cur.fetchmany(chunk):
            yield from rows

    def seed_batches(self, seed_set_id: str, metadata_names: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
        """The finished seeds, ``batch_rows`` at a time, as Arrow tables with the columns
        ``storage.seeds.insert_seed_table`` takes. Not in file order: the join that gives each row its
        line runs on every core and keeps no order (readers order seeds by their line)."""
        params: dict[str, object] = {"set": seed_set_id, "set_json": json.dumps(seed_set_id), "line_key": "_line"}
        pairs, hashed = [], []
        for k, name in enumerate(metadata_names):
            params[f"k{k}"] = name
            pairs.append(f"$k{k}, s.m{k}::JSON")
        for k in sorted(range(len(metadata_names)), key=lambda i: metadata_names[i]):
            params[f"hk{k}"] = json.dumps(metadata_names[k], ensure_ascii=False) + ": "
            hashed.append(f"$hk{k} || coalesce(py_json(m{k}), 'null')")
        meta_hash = " || ', ' || ".join(hashed) if hashed else "''"
        sql = (f"SELECT 'seed_' || left(sha256('[' || $set_json || ', ' || n.line || ', \"' || s.ch || '\"]'), 24) "
               f"AS id, $set AS seed_set_id, s.t AS text, s.r AS reference, "
               f"json_object({', '.join(pairs + ['$line_key, n.line'])})::VARCHAR AS metadata, s.ch AS content_hash FROM ("
               f"SELECT *, rowid AS rid, sha256('[' || py_json(to_json(t)::VARCHAR) || ', ' || "
               f"coalesce(py_json(to_json(r)::VARCHAR), 'null') || ', {{' || {meta_hash} || '}}]') AS ch "
               f"FROM staged WHERE ok) s JOIN numbered n ON s.rid = n.rid")
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in self.conn.sql(sql, params=params).to_arrow_reader(min(batch_rows, 1 << 16)):
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_rows)
                rest = table.slice(batch_rows)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield pa.Table.from_batches(pending, schema=pending[0].schema)
