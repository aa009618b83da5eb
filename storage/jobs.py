"""Jobs: background work (pulls, generation, sync, training, evaluation) and its progress."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from storage.db import Database

JOB_COLUMNS = "id, kind, name, status, spec, progress, pid, host, heartbeat_at, error, created_at, started_at, finished_at"
INSERT_JOB = "INSERT INTO jobs (id, kind, name, status, spec, progress) VALUES (?, ?, ?, ?, ?, ?)"
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
SELECT_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs WHERE (? IS NULL OR kind = ?) ORDER BY created_at DESC LIMIT ?"
SELECT_ACTIVE_JOBS = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') AND (? IS NULL OR kind = ?) "
    "ORDER BY created_at DESC"
)
MARK_STARTED = (
    "UPDATE jobs SET status = 'running', pid = ?, host = ?, started_at = coalesce(started_at, current_timestamp), "
    "heartbeat_at = current_timestamp WHERE id = ?"
)
SET_PID = "UPDATE jobs SET pid = ?, host = ? WHERE id = ?"
UPDATE_PROGRESS = "UPDATE jobs SET progress = ?, heartbeat_at = current_timestamp WHERE id = ?"
MARK_FINISHED = (
    "UPDATE jobs SET status = ?, error = ?, finished_at = current_timestamp, heartbeat_at = current_timestamp "
    "WHERE id = ? AND status IN ('queued', 'running')"
)

ACTIVE = ("queued", "running")


@dataclass
class JobInfo:
    id: str
    kind: str
    name: str | None
    status: str
    spec: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)
    pid: int | None = None
    host: str | None = None
    heartbeat_at: datetime | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        for key in ("heartbeat_at", "created_at", "started_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _from_row(row) -> JobInfo:
    (id_, kind, name, status, spec, progress, pid, host, hb, error, created, started, finished) = row
    return JobInfo(
        id=id_, kind=kind, name=name, status=status, spec=json.loads(spec) if spec else {},
        progress=json.loads(progress) if progress else {}, pid=pid, host=host, heartbeat_at=hb,
        error=error, created_at=created, started_at=started, finished_at=finished,
    )


def insert_job(db: Database, job_id: str, kind: str, name: str | None, spec: dict) -> None:
    with db.session() as cur:
        cur.execute(INSERT_JOB, [job_id, kind, name, "queued", json.dumps(spec), json.dumps({})])


def set_pid(db: Database, job_id: str, pid: int, host: str) -> None:
    with db.session() as cur:
        cur.execute(SET_PID, [pid, host, job_id])


def mark_started(db: Database, job_id: str, pid: int, host: str) -> None:
    with db.session() as cur:
        cur.execute(MARK_STARTED, [pid, host, job_id])


def update_progress(db: Database, job_id: str, progress: dict) -> None:
    with db.session() as cur:
        cur.execute(UPDATE_PROGRESS, [json.dumps(progress, default=str), job_id])


def mark_finished(db: Database, job_id: str, status: str, error: str | None = None) -> None:
    with db.session() as cur:
        cur.execute(MARK_FINISHED, [status, error, job_id])


def get_job(db: Database, job_id: str) -> JobInfo | None:
    with db.session() as cur:
        row = cur.execute(SELECT_JOB, [job_id]).fetchone()
    return _from_row(row) if row else None


def list_jobs(db: Database, kind: str | None = None, active_only: bool = False, limit: int = 50) -> list[JobInfo]:
    with db.session() as cur:
        if active_only:
            rows = cur.execute(SELECT_ACTIVE_JOBS, [kind, kind]).fetchall()
        else:
            rows = cur.execute(SELECT_JOBS, [kind, kind, limit]).fetchall()
    return [_from_row(r) for r in rows]
