"""Training runs, their stages, live metrics and checkpoints.

A run is one row; a multi-stage recipe (rlhf = sft → reward → ppo) adds one child row per stage
(``parent_run_id`` = the run, ``stage_index`` = its place). Metrics are keyed on (run, step, name)
and written with an upsert, so a resumed run that logs step 40 again replaces the value instead of
failing. Statuses: queued, running, succeeded, failed, cancelled, interrupted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from storage.db import Database
from storage.ids import new_id

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")

RUN_COLUMNS = ("id, name, job_id, recipe, stage, stage_index, parent_run_id, snapshot_id, base_model_id, "
               "output_model_id, spec, status, device, error, final_metrics, created_at, started_at, finished_at")
INSERT_RUN = (
    "INSERT INTO training_runs (id, name, job_id, recipe, stage, stage_index, parent_run_id, snapshot_id, "
    "base_model_id, spec, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM training_runs WHERE id = ?"
SELECT_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM training_runs WHERE (? IS NULL OR status = ?) "
    "AND (NOT ? OR parent_run_id IS NULL) ORDER BY created_at DESC, id DESC LIMIT ?"
)
SELECT_CHILDREN = f"SELECT {RUN_COLUMNS} FROM training_runs WHERE parent_run_id = ? ORDER BY stage_index"
SET_STATUS = (
    "UPDATE training_runs SET status = ?, error = ?, final_metrics = coalesce(?, final_metrics), "
    "device = coalesce(?, device), "
    "started_at = CASE WHEN ? = 'running' THEN coalesce(started_at, current_timestamp) ELSE started_at END, "
    "finished_at = CASE WHEN ? IN ('succeeded', 'failed', 'cancelled', 'interrupted') THEN current_timestamp "
    "ELSE NULL END WHERE id = ?"
)
SET_JOB = "UPDATE training_runs SET job_id = ? WHERE id = ?"
SET_OUTPUT = "UPDATE training_runs SET output_model_id = ? WHERE id = ?"
SET_BASE = "UPDATE training_runs SET base_model_id = ? WHERE id = ?"
UPSERT_METRICS = (  # one columnar statement per batch: executemany costs milliseconds a row
    "INSERT INTO training_metrics (run_id, step, epoch, name, value) "
    "SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5) "
    "ON CONFLICT (run_id, step, name) DO UPDATE SET epoch = excluded.epoch, value = excluded.value, "
    "logged_at = now()"
)
SELECT_METRICS = (
    "SELECT step, epoch, name, value FROM training_metrics WHERE run_id = ? AND (? IS NULL OR step > ?) "
    "ORDER BY step, name"
)
DELETE_CHECKPOINT_AT = "DELETE FROM checkpoints WHERE run_id = ? AND step = ?"
INSERT_CHECKPOINT = "INSERT INTO checkpoints (id, run_id, step, path, metrics) VALUES (?, ?, ?, ?, ?)"
SELECT_CHECKPOINTS = "SELECT id, run_id, step, path, metrics, created_at FROM checkpoints WHERE run_id = ? ORDER BY step"
DELETE_CHECKPOINT = "DELETE FROM checkpoints WHERE id = ?"


@dataclass
class TrainingRunRow:
    id: str
    name: str | None
    recipe: str
    stage: str
    spec: dict
    status: str
    stage_index: int = 0
    parent_run_id: str | None = None
    snapshot_id: str | None = None
    base_model_id: str | None = None
    output_model_id: str | None = None
    job_id: str | None = None
    device: str | None = None
    error: str | None = None
    final_metrics: dict = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass(frozen=True)
class MetricRow:
    step: int
    epoch: float | None
    name: str
    value: float | None


@dataclass(frozen=True)
class CheckpointRow:
    id: str
    run_id: str
    step: int
    path: str
    metrics: dict
    created_at: datetime | None = None


def _run_from_row(row) -> TrainingRunRow:
    (id_, name, job, recipe, stage, index, parent, snap, base, out, spec, status, device, error, final,
     created, started, finished) = row
    return TrainingRunRow(
        id=id_, name=name, job_id=job, recipe=recipe, stage=stage, stage_index=index, parent_run_id=parent,
        snapshot_id=snap, base_model_id=base, output_model_id=out, spec=json.loads(spec) if spec else {},
        status=status, device=device, error=error, final_metrics=json.loads(final) if final else {},
        created_at=created, started_at=started, finished_at=finished,
    )


def insert_run(db: Database, *, name: str | None, recipe: str, stage: str, spec: dict, snapshot_id: str | None,
               base_model_id: str | None = None, parent_run_id: str | None = None, stage_index: int = 0,
               job_id: str | None = None, status: str = "queued", run_id: str | None = None) -> str:
    """Insert a run (or one stage of a run) and return its id."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    run_id = run_id or new_id("run")
    with db.session() as cur:
        cur.execute(INSERT_RUN, [run_id, name, job_id, recipe, stage, stage_index, parent_run_id, snapshot_id,
                                 base_model_id, json.dumps(spec), status])
    return run_id


def get_run(db: Database, run_id: str) -> TrainingRunRow | None:
    with db.session() as cur:
        row = cur.execute(SELECT_RUN, [run_id]).fetchone()
    return _run_from_row(row) if row else None


def list_runs(db: Database, status: str | None = None, top_level_only: bool = True, limit: int = 200
              ) -> list[TrainingRunRow]:
    """Newest first; by default only runs, not their stages."""
    with db.session() as cur:
        rows = cur.execute(SELECT_RUNS, [status, status, top_level_only, limit]).fetchall()
    return [_run_from_row(r) for r in rows]


def child_runs(db: Database, parent_run_id: str) -> list[TrainingRunRow]:
    """The stages of a multi-stage run, in order."""
    with db.session() as cur:
        return [_run_from_row(r) for r in cur.execute(SELECT_CHILDREN, [parent_run_id]).fetchall()]


def set_status(db: Database, run_id: str, status: str, error: str | None = None,
               final_metrics: dict | None = None, device: str | None = None) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    final = json.dumps(final_metrics) if final_metrics is not None else None
    with db.session() as cur:
        cur.execute(SET_STATUS, [status, error, final, device, status, status, run_id])


def set_job(db: Database, run_id: str, job_id: str | None) -> None:
    with db.session() as cur:
        cur.execute(SET_JOB, [job_id, run_id])


def set_output_model(db: Database, run_id: str, model_id: str) -> None:
    with db.session() as cur:
        cur.execute(SET_OUTPUT, [model_id, run_id])


def set_base_model(db: Database, run_id: str, model_id: str | None) -> None:
    with db.session() as cur:
        cur.execute(SET_BASE, [model_id, run_id])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def insert_metrics(db: Database, run_id: str, step: int, epoch: float | None, values: dict[str, Any]) -> int:
    """Upsert the numeric values of one log event; returns how many were written (others are skipped)."""
    return insert_metrics_batch(db, run_id, [(step, epoch, values)])


def insert_metrics_batch(db: Database, run_id: str, events: list[tuple[int, float | None, dict[str, Any]]]) -> int:
    """Upsert several log events in one statement and one transaction (one open of the database file).
    Non-numeric values are skipped, NaN/inf stored as NULL; a (step, name) logged twice keeps the last."""
    rows = {(int(step), name): (epoch, _number(v)) for step, epoch, values in events
            for name, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if rows:
        keys = list(rows)
        columns = [[run_id] * len(keys), [k[0] for k in keys], [rows[k][0] for k in keys], [k[1] for k in keys],
                   [rows[k][1] for k in keys]]
        with db.session(transaction=True) as cur:
            cur.execute(UPSERT_METRICS, columns)
    return len(rows)


def list_metrics(db: Database, run_id: str, since_step: int | None = None) -> list[MetricRow]:
    """Metrics in step order; with ``since_step`` only later steps (what a live chart polls for)."""
    with db.session() as cur:
        rows = cur.execute(SELECT_METRICS, [run_id, since_step, since_step]).fetchall()
    return [MetricRow(*r) for r in rows]


def insert_checkpoint(db: Database, run_id: str, step: int, path: str, metrics: dict | None = None) -> str:
    """Record a checkpoint folder (one per run and step; a re-save replaces the row)."""
    checkpoint_id = new_id("ckpt")
    with db.session(transaction=True) as cur:
        cur.execute(DELETE_CHECKPOINT_AT, [run_id, int(step)])
        cur.execute(INSERT_CHECKPOINT, [checkpoint_id, run_id, int(step), str(path), json.dumps(metrics or {})])
    return checkpoint_id


def list_checkpoints(db: Database, run_id: str) -> list[CheckpointRow]:
    with db.session() as cur:
        rows = cur.execute(SELECT_CHECKPOINTS, [run_id]).fetchall()
    return [CheckpointRow(i, r, s, p, json.loads(m) if m else {}, c) for i, r, s, p, m, c in rows]


def latest_checkpoint(db: Database, run_id: str) -> CheckpointRow | None:
    checkpoints = list_checkpoints(db, run_id)
    return checkpoints[-1] if checkpoints else None


def delete_checkpoint(db: Database, checkpoint_id: str) -> None:
    with db.session() as cur:
        cur.execute(DELETE_CHECKPOINT, [checkpoint_id])
