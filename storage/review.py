"""Review rounds, the records sent to Argilla, the reviewers' responses and the final labels.

A round is one Argilla dataset. Its records have stable ids (hash of round, kind and record id), so
pushing again never duplicates; ``pushed_at`` says what reached Argilla, so an interrupted push
resumes with the rest. Responses have a stable id per record and reviewer and are upserted, so a
pull is idempotent. ``reviewed_labels`` is the read side for training snapshots: which records a
human reviewed and what their final label is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

import pyarrow as pa

from storage import review_queries as q
from storage.db import Database

ROUND_COLUMNS = ("id", "name", "record_kind", "argilla_url", "argilla_dataset_id", "argilla_dataset_name", "workspace",
                 "min_submitted", "guidelines", "filters", "settings", "status", "last_pulled_at", "created_at")
_UPDATABLE = {"argilla_url", "argilla_dataset_id", "status", "last_pulled_at", "min_submitted", "guidelines"}
INSERT_ROUND = (f"INSERT INTO review_rounds ({', '.join(ROUND_COLUMNS[:-2])}) "
                f"VALUES ({', '.join('?' * (len(ROUND_COLUMNS) - 2))})")
SELECT_ROUNDS = f"SELECT {', '.join(ROUND_COLUMNS)} FROM review_rounds ORDER BY created_at DESC"
SELECT_ROUND = f"SELECT {', '.join(ROUND_COLUMNS)} FROM review_rounds WHERE id = ?"
SELECT_ROUND_BY_DATASET = (f"SELECT {', '.join(ROUND_COLUMNS)} FROM review_rounds "
                           "WHERE argilla_dataset_name = ? AND workspace = ?")
MERGE_SETTINGS = "UPDATE review_rounds SET settings = json_merge_patch(coalesce(settings, '{}'), ?) WHERE id = ?"
INSERT_RECORDS = """
INSERT INTO review_records (id, round_id, record_kind, record_id, order_swapped, priority, final_label, final_rule,
                            final_source, reviewed)
SELECT id, round_id, record_kind, record_id, order_swapped, priority, final_label, final_rule, final_source, false
FROM incoming
ON CONFLICT (id) DO NOTHING
"""
MARK_PUSHED = """
UPDATE review_records SET argilla_record_id = incoming.argilla_record_id, pushed_at = current_timestamp,
       updated_at = current_timestamp
FROM incoming WHERE review_records.id = incoming.id
"""
RESET_PUSHED = "UPDATE review_records SET pushed_at = NULL, argilla_record_id = NULL WHERE round_id = ?"
SELECT_RECORD_IDS = "SELECT id FROM review_records WHERE round_id = ?"
SELECT_RESPONSE_STATE = "SELECT id, status, responded_at FROM review_responses WHERE round_id = ?"
UPSERT_RESPONSES = """
INSERT OR REPLACE INTO review_responses (id, round_id, review_record_id, reviewer, status, answer, responded_at, pulled_at)
SELECT id, round_id, review_record_id, reviewer, status, answer, responded_at, current_timestamp FROM incoming
"""
DELETE_RESPONSES = "DELETE FROM review_responses WHERE id IN (SELECT unnest(?::VARCHAR[]))"
SELECT_RESPONSES = """
SELECT review_record_id, reviewer, status, answer, responded_at FROM review_responses
WHERE round_id = ? ORDER BY review_record_id, responded_at, reviewer
"""
WRITE_FINALS = """
UPDATE review_records SET final_label = incoming.final_label, final_rule = incoming.final_rule,
       final_source = incoming.final_source, reviewed = incoming.reviewed, updated_at = current_timestamp
FROM incoming WHERE review_records.id = incoming.id
"""
# Lineage on the pair itself, so listings and exports show which pairs a human reviewed.
MARK_PAIRS = {
    "preference": """UPDATE preference_pairs SET human_reviewed = incoming.reviewed,
        label_source = CASE WHEN incoming.reviewed THEN 'human' ELSE preference_pairs.label_source END
        FROM incoming WHERE preference_pairs.id = incoming.record_id AND incoming.reviewed""",
    "sft": """UPDATE sft_pairs SET human_reviewed = incoming.reviewed,
        label_source = CASE WHEN incoming.reviewed THEN 'human' ELSE sft_pairs.label_source END
        FROM incoming WHERE sft_pairs.id = incoming.record_id AND incoming.reviewed""",
}
ROUND_COUNTS = """
SELECT r.round_id, count(*) AS records, count(r.pushed_at) AS pushed, count(*) FILTER (WHERE r.reviewed) AS reviewed,
       (SELECT count(*) FROM review_responses x WHERE x.round_id = r.round_id AND x.status = 'submitted') AS submitted,
       (SELECT count(*) FROM review_responses x WHERE x.round_id = r.round_id AND x.status = 'discarded') AS discarded,
       (SELECT count(*) FROM review_responses x WHERE x.round_id = r.round_id AND x.status = 'draft') AS drafts
FROM review_records r GROUP BY r.round_id
"""
SELECT_FINALS = """
SELECT r.record_id, r.round_id, r.final_label, r.final_rule, r.final_source, r.reviewed
FROM review_records r JOIN review_rounds rr ON rr.id = r.round_id
WHERE r.record_kind = ? AND r.final_label IS NOT NULL
ORDER BY r.reviewed, rr.created_at, r.round_id
"""


@dataclass(frozen=True)
class FinalLabel:
    """A record's label after review. ``chosen``/``rejected`` are resolved after any A/B swap and
    human preference; ``chosen`` is a reviewer's corrected text when one was written (sft: the
    completion; instruction: the instruction). ``usable`` is False when reviewers said tie / both bad
    without a correction, or 'bad'."""

    record_id: str
    record_kind: str
    source: str                 # 'human' or 'llm'
    reviewed: bool
    label: str                  # preference: chosen|rejected|tie|both_bad|undecided; else good|bad|undecided
    chosen: str | None
    rejected: str | None
    corrected: bool
    usable: bool
    n_reviews: int
    agreement: float | None     # share of submitted reviews that agree with the final label
    rule: str | None
    round_id: str

    def to_dict(self) -> dict:
        return asdict(self)


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _round(row: dict | None) -> dict | None:
    if row is not None:
        for key in ("filters", "settings"):
            row[key] = json.loads(row[key]) if row[key] else {}
    return row


def _with_table(db: Database, table: pa.Table, sql: str, *extra: tuple[str, list]) -> None:
    with db.session(transaction=True) as cur:
        cur.register("incoming", table)
        try:
            cur.execute(sql)
            for statement, params in extra:
                cur.execute(statement, params)
        finally:
            cur.unregister("incoming")


# -- rounds ---------------------------------------------------------------------------------------------
def create_round(db: Database, row: dict) -> None:
    values = [json.dumps(row.get(c) or {}) if c in ("filters", "settings") else row.get(c) for c in ROUND_COLUMNS[:-2]]
    with db.session() as cur:
        cur.execute(INSERT_ROUND, values)


def get_round(db: Database, round_id: str) -> dict | None:
    with db.session() as cur:
        rows = _rows(cur.execute(SELECT_ROUND, [round_id]))
    return _round(rows[0] if rows else None)


def find_round(db: Database, dataset_name: str, workspace: str) -> dict | None:
    with db.session() as cur:
        rows = _rows(cur.execute(SELECT_ROUND_BY_DATASET, [dataset_name, workspace]))
    return _round(rows[0] if rows else None)


def list_rounds(db: Database) -> list[dict]:
    with db.session() as cur:
        return [_round(r) for r in _rows(cur.execute(SELECT_ROUNDS))]


def update_round(db: Database, round_id: str, **values) -> None:
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = ?" for name in values)
    with db.session() as cur:
        cur.execute(f"UPDATE review_rounds SET {assignments} WHERE id = ?", [*values.values(), round_id])


def merge_round_settings(db: Database, round_id: str, patch: dict) -> None:
    with db.session() as cur:
        cur.execute(MERGE_SETTINGS, [json.dumps(patch, default=str), round_id])


def round_counts(db: Database) -> dict[str, dict]:
    with db.session() as cur:
        return {r.pop("round_id"): r for r in _rows(cur.execute(ROUND_COUNTS))}


# -- records ---------------------------------------------------------------------------------------------
def select_candidates(db: Database, kind: str, filters: dict, limit: int, order: str = "least_confident") -> list[dict]:
    params = {"run_id": filters.get("run_id"), "model": filters.get("model"),
              "min_confidence": filters.get("min_confidence"), "max_confidence": filters.get("max_confidence"),
              "swap_disagreement": filters.get("swap_disagreement"), "limit": int(limit)}
    with db.session() as cur:
        return _rows(cur.execute(q.candidates_sql(kind, order), params))


def plan_records(db: Database, rows: list[dict]) -> None:
    """Add records to a round (existing ids are kept as they are: their A/B order never changes),
    each with its LLM final label (unreviewed) so lineage is complete before any answer arrives."""
    if rows:
        columns = ("id", "round_id", "record_kind", "record_id", "order_swapped", "priority", "final_rule", "final_source")
        table = {c: [r[c] for r in rows] for c in columns}
        table["final_label"] = [json.dumps(r["final_label"]) for r in rows]
        _with_table(db, pa.table(table), INSERT_RECORDS)


def unpushed_records(db: Database, round_id: str, kind: str) -> list[dict]:
    with db.session() as cur:
        return _rows(cur.execute(q.unpushed_sql(kind), {"round_id": round_id}))


def mark_pushed(db: Database, pushed: dict[str, str]) -> None:
    """review record id -> Argilla record id, for records Argilla confirmed."""
    if pushed:
        _with_table(db, pa.table({"id": list(pushed), "argilla_record_id": list(pushed.values())}), MARK_PUSHED)


def reset_pushed(db: Database, round_id: str) -> None:
    """The dataset is gone from Argilla: every record must be sent again."""
    with db.session() as cur:
        cur.execute(RESET_PUSHED, [round_id])


def round_record_ids(db: Database, round_id: str) -> set[str]:
    with db.session() as cur:
        return {r[0] for r in cur.execute(SELECT_RECORD_IDS, [round_id]).fetchall()}


def round_records(db: Database, round_id: str, kind: str) -> list[dict]:
    with db.session() as cur:
        return _rows(cur.execute(q.round_records_sql(kind), {"round_id": round_id}))


def aspect_scores(db: Database, round_id: str) -> dict[str, dict]:
    """response id -> the latest pointwise judgment's per-aspect scores."""
    with db.session() as cur:
        rows = cur.execute(q.SELECT_ASPECTS, {"round_id": round_id}).fetchall()
    return {rid: json.loads(scores) for rid, scores in rows if scores}


# -- responses -------------------------------------------------------------------------------------------
def response_state(db: Database, round_id: str) -> dict[str, tuple[str, datetime | None]]:
    with db.session() as cur:
        return {r[0]: (r[1], r[2]) for r in cur.execute(SELECT_RESPONSE_STATE, [round_id]).fetchall()}


def upsert_responses(db: Database, rows: list[dict]) -> None:
    if rows:
        columns = ("id", "round_id", "review_record_id", "reviewer", "status", "answer", "responded_at")
        table = pa.table({c: [json.dumps(r[c]) if c == "answer" else r[c] for r in rows] for c in columns})
        _with_table(db, table, UPSERT_RESPONSES)


def delete_responses(db: Database, ids: list[str]) -> None:
    if ids:
        with db.session() as cur:
            cur.execute(DELETE_RESPONSES, [ids])


def round_responses(db: Database, round_id: str) -> dict[str, list[dict]]:
    """review record id -> its responses (reviewer, status, answer, responded_at)."""
    out: dict[str, list[dict]] = {}
    with db.session() as cur:
        for rid, reviewer, status, answer, at in cur.execute(SELECT_RESPONSES, [round_id]).fetchall():
            out.setdefault(rid, []).append({"reviewer": reviewer, "status": status,
                                            "answer": json.loads(answer) if answer else {}, "responded_at": at})
    return out


# -- final labels ----------------------------------------------------------------------------------------
def write_finals(db: Database, kind: str, finals: list[dict]) -> None:
    """finals: {id, record_id, final_label (dict), final_rule, final_source, reviewed}."""
    if not finals:
        return
    table = pa.table({"id": [f["id"] for f in finals], "record_id": [f["record_id"] for f in finals],
                      "final_label": [json.dumps(f["final_label"]) for f in finals],
                      "final_rule": [f["final_rule"] for f in finals], "final_source": [f["final_source"] for f in finals],
                      "reviewed": [bool(f["reviewed"]) for f in finals]})
    extra = [(MARK_PAIRS[kind], [])] if kind in MARK_PAIRS else []
    _with_table(db, table, WRITE_FINALS, *extra)


def reviewed_labels(db: Database, record_kind: str) -> dict[str, FinalLabel]:
    """record id -> its final label, for every record of ``record_kind`` ('preference', 'sft',
    'instruction') that went through review. When a record was in several rounds, a human-reviewed
    final wins over an LLM one, and a later round over an earlier one."""
    out: dict[str, FinalLabel] = {}
    with db.session() as cur:
        rows = cur.execute(SELECT_FINALS, [record_kind]).fetchall()
    for record_id, round_id, label_json, rule, source, reviewed in rows:  # ordered: best last
        label = json.loads(label_json)
        out[record_id] = FinalLabel(
            record_id=record_id, record_kind=record_kind, source=source, reviewed=bool(reviewed),
            label=label["label"], chosen=label.get("chosen"), rejected=label.get("rejected"),
            corrected=bool(label.get("corrected")), usable=bool(label.get("usable")),
            n_reviews=int(label.get("n_reviews", 0)), agreement=label.get("agreement"), rule=rule, round_id=round_id)
    return out
