"""Faults in the middle of a run: an endpoint that starts failing, a stop between batches, kill -9 of the
``generate`` process. Re-running with the same run id must finish with no duplicate, no half-written
batch, and fewer endpoint requests than starting over (the response cache and the stored rows)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from studio.services.generate import run_generation
from storage import generation as store
from core.errors import BadInput
from studio.services import generate as service
from tests.fixtures.core import REPO_ROOT
from tests.generate_script import assert_consistent, fake_endpoint, make_config, rows, scripted_reply

__all__ = ["fake_endpoint"]
FULL_RUN_CALLS = 3 + 12 + 12   # 3 seeds -> 6 instructions -> 12 responses -> 12 judgments
COMPLETE = {"instructions_kept": 6, "responses_kept": 12, "judgments": 12, "preference_pairs": 6, "sft_pairs": 6}


def _complete(summary) -> dict:
    return {k: summary.counts[k] for k in COMPLETE}


def test_an_endpoint_failing_mid_run_then_a_resume_fills_only_the_gaps(db, fake_endpoint):
    config = make_config()
    fake_endpoint.configure(reply=scripted_reply, fail_500_after=9)
    first = run_generation(config)
    assert first.status in ("failed", "partial")
    assert "resume" in first.message and first.failed.get("responses", 0) > 0
    made = first.counts["responses"]
    assert 0 < made < 12 and first.counts["preference_pairs"] == 0
    errors = rows(db, "SELECT count(*) AS n FROM llm_calls WHERE status = 'error' AND job_id = ?", [first.run_id])
    assert errors[0]["n"] == sum(first.failed.values())
    assert_consistent(db, first.run_id)

    fake_endpoint.configure(reply=scripted_reply)  # the endpoint is fixed
    second = run_generation(config, run_id=first.run_id)
    assert second.status == "succeeded", second.message
    assert _complete(second) == COMPLETE
    assert fake_endpoint.stats.requests == (12 - made) + 12  # only the missing responses, then the judge
    assert_consistent(db, first.run_id)
    attempts = service.get_run(first.run_id)
    assert attempts.summary.status == "succeeded"


def test_stop_between_batches_then_resume(db, fake_endpoint):
    config = make_config()
    first = run_generation(config, should_stop=lambda: fake_endpoint.stats.requests >= 8)
    assert first.status == "stopped" and "generations resume" in first.message
    assert first.counts["preference_pairs"] == 0
    before = fake_endpoint.stats.requests
    second = run_generation(config, run_id=first.run_id)
    assert second.status == "succeeded" and _complete(second) == COMPLETE
    assert fake_endpoint.stats.requests == FULL_RUN_CALLS  # nothing was asked twice
    assert before < FULL_RUN_CALLS
    assert_consistent(db, first.run_id)


def test_kill_9_of_the_generate_process_then_rerun(db, fake_endpoint, tmp_path, studio_home):
    from studio.services.models import get_endpoint
    from storage.registry import insert_endpoint

    endpoint = get_endpoint("fake")
    endpoint.concurrency = 2
    insert_endpoint(db, endpoint, replace=True)
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.25)
    config = make_config()
    path = tmp_path / "generate.yaml"
    path.write_text(config.to_yaml())
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli_generate", "generate", str(path), "--run-id", "gen_kill"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if rows(db, "SELECT count(*) AS n FROM responses")[0]["n"] >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    first_requests = fake_endpoint.stats.requests
    per_unit = rows(db, "SELECT seed_id, count(*) AS n FROM instructions GROUP BY seed_id")
    assert all(r["n"] == 2 for r in per_unit)  # a unit's rows were written together or not at all
    assert store.get_run(db, "gen_kill")["status"] == "running"
    killed = service.get_run("gen_kill")      # the dead process is noticed: never "running" forever
    assert killed.summary.status == "interrupted" and "resume" in killed.summary.message

    fake_endpoint.configure(reply=scripted_reply)
    summary = run_generation(config, run_id="gen_kill")
    assert summary.status == "succeeded", summary.message
    assert _complete(summary) == COMPLETE
    assert_consistent(db, "gen_kill")
    assert fake_endpoint.stats.requests < FULL_RUN_CALLS <= first_requests + fake_endpoint.stats.requests
    assert rows(db, "SELECT count(DISTINCT id) AS n, count(*) AS m FROM responses")[0] == {"n": 12, "m": 12}


def test_a_run_id_with_another_config_is_refused(db, fake_endpoint):
    first = run_generation(make_config(seeds={"texts": ["One seed."]}))
    with pytest.raises(BadInput, match="was started with a different config"):
        run_generation(make_config(seeds={"texts": ["Another seed."]}), run_id=first.run_id)


def test_a_run_that_is_running_elsewhere_is_refused(db, fake_endpoint):
    config = make_config()
    store.create_run(db, "gen_busy", config.name, config.to_dict(), status="running")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket

        store.update_report(db, "gen_busy", {"process": {"pid": sleeper.pid, "host": socket.gethostname()}})
        with pytest.raises(BadInput, match="is already running"):
            run_generation(config, run_id="gen_busy")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_generation(config, run_id="gen_busy").status == "succeeded"  # once it is gone, it resumes


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(db, fake_endpoint, tmp_path, studio_home):
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.2)
    path = tmp_path / "generate.yaml"
    path.write_text(make_config().to_yaml())
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli_generate", "generate", str(path), "--run-id", "gen_int"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and fake_endpoint.stats.requests < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Stopping after the current batch" in err
    assert "stopped" in out and "python -m studio generations resume gen_int" in out
    assert "Traceback" not in err
    assert store.get_run(db, "gen_int")["status"] == "stopped"
    fake_endpoint.configure(reply=scripted_reply)
    assert run_generation(make_config(), run_id="gen_int").status == "succeeded"
    assert_consistent(db, "gen_int")
