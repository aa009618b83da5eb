"""Several browser sessions + the CLI + a running job against one STUDIO_HOME, all writing at once.

The studio's Streamlit server runs each browser session as a thread of one process, so the sessions
here are AppTest instances of the real pages driven from two threads of this process; the CLI runs
as separate ``python -m studio`` processes; the job is a real background generation job writing its
rows. What must hold: no lock error anywhere (pages, CLI, job log), and every write each of them
made is in the database at the end (none lost, none doubled).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.services import generate as gen_service
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc
from tests.apptest_helpers import texts, widget
from tests.fixtures.core import REPO_ROOT
from tests.generate_script import assert_consistent, fake_endpoint, make_config, rows, scripted_reply

__all__ = ["fake_endpoint"]
COMPLETE = {"instructions_kept": 6, "responses_kept": 12, "judgments": 12, "preference_pairs": 6, "sft_pairs": 6}
ACTIVE = ("queued", "running")
LOCK_WORDS = ("could not set lock", "conflicting lock", "database is locked", "databasebusy", "held the database")


def _page(path: str, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "pages" / path), default_timeout=120)
    if tab:
        at.query_params["tab"] = tab
    return at


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _add_seeds_on_the_page(name: str) -> None:
    """A browser session on the Generate page adds a seed set through the form."""
    at = _run(_page("generate.py", "Seeds"))
    widget(at.text_area, "Seed tasks").input(f"Task one of {name}.\nTask two of {name}.")
    widget(at.text_input, "Seed set name (optional)").input(name)
    widget(at.button, "Add seeds").click()
    at = _run(at)
    assert any(f"into **{name}**" in s.value for s in at.success), texts(at)


def _actions_in_threads(name: str, rounds: int, out: dict) -> None:
    """What the Streamlit server does for a session's click: a service call on one of its threads."""
    try:
        for i in range(rounds):
            seeds_svc.add_typed_seeds(f"Thread task of {name}-{i}.\nAnother of {name}-{i}.", f"{name}-{i}")
            out.setdefault("added", []).append(f"{name}-{i}")
    except BaseException as exc:  # reported by the test thread
        out["error"] = exc


def _cli(studio_home, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "studio", *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def _no_lock_words(text: str) -> bool:
    low = text.lower()
    return not any(word in low for word in LOCK_WORDS)


def _cli_loop(studio_home, base_url: str, out: list) -> None:
    """The CLI writes (an endpoint each time) and reads while the sessions and the job write."""
    for i in range(3):
        out.append(_cli(studio_home, "endpoints", "add", f"cli-{i}", base_url, "fake-model"))
        out.append(_cli(studio_home, "generations", "list", "--json"))


def test_sessions_cli_and_a_job_write_at_once_without_lock_errors_or_lost_writes(db, fake_endpoint, studio_home):
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.3)
    started = gen_service.start_generation(make_config())
    cli_runs: list = []
    thread_a, thread_b = {}, {}
    threads = [threading.Thread(target=_cli_loop, args=(studio_home, fake_endpoint.base_url, cli_runs)),
               threading.Thread(target=_actions_in_threads, args=("thread-a", 5, thread_a)),
               threading.Thread(target=_actions_in_threads, args=("thread-b", 5, thread_b))]
    for thread in threads:
        thread.start()
    # Browser sessions (AppTest is not thread-safe, so they take turns in this thread): two add seed
    # sets through the page's form, a third keeps reloading Home and the run's results.
    page_sets, renders, job_seen_active = [], 0, False
    try:
        for i in range(3):
            for who in ("alice", "bob"):
                _add_seeds_on_the_page(f"{who}-{i}")
                page_sets.append(f"{who}-{i}")
            for path, tab in (("home.py", None), ("generate.py", "Results")):
                _run(_page(path, tab))
                renders += 1
            job_seen_active = job_seen_active or jobs.get_job(started.job_id).active
    finally:
        for thread in threads:
            thread.join(timeout=300)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and gen_service.get_run(started.run_id).summary.status in ACTIVE:
            time.sleep(0.2)
    assert job_seen_active, "the job ended before the sessions started: no contention was exercised"
    for out in (thread_a, thread_b):
        assert "error" not in out, repr(out.get("error"))
    assert len(cli_runs) == 6
    for run in cli_runs:
        assert run.returncode == 0 and _no_lock_words(run.stderr), (run.args, run.stderr)
    assert isinstance(json.loads(cli_runs[-1].stdout), (list, dict))

    detail = gen_service.get_run(started.run_id)
    assert detail.summary.status == "succeeded", detail.summary.message
    assert {k: detail.summary.counts[k] for k in COMPLETE} == COMPLETE
    assert_consistent(db, started.run_id)
    assert jobs.get_job(started.job_id).status == "succeeded"
    assert _no_lock_words(jobs.job_log_path(started.job_id).read_text(errors="replace"))
    # every write is there, once
    sets = {s.name: s.seeds for s in seeds_svc.list_seed_sets()}
    for name in page_sets + thread_a["added"] + thread_b["added"]:
        assert sets.get(name) == 2, (name, sets)
    assert len(page_sets) == 6 and len(thread_a["added"]) == len(thread_b["added"]) == 5
    assert {"cli-0", "cli-1", "cli-2", "fake"} <= {e.name for e in models_svc.list_endpoints()}
    (dup,) = rows(db, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM responses")
    assert dup == {"n": 12, "d": 12}
    (seeds,) = rows(db, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM seeds")
    assert seeds["n"] == seeds["d"] and renders == 6
