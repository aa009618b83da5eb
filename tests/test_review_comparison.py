"""A comparison reviewed in the real embedded Argilla: its model pairs go out blind (random order,
model names hidden from annotators, the judge's vote as the suggestion), each submitted answer comes
back as one human vote in the leaderboard, and an answer deleted in Argilla takes its vote with it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from pipelines.compare.spec import ComparisonSpec
from pipelines.review.client import ArgillaClient
from storage import review as review_store
from studio import jobs
from studio.cli import main
from studio.services import compare as compare_svc
from studio.services import models as models_svc
from studio.services import review
from tests.apptest_helpers import page_with_tab, rerun, texts, widget
from tests.fixtures.core import REPO_ROOT, wait_for
from tests.test_review_argilla import _records

pytestmark = pytest.mark.timeout(240)
GOOD = "endpoint:good"


@pytest.fixture(scope="module")
def voters(argilla_server):
    suffix = uuid.uuid4().hex[:6]
    return {who: argilla_server.create_user(f"{who}_{suffix}", "password123") for who in ("alice", "bob")}


def _comparison(fake_openai, tmp_path) -> str:
    """Three models on two prompts (6 pairs), judged by the reference_match rubric: good wins its pairs."""
    fake_openai.configure(reply=lambda req: "blue" if req["model"] == "good-model" else f"not {req['model']}")
    for name in ("good", "meh", "bad"):
        models_svc.add_endpoint(name, fake_openai.base_url, f"{name}-model", max_retries=0, timeout_s=10)
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Colour of the sky, take {i}?", "answer": "blue"}) + "\n"
                            for i in range(2)))
    created = compare_svc.create_comparison(ComparisonSpec(
        models=(GOOD, "endpoint:meh", "endpoint:bad"), prompt_source="upload", prompt_source_id=str(path),
        reference_column="answer", judge={"kind": "rubric", "rubric": "reference_match"}), background=False)
    compare_svc.run_comparison(created.comparison_id)
    assert compare_svc.get_comparison(created.comparison_id).counts["judge_votes"] == 6
    return created.comparison_id


def _answer(server, key: str, record: dict, winner_model: str | None, status: str = "submitted") -> str:
    """Vote for ``winner_model``'s answer (None: both bad) as shown in Argilla; returns the response id."""
    if winner_model is None:
        value = "both_bad"
    else:
        source_side = "a" if record["chosen_model"] == winner_model else "b"
        value = source_side if not record["order_swapped"] else {"a": "b", "b": "a"}[source_side]
    response = httpx.post(f"{server.url}/api/v1/records/{record['argilla_record_id']}/responses",
                          headers={"X-Argilla-Api-Key": key},
                          json={"values": {"preferred": {"value": value}}, "status": status}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _human_votes(db, comparison_id: str) -> list[dict]:
    with db.session() as cur:
        cur.execute("SELECT model_a, model_b, winner, voter, order_swapped FROM votes "
                    "WHERE comparison_id = ? AND voter_kind = 'human' ORDER BY ALL", [comparison_id])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def test_a_comparison_reviewed_in_argilla_becomes_human_votes(studio_home, db, argilla_env, voters, fake_openai,
                                                             tmp_path):
    comparison_id = _comparison(fake_openai, tmp_path)
    name = f"cmp-{uuid.uuid4().hex[:8]}"
    pushed = review.push_for_review(review.PushRequest(kind="comparison", run_id=comparison_id, dataset_name=name))
    assert (pushed.selected, pushed.sent) == (6, 6)
    assert review.push_for_review(review.PushRequest(kind="comparison", run_id=comparison_id,
                                                     dataset_name=name)).sent == 0

    # what Argilla holds: blind records with the judge's vote as the suggestion, in a random order
    round_row = next(r for r in review.review_status().rounds if r.round_id == pushed.round_id)
    dataset_id = review_store.get_round(db, pushed.round_id)["argilla_dataset_id"]
    conn = argilla_env.connection
    with ArgillaClient(conn.url, conn.api_key) as client:
        meta = client.items(dataset_id, "metadata-properties")
        listed = [r for page in client.iter_record_pages(dataset_id, include="suggestions") for r in page]
    assert {m["name"]: m["visible_for_annotators"] for m in meta} == \
        {"model_a": False, "model_b": False, "length_diff": True}
    assert len(listed) == 6 and round_row.kind == "comparison"
    for item in listed:
        (suggestion,) = item["suggestions"]
        good_slot = "a" if item["metadata"]["model_a"] == GOOD else "b" if item["metadata"]["model_b"] == GOOD else None
        assert suggestion["value"] == (good_slot or "both_bad") and suggestion["agent"] == "rubric:reference_match"
    assert {item["fields"]["response_a"][:3] for item in listed} <= {"blu", "not"}

    # alice votes as the judge did (good when it is there, else both bad) on all pairs but one; on that one
    # bob alone disagrees with the judge
    records = list(_records(db, pushed.round_id).values())
    with db.session() as cur:
        models = {r[0]: (r[1], r[2]) for r in cur.execute(
            "SELECT a.id || '~' || b.id, a.model_id, b.model_id FROM comparison_outputs a JOIN comparison_outputs b "
            "ON a.prompt_id = b.prompt_id AND a.model_id < b.model_id").fetchall()}
    for record in records:
        record["chosen_model"], record["rejected_model"] = models[record["record_id"]]
    alice, bob = voters["alice"], voters["bob"]
    against = next(r for r in records if GOOD in models[r["record_id"]])
    for record in records:
        if record is not against:
            _answer(argilla_env, alice, record, GOOD if GOOD in models[record["record_id"]] else None)
    other = next(m for m in models[against["record_id"]] if m != GOOD)
    bob_response = _answer(argilla_env, bob, against, other)

    (pulled,) = review.pull_reviews().rounds
    assert (pulled.new, pulled.votes) == (6, 6)
    votes = _human_votes(db, comparison_id)
    assert len(votes) == 6 and {v["voter"].split("_")[0] for v in votes} == {"alice", "bob"}
    for v in votes:  # stored as shown: the winner's slot names the model the voter picked
        won = {"a": v["model_a"], "b": v["model_b"]}.get(v["winner"])
        if v["voter"].startswith("alice"):
            assert won == (GOOD if GOOD in (v["model_a"], v["model_b"]) else None)
            assert v["winner"] in ("a", "b") if won else v["winner"] == "both_bad"
        else:
            assert won == other
    board = compare_svc.leaderboard(comparison_id, voter_kind="human", n_boot=20)
    assert board.votes == 6 and board.ratings[0].model == GOOD

    status = next(r for r in review.review_status().rounds if r.round_id == pushed.round_id)
    assert status.agreement["overall"] == {"n": 6, "agree": 5, "rate": pytest.approx(5 / 6, abs=1e-3)}
    (disagreement,) = review.list_disagreements(pushed.round_id)
    judge_side = "chosen" if models[against["record_id"]][0] == GOOD else "rejected"   # the record's a = chosen
    assert disagreement.record_id == against["record_id"] and disagreement.judge_label == judge_side

    # bob takes his answer back in Argilla: his vote leaves the leaderboard at the next pull
    deleted = httpx.delete(f"{argilla_env.url}/api/v1/responses/{bob_response}", headers={"X-Argilla-Api-Key": bob})
    assert deleted.status_code == 200, deleted.text
    (again,) = review.pull_reviews().rounds
    assert (again.deleted, again.votes) == (1, 5)
    assert len(_human_votes(db, comparison_id)) == 5
    assert main(["review", "push", "--kind", "comparison", "--run", comparison_id, "--dataset", name]) == 0


def test_the_compare_page_sends_a_comparison_to_argilla_and_pulls_its_votes(studio_home, db, argilla_env,
                                                                           fake_openai, tmp_path):
    comparison_id = _comparison(fake_openai, tmp_path)
    at = page_with_tab(REPO_ROOT / "pages" / "compare.py", "Arena", 60)
    widget(at.button, "Send to Argilla").click()
    rerun(at)
    assert f"Pushing to the Argilla dataset compare-{comparison_id}" in texts(at)

    def finished(kind: str):
        done = [j for j in jobs.list_jobs() if j.kind == kind and not j.active]
        return done and done[0]

    pushed = wait_for(lambda: finished(review.PUSH_JOB), "the push job", 120, 0.5)
    assert pushed.status == "succeeded", pushed.error
    (round_status,) = [r for r in review.review_status().rounds if r.name == f"compare-{comparison_id}"]
    assert (round_status.kind, round_status.pushed) == ("comparison", 6)
    widget(at.button, "Pull votes from Argilla").click()
    rerun(at)
    assert "Pulling in the background" in texts(at)
    pulled = wait_for(lambda: finished(review.PULL_JOB), "the pull job", 120, 0.5)
    assert pulled.status == "succeeded", pulled.error
