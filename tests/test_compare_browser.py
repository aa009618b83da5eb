"""Through a real browser: vote in the arena by clicking, see the names revealed and the leaderboard change.

The app runs as `streamlit run studio/app.py` with its own STUDIO_HOME holding a ready comparison of two
loopback endpoints (the fake OpenAI server answers differently per model), so the page, the vote and the
leaderboard go through real widgets, the real websocket and the real DuckDB file.
"""

from __future__ import annotations

import json

import pytest

from pipelines.compare.spec import ComparisonSpec
from studio.services import compare as compare_svc
from studio.services import models as models_svc

pytestmark = pytest.mark.timeout(300)


def test_vote_by_clicking_and_see_the_leaderboard_change(fake_openai, streamlit_app, browser_page, tmp_path):
    fake_openai.configure(reply=lambda req: f"An answer from {req['model']}.")
    models_svc.add_endpoint("left", fake_openai.base_url, "left-model", max_retries=0, timeout_s=10)
    models_svc.add_endpoint("right", fake_openai.base_url, "right-model", max_retries=0, timeout_s=10)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Say hi.", "Name a fruit.")))
    created = compare_svc.create_comparison(ComparisonSpec(
        models=("endpoint:left", "endpoint:right"), prompt_source="upload", prompt_source_id=str(path),
        name="left vs right"), background=False)
    assert compare_svc.run_comparison(created.comparison_id).status == "ready"
    app = streamlit_app()
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()

    page.goto(f"{app.url}/compare?tab=Leaderboard")
    page.get_by_role("heading", name="Compare").wait_for()
    page.get_by_text("No votes yet").wait_for()

    page.get_by_role("tab", name="Arena").click()
    page.get_by_role("textbox", name="Your name").fill("ann")
    page.get_by_role("textbox", name="Your name").press("Enter")
    page.get_by_text("Answer A", exact=True).wait_for()
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    assert not page.get_by_text("endpoint:left").count()            # names hidden before the vote
    page.screenshot(path=str(shots / "1-arena.png"), full_page=True)
    page.get_by_role("button", name="A is better").click()
    revealed = page.get_by_text("A was").inner_text()                # "A was endpoint:x, B was endpoint:y."
    winner = revealed.split("A was ", 1)[1].split(",", 1)[0].strip()
    assert winner in ("endpoint:left", "endpoint:right"), revealed
    page.screenshot(path=str(shots / "2-revealed.png"), full_page=True)

    page.get_by_role("tab", name="Leaderboard").click()
    page.get_by_text("1 votes").wait_for()
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for()
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.screenshot(path=str(shots / "3-leaderboard.png"), full_page=True)
    board = compare_svc.leaderboard(comparison_id=created.comparison_id)
    assert board.votes == 1 and board.ratings[0].model == winner
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
