"""Reconcile rules, agreement numbers and request validation, against hand-computed values (no server).

The same five-record round is used throughout (votes already oriented to the pair: 'chosen' means
the judge's chosen response):
  r1 conf 0.1  alice chosen, bob chosen                -> chosen (agrees with the judge)
  r2 conf 0.3  alice rejected, bob rejected+correction, carol chosen -> rejected, corrected
  r3 conf 0.9  alice chosen, bob rejected              -> tie
  r4 conf 0.7  alice discarded, carol draft            -> no human label
  r5 conf 0.5  carol chosen                            -> chosen (majority), unreviewed under strict/2
  r6 conf 0.95 alice chosen, bob chosen                -> chosen
"""

from __future__ import annotations

import pytest

from pipelines.review.agreement import compute_agreement, krippendorff_alpha
from pipelines.review.dataset import agent_name, dataset_spec
from pipelines.review.push import PushRequest
from pipelines.review.reconcile import ReconcileRule, reconcile, vote_label
from core.errors import BadInput


def _record(n: int, conf: float, swapped: bool = False, chosen_model: str = "m1") -> dict:
    return {"review_record_id": f"r{n}", "record_id": f"pp{n}", "order_swapped": swapped, "confidence": conf,
            "chosen": f"chosen {n}", "rejected": f"rejected {n}", "chosen_model": chosen_model, "rejected_model": "m2",
            "chosen_response_id": f"c{n}", "rejected_response_id": f"x{n}", "prompt": f"prompt {n}"}


def _resp(who: str, status: str, shown: str | None, t: int = 0, **extra) -> dict:
    answer = {"preferred": shown, **extra} if shown else dict(extra)
    return {"reviewer": who, "status": status, "answer": answer, "responded_at": f"2026-01-01T00:00:{t:02d}"}


RECORDS = [_record(1, 0.1), _record(2, 0.3, swapped=True, chosen_model="m3"), _record(3, 0.9), _record(4, 0.7),
           _record(5, 0.5), _record(6, 0.95)]
# r2 is shown swapped: A is the pair's rejected response, so 'a' = rejected
RESPONSES = {
    "r1": [_resp("alice", "submitted", "a"), _resp("bob", "submitted", "a")],
    "r2": [_resp("alice", "submitted", "a", 1), _resp("bob", "submitted", "a", 2, corrected="a better answer"),
           _resp("carol", "submitted", "b", 3)],
    "r3": [_resp("alice", "submitted", "a"), _resp("bob", "submitted", "b")],
    "r4": [_resp("alice", "discarded", None), _resp("carol", "draft", "b")],
    "r5": [_resp("carol", "submitted", "a")],
    "r6": [_resp("alice", "submitted", "a"), _resp("bob", "submitted", "a")],
}


def _finals(rule: ReconcileRule) -> dict[str, dict]:
    return {f["record_id"]: f for f in reconcile("preference", RECORDS, RESPONSES, rule)}


def test_vote_label_undoes_the_ab_swap():
    assert vote_label("preference", {"preferred": "a"}, False) == "chosen"
    assert vote_label("preference", {"preferred": "a"}, True) == "rejected"
    assert vote_label("preference", {"preferred": "b"}, True) == "chosen"
    assert vote_label("preference", {"preferred": "both_bad"}, True) == "both_bad"
    assert vote_label("sft", {"verdict": "bad"}, None) == "bad"


def test_majority_rule_with_corrections_ties_and_discards():
    finals = _finals(ReconcileRule("majority", "keep_llm"))
    assert (finals["pp1"]["final_source"], finals["pp1"]["final_label"]["label"]) == ("human", "chosen")
    r2 = finals["pp2"]["final_label"]
    assert (r2["label"], r2["chosen"], r2["rejected"], r2["corrected"]) == ("rejected", "a better answer", "chosen 2", True)
    assert (r2["n_reviews"], r2["agreement"]) == (3, 0.6667)
    r3 = finals["pp3"]
    assert (r3["final_source"], r3["reviewed"], r3["final_label"]["label"], r3["final_label"]["tied"]) == \
        ("llm", False, "chosen", True)
    r4 = finals["pp4"]  # discarded and draft answers never count
    assert (r4["final_source"], r4["reviewed"], r4["final_label"]["n_reviews"]) == ("llm", False, 0)
    assert finals["pp5"]["reviewed"] and finals["pp5"]["final_label"]["label"] == "chosen"
    assert finals["pp1"]["final_rule"] == "majority/keep_llm"


def test_strict_rule_needs_min_submitted_and_mark_policy_marks_ties():
    finals = _finals(ReconcileRule("strict", "mark", min_submitted=2))
    assert not finals["pp5"]["reviewed"] and finals["pp5"]["final_source"] == "llm"
    assert finals["pp1"]["reviewed"]
    r3 = finals["pp3"]["final_label"]
    assert (r3["label"], r3["usable"], finals["pp3"]["final_source"]) == ("undecided", False, "human")


def test_agreement_numbers_match_hand_computed_values():
    aspects = {"c1": {"helpfulness": 5, "honesty": 3}, "x1": {"helpfulness": 2, "honesty": 4},
               "c2": {"helpfulness": 4}, "x2": {"helpfulness": 4}}
    agreement = compute_agreement("preference", RECORDS, RESPONSES, aspects)
    # records with a human majority: r1 (agree), r2 (disagree), r5 (agree), r6 (agree)
    assert agreement.overall == {"n": 4, "agree": 3, "rate": 0.75}
    assert agreement.per_model == {"m1": {"n": 3, "agree": 3, "rate": 1.0}, "m2": {"n": 4, "agree": 3, "rate": 0.75},
                                   "m3": {"n": 1, "agree": 0, "rate": 0.0}}
    # r1: helpfulness says chosen (human chosen: agree), honesty says rejected (disagree); r2: helpfulness tie vs rejected
    assert agreement.per_aspect == {"helpfulness": {"n": 2, "agree": 1, "rate": 0.5},
                                    "honesty": {"n": 1, "agree": 0, "rate": 0.0}}
    assert [(b["bucket"], b["n"], b["rate"], b["mean_confidence"]) for b in agreement.calibration] == [
        ("0.0-0.2", 1, 1.0, 0.1), ("0.2-0.4", 1, 0.0, 0.3), ("0.4-0.6", 1, 1.0, 0.5), ("0.8-1.0", 1, 1.0, 0.95)]
    # nominal alpha by hand: units r1 (c,c) r2 (r,r,c) r3 (c,r) r6 (c,c): o_cc=4 o_rr=1 o_cr=o_rc=2, n=9
    # D_o = 4/9, D_e = 2*6*3/(9*8) = 1/2, alpha = 1 - 8/9
    assert agreement.alpha == pytest.approx(1 - 8 / 9, abs=1e-4) and agreement.alpha_units == 4
    by_name = {r["reviewer"]: r for r in agreement.reviewers}
    assert by_name["alice"] == {"reviewer": "alice", "submitted": 4, "discarded": 1, "drafts": 0, "majority_n": 3,
                                "majority_rate": 1.0}
    assert by_name["carol"] == {"reviewer": "carol", "submitted": 2, "discarded": 0, "drafts": 1, "majority_n": 1,
                                "majority_rate": 0.0}


def test_alpha_is_undefined_without_overlap_and_one_when_everyone_agrees():
    assert krippendorff_alpha({"r1": {"a": "chosen"}}) == (None, 0)
    assert krippendorff_alpha({"r1": {"a": "chosen", "b": "chosen"}}) == (1.0, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "ranking"}, "not a review kind"),
    ({"limit": 0}, "limit=0 must be at least 1"),
    ({"min_submitted": 0}, "min_submitted=0 must be at least 1"),
    ({"batch_size": 501}, "batch_size=501 must be between 1 and 500"),
    ({"order": "random"}, "order='random' is unknown"),
    ({"min_confidence": 1.5}, "min_confidence=1.5 is outside 0-1"),
    ({"min_confidence": 0.8, "max_confidence": 0.2}, "is above max_confidence"),
    ({"dataset_name": "  "}, "dataset_name is empty"),
    ({"guidelines": "x" * 10_001}, "Argilla takes at most 10,000"),
])
def test_push_request_validation(kwargs, match):
    with pytest.raises(BadInput, match=match):
        PushRequest(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"rule": "unanimous"}, "Unknown reconcile rule 'unanimous'"),
    ({"tie_policy": "coin"}, "Unknown tie policy 'coin'"),
    ({"min_submitted": 0}, "min_submitted=0 must be at least 1"),
])
def test_reconcile_rule_validation(kwargs, match):
    with pytest.raises(BadInput, match=match):
        ReconcileRule(**kwargs)


def test_dataset_spec_per_kind_and_agent_names():
    assert dataset_spec("preference").question_names == ["preferred", "rating_a", "rating_b", "corrected", "rationale"]
    assert [f["name"] for f in dataset_spec("sft").fields] == ["prompt", "response"]
    assert [f["name"] for f in dataset_spec("instruction").fields] == ["prompt"]
    with pytest.raises(BadInput, match="Unknown review kind 'votes'"):
        dataset_spec("votes")
    assert agent_name("gpt-4o (openai)") == "gpt-4o _openai_"
    assert agent_name(None) == "judge"
