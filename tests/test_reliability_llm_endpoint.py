"""The LLM endpoint stopped in the middle of a generation job (its process killed, as when a server
crashes or is restarted): a short outage is bridged by retries; a long one ends the run with a status
that names the endpoint and says how to resume, and once the endpoint is back the run resumes and
finishes with nothing lost and nothing duplicated.

The endpoint is the fault-injecting OpenAI-compatible server (tests/fake_openai_server.py) run as its
own process, so stopping it closes every connection, kept-alive ones included, like a real server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from studio import jobs
from studio.services import generate as service
from studio.services.models import add_endpoint
from tests.fixtures.core import REPO_ROOT, free_port
from tests.generate_script import assert_consistent, make_config, rows
from tests.fixtures.core import wait_for

COMPLETE = {"instructions_kept": 6, "responses_kept": 12, "judgments": 12, "preference_pairs": 6, "sft_pairs": 6}
SERVER = textwrap.dedent("""
    import sys, time
    from tests.fake_openai_server import Behavior, FakeOpenAIServer
    from tests.generate_script import scripted_reply
    FakeOpenAIServer(int(sys.argv[1]), Behavior(reply=scripted_reply, latency_s=float(sys.argv[2]))).start()
    print("ready", flush=True)
    time.sleep(3600)
""")


class EndpointProcess:
    """The fake endpoint in a process of its own on a fixed port (so it can come back at the same URL)."""

    def __init__(self, port: int, latency_s: float):
        self.port, self.latency_s, self.proc = port, latency_s, None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "EndpointProcess":
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port), str(self.latency_s)],
                                     cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=10) as resp:
            assert resp.status == 200
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def endpoint(db):
    server = EndpointProcess(free_port(), latency_s=0.15).start()
    try:
        yield server
    finally:
        server.kill()


def _wait(predicate, what: str, timeout: float = 90.0, every: float = 0.1):
    return wait_for(predicate, what, timeout, every)


def _responses(db, run_id: str) -> int:
    return rows(db, "SELECT count(*) AS n FROM responses WHERE run_id = ?", [run_id])[0]["n"]


def _finished(run_id: str):
    detail = service.get_run(run_id)
    return detail if detail.summary.status not in ("queued", "running") else None


def _config():
    return make_config(instructions={"generator": "endpoint:flaky"},
                       responses={"generators": [{"target": "endpoint:flaky", "candidates": 2}]},
                       judge={"target": "endpoint:flaky"})


def _check_complete(db, run_id: str) -> None:
    detail = service.get_run(run_id)
    errors = rows(db, "SELECT stage, error FROM llm_calls WHERE job_id = ? AND status = 'error'", [run_id])
    assert detail.summary.status == "succeeded", (detail.summary.message, errors)
    assert {k: detail.summary.counts[k] for k in COMPLETE} == COMPLETE
    assert_consistent(db, run_id)
    (row,) = rows(db, "SELECT count(*) AS n, count(DISTINCT (instruction_id, candidate_index)) AS d FROM responses "
                      "WHERE run_id = ?", [run_id])
    assert row == {"n": 12, "d": 12}


def test_a_short_endpoint_outage_is_bridged_by_retries(db, endpoint):
    add_endpoint("flaky", endpoint.base_url, "fake-model", concurrency=2, max_retries=8, timeout_s=10)
    started = service.start_generation(_config())
    _wait(lambda: _responses(db, started.run_id) >= 2, "some responses")
    endpoint.kill()
    time.sleep(1.0)                      # down for a second, shorter than the retries' patience (jittered backoff)
    endpoint.start()
    detail = _wait(lambda: _finished(started.run_id), "the run")
    _check_complete(db, started.run_id)
    assert detail.job.status == "succeeded"
    errors = rows(db, "SELECT count(*) AS n FROM llm_calls WHERE job_id = ? AND status = 'error'", [started.run_id])
    assert errors[0]["n"] == 0                            # every call got through in the end


def test_a_long_endpoint_outage_names_the_endpoint_then_resumes_once_it_is_back(db, endpoint):
    add_endpoint("flaky", endpoint.base_url, "fake-model", concurrency=2, max_retries=1, timeout_s=10)
    started = service.start_generation(_config())
    _wait(lambda: _responses(db, started.run_id) >= 2, "some responses")
    endpoint.kill()
    detail = _wait(lambda: _finished(started.run_id), "the run to give up")
    summary = detail.summary
    assert summary.status in ("failed", "partial"), summary.message
    # the status names the part (the endpoint, its URL), says it retried, and what to do
    assert "endpoint:flaky" in summary.message and f"cannot reach {endpoint.base_url}" in summary.message
    assert "gave up after 2 attempts" in summary.message and "Nothing is lost" in summary.message
    assert f"python -m studio generations resume {started.run_id}" in summary.message
    assert detail.resumable
    stored = _responses(db, started.run_id)             # what was stored before the endpoint died stays
    assert stored >= 2 and summary.counts["judgments"] < 12 and summary.counts["preference_pairs"] == 0, summary
    job = jobs.get_job(started.job_id)
    assert not job.active

    endpoint.start()                                       # the endpoint is back, at the same URL
    resumed = service.resume_generation(started.run_id)
    _wait(lambda: _finished(started.run_id), "the resumed run")
    _check_complete(db, started.run_id)
    assert jobs.get_job(resumed.job_id).status == "succeeded"
