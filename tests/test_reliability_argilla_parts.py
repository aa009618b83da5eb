"""Argilla's parts (the server, Redis, the search engine) each killed in the middle of a review job.

A PRIVATE embedded Argilla is started for this module (its own STUDIO_HOME, ports and supervisor),
so killing its parts never disturbs the session's shared Argilla that other tests use. The studio
under test runs inside that home, as a user's studio would: its jobs talk to the embedded Argilla,
the supervisor restarts a crashed part (and reindexes after the in-memory search engine restarts).
What must hold: a clear status naming the part, retries, then the work resumes once the part is back,
with nothing lost and nothing sent or counted twice.
"""

from __future__ import annotations

import os
import signal
import uuid

import httpx
import pytest

from pipelines.review.push import PushRequest
from storage import review as review_store
from storage.db import get_database
from storage.pairs import insert_preference_pairs
from studio import argilla_embedded, jobs, lifecycle
from studio.services import review
from tests.fixtures.argilla import start_argilla_test_server
from tests.fixtures.core import wait_for


@pytest.fixture(scope="module")
def private_argilla(tmp_path_factory):
    server = start_argilla_test_server(tmp_path_factory.mktemp("private-argilla") / "home")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def studio(private_argilla):
    """This test's studio is the private Argilla's own home (embedded Argilla, its DuckDB)."""
    with private_argilla.as_home():
        _wait(_all_running, "every part of the private Argilla to run (after an earlier test's kill)", 180)
        yield private_argilla
        get_database().close()


def _wait(predicate, what: str, timeout: float = 120.0, every: float = 0.2):
    return wait_for(predicate, what, timeout, every)


def _parts() -> dict:
    return {h.name: h for h in lifecycle.service_health() if h.name in argilla_embedded.PARTS}


def _all_running() -> bool:
    search = lifecycle.read_state(lifecycle.current(), "search")
    reindexed = not search.get("restarts") or str(search.get("recovered_at") or "") >= str(search["started_at"])
    return all(h.state == "running" for h in _parts().values()) and reindexed and review.check_connection().ok


def _pairs(n: int) -> str:
    """n new preference pairs under a fresh generation run id (the push selects by it)."""
    run_id = f"gen_{uuid.uuid4().hex[:8]}"
    insert_preference_pairs(get_database(), [{
        "id": f"{run_id}_{i}", "run_id": run_id, "prompt": f"Question {i} of {run_id}?", "chosen": f"good {i}",
        "rejected": f"bad {i}", "confidence": round(i / n, 3)} for i in range(n)])
    return run_id


def _request(run_id: str, n: int) -> PushRequest:
    return PushRequest(dataset_name=f"parts-{run_id}", run_id=run_id, limit=n, batch_size=2, min_submitted=1)


def _push_under_way(n: int) -> tuple[PushRequest, str]:
    """A push job of ``n`` new pairs (2 a batch) that has sent a few batches: the moment to break a part."""
    request = _request(_pairs(n), n)
    job_id = review.start_push(request)
    _wait(lambda: (jobs.get_job(job_id).progress or {}).get("done", 0) >= 4, "the push to send a few batches", 60, 0.02)
    return request, job_id


def _kill_part(name: str) -> int:
    before = _parts()[name]
    assert before.state == "running" and before.pid, before
    os.kill(before.pid, signal.SIGKILL)
    return before.pid


def _back(name: str, old_pid: int):
    """The supervisor noticed the crash and the part runs again under a new pid."""
    return _wait(lambda: (h := _parts()[name]).state == "running" and h.pid != old_pid and h.restarts >= 1 and h,
                 f"the supervisor to restart {name}", 180)


def _argilla_total(server, round_id: str) -> int:
    dataset_id = review_store.get_round(get_database(), round_id)["argilla_dataset_id"]
    with review.ArgillaClient(server.url, server.api_key) as client:
        return client.progress(dataset_id)["total"]


def _finished(job_id: str, timeout: float = 180.0):
    return _wait(lambda: (j := jobs.get_job(job_id)).status not in ("queued", "running") and j, "the job", timeout)


def test_argilla_server_killed_during_a_push_job(studio):
    n = 120
    request, job_id = _push_under_way(n)
    old = _kill_part("argilla")
    job = _finished(job_id)
    round_row = review_store.find_round(get_database(), request.dataset_name, "default")
    sent_before = review_store.round_counts(get_database())[round_row["id"]]["pushed"]
    _wait(lambda: "killed by SIGKILL" in (lifecycle.read_state(lifecycle.current(), "argilla").get("last_error")
                                          or ""), "the supervisor to record why it stopped", 30)
    if job.status == "failed":   # the job's status names the part and says what to do
        assert "Argilla" in job.error and studio.url in job.error, job.error
        now = _parts()["argilla"]
        assert now.state != "running" or now.restarts >= 1, now     # the status shows it down (or restarted)
        assert 4 <= sent_before < n
    else:                        # the supervisor restarted it within the client's retries: the job went on
        assert job.status == "succeeded", job.error
        assert sent_before == n
        # the supervisor counts a restart once the new server answers, which may be after the job ended
        _wait(lambda: _parts()["argilla"].restarts >= 1, "the supervisor to count the restart", 120)

    _back("argilla", old)
    again = review.start_push(request)                  # resumes: sends only what was not stored as sent
    job = _finished(again)
    assert job.status == "succeeded", job.error
    assert review_store.round_counts(get_database())[round_row["id"]]["pushed"] == n
    assert _argilla_total(studio, round_row["id"]) == n  # nothing sent twice


def _answer_all(server, round_id: str) -> int:
    with get_database().session() as cur:
        ids = [r[0] for r in cur.execute("SELECT argilla_record_id FROM review_records WHERE round_id = ?",
                                         [round_id]).fetchall()]
    for argilla_id in ids:
        response = httpx.post(f"{server.url}/api/v1/records/{argilla_id}/responses",
                              headers={"X-Argilla-Api-Key": server.api_key},
                              json={"values": {"preferred": {"value": "a"}}, "status": "submitted"}, timeout=30)
        assert response.status_code in (201, 500), response.text  # 500: see tests/test_review_argilla.py
    return len(ids)


def test_search_engine_killed_during_a_push_job(studio):
    n = 40
    request, job_id = _push_under_way(n)
    old = _kill_part("search")
    # what a failing push or pull adds to Argilla's bare HTTP 500: the part behind it, by name
    assert "The search engine (osmem-server) is down" in review._down_parts()
    job = _finished(job_id)
    round_row = review_store.find_round(get_database(), request.dataset_name, "default")
    if job.status == "failed":   # the outage outlasted the client's retries: the status names the part
        assert "The search engine (osmem-server)" in job.error and "Push again" in job.error, job.error
        assert "python -m studio status" in job.error
        assert 4 <= review_store.round_counts(get_database())[round_row["id"]]["pushed"] < n
    else:                        # the supervisor restarted it within the retries: the job went on
        assert job.status == "succeeded", job.error
    _back("search", old)
    _wait(lambda: lifecycle.read_state(lifecycle.current(), "search").get("recovered_at"), "the reindex", 120)
    again = review.start_push(request)
    job = _finished(again)
    assert job.status == "succeeded", job.error
    assert review_store.round_counts(get_database())[round_row["id"]]["pushed"] == n
    assert _argilla_total(studio, round_row["id"]) == n


def test_redis_killed_during_a_pull_job(studio):
    n = 12
    run_id = _pairs(n)
    pushed = review.push_for_review(_request(run_id, n))
    assert _answer_all(studio, pushed.round_id) == n
    job_id = review.start_pull(pushed.round_id)
    old = _kill_part("redis")
    down = _parts()["redis"]
    assert down.state != "running", down     # the status shows Redis down at once
    # Argilla reads and lists records without Redis (it queues only background work there), so the
    # pull finishes; had it failed, its error would name Redis (see _naming_down_parts).
    job = _finished(job_id)
    assert job.status == "succeeded" or "Redis" in job.error, job.error
    back = _back("redis", old)
    assert back.restarts >= 1
    assert lifecycle.read_state(lifecycle.current(), "redis")["last_error"] == "killed by SIGKILL"
    again = review.start_pull(pushed.round_id)
    job = _finished(again)
    assert job.status == "succeeded", job.error
    counts = review_store.round_counts(get_database())[pushed.round_id]
    assert (counts["submitted"], counts["reviewed"]) == (n, n)
