"""A newcomer's first path, in a real browser, with the real embedded model and every default.

The studio is started the way the README starts it (`python -m studio up --detach`, the embedded
llama.cpp endpoint serving SmolLM2-135M-Instruct; Argilla is left out, review is optional on this
path). Then, as someone who has never used it: generate with the Generate page's defaults (its
example seeds, Self-Instruct, two candidates, the default judge), see pairs appear, freeze them into
a snapshot with the Train page's defaults, train the recipe the page proposes for 4 steps, and vote
in the arena on the run's automatic evaluation against its base. Each default must produce a
non-empty result; nothing is scripted. Slow (several minutes on 2 cores), and it runs in CI.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from core import settings
from studio.services import compare as compare_svc
from studio.services import generate as gen_svc
from studio.services import snapshots as snap_svc
from studio.services import training as train_svc
from tests.fixtures.browser import wait_until_idle
from tests.fixtures.models import link_pulled_into_home

pytestmark = pytest.mark.timeout(1800)
GENERATE_TIMEOUT_MS = 900_000
TRAIN_TIMEOUT_MS = 600_000
TALL = {"width": 1400, "height": 2400}


@pytest.fixture
def newcomer_studio(studio_home, pulled_smollm2):
    """`python -m studio up --detach --no-argilla` with the embedded model (linked from the session's
    pull, so `up` registers it instead of downloading it again); `down` at the end."""
    link_pulled_into_home(studio_home, pulled_smollm2)
    log = studio_home.parent / "up.log"

    def run(*args: str, timeout: float) -> None:
        with log.open("a") as out:
            done = subprocess.run([sys.executable, "-m", "studio", *args], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        assert done.returncode == 0, log.read_text()[-3000:]

    run("up", "--detach", "--no-argilla", timeout=600)
    yield SimpleNamespace(url=settings.current().app_url, log=lambda: log.read_text())
    run("down", timeout=120)


def _type(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_until_idle(page)


def _generate_with_the_defaults(page, app, shots) -> None:
    page.goto(f"{app.url}/generate?tab=Configure+%26+run")
    page.get_by_role("heading", name="Generate", exact=True).wait_for()
    page.get_by_role("button", name="Start generation").wait_for()
    wait_until_idle(page)
    shots.take(page, "generate-defaults")
    page.get_by_role("button", name="Start generation").click()
    page.get_by_text(re.compile(r"Started run \S+ in the background")).wait_for()
    page.get_by_text(re.compile(r"generate generation finished")).wait_for(timeout=GENERATE_TIMEOUT_MS)
    wait_until_idle(page)
    shots.take(page, "generate-finished")
    page.get_by_role("tab", name="Results").click()
    page.get_by_role("tabpanel", name="Results").get_by_text(re.compile(r"Page 1 of \d+")).wait_for()
    wait_until_idle(page)
    shots.take(page, "generate-pairs")


def _snapshot_with_the_defaults(page, app, shots) -> None:
    page.goto(f"{app.url}/train?tab=Data")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    wait_until_idle(page)           # a click while the page still reruns can be lost on a loaded machine
    page.get_by_role("button", name="Create snapshot").click()
    try:
        page.get_by_text(re.compile(r"Snapshot \S+ created\.")).wait_for(timeout=120_000)
    except Exception:
        shots.take(page, "train-snapshot-not-created")   # what the page showed instead, for the report
        raise
    wait_until_idle(page)
    shots.take(page, "train-snapshot")


def _train_the_proposed_recipe(page, shots) -> None:
    page.get_by_role("tab", name="New run").click()
    page.get_by_text("Effective batch").wait_for()
    _type(page, "max steps", "4")                     # the one change from the defaults: a short run
    wait_until_idle(page)
    shots.take(page, "train-new-run")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started run").wait_for()
    page.get_by_role("tab", name="Runs").click()
    page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^succeeded")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    wait_until_idle(page)
    shots.take(page, "train-succeeded")


def _wait_for_evaluation(run_id: str, timeout_s: float = 600.0):
    deadline, found = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        found = compare_svc.run_evaluation(run_id)
        if found is not None and found[0].status in ("ready", "partial", "stopped", "failed"):
            return found
        time.sleep(2)
    raise AssertionError(f"the evaluation of run {run_id} did not finish in {timeout_s:.0f} s: {found}")


def _vote(page, app, shots) -> None:
    page.goto(f"{app.url}/compare?tab=Arena")
    page.get_by_role("heading", name="Compare", exact=True).wait_for()
    page.get_by_text("Type your name above").wait_for()     # no OS user as a voter
    _type(page, "Your name", "newcomer")
    page.get_by_text("Answer A", exact=True).wait_for()
    shots.take(page, "compare-arena")
    page.get_by_role("button", name="A is better").click()
    page.get_by_text("A was").wait_for()
    wait_until_idle(page)
    shots.take(page, "compare-voted")


def test_a_newcomer_gets_pairs_a_model_and_a_comparison_with_the_defaults(newcomer_studio, browser_page,
                                                                           screenshots):
    app, page = newcomer_studio, browser_page
    page.set_viewport_size(TALL)

    _generate_with_the_defaults(page, app, screenshots)
    (run,) = gen_svc.list_runs()
    assert run.status == "succeeded", (run.status, run.message)
    assert run.counts["preference_pairs"] > 0, run.counts       # the default judge labels, on this machine

    _snapshot_with_the_defaults(page, app, screenshots)
    (snapshot,) = snap_svc.list_snapshots()
    assert snapshot.record_kind == "preference" and snapshot.n_train > 0, snapshot

    _train_the_proposed_recipe(page, screenshots)
    (trained,) = train_svc.list_runs()
    assert trained.status == "succeeded" and trained.recipe == "dpo" and trained.output_model, trained
    summary, board = _wait_for_evaluation(trained.id)
    assert summary.status == "ready" and summary.counts["outputs"] > 0, summary
    assert board.votes > 0, "the default evaluation judge voted"   # a judge that works here

    _vote(page, app, screenshots)
    human = compare_svc.leaderboard(comparison_id=summary.comparison_id, voter_kind="human", n_boot=20)
    assert human.votes == 1
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
