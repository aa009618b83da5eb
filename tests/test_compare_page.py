"""AppTests for the Compare page: empty state, pickers and their errors, side by side, arena voting
(names revealed after the vote) and the leaderboard."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from pipelines.compare.spec import ComparisonSpec
from studio.services import compare as compare_svc
from studio.services import models as models_svc
from tests.apptest_helpers import page_with_tab, rerun, texts, widget
from tests.fixtures.core import REPO_ROOT

COMPARE = REPO_ROOT / "pages" / "compare.py"
TIMEOUT_S = 60
pytestmark = pytest.mark.timeout(180)


def run_page(tab: str) -> AppTest:
    return page_with_tab(COMPARE, tab, TIMEOUT_S)


@pytest.fixture
def comparison(studio_home, fake_openai, tmp_path) -> str:
    """A ready comparison of two loopback endpoints on two prompts (their answers differ by model)."""
    # every answer stops at max_tokens (finish_reason 'length'), as a small model's often do
    fake_openai.configure(reply=lambda req: f"{req['model']} says: answer to {req['messages'][-1]['content']}",
                          finish_reason="length")
    models_svc.add_endpoint("left", fake_openai.base_url, "left-model", max_retries=0, timeout_s=10)
    models_svc.add_endpoint("right", fake_openai.base_url, "right-model", max_retries=0, timeout_s=10)
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Say hi."}) + "\n" + json.dumps({"prompt": "Count to three."}) + "\n")
    created = compare_svc.create_comparison(ComparisonSpec(
        models=("endpoint:left", "endpoint:right"), prompt_source="upload", prompt_source_id=str(path),
        name="left vs right"), background=False)
    assert compare_svc.run_comparison(created.comparison_id).status == "ready"
    return created.comparison_id


def test_empty_home_says_what_to_do(studio_home):
    assert "at least two models" in texts(run_page("New comparison"))
    assert "No comparisons yet" in texts(run_page("Side by side"))
    assert "No votes yet" in texts(run_page("Leaderboard"))


def test_start_with_a_bad_prompt_set_shows_the_error(comparison):
    at = run_page("New comparison")
    widget(at.multiselect, "Models (two or more)").set_value(["endpoint:left", "endpoint:right"])
    at.radio(key="cmp_source").set_value("snapshot_eval")
    rerun(at)
    widget(at.text_input, "Snapshot id").set_value("snap_missing")
    rerun(at)
    widget(at.button, "Start comparison").click()
    rerun(at)
    assert "no dataset snapshot 'snap_missing'" in texts(at)
    assert len(compare_svc.list_comparisons()) == 1


def test_side_by_side_shows_answers_in_columns_with_diff(comparison):
    at = run_page("Side by side")
    shown = texts(at)
    assert "2 prompts · 4 answers (4 cut off at the token limit, 0 with the prompt shortened to fit)" in shown
    assert "Prompt **1** of **2**" in shown and "cut off at the token limit" in " ".join(c.value for c in at.caption)
    assert "endpoint:left" in shown and "endpoint:right" in shown
    assert any("left-model says" in t.value for t in at.text)
    widget(at.toggle, "Table view").set_value(True)
    rerun(at)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 2
    widget(at.text_input, "Search prompts and answers").set_value("three")
    rerun(at)
    assert len(at.dataframe[0].value) == 1


def test_arena_vote_reveals_names_and_feeds_the_leaderboard(comparison):
    at = run_page("Arena")
    # no name, no pair: votes are per person, and the OS user ("root") is nobody's name
    assert widget(at.text_input, "Your name").value == "" and not [b for b in at.button if b.label == "A is better"]
    assert "Type your name above" in texts(at)
    widget(at.text_input, "Your name").set_value("ann")
    rerun(at)
    assert "endpoint:left" not in texts(at) and "endpoint:right" not in texts(at)   # names hidden until the vote
    widget(at.button, "A is better").click()
    rerun(at)
    assert "A was **endpoint:" in texts(at)
    board = compare_svc.leaderboard(comparison_id=comparison)
    assert board.votes == 1
    at = run_page("Leaderboard")
    assert "**1 votes**" in texts(at)
    ranks = at.dataframe[0].value
    assert list(ranks["model"]) and set(ranks["model"]) == {"endpoint:left", "endpoint:right"}


def test_a_rubric_judge_comes_with_its_documented_parameters(comparison):
    at = run_page("New comparison")
    at.radio(key="cmp_judge").set_value("rubric")
    at = rerun(at)
    # the default works on any prose answer; each parameter is a documented field, not free YAML
    assert at.selectbox(key="cmp_rubric").value == "answer_quality"
    assert "lose points" in widget(at.number_input, "min words").help
    at.selectbox(key="cmp_rubric").set_value("length")
    at = rerun(at)
    assert widget(at.number_input, "max words").value == 100 and not at.error   # a valid bound to start from
