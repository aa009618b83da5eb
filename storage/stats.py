"""Counts per lifecycle stage, for Home and `status --json`."""

from __future__ import annotations

from storage.db import Database
from storage.migrate import applied_versions

# Stage name -> a fixed query (identifiers never come from input).
STAGE_COUNTS: dict[str, str] = {
    "seeds": "SELECT count(*) FROM seeds",
    "instructions": "SELECT count(*) FROM instructions WHERE status = 'kept'",
    "responses": "SELECT count(*) FROM responses WHERE status = 'kept'",
    "judgments": "SELECT count(*) FROM judgments",
    "sft_pairs": "SELECT count(*) FROM sft_pairs",
    "preference_pairs": "SELECT count(*) FROM preference_pairs",
    "reviewed": "SELECT count(*) FROM review_records WHERE reviewed",
    "snapshots": "SELECT count(*) FROM dataset_snapshots",
    "training_runs": "SELECT count(*) FROM training_runs",
    "models": "SELECT count(*) FROM models",
    "comparisons": "SELECT count(*) FROM comparisons",
    "votes": "SELECT count(*) FROM votes",
}


def stage_counts(db: Database) -> dict[str, int]:
    with db.session() as cur:
        return {stage: cur.execute(sql).fetchone()[0] for stage, sql in STAGE_COUNTS.items()}


def schema_version(db: Database) -> int:
    with db.session() as cur:
        versions = applied_versions(cur)
    return max(versions) if versions else 0
