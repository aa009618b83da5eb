"""Preference pairs and SFT pairs: bulk ingest and the paged, filtered listing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from storage.db import Database
from storage.ids import new_id

PREFERENCE_COLUMNS = (
    "id", "run_id", "instruction_id", "seed_id", "prompt", "chosen", "rejected", "chosen_response_id",
    "rejected_response_id", "chosen_model", "rejected_model", "judge_model", "chosen_score",
    "rejected_score", "score_gap", "swap_agreement", "confidence", "label_source", "human_reviewed",
    "flagged", "chosen_length", "rejected_length", "metadata", "created_at",
)
_DEFAULTS = {"label_source": "llm", "human_reviewed": False, "flagged": False}

# Listing: every filter is a bound parameter; NULL means "no filter". ORDER BY comes from an allow-list.
LIST_COLUMNS = (
    "id, run_id, prompt, chosen, rejected, chosen_model, rejected_model, judge_model, confidence, score_gap, "
    "swap_agreement, human_reviewed, flagged, chosen_length, rejected_length, created_at"
)
# Two phases in one statement: find the page's ids on narrow columns, then fetch the wide text
# columns for those 50 rows only.
LIST_PREFERENCE_SQL = """
WITH page AS (
    SELECT id, created_at AS page_created_at, confidence AS page_confidence FROM preference_pairs
    WHERE ($run_id IS NULL OR run_id = $run_id)
      AND ($model IS NULL OR chosen_model = $model OR rejected_model = $model)
      AND ($min_confidence IS NULL OR confidence >= $min_confidence)
      AND ($max_confidence IS NULL OR confidence <= $max_confidence)
      AND ($swap_disagreement IS NULL OR swap_agreement = NOT $swap_disagreement)
      AND ($max_length IS NULL OR greatest(chosen_length, rejected_length) <= $max_length)
      AND ($human_reviewed IS NULL OR human_reviewed = $human_reviewed)
    ORDER BY {order}
    LIMIT $limit OFFSET $offset
)
SELECT {columns} FROM page JOIN preference_pairs USING (id) ORDER BY {page_order}
"""
ORDERS = {  # name -> (order inside the page query, the same order over the page's columns)
    "newest": ("created_at DESC, id", "page_created_at DESC, id"),
    "least_confident": ("confidence ASC NULLS FIRST, id", "page_confidence ASC NULLS FIRST, id"),
    "most_confident": ("confidence DESC NULLS LAST, id", "page_confidence DESC NULLS LAST, id"),
}


def _filter(text: str, **limits) -> Any:
    return field(default=None, metadata={"help": text, **limits})


@dataclass(frozen=True)
class PairFilter:
    """What the pair listing keeps; None means no filter. Loaded from a form with ``core.specs.load_spec``."""

    run_id: str | None = _filter("Only pairs of this generation run.", max_len=200)
    model: str | None = _filter("Only pairs where this model wrote the chosen or the rejected answer.", max_len=200)
    min_confidence: float | None = _filter("Only pairs the judge was at least this sure of (0 to 1).", min=0, max=1)
    max_confidence: float | None = _filter("Only pairs the judge was at most this sure of (0 to 1).", min=0, max=1)
    swap_disagreement: bool | None = _filter("Only pairs whose two judging orders disagreed (true) or agreed (false).")
    max_length: int | None = _filter("Only pairs whose longer answer has at most this many characters.", min=1)
    human_reviewed: bool | None = _filter("Only pairs a person reviewed (true) or did not (false).")


def _complete(row: dict, now: datetime) -> dict:
    out = {**_DEFAULTS, **row}
    out.setdefault("id", new_id("pp"))
    out.setdefault("created_at", now)
    if out.get("chosen_length") is None:
        out["chosen_length"] = len(out["chosen"])
    if out.get("rejected_length") is None:
        out["rejected_length"] = len(out["rejected"])
    if out.get("score_gap") is None and out.get("chosen_score") is not None and out.get("rejected_score") is not None:
        out["score_gap"] = out["chosen_score"] - out["rejected_score"]
    return out


def insert_preference_pairs(db: Database, rows: list[dict] | pa.Table) -> int:
    """Insert pairs in one transaction through Arrow (fast at a million rows). Returns the count."""
    if not isinstance(rows, pa.Table):
        now = datetime.now().astimezone()
        completed = [_complete(r, now) for r in rows]
        rows = pa.table({c: [r.get(c) for r in completed] for c in PREFERENCE_COLUMNS})
    columns = [c for c in PREFERENCE_COLUMNS if c in rows.column_names]
    column_list = ", ".join(columns)
    with db.session(transaction=True) as cur:
        cur.register("incoming_pairs", rows)
        try:
            cur.execute(f"INSERT INTO preference_pairs ({column_list}) SELECT {column_list} FROM incoming_pairs")
        finally:
            cur.unregister("incoming_pairs")
    return rows.num_rows


def list_preference_pairs(db: Database, filters: PairFilter = PairFilter(), limit: int = 50, offset: int = 0,
                          order: str = "newest") -> list[dict]:
    if order not in ORDERS:
        from core.errors import BadInput

        raise BadInput(f"Unknown order {order!r}.", hint=f"Use one of: {', '.join(ORDERS)}.")
    params = {**filters.__dict__, "limit": int(limit), "offset": int(offset)}
    with db.session() as cur:
        inner, outer = ORDERS[order]
        cur.execute(LIST_PREFERENCE_SQL.format(order=inner, page_order=outer, columns=LIST_COLUMNS), params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def count_preference_pairs(db: Database) -> int:
    with db.session() as cur:
        return cur.execute("SELECT count(*) FROM preference_pairs").fetchone()[0]
