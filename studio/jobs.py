"""Background jobs: work that outlives a page render (pulls now; generation, sync, training later).

A job is ``python -m studio --job-id ID <command ...>`` started as its own process (new session,
output to ``STUDIO_HOME/logs/jobs/ID.log``). The process reports progress through
``core.progress.ProgressReporter`` with a :class:`JobSink` (``reporter(job_id)``), which writes the one
event format to the ``jobs`` table; pages
poll ``get_job`` in a fragment, so a page reload keeps showing it. A job whose process is gone
while its row still says running is reconciled to failed on the next read: never "running" forever.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from core import settings as settings_mod
from core.errors import NotFound
from core.procs import pid_alive
from studio import access
from core.progress import ProgressReporter
from storage import jobs as job_store
from storage.db import get_database
from storage.ids import new_id
from storage.jobs import JobInfo

REPO_ROOT = Path(__file__).resolve().parent.parent
__all__ = ["JobInfo", "JobSink", "reporter", "start_job", "get_job", "list_jobs", "cancel_job", "job_log_path"]


DOUBLE_START_WINDOW_S = 60.0   # the same start twice within this time is one start (a double click)


@contextmanager
def start_lock(kind: str) -> Iterator[None]:
    """One start of ``kind`` at a time across processes (pages, CLI): held while a start looks for an
    identical start that is still being created and creates its run. The kernel drops it on a crash."""
    folder = settings_mod.current().runs_dir
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".start-{kind}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def just_started(created_at: datetime | None, window_s: float = DOUBLE_START_WINDOW_S) -> bool:
    """Whether a run created at ``created_at`` counts as the same start as one asked for now."""
    if created_at is None:
        return False
    return abs((datetime.now(created_at.tzinfo) - created_at).total_seconds()) < window_s


def job_log_path(job_id: str) -> Path:
    return settings_mod.current().logs_dir / "jobs" / f"{job_id}.log"


def start_job(kind: str, argv: list[str], name: str) -> str:
    """Start ``python -m studio <argv>`` in the background; return its job id at once."""
    db = get_database()
    job_id = new_id("job")
    job_store.insert_job(db, job_id, kind, name, {"argv": argv})
    log_path = job_log_path(job_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = access.job_env(dict(os.environ))   # the job acts as, and is attributed to, whoever started it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "studio", "--job-id", job_id, *argv],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    job_store.set_pid(db, job_id, proc.pid, socket.gethostname())
    return job_id


class JobSink:
    """Progress events into a job's row: the process that runs the job marks it started, updates
    its progress and finishes it."""

    def __init__(self, job_id: str):
        self.job_id = job_id

    def started(self) -> None:
        job_store.mark_started(get_database(), self.job_id, os.getpid(), socket.gethostname())

    def update(self, event: dict[str, Any]) -> None:
        job_store.update_progress(get_database(), self.job_id, event)

    def finished(self, status: str, error: str | None) -> None:
        job_store.mark_finished(get_database(), self.job_id, status, error)


def reporter(job_id: str | None = None, show_bar: bool | None = None) -> ProgressReporter:
    """The progress reporter of this process: a terminal bar, plus the job's row when it runs as a job."""
    return ProgressReporter(JobSink(job_id) if job_id else None, show_bar)


def _reconcile(job: JobInfo) -> JobInfo:
    if job.active and job.pid and job.host == socket.gethostname() and not pid_alive(job.pid):
        tail = _log_tail(job.id)
        error = "The job's process ended without reporting a result (killed or crashed)."
        if tail:
            error += f" Last log lines: {tail}"
        job_store.mark_finished(get_database(), job.id, "failed", error)
        job.status, job.error = "failed", error
    return job


def _log_tail(job_id: str, lines: int = 5) -> str:
    path = job_log_path(job_id)
    if not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def get_job(job_id: str) -> JobInfo:
    job = job_store.get_job(get_database(), job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id!r}.", hint="`python -m studio status` lists recent jobs.")
    return _reconcile(job)


def list_jobs(kind: str | None = None, active_only: bool = False) -> list[JobInfo]:
    jobs = [_reconcile(j) for j in job_store.list_jobs(get_database(), kind, active_only)]
    return [j for j in jobs if j.active] if active_only else jobs


def cancel_job(job_id: str) -> JobInfo:
    job = get_job(job_id)
    if job.active and job.pid and pid_alive(job.pid):
        try:
            os.killpg(job.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    job_store.mark_finished(get_database(), job_id, "cancelled", "Cancelled by the user.")
    return get_job(job_id)
