"""kill -9 of the studio in the middle of its work, then a restart: nothing lost, nothing duplicated,
statuses true to what happened (never "running" for a dead process), and the work resumes.

"The studio" here is what a user runs: an app process that starts the work through the same service
call the page makes, and the background job process it spawned. Both are killed with SIGKILL (no
handler runs); a fresh process (this test, like a restarted app) then reads the real DuckDB file.
Three moments: a generation job (the app and the job killed), a pull from the real Argilla (slowed by
a loopback proxy so the kill lands while it reads reviews), and a DPO training run on the tiny model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from urllib.parse import urlsplit

import pytest

from storage import jobs as job_store
from storage import review as review_store
from storage.db import get_database
from core import procs
from studio import jobs
from studio.services import generate as gen_service
from tests.fixtures.core import REPO_ROOT
from tests.generate_script import assert_consistent, fake_endpoint, make_config, rows, scripted_reply
from tests.fixtures.core import wait_for
from tests.fixtures.tiny import kill_training_mid_run

__all__ = ["fake_endpoint"]
COMPLETE = {"instructions_kept": 6, "responses_kept": 12, "judgments": 12, "preference_pairs": 6, "sft_pairs": 6}

# The app: it starts the run exactly as the Generate page does, reports the ids, then idles like a
# Streamlit server until it is killed.
APP = textwrap.dedent("""
    import json, sys, time
    from pipelines.generate.config import GenerationConfig
    from studio.services import generate
    started = generate.start_generation(GenerationConfig.from_yaml(open(sys.argv[1]).read()))
    print(json.dumps({"run_id": started.run_id, "job_id": started.job_id}), flush=True)
    time.sleep(600)
""")


def _wait(predicate, what: str, timeout: float = 60.0, every: float = 0.1):
    return wait_for(predicate, what, timeout, every)


def _env(studio_home) -> dict:
    return dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _count(db, table: str, run_id: str) -> tuple[int, int]:
    """(rows, distinct ids) of a generation table for a run: equal when nothing was written twice."""
    assert table in ("instructions", "responses", "judgments", "preference_pairs", "sft_pairs")
    (row,) = rows(db, f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {table} WHERE run_id = ?", [run_id])
    return row["n"], row["d"]


def test_kill_9_of_the_app_and_its_generation_job_then_resume(db, fake_endpoint, tmp_path, studio_home):
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.25)
    path = tmp_path / "generate.yaml"
    path.write_text(make_config().to_yaml())
    app = subprocess.Popen([sys.executable, "-c", APP, str(path)], cwd=REPO_ROOT, env=_env(studio_home),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(app.stdout.readline() or "{}")
        assert started, app.stderr.read()
        run_id, job_id = started["run_id"], started["job_id"]
        job_pid = _wait(lambda: job_store.get_job(db, job_id).pid, "the job's pid")
        _wait(lambda: _count(db, "responses", run_id)[0] >= 2, "the job to store some responses")
        assert jobs.get_job(job_id).status == "running"
        _kill(job_pid)
        _kill(app.pid)
        app.wait(timeout=10)
    finally:
        _kill(app.pid)
        app.wait(timeout=10)
    before = {t: _count(db, t, run_id) for t in ("instructions", "responses", "judgments")}
    requests_before = fake_endpoint.stats.requests
    # Restarted: what the app shows is true to what happened, with the way forward.
    _wait(lambda: not procs.pid_alive(job_pid), "the killed job to be gone", timeout=10)
    detail = gen_service.get_run(run_id)
    assert detail.summary.status == "interrupted", detail.summary
    assert "Nothing stored is lost" in detail.summary.message and "resume" in detail.summary.message
    assert detail.resumable
    job = jobs.get_job(job_id)
    assert job.status == "failed" and "killed or crashed" in job.error
    assert [r.status for r in gen_service.list_runs()] == ["interrupted"]
    # Nothing lost: every row stored before the kill is still there, none twice.
    assert all(n == d for n, d in before.values()) and before["responses"][0] >= 2
    assert_consistent(db, run_id)

    fake_endpoint.configure(reply=scripted_reply)  # no latency now: the rest goes fast
    resumed = gen_service.resume_generation(run_id)
    assert resumed.run_id == run_id and resumed.job_id != job_id
    _wait(lambda: gen_service.get_run(run_id).summary.status not in ("queued", "running"), "the resumed run", 90)
    detail = gen_service.get_run(run_id)
    assert detail.summary.status == "succeeded", detail.summary.message
    assert {k: detail.summary.counts[k] for k in COMPLETE} == COMPLETE
    assert_consistent(db, run_id)
    for table, expected in (("responses", 12), ("judgments", 12), ("preference_pairs", 6), ("sft_pairs", 6)):
        assert _count(db, table, run_id) == (expected, expected), table
    # resumed, not restarted: the responses stored before the kill were not asked for again
    asked_again = fake_endpoint.stats.requests - requests_before
    assert asked_again <= 27 - before["responses"][0]
    _wait(lambda: not jobs.get_job(resumed.job_id).active, "the resumed job to report its end", 30)
    assert jobs.get_job(resumed.job_id).status == "succeeded"


# -- a pull from Argilla -------------------------------------------------------------------------------
class DelayProxy:
    """A loopback TCP proxy in front of a real server that holds every chunk a client sends for
    ``delay_s`` before forwarding it (a slow network; the protocol stays the real one)."""

    def __init__(self, upstream_url: str, delay_s: float):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port)
        self.delay_s = delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = threading.Event()

    def start(self) -> "DelayProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.closed.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, self.delay_s), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, 0.0), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, delay_s: float) -> None:
        try:
            while chunk := source.recv(65536):
                if delay_s:
                    time.sleep(delay_s)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _answer_all(server, db, round_id: str, key: str) -> int:
    import httpx

    with db.session() as cur:
        ids = [r[0] for r in cur.execute("SELECT argilla_record_id FROM review_records WHERE round_id = ?",
                                         [round_id]).fetchall()]
    for argilla_id in ids:
        response = httpx.post(f"{server.url}/api/v1/records/{argilla_id}/responses",
                              headers={"X-Argilla-Api-Key": key},
                              json={"values": {"preferred": {"value": "a"}}, "status": "submitted"}, timeout=30)
        assert response.status_code in (201, 500), response.text  # 500: see tests/test_review_argilla.py
    return len(ids)


@pytest.fixture
def slow_argilla(argilla_env, monkeypatch):
    """The session's Argilla behind a loopback TCP proxy that delays every request, so a pull lasts
    long enough to be killed in the middle of it."""
    proxy = DelayProxy(argilla_env.url, delay_s=0.4).start()
    monkeypatch.setenv("STUDIO_ARGILLA_URL", proxy.url)
    try:
        yield argilla_env
    finally:
        proxy.stop()


def test_kill_9_of_a_pull_job_then_pull_again(studio_home, db, slow_argilla):
    import uuid

    from pipelines.review.push import PushRequest
    from storage.pairs import insert_preference_pairs
    from studio.services import review

    insert_preference_pairs(db, [{"id": f"pp{i}", "run_id": "gen1", "prompt": f"Question {i}?", "chosen": f"good {i}",
                                  "rejected": f"bad {i}", "confidence": 0.5} for i in range(8)])
    pushed = review.push_for_review(PushRequest(dataset_name=f"kill-{uuid.uuid4().hex[:8]}", limit=8,
                                                 min_submitted=1))
    answered = _answer_all(slow_argilla, db, pushed.round_id, slow_argilla.api_key)
    assert answered == 8

    job_id = review.start_pull(pushed.round_id)
    _wait(lambda: (job_store.get_job(db, job_id).progress or {}).get("stage") == "reading reviews",
          "the pull to be reading reviews", 60, 0.02)
    _kill(job_store.get_job(db, job_id).pid)
    _wait(lambda: jobs.get_job(job_id).status != "running", "the killed pull to be noticed", 10)
    job = jobs.get_job(job_id)
    assert job.status == "failed" and "killed or crashed" in job.error
    counts = review_store.round_counts(db)[pushed.round_id]
    assert counts["submitted"] in (0, 8)        # the pull writes its answers in one transaction
    # the watermark moves only after a complete pull, so the next pull reads everything again
    assert review_store.get_round(db, pushed.round_id)["settings"].get("activity_watermark") is None

    again = review.start_pull(pushed.round_id)
    _wait(lambda: not jobs.get_job(again).active, "the second pull", 90)
    assert jobs.get_job(again).status == "succeeded", jobs.get_job(again).error
    counts = review_store.round_counts(db)[pushed.round_id]
    assert (counts["submitted"], counts["reviewed"]) == (8, 8)
    (dup,) = rows(db, "SELECT count(*) AS n, count(DISTINCT (review_record_id, reviewer)) AS d FROM review_responses "
                      "WHERE round_id = ?", [pushed.round_id])
    assert dup == {"n": 8, "d": 8}


# -- training ------------------------------------------------------------------------------------------
@pytest.fixture
def training_home(studio_home, tiny_model_dir):
    """8 preference pairs frozen into a snapshot, and the tiny model registered as 'tiny'."""
    from storage.pairs import insert_preference_pairs
    from studio.services import models as models_svc
    from studio.services import snapshots as snap_svc

    insert_preference_pairs(get_database(), [dict(id=f"pp{i}", run_id="gen1", prompt=f"Say something {i}.",
                                                  chosen=f"The cat sat on mat {i}.", rejected="No.", confidence=0.9)
                                             for i in range(8)])
    snapshot = snap_svc.create_snapshot(snap_svc.SnapshotSpec(name="pairs", eval_fraction=0))
    models_svc.add_model(str(tiny_model_dir), name="tiny")
    return snapshot


def test_kill_9_during_training_then_resume_keeps_every_metric_once(training_home):
    from pipelines.train.spec import RunSpec
    from storage import training as run_store
    from studio.services import training as train_svc

    steps = 40
    spec = RunSpec.from_dict({"name": "killed", "recipe": "dpo", "base_model": "tiny", "snapshot_id": training_home.id,
                              "preset": "cpu_smoke_test", "hyper": {"max_steps": steps, "save_steps": 2,
                                                                    "max_length": 64}})
    run = train_svc.start_run(spec)
    db = get_database()
    kill_training_mid_run(run.id, past_step=2)
    killed = train_svc.get_run(run.id)
    assert killed.status == "interrupted" and "resume" in killed.hint
    assert jobs.get_job(run.job_id).status == "failed"
    assert [r.status for r in train_svc.list_runs()] == ["interrupted"]
    logged = {m.step for m in run_store.list_metrics(db, run.id) if m.name == "loss"}
    kept = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    assert logged and max(logged) < steps

    resumed = train_svc.resume_run(run.id)
    assert resumed.job_id != run.job_id
    done = _wait(lambda: (r := train_svc.get_run(run.id)).status not in ("queued", "running") and r,
                 "the resumed run", 240, 0.3)
    assert done.status == "succeeded", done.error
    metrics = run_store.list_metrics(db, run.id)
    losses = [m.step for m in metrics if m.name == "loss"]
    assert sorted(losses) == list(range(1, steps + 1))     # every step's loss, none twice, none lost
    assert len({(m.step, m.name) for m in metrics}) == len(metrics)
    after = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    assert max(after) == steps and len(after) == len(set(after.values()))
    assert all(after[step] == ckpt for step, ckpt in kept.items())   # continued from them, not redone
    _wait(lambda: not jobs.get_job(resumed.job_id).active, "the resumed job to report its end", 30)
    assert jobs.get_job(resumed.job_id).status == "succeeded"
