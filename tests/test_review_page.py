"""AppTests for the Review page: no Argilla, then a real round with answers, a push job from the form."""

from __future__ import annotations

import time
import uuid

import httpx
from streamlit.testing.v1 import AppTest

from pipelines.review.push import PushRequest
from storage import review as store
from storage.pairs import insert_preference_pairs
from studio import jobs
from studio.services import review
from tests.apptest_helpers import texts, widget
from tests.fixtures.core import REPO_ROOT

PAGE = REPO_ROOT / "pages" / "review.py"


def run_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _pairs(db, n: int) -> None:
    insert_preference_pairs(db, [{"id": f"pp{i}", "run_id": "gen1", "prompt": f"Question {i}?", "chosen": f"good {i}",
                                  "rejected": f"bad {i}", "chosen_model": "m1", "rejected_model": "m2",
                                  "judge_model": "judge-1", "swap_agreement": True, "confidence": 0.2 + i / 10}
                                 for i in range(n)])


def test_page_without_argilla_says_how_to_start_it(studio_home, monkeypatch):
    monkeypatch.delenv("STUDIO_ARGILLA_URL", raising=False)
    at = run_page()
    assert "python -m studio up" in texts(at)
    assert "Nothing under review yet" in texts(at)
    assert widget(at.button, "Pull reviews now").disabled


def test_page_shows_rounds_agreement_and_disagreements_and_pushes_in_the_background(studio_home, db, argilla_env):
    _pairs(db, 4)
    name = f"page-{uuid.uuid4().hex[:8]}"
    result = review.push_for_review(PushRequest(dataset_name=name, limit=2))
    key = argilla_env.create_user(f"dora_{uuid.uuid4().hex[:6]}", "password123")
    with db.session() as cur:
        record_id, argilla_id, swapped = cur.execute(
            "SELECT record_id, argilla_record_id, order_swapped FROM review_records WHERE round_id = ? "
            "ORDER BY priority LIMIT 1", [result.round_id]).fetchone()
    rejected_letter = "a" if swapped else "b"   # the reviewer prefers the judge's rejected response
    httpx.post(f"{argilla_env.url}/api/v1/records/{argilla_id}/responses", headers={"X-Argilla-Api-Key": key},
               json={"values": {"preferred": {"value": rejected_letter}, "rationale": {"value": "B is right"}},
                     "status": "submitted"}, timeout=30)
    review.pull_reviews()

    at = run_page()
    shown = texts(at)
    assert "Argilla (external)" in shown and argilla_env.url in shown
    (table,) = [d.value for d in at.dataframe if "dataset" in d.value.columns]
    row = table[table["dataset"] == name].iloc[0]
    assert (row["pushed"], row["answers"], row["human-reviewed"]) == (2, 1, 1)
    assert row["open in Argilla"].startswith(argilla_env.url)
    assert [m.value for m in at.metric if m.label == "Human vs judge agreement"] == ["0%"]
    (dis,) = [d.value for d in at.dataframe if "judge" in d.value.columns and "people" in d.value.columns]
    assert (dis.iloc[0]["record"], dis.iloc[0]["people"], dis.iloc[0]["why"]) == (record_id, "rejected", "B is right")

    widget(at.text_input, "Argilla dataset").input(name)
    widget(at.number_input, "At most this many records").set_value(4)
    at.button[[b.label for b in at.button].index("Push for review")].click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = jobs.list_jobs(kind=review.PUSH_JOB)
    deadline = time.monotonic() + 120
    while jobs.get_job(job.id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    finished = jobs.get_job(job.id)
    assert finished.status == "succeeded", finished.error
    assert store.round_counts(db)[result.round_id]["pushed"] == 4
