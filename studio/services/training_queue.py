"""The training queue: one run at a time per device, in the order runs were started.

Why a lock file and not a scheduler process: every queued run already has its own job process
(started by ``start_run``), which waits here for its turn. The turn is "I am the oldest queued run on
this device and I hold the device's ``flock``". The kernel drops a flock when its process dies, even
on ``kill -9``, so a crashed run never blocks the queue; a dead run's row is reconciled to
``interrupted`` (never shown running forever) by whoever looks next: a waiting run, the page, the CLI
or ``studio up``. Where a run goes is one function (``device_name``), so a cluster backend (Ray,
Slurm) can replace this module without touching the pipelines.

A run trained by several processes takes one turn: rank 0 waits for it (or the job that launched the
ranks already holds it, ``HELD_ENV``), and the other ranks never touch the lock; they wait for rank
0's answer (``rank_turn``), so no rank can block on a lock its own launch holds.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from pipelines.train.distributed import Ranks
from storage import jobs as job_store
from storage import training as run_store
from storage.db import get_database
from core import settings as settings_mod
from core.procs import local_pid_alive

POLL_S = 0.5
HELD_ENV = "STUDIO_QUEUE_TURN_HELD"  # the run whose turn the launching job holds, set for the ranks it starts
ORPHAN_GRACE_S = 60  # a queued run with no job process for this long was never started (a crash in start_run)
INTERRUPTED = ("The training process ended without reporting a result (killed, crashed, or the studio stopped). "
               "Resume it from its last checkpoint with `python -m studio runs resume {run_id}`.")


def device_name() -> str:
    """The device a run trains on: the first CUDA GPU when there is one, else the CPU."""
    from pipelines.train.spec import cuda_available

    return "cuda:0" if cuda_available() else "cpu"


def queue_dir() -> Path:
    folder = settings_mod.current().runs_dir / ".queue"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cancel_marker(run_id: str) -> Path:
    return queue_dir() / f"{run_id}.cancel"


def process_alive(run: run_store.TrainingRunRow) -> bool | None:
    """Whether the run's job process lives: None when it cannot be told (no job yet, another host)."""
    if not run.job_id:
        return None
    job = job_store.get_job(get_database(), run.job_id)
    return None if job is None else local_pid_alive(job.pid, job.host)


def log_tail(job_id: str | None, lines: int = 20) -> list[str]:
    if not job_id:
        return []
    path = settings_mod.current().logs_dir / "jobs" / f"{job_id}.log"
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64_000))
        return handle.read().decode(errors="replace").splitlines()[-lines:]


def reconcile(runs: list[run_store.TrainingRunRow] | None = None) -> list[str]:
    """Mark every queued/running run (of ``runs``, default all) whose process is gone as interrupted;
    returns their ids."""
    db = get_database()
    fixed = []
    for run in runs if runs is not None else run_store.list_runs(db, top_level_only=False, limit=10_000):
        if not run.active:
            continue
        alive = process_alive(run)
        orphan = alive is None and not run.job_id and run.created_at is not None and \
            time.time() - run.created_at.timestamp() > ORPHAN_GRACE_S
        if alive is False or orphan:
            error = INTERRUPTED.format(run_id=run.parent_run_id or run.id)
            tail = [line.strip()[:200] for line in log_tail(run.job_id, 3) if line.strip()]
            if tail:
                error += " Last log lines: " + " | ".join(tail)
            run_store.set_status(db, run.id, "interrupted", error=error)
            if run.job_id:
                job_store.mark_finished(db, run.job_id, "failed", error)
            fixed.append(run.id)
    return fixed


def queued_runs(device: str) -> list[run_store.TrainingRunRow]:
    """Queued top-level runs on a device, first in line first."""
    runs = run_store.list_runs(get_database(), status="queued", top_level_only=True, limit=10_000)
    mine = [r for r in runs if (r.device or "cpu") == device]
    return sorted(mine, key=lambda r: (r.created_at, r.id))


def _try_lock(device: str) -> int | None:
    path = queue_dir() / f"{device.replace(':', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def wait_for_turn(run_id: str, device: str, on_wait: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> int | None:
    """Block until this run may use the device; returns the lock's fd (keep it open while training),
    or None when the run was cancelled while it waited."""
    db = get_database()
    ahead_before = -1
    while True:
        run = run_store.get_run(db, run_id)
        if run is None or run.status != "queued" or cancel_marker(run_id).exists() or (should_stop and should_stop()):
            if run is not None and run.status == "queued":
                run_store.set_status(db, run_id, "cancelled", error="Cancelled while waiting in the queue.")
            return None
        reconcile()
        line = [r.id for r in queued_runs(device)]
        ahead = line.index(run_id) if run_id in line else 0
        if ahead == 0:
            fd = _try_lock(device)
            if fd is not None:
                return fd
            ahead = 1  # the device is busy with a running run
        if on_wait and ahead != ahead_before:
            on_wait(ahead)
            ahead_before = ahead
        time.sleep(POLL_S)


def release(fd: int | None) -> None:
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def rank_turn(run_id: str, ranks: Ranks, should_stop: Callable[[], bool] | None = None) -> tuple[bool, int | None]:
    """(go, lock fd to release) for one rank of a multi-process launch. Rank 0 waits for the turn unless
    the launching job holds it; every rank gets rank 0's answer (no when the run was cancelled meanwhile)."""
    fd, go = None, True
    if ranks.is_main and os.environ.get(HELD_ENV) != run_id:
        fd = wait_for_turn(run_id, device_name(), None, should_stop)
        go = fd is not None
    return bool(ranks.share(go if ranks.is_main else None)), fd
