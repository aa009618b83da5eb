"""Read-side SQL for generation: per-run counts, the paged pair listings, a pair's full lineage, the
cost ledger per run / stage / model / kept pair, and the export scan.

Why separate from ``storage.generation``: these are the queries the page, the CLI and the exporter
read; the writer module stays about ids, batches and resume. Every filter is a bound parameter
(NULL = no filter) and every identifier comes from an allow-list in this file.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from storage.db import Database
from storage.llm_log import ledger_totals
from storage.pairs import PairFilter
from core.errors import BadInput

RUN_COUNTS = """
WITH ins AS (
    SELECT run_id, count(*) AS instructions, count(*) FILTER (WHERE status = 'kept') AS instructions_kept,
        count(*) FILTER (WHERE status = 'removed') AS instructions_removed,
        count(*) FILTER (WHERE status = 'failed') AS instructions_failed
    FROM instructions WHERE ($run_id IS NULL OR run_id = $run_id) GROUP BY run_id),
resp AS (
    SELECT run_id, count(*) AS responses, count(*) FILTER (WHERE status = 'kept') AS responses_kept,
        count(*) FILTER (WHERE status = 'removed') AS responses_removed
    FROM responses WHERE ($run_id IS NULL OR run_id = $run_id) GROUP BY run_id),
jdg AS (
    SELECT run_id, count(*) AS judgments, count(*) FILTER (WHERE parse_status = 'failed') AS judgments_failed,
        count(*) FILTER (WHERE parse_status = 'repaired') AS judgments_repaired
    FROM judgments WHERE ($run_id IS NULL OR run_id = $run_id) GROUP BY run_id),
pp AS (SELECT run_id, count(*) AS preference_pairs FROM preference_pairs
       WHERE ($run_id IS NULL OR run_id = $run_id) GROUP BY run_id),
sft AS (SELECT run_id, count(*) AS sft_pairs FROM sft_pairs WHERE ($run_id IS NULL OR run_id = $run_id) GROUP BY run_id),
calls AS (
    SELECT job_id AS run_id, count(*) AS calls, count(*) FILTER (WHERE cached) AS cached_calls,
        coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) FILTER (WHERE NOT cached), 0)
            AS tokens,
        coalesce(sum(cost_usd), 0) AS cost_usd
    FROM llm_calls WHERE job_id IS NOT NULL AND ($run_id IS NULL OR job_id = $run_id) GROUP BY job_id)
SELECT r.id AS run_id,
    coalesce(instructions, 0) AS instructions, coalesce(instructions_kept, 0) AS instructions_kept,
    coalesce(instructions_removed, 0) AS instructions_removed, coalesce(instructions_failed, 0) AS instructions_failed,
    coalesce(responses, 0) AS responses, coalesce(responses_kept, 0) AS responses_kept,
    coalesce(responses_removed, 0) AS responses_removed, coalesce(judgments, 0) AS judgments,
    coalesce(judgments_failed, 0) AS judgments_failed, coalesce(judgments_repaired, 0) AS judgments_repaired,
    coalesce(preference_pairs, 0) AS preference_pairs, coalesce(sft_pairs, 0) AS sft_pairs,
    coalesce(calls, 0) AS calls, coalesce(cached_calls, 0) AS cached_calls, coalesce(tokens, 0) AS tokens,
    coalesce(cost_usd, 0) AS cost_usd
FROM generation_runs r
LEFT JOIN ins ON ins.run_id = r.id LEFT JOIN resp ON resp.run_id = r.id LEFT JOIN jdg ON jdg.run_id = r.id
LEFT JOIN pp ON pp.run_id = r.id LEFT JOIN sft ON sft.run_id = r.id LEFT JOIN calls ON calls.run_id = r.id
WHERE ($run_id IS NULL OR r.id = $run_id)
"""

# Pair listings: the same filters for both kinds ("model" matches either side of a preference pair;
# "length" is the longer response; swap disagreement applies to preference pairs only).
KINDS = {
    "preference": {
        "table": "preference_pairs",
        "columns": "id, run_id, instruction_id, seed_id, prompt, chosen, rejected, chosen_model, rejected_model, "
                   "judge_model, chosen_score, rejected_score, score_gap, swap_agreement, confidence, label_source, "
                   "human_reviewed, flagged, chosen_length, rejected_length, created_at",
        "model": "(chosen_model = $model OR rejected_model = $model)",
        "length": "greatest(chosen_length, rejected_length)",
        "swap": "swap_agreement = NOT $swap_disagreement",
    },
    "sft": {
        "table": "sft_pairs",
        "columns": "id, run_id, instruction_id, response_id, seed_id, prompt, completion, model, score, confidence, "
                   "label_source, human_reviewed, flagged, length(completion) AS completion_length, created_at",
        "model": "model = $model",
        "length": "length(completion)",
        "swap": "true",
    },
}
ORDERS = {"newest": "created_at DESC, id", "least_confident": "confidence ASC NULLS FIRST, id",
          "most_confident": "confidence DESC NULLS LAST, id", "id": "id"}
FILTERS = """
WHERE ($run_id IS NULL OR run_id = $run_id)
  AND ($model IS NULL OR {model})
  AND ($min_confidence IS NULL OR confidence >= $min_confidence)
  AND ($max_confidence IS NULL OR confidence <= $max_confidence)
  AND ($swap_disagreement IS NULL OR {swap})
  AND ($max_length IS NULL OR {length} <= $max_length)
  AND ($human_reviewed IS NULL OR human_reviewed = $human_reviewed)
"""
LIST_PAIRS = "SELECT {columns} FROM {table} " + FILTERS + " ORDER BY {order} LIMIT $limit OFFSET $offset"
COUNT_PAIRS = "SELECT count(*) FROM {table} " + FILTERS
EXPORT_SCAN = ("SELECT {columns} FROM {table} " + FILTERS + " AND ($after IS NULL OR id > $after) "
               "ORDER BY id LIMIT $limit")

SELECT_PAIR = {kind: f"SELECT * FROM {spec['table']} WHERE id = ?" for kind, spec in KINDS.items()}
SELECT_INSTRUCTION = "SELECT * FROM instructions WHERE id = ?"
SELECT_SEED = "SELECT id, seed_set_id, text, reference, metadata FROM seeds WHERE id = ?"
SELECT_CANDIDATES = "SELECT * FROM responses WHERE instruction_id = ? ORDER BY candidate_index, model, id"
SELECT_CANDIDATE_JUDGMENTS = """
SELECT * FROM judgments
WHERE list_contains($ids, response_id) OR list_contains($ids, response_a_id) OR list_contains($ids, response_b_id)
ORDER BY mode DESC, created_at, id
"""
SELECT_TEMPLATES = "SELECT id, name, kind, text FROM prompt_templates WHERE list_contains(?, id)"
SELECT_CALLS = ("SELECT id, backend, model, stage, cached, prompt_tokens, completion_tokens, latency_ms, cost_usd, "
                "status, created_at FROM llm_calls WHERE list_contains(?, id)")
SELECT_RUN_NAME = "SELECT id, name, status FROM generation_runs WHERE id = ?"
JSON_FIELDS = ("metadata", "aspect_scores", "sampling_params", "config", "report")


def _dicts(result) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, row)) for row in result.fetchall()]
    for row in rows:
        for key in JSON_FIELDS:
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key])
                except ValueError:
                    pass
    return rows


def _spec(kind: str) -> dict[str, str]:
    if kind not in KINDS:
        raise BadInput(f"Unknown pair kind {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
    return KINDS[kind]


def _params(filters: PairFilter | None) -> dict[str, Any]:
    return dict((filters or PairFilter()).__dict__)


# -- counts and the ledger -------------------------------------------------------------------------------
def run_counts(db: Database, run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Counts per stage, calls, billed tokens and cost for one run (or every run), by run id."""
    with db.session() as cur:
        return {row.pop("run_id"): row for row in _dicts(cur.execute(RUN_COUNTS, {"run_id": run_id}))}


def run_ledger(db: Database, run_id: str) -> dict[str, Any]:
    """The cost ledger of a run: totals, by stage, by model, by stage and model, and per kept pair."""
    total = (ledger_totals(db, job_id=run_id, group_by=()) or [{}])[0]
    counts = run_counts(db, run_id).get(run_id, {})
    kept = {"preference": counts.get("preference_pairs", 0), "sft": counts.get("sft_pairs", 0)}
    cost, tokens = total.get("cost_usd") or 0.0, (total.get("prompt_tokens") or 0) + (total.get("completion_tokens") or 0)
    per_pair = {kind: ({"cost_usd": cost / n, "tokens": tokens / n} if n else None) for kind, n in kept.items()}
    return {"total": total, "by_stage": ledger_totals(db, job_id=run_id, group_by=("stage",)),
            "by_model": ledger_totals(db, job_id=run_id, group_by=("model",)),
            "by_stage_model": ledger_totals(db, job_id=run_id, group_by=("stage", "model")),
            "per_kept_pair": per_pair}


# -- listings and export ---------------------------------------------------------------------------------------
def list_pairs(db: Database, kind: str, filters: PairFilter | None = None, limit: int = 50, offset: int = 0,
               order: str = "newest") -> list[dict[str, Any]]:
    spec = _spec(kind)
    if order not in ORDERS:
        raise BadInput(f"Unknown order {order!r}.", hint=f"Use one of: {', '.join(ORDERS)}.")
    sql = LIST_PAIRS.format(columns=spec["columns"], table=spec["table"], model=spec["model"], swap=spec["swap"],
                            length=spec["length"], order=ORDERS[order])
    with db.session() as cur:
        return _dicts(cur.execute(sql, {**_params(filters), "limit": int(limit), "offset": int(offset)}))


def count_pairs(db: Database, kind: str, filters: PairFilter | None = None) -> int:
    spec = _spec(kind)
    sql = COUNT_PAIRS.format(table=spec["table"], model=spec["model"], swap=spec["swap"], length=spec["length"])
    with db.session() as cur:
        return int(cur.execute(sql, _params(filters)).fetchone()[0])


def iter_pairs(db: Database, kind: str, filters: PairFilter | None = None, batch: int = 2000
               ) -> Iterator[list[dict[str, Any]]]:
    """Every matching pair in id order, ``batch`` rows per query (keyset paging: constant memory,
    and the database is free between batches)."""
    spec = _spec(kind)
    sql = EXPORT_SCAN.format(columns=spec["columns"], table=spec["table"], model=spec["model"], swap=spec["swap"],
                             length=spec["length"])
    after = None
    while True:
        with db.session() as cur:
            rows = _dicts(cur.execute(sql, {**_params(filters), "after": after, "limit": int(batch)}))
        if not rows:
            return
        yield rows
        after = rows[-1]["id"]


# -- lineage ----------------------------------------------------------------------------------------------------------
def pair_lineage(db: Database, kind: str, pair_id: str) -> dict[str, Any] | None:
    """Seed -> instruction chain (root first) -> every candidate -> every judgment (raw output
    included) -> templates and ledger calls, for one pair."""
    _spec(kind)
    with db.session() as cur:
        pairs = _dicts(cur.execute(SELECT_PAIR[kind], [pair_id]))
        if not pairs:
            return None
        pair = pairs[0]
        chain, next_id = [], pair.get("instruction_id")
        while next_id and len(chain) < 20:
            found = _dicts(cur.execute(SELECT_INSTRUCTION, [next_id]))
            if not found:
                break
            chain.insert(0, found[0])
            next_id = found[0].get("parent_instruction_id")
        seed_id = pair.get("seed_id") or (chain[0]["seed_id"] if chain else None)
        seeds = _dicts(cur.execute(SELECT_SEED, [seed_id])) if seed_id else []
        candidates = _dicts(cur.execute(SELECT_CANDIDATES, [pair.get("instruction_id")]))
        ids = [c["id"] for c in candidates]
        judgments = _dicts(cur.execute(SELECT_CANDIDATE_JUDGMENTS, {"ids": ids})) if ids else []
        template_ids = sorted({r["template_id"] for r in chain + candidates + judgments if r.get("template_id")})
        templates = _dicts(cur.execute(SELECT_TEMPLATES, [template_ids])) if template_ids else []
        call_ids = sorted({r["llm_call_id"] for r in chain + judgments if r.get("llm_call_id")})
        calls = _dicts(cur.execute(SELECT_CALLS, [call_ids])) if call_ids else []
        run = _dicts(cur.execute(SELECT_RUN_NAME, [pair.get("run_id")]))
    for candidate in candidates:
        candidate["judgments"] = [j for j in judgments if candidate["id"] in
                                  (j.get("response_id"), j.get("response_a_id"), j.get("response_b_id"))]
    return {"kind": kind, "pair": pair, "run": run[0] if run else None, "seed": seeds[0] if seeds else None,
            "instructions": chain, "candidates": candidates, "judgments": judgments,
            "templates": {t["id"]: t for t in templates}, "calls": {c["id"]: c for c in calls}}
