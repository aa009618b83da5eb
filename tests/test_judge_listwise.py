"""The listwise judge: one call rates every candidate of an instruction, in a seeded shuffled order,
with a reversed second call only for close calls; over real HTTP to the loopback server."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.generate.config import GenerationConfig
from pipelines.judge.llm import REPAIR_SEPARATOR, JudgeConfig, LLMJudge
from pipelines.judge.listwise import ListwiseItem, ListwiseJudge, shuffled_order, swap_agreement
from pipelines.judge.parse import JudgeParseError, parse_listwise
from core.errors import BadInput
from tests.test_judge import Script, backend_for, run

ASPECTS2 = ("helpfulness", "honesty")


def shown_texts(prompt: str) -> list[str]:
    return re.findall(r"\[CANDIDATE \d+\]\n(.*?)\n\[END CANDIDATE \d+\]", prompt, re.S)


def rate_by_text(scores: dict[str, int]):
    """A judge that scores each candidate by its text, wherever it is shown."""
    def answer(prompt: str, repair: bool) -> str:
        return json.dumps({"ratings": [{"candidate": n, "helpfulness": scores[t], "honesty": scores[t],
                                        "rationale": f"r-{t}"} for n, t in enumerate(shown_texts(prompt), 1)]})
    return answer


def judge_for(server, **config) -> tuple[ListwiseJudge, object]:
    backend = backend_for(server)
    return ListwiseJudge(LLMJudge(backend, JudgeConfig(mode="listwise", aspects=ASPECTS2, **config))), backend


# -- parsing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ('{"ratings": [{"candidate": 1, "helpfulness": 4, "honesty": 5, "rationale": "a"}, '
     '{"candidate": 2, "helpfulness": 2, "honesty": 3, "rationale": "b"}]}', [(4, 5), (2, 3)]),
    ('{"ratings": [{"candidate": "Candidate 2", "helpfulness": 1}, {"candidate": "1", "helpfulness": 5}]}',
     [(5, None), (1, None)]),                                                 # out of order, labelled by text
    ('```json\n[{"helpfulness": "4/5"}, {"helpfulness": 2.0, "honesty": 1}]\n```', [(4, None), (2, 1)]),  # bare array
    ('{"Candidate 1": {"helpfulness": 3}, "candidate_2": {"scores": {"honesty": 4}}}', [(3, None), (None, 4)]),
    ("Sure! {'results': [{'id': 1, 'helpfulness': 5,}, {'id': 2, 'helpfulness': 4}]}", [(5, None), (4, None)]),
])
def test_listwise_parser_tolerates(text, expected):
    parsed = parse_listwise(text, ASPECTS2, 2)
    assert [(s.get("helpfulness"), s.get("honesty")) for s in parsed.scores] == expected


@pytest.mark.parametrize("text,reason", [
    ("Both are good.", "no JSON object"),
    ('{"ratings": [{"candidate": 1, "helpfulness": 4}]}', "no score for candidate 2 of 2"),
    ('{"ratings": [{"candidate": 1, "helpfulness": 4}, {"candidate": 3, "helpfulness": 2}]}',
     "candidate 3 does not exist"),
    ('{"ratings": [{"candidate": 1, "helpfulness": 4}, {"candidate": 1, "helpfulness": 2}]}', "rated twice"),
    ('{"ratings": [{"candidate": 1, "helpfulness": 9}, {"candidate": 2, "helpfulness": 2}]}', "outside 1-5"),
    ('{"ratings": [{"candidate": 1, "helpfulness": "<1-5>"}, {"candidate": 2, "helpfulness": "<1-5>"}]}',
     "is not a score"),                                                        # the format hint echoed
])
def test_listwise_parser_rejects(text, reason):
    with pytest.raises(JudgeParseError, match=reason):
        parse_listwise(text, ASPECTS2, 2)


# -- order and swap ----------------------------------------------------------------------------------------
def test_shuffled_order_is_seeded_and_spread():
    assert shuffled_order("run:ins-1", 4) == shuffled_order("run:ins-1", 4)
    assert sorted(shuffled_order("run:ins-1", 4)) == [0, 1, 2, 3]
    firsts = {shuffled_order(f"run:ins-{i}", 2)[0] for i in range(20)}
    assert firsts == {0, 1}


def test_swap_agreement():
    assert swap_agreement({"a": 4, "b": 3}, {"a": 5, "b": 2}, "a", "b") is True
    assert swap_agreement({"a": 4, "b": 3}, {"a": 3, "b": 4}, "a", "b") is False
    assert swap_agreement({"a": 4, "b": 3}, {"a": 3, "b": 3}, "a", "b") is False
    assert swap_agreement({"a": 4, "b": 3}, None, "a", "b") is None
    assert swap_agreement({"a": 4, "b": 3}, {"a": None, "b": 3}, "a", "b") is None


def test_clear_call_is_one_call_and_scores_map_back_through_the_shuffle(fake_openai):
    script = Script(rate_by_text({"good": 5, "bad": 1, "meh": 3}))
    fake_openai.configure(reply=script)
    judge, backend = judge_for(fake_openai)
    items = [ListwiseItem(f"run:i{k}", f"Task {k}", [("r-good", "good"), ("r-bad", "bad"), ("r-meh", "meh")])
             for k in range(4)]
    out = run(backend, judge.ajudge(items))
    assert fake_openai.stats.requests == 4                                  # one call per instruction
    for item, j in zip(items, out):
        assert j.overall == {"r-good": 5.0, "r-bad": 1.0, "r-meh": 3.0} and j.choice == ("r-good", "r-bad", 4.0)
        assert not j.swap_checked and j.swap_agreement is None and j.parse_status == "ok"
        (first,) = j.passes
        assert first.order == [item.candidates[i][0] for i in shuffled_order(item.key, 3)]
        assert first.rationales["r-good"] == "r-good" and first.raw_output.startswith('{"ratings"')
    prompts = [m[-1]["content"] for m in script.requests]
    assert all("Rate each of the 3 CANDIDATE" in p and '"candidate": 1, "helpfulness": <1-5>' in p for p in prompts)
    assert len({tuple(shown_texts(p)) for p in prompts}) > 1                # the order differs between instructions


def test_close_call_is_judged_again_reversed(fake_openai):
    def slot_biased(prompt: str, repair: bool) -> str:   # the first shown gets 4, the second 3: pure position
        return json.dumps({"ratings": [{"candidate": n, "helpfulness": 5 - n, "honesty": 5 - n}
                                       for n in range(1, len(shown_texts(prompt)) + 1)]})
    script = Script(slot_biased)
    fake_openai.configure(reply=script)
    judge, backend = judge_for(fake_openai, swap_margin=1.0)
    item = ListwiseItem("run:i", "Task", [("r1", "one"), ("r2", "two")], order=[0, 1])
    (j,) = run(backend, judge.ajudge([item]))
    assert fake_openai.stats.requests == 2 and j.swap_checked
    assert [p.order for p in j.passes] == [["r1", "r2"], ["r2", "r1"]] and j.passes[1].reversed
    assert shown_texts(script.requests[1][-1]["content"]) == ["two", "one"]
    assert j.overall == {"r1": 3.5, "r2": 3.5} and j.choice is None       # the position effect cancels out


def test_no_swap_without_a_margin_and_a_failed_swap_call_marks_the_item(fake_openai):
    fake_openai.configure(reply=Script(rate_by_text({"one": 4, "two": 3})))
    judge, backend = judge_for(fake_openai, swap_margin=None)
    (j,) = run(backend, judge.ajudge([ListwiseItem("run:i", "Task", [("r1", "one"), ("r2", "two")])]))
    assert fake_openai.stats.requests == 1 and not j.swap_checked and j.choice == ("r1", "r2", 1.0)

    fake_openai.configure(reply=Script(rate_by_text({"one": 4, "two": 3})), fail_500_after=1)
    judge, backend = judge_for(fake_openai, swap_margin=1.0)
    (j,) = run(backend, judge.ajudge([ListwiseItem("run:k", "Task", [("r1", "one"), ("r2", "two")])]))
    assert j.swap_checked and j.call_failed and "reversed pass: judge call failed" in j.error


def test_unreadable_reply_gets_one_repair_then_fails_every_candidate(fake_openai):
    script = Script(lambda prompt, repair: '{"ratings": [{"candidate": 1, "helpfulness": 4}]}' if not repair
                    else "I cannot.")
    fake_openai.configure(reply=script)
    judge, backend = judge_for(fake_openai)
    (j,) = run(backend, judge.ajudge([ListwiseItem("run:i", "Task", [("r1", "one"), ("r2", "two")])]))
    (first,) = j.passes
    assert first.parse_status == "failed" and first.scores == {} and j.choice is None and not j.call_failed
    assert first.raw_output.endswith(REPAIR_SEPARATOR + "I cannot.")
    assert "no score for candidate 2 of 2" in j.error and "repair reply unreadable too" in j.error
    assert "one entry for each candidate, 1 to 2" in script.requests[1][-1]["content"]


# -- config ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes,match", [
    ({"listwise_template": "{instruction} {aspects}"}, "listwise_template lacks the placeholder {candidates}"),
    ({"listwise_template": "{instruction} {candidates} {aspects} {candidate}"}, "unknown placeholder {candidate}"),
    ({"reply_format": "xml"}, "reply_format='xml' is not one of the choices.*json, compact"),
    ({"swap_margin": 4.5}, "swap_margin=4.5 is out of range"),
    ({"swap_margin": True}, "swap_margin=True must be a number"),
])
def test_judge_config_validation(changes, match):
    with pytest.raises(BadInput, match=match):
        JudgeConfig(**changes)


@pytest.mark.parametrize("judge,match", [
    ({"mode": "rankwise"}, r"judge.mode='rankwise' is not one of the choices.*pointwise, pairwise, listwise"),
    ({"reply_format": "xml"}, r"judge.reply_format='xml' is not one of the choices.*json, compact"),
    ({"swap_margin": 5}, r"judge.swap_margin=5 is out of range.*0 to 4"),
    ({"swap_margin": "wide"}, r"judge.swap_margin='wide' must be a number"),
    ({"reply_format": "compact", "listwise_template": "{instruction} {candidates} {aspects}"},
     r"judge.listwise_template is set, but reply_format 'compact' uses its built-in short prompts"),
    ({"kind": "rubric", "mode": "pairwise", "rubric": {"name": "length", "params": {"min_words": 1}}},
     r"judge.mode='pairwise' is not valid.*A rubric scores each candidate alone"),
])
def test_generation_config_judge_rules(judge, match):
    with pytest.raises(BadInput, match=match):
        GenerationConfig.from_dict({"seeds": {"texts": ["x"]}, "judge": judge})


def test_listwise_is_the_default_llm_mode_and_a_rubric_stays_pointwise():
    config = GenerationConfig.from_dict({"seeds": {"texts": ["x"]}})
    assert (config.judge.mode, config.judge.reply_format, config.judge.swap_margin) == ("listwise", "json", 1.0)
    rubric = GenerationConfig.from_dict({"seeds": {"texts": ["x"]}, "judge": {
        "kind": "rubric", "rubric": {"name": "length", "params": {"min_words": 1}}}})
    assert rubric.judge.mode == "pointwise"
    assert GenerationConfig.from_yaml(config.to_yaml()) == config
