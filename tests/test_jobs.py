"""Background jobs: progress in the one format, failure messages, kill -9 reconciled, cancel."""

from __future__ import annotations

import os
import signal
import time

import pytest

from studio import jobs
from core.errors import NotFound
from core import procs
from studio.jobs import reporter as job_reporter
from storage import jobs as job_store
from storage.db import get_database
from storage.ids import new_id


def _wait(job_id: str, until, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get_job(job_id)
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached the state: {jobs.get_job(job_id)}")


def test_progress_events_carry_counts_and_eta(studio_home):
    db = get_database()
    job_id = new_id("job")
    job_store.insert_job(db, job_id, "generation", "unit", {})
    reporter = job_reporter(job_id, show_bar=False)
    reporter.update(stage="responses", done=0, total=10, unit="response", tokens=0)
    time.sleep(0.05)
    reporter.update(done=5, tokens=1200, cost_usd=0.01)
    reporter.finish()
    job = jobs.get_job(job_id)
    assert job.status == "succeeded"
    assert job.progress["stage"] == "responses" and job.progress["done"] == 5 and job.progress["total"] == 10
    assert job.progress["fraction"] == 0.5 and job.progress["eta_s"] > 0 and job.progress["tokens"] == 1200


def test_a_failing_job_keeps_its_message(studio_home):
    job_id = jobs.start_job("pull", ["models", "pull", "no-such-model"], name="pull no-such-model")
    job = _wait(job_id, lambda j: not j.active)
    assert job.status == "failed" and "no-such-model" in job.error


def test_a_killed_job_is_never_shown_running_forever(studio_home):
    job_id = jobs.start_job("pull", ["models", "pull", "smollm2-135m-instruct"], name="pull")
    job = _wait(job_id, lambda j: j.status == "running")
    os.killpg(job.pid, signal.SIGKILL)
    job = _wait(job_id, lambda j: not j.active, timeout=20)
    assert job.status == "failed" and "ended without reporting a result" in job.error


def test_cancel_stops_the_process(studio_home):
    job_id = jobs.start_job("pull", ["models", "pull", "smollm2-135m-instruct"], name="pull")
    job = _wait(job_id, lambda j: j.status == "running")
    assert jobs.cancel_job(job_id).status == "cancelled"
    deadline = time.monotonic() + 20
    while procs.pid_alive(job.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not procs.pid_alive(job.pid)


def test_unknown_job(studio_home):
    with pytest.raises(NotFound, match="There is no job"):
        jobs.get_job("job_nope")
