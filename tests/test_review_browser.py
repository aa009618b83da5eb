"""Through a real browser: review in Argilla's own web UI by clicking, then pull it on the Review page.

Pairs are pushed to the session's real embedded Argilla (tests/fixtures/argilla.py) through the
service; an annotator created for the test logs into Argilla's UI in headless Chromium, sees the
LLM judge's labels pre-filled as suggestions, overrules the judge by clicking and submits. Then the
studio's Review page (the real `streamlit run` app on the same STUDIO_HOME and Argilla) pulls and
shows the reviewed record and the disagreement. Screenshots of each step are test artifacts.
"""

from __future__ import annotations

import json
import uuid

import pytest

from pipelines.review.push import PushRequest
from storage.pairs import insert_preference_pairs
from studio.services import review as review_svc
from tests.fixtures.browser import argilla_overrule_judge, argilla_sign_in, wait_until_idle

pytestmark = pytest.mark.timeout(300)
PULL_TIMEOUT_MS = 120_000


def _pairs(db, n: int) -> None:
    insert_preference_pairs(db, [{
        "id": f"pp{i}", "run_id": "gen1", "prompt": f"Question {i}: what is {i} + {i}?", "chosen": f"It is {2 * i}.",
        "rejected": f"It is {2 * i + 1}.", "chosen_model": "m1", "rejected_model": "m2", "judge_model": "judge-1",
        "chosen_score": 4.0, "rejected_score": 2.0, "swap_agreement": True, "confidence": 0.3 + i / 10}
        for i in range(n)])


def test_review_in_argillas_ui_by_clicking_then_pull_on_the_review_page(
        studio_home, db, argilla_env, streamlit_app, browser_page, screenshots):
    _pairs(db, 2)
    name = f"browser-{uuid.uuid4().hex[:8]}"
    pushed = review_svc.push_for_review(PushRequest(dataset_name=name, limit=2))
    assert pushed.sent == 2
    reviewer = f"rita_{uuid.uuid4().hex[:6]}"
    argilla_env.create_user(reviewer, "password123")
    page = browser_page

    argilla_sign_in(page, argilla_env.url, reviewer, "password123")
    page.get_by_text(name).first.click()
    page.wait_for_url("**/annotation-mode**")
    page.get_by_text("Which response is better?").wait_for()
    page.get_by_text("Question", exact=False).first.wait_for()
    screenshots.take(page, "argilla-suggestion-prefilled")
    picked = argilla_overrule_judge(page, rating=5)
    screenshots.take(page, "argilla-answered")
    page.get_by_role("button", name="Submit").click()
    page.locator(".status-counter").filter(has_text="submitted").get_by_text("1", exact=True).wait_for()
    screenshots.take(page, "argilla-submitted")

    app = streamlit_app()
    page.set_viewport_size({"width": 1400, "height": 2000})  # Streamlit scrolls inside the page: a tall shot
    page.goto(f"{app.url}/review")
    page.get_by_role("heading", name="Review", exact=True).wait_for()
    page.get_by_text("Argilla (external)").wait_for()
    wait_until_idle(page)
    screenshots.take(page, "review-before-pull")
    page.get_by_role("button", name="Pull reviews now").click()
    page.get_by_text("pull reviews finished.").wait_for(timeout=PULL_TIMEOUT_MS)
    reviewed = page.get_by_test_id("stMetric").filter(has_text="Human-reviewed records")
    reviewed.get_by_test_id("stMetricValue").filter(has_text="1").wait_for()
    agreement = page.get_by_test_id("stMetric").filter(has_text="Human vs judge agreement")
    assert agreement.get_by_test_id("stMetricValue").inner_text() == "0%"     # the reviewer overruled the judge
    wait_until_idle(page)
    screenshots.take(page, "review-after-pull")
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]

    (status,) = [r for r in review_svc.review_status().rounds if r.round_id == pushed.round_id]
    assert (status.pushed, status.submitted, status.reviewed) == (2, 1, 1)
    (disagreement,) = review_svc.list_disagreements(pushed.round_id)
    assert (disagreement.judge_label, disagreement.human_label) == ("chosen", "rejected")
    with db.session() as cur:
        who, status_, answer = cur.execute(
            "SELECT reviewer, status, answer FROM review_responses WHERE round_id = ?", [pushed.round_id]).fetchone()
    answer = json.loads(answer)
    assert (who, status_, answer["preferred"], answer[f"rating_{picked}"]) == (reviewer, "submitted", picked, 5)
