"""Through a real browser: type seeds, start a run on the Generate page, and see pairs appear.

The app runs as `streamlit run studio/app.py` with its own STUDIO_HOME; its only endpoint is the
fake OpenAI server on loopback with scripted replies (tests/generate_script.py), so the run is
real (a background job, real HTTP, DuckDB) and quick. Headless Chromium clicks through the page
like a user; screenshots of each step land in the test's tmp dir for a human to look at.
"""

from __future__ import annotations

import pytest

from studio.services import generate as gen_svc
from studio.services import models as models_svc
from tests.generate_script import scripted_reply

pytestmark = pytest.mark.timeout(300)
RUN_TIMEOUT_MS = 120_000


def test_type_seeds_start_a_run_and_see_pairs(fake_openai, streamlit_app, browser_page, tmp_path):
    fake_openai.configure(reply=scripted_reply)
    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    app = streamlit_app()
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2400})  # Streamlit scrolls inside the page: tall shots
    shots = tmp_path / "screenshots"
    shots.mkdir()

    page.goto(f"{app.url}/generate")
    page.get_by_role("heading", name="Generate").wait_for()
    page.get_by_text("No seeds yet").wait_for()
    page.get_by_label("Seed tasks").fill("Explain what a hash map is.\nWrite a limerick about a cat.")
    page.get_by_label("Seed set name (optional)").fill("browser seeds")
    page.get_by_role("button", name="Add seeds").click()
    page.get_by_text("Imported 2 seeds into browser seeds").wait_for()
    page.screenshot(path=str(shots / "1-seeds.png"), full_page=True)

    page.get_by_role("tab", name="Configure & run").click()
    page.wait_for_url("**/generate?tab=Configure*")
    assert page.get_by_role("combobox", name="Seeds").input_value().startswith("browser seeds (seedset_")
    page.get_by_text("2 seeds · typed").wait_for()
    page.get_by_label("Run name").fill("browser run")
    page.get_by_label("Run name").press("Enter")
    page.screenshot(path=str(shots / "2-configure.png"), full_page=True)
    page.get_by_role("button", name="Start generation").click()
    page.get_by_text("in the background").wait_for()
    page.get_by_text("generate browser run finished.").wait_for(timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.screenshot(path=str(shots / "3-finished.png"), full_page=True)

    (run,) = gen_svc.list_runs()
    assert run.status == "succeeded", (run.status, run.message, run.errors)
    page.get_by_role("tab", name="Results").click()
    results = page.get_by_role("tabpanel", name="Results")
    results.get_by_text("Page 1 of 1").wait_for()
    results.get_by_text(f"{run.counts['preference_pairs']} in all").wait_for()
    lineage = results.get_by_test_id("stExpander").filter(has_text="Lineage of one pair")
    lineage.get_by_text("chosen", exact=True).wait_for()
    lineage.get_by_test_id("stText").filter(has_text="Answer variant 1").first.wait_for()
    lineage.get_by_test_id("stCode").filter(has_text='"helpfulness": 4').first.wait_for()  # the judge's raw reply (listwise: one reply for both candidates)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.screenshot(path=str(shots / "4-results.png"), full_page=True)
    assert results.get_by_test_id("stDataFrame").first.is_visible()
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
