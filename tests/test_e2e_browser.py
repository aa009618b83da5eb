"""The whole loop in a real browser, from an empty STUDIO_HOME: generate → review in Argilla → train → compare.

The studio is started the way the README starts it (`python -m studio up --detach`; without the
embedded LLM, which the scripted endpoint replaces, and with the session's Argilla connected as an
external one), and headless Chromium drives every step through the pages:
the Generate page runs against a loopback OpenAI-compatible endpoint with scripted replies (fast and
deterministic), the Review page pushes to the session's real embedded Argilla, a reviewer logs into
Argilla's own UI and submits reviews by clicking, the Review page pulls them, the Train page freezes
a snapshot and trains DPO on the tiny 2-layer Llama (CPU) with live curves, and the run's automatic
evaluation against its base is voted on in the Compare page's arena until the leaderboard shows both.
Only the registry entries (the endpoint, the tiny model) and the Argilla reviewer are set up outside
the browser. Screenshots of every step are saved as test artifacts.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import pytest

from core import settings
from studio import lifecycle
from studio.services import compare as compare_svc
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import review as review_svc
from studio.services import snapshots as snap_svc
from studio.services import training as train_svc
from tests.fixtures.browser import argilla_overrule_judge, argilla_sign_in, wait_until_idle
from tests.generate_script import scripted_reply

pytestmark = pytest.mark.timeout(600)
JOB_TIMEOUT_MS = 180_000
SEEDS = ["Explain what a hash map is.", "Write a limerick about a cat.", "Name three prime numbers.",
         "Summarise the plot of Hamlet.", "Describe how a bicycle works.", "Give a tip for learning Python."]
TALL = {"width": 1400, "height": 2400}   # Streamlit scrolls inside the page: tall viewports for full shots
WIDE = {"width": 1400, "height": 1000}


def _select(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option).click()
    wait_until_idle(page)


def _type(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_until_idle(page)


def _generate(page, app, shots) -> None:
    page.goto(f"{app.url}/generate")
    page.get_by_role("heading", name="Generate", exact=True).wait_for()
    page.get_by_label("Seed tasks").fill("\n".join(SEEDS))
    page.get_by_label("Seed set name (optional)").fill("e2e seeds")
    page.get_by_role("button", name="Add seeds").click()
    page.get_by_text("Imported 6 seeds into e2e seeds").wait_for()
    page.get_by_role("tab", name="Configure & run").click()
    page.get_by_text("6 seeds · typed").wait_for()
    _type(page, "Run name", "e2e run")
    shots.take(page, "generate-configure")
    page.get_by_role("button", name="Start generation").click()
    page.get_by_text("generate e2e run finished.").wait_for(timeout=JOB_TIMEOUT_MS)
    page.get_by_role("tab", name="Results").click()
    page.get_by_role("tabpanel", name="Results").get_by_text("Page 1 of 1").wait_for()
    wait_until_idle(page)
    shots.take(page, "generate-pairs")


def _push(page, app, dataset: str, shots) -> None:
    page.goto(f"{app.url}/review")
    page.get_by_role("heading", name="Review", exact=True).wait_for()
    page.get_by_text("Nothing under review yet").wait_for()
    page.get_by_label("Argilla dataset").fill(dataset)
    page.get_by_role("button", name="Push for review").click()
    page.get_by_text(f"push {dataset} for review finished.").wait_for(timeout=JOB_TIMEOUT_MS)
    wait_until_idle(page)
    shots.take(page, "review-pushed")


def _review_in_argilla(page, url: str, reviewer: str, dataset: str, n: int, shots) -> list[str]:
    page.set_viewport_size(WIDE)
    argilla_sign_in(page, url, reviewer, "password123")
    page.get_by_text(dataset).first.click()
    page.wait_for_url("**/annotation-mode**")
    shots.take(page, "argilla-suggestion-prefilled")
    picked = []
    for i in range(1, n + 1):
        picked.append(argilla_overrule_judge(page, rating=5))
        if i == 1:
            shots.take(page, "argilla-answered")
        page.get_by_role("button", name="Submit").click()
        page.locator(".status-counter").filter(has_text="submitted").get_by_text(str(i), exact=True).wait_for()
    shots.take(page, "argilla-submitted")
    page.set_viewport_size(TALL)
    return picked


def _pull(page, app, shots) -> None:
    page.goto(f"{app.url}/review")
    page.get_by_role("button", name="Pull reviews now").click()
    page.get_by_text("pull reviews finished.").wait_for(timeout=JOB_TIMEOUT_MS)
    reviewed = page.get_by_test_id("stMetric").filter(has_text="Human-reviewed records")
    reviewed.get_by_test_id("stMetricValue").filter(has_text="2").wait_for()
    wait_until_idle(page)
    shots.take(page, "review-pulled")


def _snapshot(page, app, shots) -> None:
    page.goto(f"{app.url}/train?tab=Data")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    page.get_by_text("No snapshots yet").wait_for()
    _type(page, "Snapshot name", "e2e")
    _type(page, "Eval fraction", "0.25")
    page.get_by_role("button", name="Create snapshot").click()
    page.get_by_text(re.compile(r"Snapshot \S+ created\.")).wait_for()
    wait_until_idle(page)
    shots.take(page, "train-snapshot")


def _train(page, shots) -> None:
    page.get_by_role("tab", name="New run").click()
    page.get_by_text("Effective batch").wait_for()
    _type(page, "Run name", "e2e-dpo")
    _select(page, "Recipe", "dpo: dpo")
    for label, value in (("max steps", "6"), ("max length", "64")):
        _type(page, label, value)
    shots.take(page, "train-new-run")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started run").wait_for()
    page.get_by_role("tab", name="Runs").click()
    page.get_by_text("loss", exact=True).wait_for(timeout=JOB_TIMEOUT_MS)       # the live curve
    page.get_by_test_id("stVegaLiteChart").first.wait_for()
    shots.take(page, "train-live-curve")
    page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^succeeded")).wait_for(timeout=JOB_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel").and_(page.locator("[disabled]")).wait_for()  # the page caught up
    wait_until_idle(page)
    shots.take(page, "train-succeeded")


def _see_evaluation(page, run_id: str, shots):
    """The run's automatic comparison with its base, shown on the run once it is ready."""
    evaluation = _wait_for_evaluation(run_id)
    page.reload()
    page.get_by_text("Evaluation against the base").wait_for()
    wait_until_idle(page)
    shots.take(page, "train-evaluation")
    return evaluation


def _wait_for_evaluation(run_id: str, timeout_s: float = 180.0):
    deadline, found = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        found = compare_svc.run_evaluation(run_id)
        if found is not None and found[0].status in ("ready", "partial", "stopped", "failed"):
            return found[0]
        time.sleep(1)
    raise AssertionError(f"the evaluation of run {run_id} did not finish in {timeout_s:.0f} s: {found}")


def _compare(page, app, shots) -> None:
    page.goto(f"{app.url}/compare?tab=Arena")
    page.get_by_role("heading", name="Compare", exact=True).wait_for()
    _type(page, "Your name", "ann")
    page.get_by_text("Answer A", exact=True).wait_for()
    shots.take(page, "compare-arena")
    page.get_by_role("button", name="A is better").click()
    page.get_by_text("A was").wait_for()
    page.get_by_role("tab", name="Leaderboard").click()
    page.get_by_text("votes ·").first.wait_for()       # the judge's votes on the evaluation count too
    _select(page, "Votes of", "People")
    page.get_by_text("1 votes").wait_for()
    page.get_by_test_id("stDataFrame").first.wait_for()
    wait_until_idle(page)
    shots.take(page, "compare-leaderboard")


@pytest.fixture
def studio_up(studio_home, argilla_env):
    """`python -m studio up --detach --no-llm` in this STUDIO_HOME; `down` at the end."""
    log = studio_home.parent / "up.log"

    def run(*args: str, timeout: float) -> None:
        with log.open("a") as out:
            done = subprocess.run([sys.executable, "-m", "studio", *args], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        assert done.returncode == 0, log.read_text()[-3000:]

    def start() -> SimpleNamespace:
        run("up", "--detach", "--no-llm", timeout=240)
        return SimpleNamespace(url=lifecycle.app_url(settings.current()), log=lambda: log.read_text())

    yield start
    run("down", timeout=120)


def test_the_whole_loop_in_a_browser(studio_home, argilla_env, fake_openai, tiny_model_dir, studio_up,
                                     browser_page, screenshots):
    fake_openai.configure(reply=scripted_reply)
    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    models_svc.add_model(str(tiny_model_dir), name="tiny")
    reviewer = f"eve_{uuid.uuid4().hex[:6]}"
    argilla_env.create_user(reviewer, "password123")
    dataset = f"e2e-{uuid.uuid4().hex[:8]}"
    app = studio_up()
    page = browser_page
    page.set_viewport_size(TALL)

    _generate(page, app, screenshots)
    (gen_run,) = gen_svc.list_runs()
    assert gen_run.status == "succeeded" and gen_run.counts["preference_pairs"] >= 4, gen_run
    _push(page, app, dataset, screenshots)
    _review_in_argilla(page, argilla_env.url, reviewer, dataset, 2, screenshots)
    _pull(page, app, screenshots)
    (round_,) = review_svc.review_status().rounds
    assert (round_.submitted, round_.reviewed) == (2, 2)

    _snapshot(page, app, screenshots)
    (snapshot,) = snap_svc.list_snapshots()
    assert snapshot.n_train >= 2 and snapshot.n_eval >= 1, snapshot
    _train(page, screenshots)
    (run,) = train_svc.list_runs()
    assert run.status == "succeeded" and run.output_model, run
    evaluation = _see_evaluation(page, run.id, screenshots)
    assert evaluation.status == "ready", evaluation

    _compare(page, app, screenshots)
    board = compare_svc.leaderboard(comparison_id=evaluation.comparison_id, voter_kind="human")
    assert board.votes == 1
    assert {r.model for r in board.ratings} == {f"local:{run.output_model}", "local:tiny"}
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
