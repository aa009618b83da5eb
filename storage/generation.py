"""SQL for generation runs and what they produce: templates, instructions, responses, judgments, pairs.

Why it is shaped this way: a run must survive kill -9 and resume without duplicates, so
* every row id is deterministic (the pipeline derives it from the row's lineage), every insert is
  ``ON CONFLICT (id) DO NOTHING``, and the pipeline anti-joins on the ids that exist;
* a batch's rows (instructions, responses, judgments, pairs) go in ONE transaction: a kill leaves
  a batch either fully written or not at all;
* rows go in as one columnar statement per table (``INSERT ... SELECT unnest($1), ...``), which is
  about a hundred times faster than ``executemany`` in DuckDB.
Row statuses: instructions and responses are 'pending' until preprocessed, then 'kept' or
'removed'; an instruction answer with no parsable task is kept as a 'failed' row with its raw text.
Listings, lineage and the cost ledger views live in ``storage.generation_queries``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from storage.db import Database

RUN_COLUMNS = ("id", "name", "job_id", "seed_set_id", "config", "status", "report", "created_at", "finished_at")
INSERT_RUN = ("INSERT INTO generation_runs (id, name, job_id, seed_set_id, config, status, report) "
              "VALUES (?, ?, ?, ?, ?::JSON, ?, ?::JSON) ON CONFLICT (id) DO NOTHING")
SELECT_RUN = f"SELECT {', '.join(RUN_COLUMNS)} FROM generation_runs WHERE id = ?"
SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM generation_runs ORDER BY created_at DESC, id LIMIT ?"
SET_STATUS = ("UPDATE generation_runs SET status = ?, "
              "finished_at = CASE WHEN ? THEN current_timestamp ELSE NULL END WHERE id = ?")
SET_STATUS_IF = ("UPDATE generation_runs SET status = ?, finished_at = coalesce(finished_at, current_timestamp) "
                 "WHERE id = ? AND status = ?")
SET_JOB = "UPDATE generation_runs SET job_id = ? WHERE id = ?"
SET_SEED_SET = "UPDATE generation_runs SET seed_set_id = ? WHERE id = ?"
SET_REPORT = "UPDATE generation_runs SET report = ?::JSON WHERE id = ?"
SELECT_REPORT = "SELECT report FROM generation_runs WHERE id = ?"

UPSERT_TEMPLATE = ("INSERT INTO prompt_templates (id, name, kind, text) SELECT unnest($1), unnest($2), unnest($3), "
                   "unnest($4) ON CONFLICT (id) DO NOTHING")

INSTRUCTION_COLUMNS = ("id", "run_id", "seed_id", "parent_instruction_id", "method", "template_id", "model", "text",
                       "content_hash", "status", "removed_reason", "llm_call_id")
RESPONSE_COLUMNS = ("id", "run_id", "instruction_id", "model", "backend", "endpoint_id", "template_id",
                    "sampling_params", "candidate_index", "text", "finish_reason", "prompt_tokens",
                    "completion_tokens", "latency_ms", "cost_usd", "cache_key", "status", "removed_reason")
JUDGMENT_COLUMNS = ("id", "run_id", "mode", "judge_kind", "judge_model", "template_id", "response_id",
                    "response_a_id", "response_b_id", "order_swapped", "aspect_scores", "overall_score", "preferred",
                    "swap_agreement", "rationale", "raw_output", "parse_status", "prompt_tokens",
                    "completion_tokens", "cost_usd", "llm_call_id")
SFT_COLUMNS = ("id", "run_id", "instruction_id", "response_id", "seed_id", "prompt", "completion", "model", "score",
               "confidence", "label_source", "metadata")
PREFERENCE_COLUMNS = ("id", "run_id", "instruction_id", "seed_id", "prompt", "chosen", "rejected",
                      "chosen_response_id", "rejected_response_id", "chosen_model", "rejected_model", "judge_model",
                      "chosen_score", "rejected_score", "score_gap", "swap_agreement", "confidence", "label_source",
                      "flagged", "chosen_length", "rejected_length", "metadata")
JSON_COLUMNS = ("sampling_params", "aspect_scores", "metadata")
TABLES = {  # table -> its insert columns (the only identifiers that reach SQL text)
    "instructions": INSTRUCTION_COLUMNS, "responses": RESPONSE_COLUMNS, "judgments": JUDGMENT_COLUMNS,
    "sft_pairs": SFT_COLUMNS, "preference_pairs": PREFERENCE_COLUMNS,
}


def _insert_sql(table: str) -> str:
    columns = TABLES[table]
    values = ", ".join(f"unnest(${i})" + ("::JSON" if c in JSON_COLUMNS else "")
                       for i, c in enumerate(columns, start=1))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} ON CONFLICT (id) DO NOTHING"


INSERTS = {table: _insert_sql(table) for table in TABLES}
SELECT_IDS = {table: f"SELECT id FROM {table} WHERE run_id = ?" for table in TABLES}
UNITS = "SELECT DISTINCT seed_id, parent_instruction_id, method FROM instructions WHERE run_id = ?"
# Seed order first (the seed's line in its file), so "the first of two duplicates is kept" means the
# first in the user's seed list, whatever the ids hash to.
SELECT_INSTRUCTIONS = """
SELECT i.id, i.seed_id, i.parent_instruction_id, i.method, i.text, i.status, i.removed_reason
FROM instructions i LEFT JOIN seeds s ON s.id = i.seed_id
WHERE i.run_id = ? AND list_contains(?, i.status)
ORDER BY TRY_CAST(json_extract_string(s.metadata, '$._line') AS BIGINT) NULLS LAST, i.created_at, i.method, i.id
"""
SELECT_RESPONSES = ("SELECT id, instruction_id, model, backend, candidate_index, text, status, removed_reason "
                    "FROM responses WHERE run_id = ? AND list_contains(?, status) ORDER BY created_at, id")
SELECT_JUDGMENTS = ("SELECT id, mode, judge_kind, judge_model, response_id, response_a_id, response_b_id, "
                    "order_swapped, overall_score, preferred, swap_agreement, parse_status "
                    "FROM judgments WHERE run_id = ? ORDER BY created_at, id")
PREPROCESS_UPDATE = """
UPDATE {table} SET status = u.status, removed_reason = u.removed_reason, text = coalesce(u.text, {table}.text)
    {extra}
FROM (SELECT unnest($1) AS id, unnest($2) AS status, unnest($3) AS removed_reason, unnest($4) AS text) AS u
WHERE {table}.id = u.id
"""
PREPROCESS_TABLES = {  # table -> extra SET clause (instructions keep their content hash in step with the text)
    "instructions": ", content_hash = CASE WHEN u.text IS NULL THEN instructions.content_hash ELSE sha256(u.text) END",
    "responses": "",
}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, ensure_ascii=False)


def _rows(description, rows) -> list[dict[str, Any]]:
    names = [d[0] for d in description]
    return [dict(zip(names, row)) for row in rows]


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- runs ---------------------------------------------------------------------------------------------
def create_run(db: Database, run_id: str, name: str, config: dict, status: str = "created",
               job_id: str | None = None, seed_set_id: str | None = None) -> bool:
    """Insert the run row unless it exists; True when this call created it."""
    with db.session() as cur:
        before = cur.execute("SELECT count(*) FROM generation_runs WHERE id = ?", [run_id]).fetchone()[0]
        cur.execute(INSERT_RUN, [run_id, name, job_id, seed_set_id, _json(config), status, _json({})])
    return before == 0


def get_run(db: Database, run_id: str) -> dict[str, Any] | None:
    with db.session() as cur:
        row = cur.execute(SELECT_RUN, [run_id]).fetchone()
    if row is None:
        return None
    out = dict(zip(RUN_COLUMNS, row))
    out["config"], out["report"] = _loads(out["config"]), _loads(out["report"]) or {}
    return out


def list_runs(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    with db.session() as cur:
        rows = cur.execute(SELECT_RUNS, [int(limit)]).fetchall()
    out = [dict(zip(RUN_COLUMNS, row)) for row in rows]
    for run in out:
        run["config"], run["report"] = _loads(run["config"]), _loads(run["report"]) or {}
    return out


def set_run_status(db: Database, run_id: str, status: str, finished: bool) -> None:
    with db.session() as cur:
        cur.execute(SET_STATUS, [status, finished, run_id])


def set_run_status_if(db: Database, run_id: str, status: str, expected: str) -> bool:
    """Move a run from ``expected`` to ``status`` only if it still is ``expected``."""
    with db.session() as cur:
        cur.execute(SET_STATUS_IF, [status, run_id, expected])
        return (cur.fetchone() or [0])[0] > 0


def set_run_job(db: Database, run_id: str, job_id: str | None) -> None:
    with db.session() as cur:
        cur.execute(SET_JOB, [job_id, run_id])


def set_run_seed_set(db: Database, run_id: str, seed_set_id: str) -> None:
    with db.session() as cur:
        cur.execute(SET_SEED_SET, [seed_set_id, run_id])


def _merge_report(cur, run_id: str, patch: dict[str, Any]) -> None:
    row = cur.execute(SELECT_REPORT, [run_id]).fetchone()
    report = (_loads(row[0]) if row else None) or {}
    report.update(patch)
    cur.execute(SET_REPORT, [_json(report), run_id])


def update_report(db: Database, run_id: str, patch: dict[str, Any]) -> None:
    """Set top-level keys of the run's report JSON (read, merge, write in one transaction)."""
    with db.session(transaction=True) as cur:
        _merge_report(cur, run_id, patch)


# -- templates ------------------------------------------------------------------------------------------
def upsert_templates(db: Database, templates: Iterable[tuple[str, str, str, str]]) -> None:
    """(id, name, kind, text) rows; an id that exists is left alone (ids are content hashes)."""
    rows = list({t[0]: t for t in templates}.values())
    if rows:
        with db.session(transaction=True) as cur:
            cur.execute(UPSERT_TEMPLATE, [list(c) for c in zip(*rows)])


# -- batches --------------------------------------------------------------------------------------------
def _insert(cur, table: str, rows: Sequence[dict[str, Any]]) -> None:
    unique = list({r["id"]: r for r in rows}.values())
    if not unique:
        return
    columns = TABLES[table]
    lists = [[(_json(r.get(c)) if c in JSON_COLUMNS else r.get(c)) for r in unique] for c in columns]
    cur.execute(INSERTS[table], lists)


def write_batch(db: Database, **tables: Sequence[dict[str, Any]]) -> None:
    """Rows for any of TABLES (keyword = table name) in one transaction; existing ids are skipped."""
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")
    if not any(tables.values()):
        return
    with db.session(transaction=True) as cur:
        for table, rows in tables.items():
            _insert(cur, table, rows)


def apply_preprocessing(db: Database, table: str, updates: Sequence[dict[str, Any]], run_id: str,
                        report_patch: dict[str, Any]) -> None:
    """Statuses (and scrubbed texts) of a preprocessing pass plus its report, in one transaction."""
    if table not in PREPROCESS_TABLES:
        raise ValueError(f"cannot preprocess {table}")
    sql = PREPROCESS_UPDATE.format(table=table, extra=PREPROCESS_TABLES[table])
    with db.session(transaction=True) as cur:
        if updates:
            cur.execute(sql, [[u["id"] for u in updates], [u["status"] for u in updates],
                              [u.get("removed_reason") for u in updates], [u.get("text") for u in updates]])
        _merge_report(cur, run_id, report_patch)


# -- what exists (resume) -------------------------------------------------------------------------------
def existing_ids(db: Database, table: str, run_id: str) -> set[str]:
    with db.session() as cur:
        return {row[0] for row in cur.execute(SELECT_IDS[table], [run_id]).fetchall()}


def instruction_units(db: Database, run_id: str) -> set[tuple[str | None, str | None, str]]:
    """(seed_id, parent_instruction_id, method) of every instruction call already answered."""
    with db.session() as cur:
        return {tuple(row) for row in cur.execute(UNITS, [run_id]).fetchall()}


def instructions_of(db: Database, run_id: str, statuses: Sequence[str]) -> list[dict[str, Any]]:
    with db.session() as cur:
        result = cur.execute(SELECT_INSTRUCTIONS, [run_id, list(statuses)])
        return _rows(result.description, result.fetchall())


def responses_of(db: Database, run_id: str, statuses: Sequence[str]) -> list[dict[str, Any]]:
    with db.session() as cur:
        result = cur.execute(SELECT_RESPONSES, [run_id, list(statuses)])
        return _rows(result.description, result.fetchall())


def judgments_of(db: Database, run_id: str) -> list[dict[str, Any]]:
    with db.session() as cur:
        result = cur.execute(SELECT_JUDGMENTS, [run_id])
        return _rows(result.description, result.fetchall())
