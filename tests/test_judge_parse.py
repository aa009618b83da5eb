"""The tolerant judge parser: real replies of the embedded model, and hand-written tricky cases.

The real replies (tests/data/judge_outputs, see its README) are what SmolLM2-135M actually wrote
for the studio's judge prompts. Each reply has one expected outcome here: the few that carry a
usable verdict must parse to exactly these scores, every other one must be rejected (a guess would
turn noise into a label).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.judge.llm import ASPECTS
from pipelines.judge.parse import (JudgeParseError, json_objects, parse_label, parse_pairwise,
                                            parse_pointwise, parse_score)

DATA = Path(__file__).parent / "data" / "judge_outputs"


def _replies(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        out += [(f"{record['id']}/{key}", record[key]) for key in ("reply", "repair_reply") if key in record]
    return out


POINTWISE_REAL = _replies("smollm2_pointwise.jsonl") + _replies("smollm2_pointwise_example_prompt.jsonl")
PAIRWISE_REAL = _replies("smollm2_pairwise.jsonl")

# The real replies that carry scores, and what they say (read off the reply text by hand).
POINTWISE_EXPECTED = {
    "pw-t0-03/reply": {"helpfulness": 1, "honesty": 2, "instruction_following": 3},    # text, then JSON
    "pwex-t0-03/reply": {"honesty": 4, "instruction_following": 2},                    # "helpful" is no aspect
    "pwex-t08s1-01/reply": {"helpfulness": 3, "honesty": 4, "instruction_following": 2, "truthfulness": 5},  # fenced
    "pwex-t08s3-03/reply": {"helpfulness": 3, "honesty": 4, "instruction_following": 2},
    "pwex-t08s3-05/reply": {"helpfulness": 3, "honesty": 4},
}
# Rejections whose reason matters: the model wrote JSON, but not a verdict.
POINTWISE_REASONS = {
    "pw-t08s1-03/repair_reply": "'4-15' is not a score",               # ranges instead of scores
    "pw-t08s1-04/repair_reply": r"\[1\] is not a score",               # lists instead of scores
    "pw-t08s1-02/repair_reply": "no score for any of",                 # unrelated JSON
    "pw-t0-00/reply": "no JSON object",
}
PAIRWISE_REASONS = {
    "pair-t0-00/reply": "neither A, B nor a tie: winner='<A, B or tie>'",   # the format hint echoed
    "pair-t08s1-05/reply": "neither A, B nor a tie: winner='<A, B or tie>'",  # ... with a trailing comma
    "pair-t0-01/reply": "neither A, B nor a tie: winner=\"France's capital",  # the winner named by its text
    "pair-t0-06/reply": "neither A, B nor a tie: winner='17 \\+ 25 = 32. The other one is tie'",
    "pair-t08s2-04/reply": "winner='happy'",
    "pair-t08s1-01/reply": "no winner",                                  # prose: "answer A is better than B"
}


def test_the_real_replies_are_there_and_mostly_broken():
    assert len(POINTWISE_REAL) >= 40 and len(PAIRWISE_REAL) >= 30
    assert set(POINTWISE_EXPECTED) | set(POINTWISE_REASONS) <= {rid for rid, _ in POINTWISE_REAL}
    assert set(PAIRWISE_REASONS) <= {rid for rid, _ in PAIRWISE_REAL}


@pytest.mark.parametrize("rid,text", POINTWISE_REAL, ids=[rid for rid, _ in POINTWISE_REAL])
def test_real_pointwise_replies(rid, text):
    if rid in POINTWISE_EXPECTED:
        assert parse_pointwise(text, ASPECTS).aspect_scores == POINTWISE_EXPECTED[rid]
    else:
        with pytest.raises(JudgeParseError, match=POINTWISE_REASONS.get(rid)):
            parse_pointwise(text, ASPECTS)


@pytest.mark.parametrize("rid,text", PAIRWISE_REAL, ids=[rid for rid, _ in PAIRWISE_REAL])
def test_real_pairwise_replies_never_yield_a_guess(rid, text):
    # SmolLM2-135M never named a winner by letter: every reply must be rejected, with a reason.
    with pytest.raises(JudgeParseError, match=PAIRWISE_REASONS.get(rid)):
        parse_pairwise(text)


# -- hand-written pointwise cases ---------------------------------------------------------------------
FULL = {"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}


@pytest.mark.parametrize("text,scores,rationale", [
    ('{"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2, "rationale": "ok"}', FULL, "ok"),
    ('```json\n{"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}\n```', FULL, None),
    ('Sure! Here is my judgment:\n{"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}'
     "\nHope this helps.", FULL, None),
    ("{'helpfulness': 4, 'honesty': 5, 'instruction_following': 3, 'truthfulness': 2, 'reason': 'fine'}", FULL, "fine"),
    ('{"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2,}', FULL, None),
    ('{"helpfulness": "4", "honesty": "5/5", "instruction_following": "3 out of 5", "truthfulness": "2.0"}',
     {"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}, None),
    ('{"helpfulness": 4.5, "honesty": 1.49, "instruction_following": 2.5, "truthfulness": 4.2}',
     {"helpfulness": 5, "honesty": 1, "instruction_following": 3, "truthfulness": 4}, None),   # half up
    ('{"Helpfulness": 4, "HONESTY": 5, "Instruction Following": 3, "truthfulness ": 2}', FULL, None),
    ('{"helpfulness": 4, "honesty": 5, "instruction-following": 3, "Truth fulness": 2}', FULL, None),
    ('{"scores": {"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}, '
     '"explanation": "nested"}', FULL, "nested"),
    ('{"judgment": {"ratings": {"helpfulness": 4}}}', {"helpfulness": 4}, None),
    ('{"helpfulness": {"score": 4, "reason": "useful"}, "honesty": {"rating": "5"}}',
     {"helpfulness": 4, "honesty": 5}, "helpfulness: useful"),
    ('{"helpfulness": 4, "honesty": 5, "rationale": "The answer is corr', {"helpfulness": 4, "honesty": 5},
     "The answer is corr"),                                        # cut off by max_tokens
    ('Format: {"helpfulness": <1-5>, "rationale": "<text>"}\nMine: {"helpfulness": 2, "rationale": "thin"}',
     {"helpfulness": 2}, "thin"),                                  # the format hint echoed first
    ('He said "hi. {"helpfulness": 4}', {"helpfulness": 4}, None),  # a stray quote in the prose
    ('{"rationale": "uses {braces} and \\"quotes\\"", "honesty": 3}', {"honesty": 3}, 'uses {braces} and "quotes"'),
    ('{"helpfulness": 4, "honesty": null, "truthfulness": ""}', {"helpfulness": 4}, None),   # unscored = absent
    ('{"foo": 1} then {"honesty": 2}', {"honesty": 2}, None),
    ('{helpfulness: 4, honesty: 5}', {"helpfulness": 4, "honesty": 5}, None),                # unquoted keys
])
def test_pointwise_tolerates(text, scores, rationale):
    parsed = parse_pointwise(text, ASPECTS)
    assert parsed.aspect_scores == scores
    assert parsed.rationale == rationale


@pytest.mark.parametrize("text,reason", [
    ('{"helpfulness": 6}', "helpfulness: score 6 is outside 1-5"),
    ('{"helpfulness": 0, "honesty": 4}', "helpfulness: score 0 is outside 1-5"),
    ('{"honesty": -2}', "outside 1-5"),
    ('{"honesty": "8/10"}', "not on the 1-5 scale"),
    ('{"honesty": "excellent"}', "'excellent' is not a score"),
    ('{"honesty": true}', "True is not a score"),
    ('{"honesty": [4]}', r"\[4\] is not a score"),
    ('{"honesty": {"comment": "good"}}', "honesty: no score"),
    ('{"helpfulness": <1-5>}', "is not a score"),
    ('{"quality": 4, "rationale": "no aspect here"}', "no score for any of helpfulness"),
    ("The response is great, 5 stars.", "no JSON object"),
    ("", "no JSON object"),
])
def test_pointwise_rejects(text, reason):
    with pytest.raises(JudgeParseError, match=reason):
        parse_pointwise(text, ASPECTS)


def test_pointwise_reads_only_the_asked_aspects():
    parsed = parse_pointwise('{"helpfulness": 4, "honesty": 1, "clarity": 2}', ("clarity", "helpfulness"))
    assert parsed.aspect_scores == {"clarity": 2, "helpfulness": 4}


def test_score_values():
    assert parse_score(3, "x") == 3 and parse_score("3 points", "x") == 3 and parse_score(" 4.0 ", "x") == 4
    assert parse_score(None, "x") is None and parse_score("  ", "x") is None
    with pytest.raises(JudgeParseError, match="x: 'nan' is not a score"):
        parse_score("nan", "x")
    with pytest.raises(JudgeParseError, match="x: inf is not a score"):
        parse_score(float("inf"), "x")


def test_huge_reply_is_cut_not_scanned_forever():
    with pytest.raises(JudgeParseError):
        parse_pointwise("{" * 300_000 + '{"honesty": 4}', ASPECTS)
    with pytest.raises(JudgeParseError):
        parse_pointwise("[" * 5_000 + '{"honesty": 4' + "x" * 9_000, ASPECTS)
    # a long but sane reply still parses
    assert parse_pointwise("words " * 5_000 + '{"honesty": 4}', ASPECTS).aspect_scores == {"honesty": 4}
    assert json_objects('x {"a": 1} y {"a": 1}') == [{"a": 1}]


# -- hand-written pairwise cases ------------------------------------------------------------------------
@pytest.mark.parametrize("text,preferred", [
    ('{"winner": "A", "rationale": "more accurate"}', "a"),
    ('{"winner": "b"}', "b"),
    ('{"Winner": "Response A"}', "a"),
    ('{"preferred": "[[B]]"}', "b"),
    ('{"better": "Assistant B is better than assistant A"}', "b"),
    ('{"verdict": "response_a"}', "a"),
    ('{"winner": "ResponseB"}', "b"),
    ('{"winner": "tie"}', "tie"),
    ('{"winner": "Tie"}', "tie"),
    ('{"winner": "It\'s a tie"}', "tie"),
    ('{"winner": "a tie"}', "tie"),
    ('{"winner": "Neither"}', "tie"),
    ('{"winner": "both are equally good"}', "tie"),
    ('{"winner": "C"}', "tie"),
    ("```json\n{'better_response': 'B',}\n```", "b"),
    ('{"result": {"winner": "A"}}', "a"),
    ('{"Preferred Response": "Output (b)"}', "b"),
    ("After comparing both, my verdict: [[B]]", "b"),
    ("[[C]]", "tie"),
    ("[[A]] is better. Final verdict: [[A]]", "a"),
])
def test_pairwise_tolerates(text, preferred):
    assert parse_pairwise(text).preferred == preferred


def test_pairwise_rationale():
    assert parse_pairwise('{"winner": "A", "rationale": "B is wrong"}').rationale == "B is wrong"
    assert parse_pairwise('{"winner": "A"}').rationale is None


@pytest.mark.parametrize("text,reason", [
    ('{"winner": "<A, B or tie>", "rationale": "<one or two sentences>"}', "neither A, B nor a tie"),
    ('{"winner": "A or B"}', "neither A, B nor a tie"),
    ('{"winner": "A, B"}', "neither A, B nor a tie"),
    ('{"winner": 1}', "neither A, B nor a tie: winner=1"),
    ('{"winner": "The first one, since the other one is not a tie at all"}', "neither A, B nor a tie"),
    ("[[A]] no wait [[B]]", "more than one verdict"),
    ("Response A is better.", "no winner"),
    ('{"rationale": "A is better"}', "no winner"),
])
def test_pairwise_rejects(text, reason):
    with pytest.raises(JudgeParseError, match=reason):
        parse_pairwise(text)


def test_label_values_that_are_not_text():
    assert parse_label(None) is None and parse_label(["A"]) is None and parse_label("") is None
