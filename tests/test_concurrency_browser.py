"""Several real browser sessions, the CLI and a running job against one STUDIO_HOME at once.

Two headless Chromium sessions (separate browser contexts, so separate Streamlit sessions) use the
same running app while a background generation job writes its results and CLI processes add
endpoints and list runs. Every session finishes what it did, no page shows an exception, no process
reports a lock error, and every write is in the database exactly once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc
from tests.fixtures.core import wait_for
from tests.generate_script import make_config, scripted_reply

pytestmark = pytest.mark.timeout(300)
LOCK_WORDS = ("lock", "Conflicting", "busy")


def _add_seeds(page, url: str, name: str, text: str) -> None:
    page.goto(f"{url}/generate")
    page.get_by_label("Seed tasks").fill(text)
    page.get_by_label("Seed set name (optional)").fill(name)
    page.get_by_role("button", name="Add seeds").click()
    page.get_by_text(f"into {name}").wait_for()


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studio", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_browser_sessions_the_cli_and_a_job_at_once(fake_openai, streamlit_app, chromium, tmp_path):
    fake_openai.configure(reply=scripted_reply, latency_s=3.0)      # the job keeps writing for a while
    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    app = streamlit_app()
    started = gen_svc.start_generation(make_config(name="concurrent run"))
    contexts = [chromium.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    first, second = (c.new_page() for c in contexts)
    try:
        clis = [_cli("endpoints", "add", f"cli{i}", fake_openai.base_url, "fake-model") for i in range(3)]
        clis += [_cli("generations", "list", "--json") for _ in range(2)]
        job_states = []
        for round_ in range(3):                                       # both sessions act while the job runs
            job_states.append(gen_svc.get_run(started.run_id).summary.status)
            _add_seeds(first, app.url, f"browser one {round_}", f"Task A{round_} one.\nTask A{round_} two.")
            _add_seeds(second, app.url, f"browser two {round_}", f"Task B{round_}.")
            second.goto(f"{app.url}/")
            second.get_by_role("heading", name="the studio").wait_for()
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in clis]
        run = wait_for(lambda: (r := gen_svc.get_run(started.run_id).summary).status not in ("queued", "running") and r,
                       "the generation job", timeout=180, every=0.5)
        for page in (first, second):
            assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
    finally:
        for context in contexts:
            context.close()
    assert "running" in job_states, job_states                         # they really overlapped
    assert all(code == 0 for code, _, _ in outcomes), outcomes
    assert not [err for _, _, err in outcomes if any(w in err for w in LOCK_WORDS)], outcomes
    assert run.status == "succeeded", (run.status, run.message)
    sets = {s.name: s for s in seeds_svc.list_seed_sets()}
    for round_ in range(3):
        assert sets[f"browser one {round_}"].seeds == 2 and sets[f"browser two {round_}"].seeds == 1
    assert {f"cli{i}" for i in range(3)} <= {e.name for e in models_svc.list_endpoints()}
    assert "lock" not in app.log().lower()
