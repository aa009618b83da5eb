"""Programmatic rubric judges: each built-in, plug-ins by dotted path, and every parameter check."""

from __future__ import annotations

import sys
import textwrap

import pytest

from pipelines.judge.rubrics import (RubricJudge, RubricResult, get_rubric, last_number, list_rubrics,
                                        normalize_answer, register_rubric, token_f1)
from core.errors import BadInput, NotFound


def judge(name: str, response: str, reference: str | None = None, instruction: str = "q", **params):
    return RubricJudge(name, params).judge("r1", instruction, response, reference)


def test_builtins_are_listed():
    assert {r.name for r in list_rubrics()} >= {"length", "json_format", "regex", "keywords", "reference_match"}
    assert all(r.description for r in list_rubrics())


def test_a_judgment_looks_like_an_llm_judgment():
    j = judge("length", "one two three", max_words=5)
    assert (j.response_id, j.judge_kind, j.judge_model, j.parse_status) == ("r1", "rubric", "rubric:length", "ok")
    assert j.aspect_scores == {"length": 5.0} and j.overall == 5.0 and j.passed is True
    assert j.rationale == "3 words, 13 characters: within bounds"
    assert '"passed": true' in j.raw_output and j.error is None


# -- length ------------------------------------------------------------------------------------------------
def test_length_words_and_chars():
    assert judge("length", "a b c d", max_words=3).aspect_scores == {"length": 3.25}       # 1 + 3 * 3/4
    assert judge("length", "a b", min_words=4).aspect_scores == {"length": 2.5}             # 1 + 3 * 2/4
    too_long = judge("length", "x" * 100, max_chars=10)
    assert too_long.passed is False and too_long.rationale == "100 characters, more than 10"
    assert judge("length", "", min_words=1).overall == 1.0
    assert judge("length", "  four  ", min_chars=4, max_chars=4).passed is True   # stripped


@pytest.mark.parametrize("params,match", [
    ({}, "'length' has no bound"),
    ({"max_words": -1}, "max_words=-1 is out of range.*at least 0"),
    ({"min_chars": 2.5}, "min_chars=2.5 must be a whole number"),
    ({"max_words": True}, "max_words=True must be a whole number"),
    ({"min_words": 5, "max_words": 2}, "got min_words=5.*must not exceed max_words=2"),
    ({"max_word": 3}, "max_word: unknown key in the 'length' rubric's params.*Did you mean 'max_words'"),
])
def test_length_params(params, match):
    with pytest.raises(BadInput, match=match):
        RubricJudge("length", params)


# -- json_format -----------------------------------------------------------------------------------------------
def test_json_format():
    assert judge("json_format", '{"a": 1}').passed is True
    assert judge("json_format", "[1, 2]").passed is True
    assert judge("json_format", '```json\n{"a": 1, "b": 2}\n```', required_keys=["a", "b"]).overall == 5.0
    assert judge("json_format", '```json\n{"a": 1}\n```', allow_fence=False).overall == 1.0
    bad = judge("json_format", "{'a': 1}")
    assert bad.overall == 1.0 and bad.rationale.startswith("not valid JSON")
    partial = judge("json_format", '{"a": 1}', required_keys=["a", "b", "c"])    # (1 + 1) / (1 + 3)
    assert partial.overall == 3.0 and partial.rationale == "valid JSON object; missing keys ['b', 'c']"
    listed = judge("json_format", "[1]", required_keys="a")
    assert listed.overall == 3.0 and "list, not an object" in listed.rationale     # (1 + 0) / (1 + 1)


@pytest.mark.parametrize("params,match", [
    ({"required_keys": ["a", ""]}, r"required_keys\[1\]='' is empty.*at least 1 character"),
    ({"required_keys": 5}, r"required_keys\[0\]=5 must be text"),
    ({"allow_fence": "yes"}, "allow_fence='yes' must be true or false"),
])
def test_json_format_params(params, match):
    with pytest.raises(BadInput, match=match):
        RubricJudge("json_format", params)


# -- regex -----------------------------------------------------------------------------------------------------
def test_regex():
    assert judge("regex", "Answer: 42", must_match=r"Answer: \d+").passed is True
    assert judge("regex", "answer: 42", must_match=r"ANSWER", flags="i").passed is True
    assert judge("regex", "line\n42", must_match=r"^\d+$").passed is False
    assert judge("regex", "line\n42", must_match=r"^\d+$", flags="m").passed is True
    mixed = judge("regex", "As an AI model, 42", must_match=[r"\d+"], must_not_match=[r"as an ai"], flags="i")
    assert mixed.overall == 3.0 and mixed.rationale == "forbidden match for 'as an ai'"


@pytest.mark.parametrize("params,match", [
    ({}, "'regex' has no pattern"),
    ({"must_match": "("}, r"got must_match\[0\]='\('.*not a valid regular expression"),
    ({"must_not_match": ["ok", "[a-"]}, r"got must_not_match\[1\]='\[a-'"),
    ({"must_match": "x", "flags": "ix"}, "got flags='ix'"),
])
def test_regex_params(params, match):
    with pytest.raises(BadInput, match=match):
        RubricJudge("regex", params)


# -- keywords --------------------------------------------------------------------------------------------------
def test_keywords():
    ok = judge("keywords", "PARIS is the capital of France.", required=["paris", "france"], forbidden=["berlin"])
    assert ok.passed is True and ok.overall == 5.0
    bad = judge("keywords", "Berlin, not Paris.", required=["paris", "france"], forbidden=["BERLIN"])
    assert bad.overall == round(1 + 4 / 3, 4) and bad.rationale == "missing ['france']; forbidden ['BERLIN']"
    assert judge("keywords", "concatenate", required="cat").passed is True
    assert judge("keywords", "concatenate", required="cat", whole_word=True).passed is False
    assert judge("keywords", "a cat.", required="cat", whole_word=True).passed is True
    assert judge("keywords", "C++ rocks", required="c++", whole_word=True).passed is True


@pytest.mark.parametrize("params,match", [
    ({}, "'keywords' has no keyword"),
    ({"required": [1]}, r"required\[0\]=1 must be text"),
    ({"forbidden": [""]}, r"forbidden\[0\]='' is empty"),
    ({"required": "x", "whole_word": 1}, "whole_word=1 must be true or false"),
])
def test_keywords_params(params, match):
    with pytest.raises(BadInput, match=match):
        RubricJudge("keywords", params)


# -- reference_match --------------------------------------------------------------------------------------------
def test_reference_match_modes():
    assert judge("reference_match", "The Eiffel Tower!", "eiffel tower").passed is True
    assert judge("reference_match", "It is the Eiffel Tower.", "eiffel tower").passed is False
    assert judge("reference_match", "It is the Eiffel Tower.", "eiffel tower", mode="contains").passed is True
    assert judge("reference_match", "Eiffel Towers", "eiffel tower", mode="contains").passed is False
    f1 = judge("reference_match", "Paris is the capital", "Paris", mode="f1")
    assert f1.overall == 3.0 and f1.passed is False           # F1 0.5 -> 1 + 4 * 0.5
    assert judge("reference_match", "Paris is the capital", "Paris", mode="f1", threshold=0.5).passed is True
    num = judge("reference_match", "17 + 25 = 42, so the answer is 42.", "#### 42", mode="numeric")
    assert num.passed is True and num.rationale == "final number 42 vs 42"
    assert judge("reference_match", "It costs $1,234.50", "1234.5", mode="numeric").passed is True
    assert judge("reference_match", "about 41.9", "42", mode="numeric").passed is False
    assert judge("reference_match", "about 41.9", "42", mode="numeric", tolerance=0.01).passed is True
    none = judge("reference_match", "no idea", "42", mode="numeric")
    assert none.passed is False and none.rationale == "no number in the response (expected 42)"


def test_reference_match_without_reference_fails_that_item_only():
    rubric = RubricJudge("reference_match", {"mode": "exact"})
    out = rubric.judge_batch([("r1", "q", "Paris", None), ("r2", "q", "Paris", "paris"),
                              ("r3", "q", "7", "no digits here")])
    assert [j.parse_status for j in out] == ["failed", "ok", "ok"] and out[2].passed is False
    assert "needs a reference answer" in out[0].error and out[0].raw_output == "" and out[0].overall is None
    out = RubricJudge("reference_match", {"mode": "numeric"}).judge("r3", "q", "7", "no digits here")
    assert out.parse_status == "failed" and "holds no number" in out.error


@pytest.mark.parametrize("params,match", [
    ({"mode": "fuzzy"}, "mode='fuzzy' is not one of the choices.*exact"),
    ({"mode": "f1", "threshold": 0}, "threshold=0 is out of range.*above 0 and at most 1"),
    ({"mode": "f1", "threshold": 1.5}, "threshold=1.5 is out of range"),
    ({"mode": "numeric", "tolerance": -1}, "tolerance=-1 is out of range.*at least 0"),
    ({"mode": "numeric", "tolerance": "small"}, "tolerance='small' must be a number"),
])
def test_reference_match_params(params, match):
    with pytest.raises(BadInput, match=match):
        RubricJudge("reference_match", params)


def test_helpers():
    assert normalize_answer("The  Eiffel, Tower!") == "eiffel tower"
    assert token_f1("a b c", "a b c") == 1.0 and token_f1("", "") == 1.0 and token_f1("x", "y") == 0.0
    assert last_number("1, 2 and finally -3.5e2") == -350.0 and last_number("none") is None


# -- registry and plug-ins -----------------------------------------------------------------------------------------
def test_unknown_and_bad_names():
    with pytest.raises(NotFound, match="no rubric named 'lenght'.*length"):
        get_rubric("lenght")
    with pytest.raises(BadInput, match="rubric name is empty"):
        get_rubric(" ")
    with pytest.raises(BadInput, match="is not 'package.module:function'"):
        get_rubric("os.path:")
    with pytest.raises(NotFound, match="Cannot import the rubric module 'no_such_pkg_xyz.mod'"):
        get_rubric("no_such_pkg_xyz.mod:fn")
    with pytest.raises(NotFound, match="has no function 'nope'"):
        get_rubric("json:nope")
    with pytest.raises(BadInput, match="takes 1 positional arguments"):
        get_rubric("json:dumps")


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A real module on sys.path, imported by its dotted path like a user's plug-in."""
    package = tmp_path / "myrubrics_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "checks.py").write_text(textwrap.dedent('''
        from pipelines.judge.rubrics import RubricResult, register_rubric

        def polite(instruction, response, reference, *, word="please", strict=False):
            """Says the magic word."""
            ok = word in response.lower()
            return RubricResult(5.0 if ok else (1.0 if strict else 2.0), ok, f"{word!r} {'found' if ok else 'missing'}")

        def needs_min(instruction, response, reference, *, minimum):
            return RubricResult(5.0 if len(response) >= minimum else 1.0, len(response) >= minimum, "len")

        def broken(instruction, response, reference):
            if "boom" in response:
                raise RuntimeError("plug-in bug")
            return RubricResult(0.5, True, "a 0..1 score")

        def wrong_type(instruction, response, reference):
            return 4

        @register_rubric("shouting")
        def shouting(instruction, response, reference, **params):
            """All capitals."""
            return RubricResult(5.0 if response.isupper() else 1.0, response.isupper(), "caps")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myrubrics_pkg.checks"
    for name in [m for m in sys.modules if m.startswith("myrubrics_pkg")]:
        del sys.modules[name]


def test_plugin_by_dotted_path(plugin_module):
    rubric = RubricJudge(f"{plugin_module}:polite", {"word": "thanks"})
    j = rubric.judge("r1", "q", "Thanks a lot")
    assert j.judge_model == f"rubric:{plugin_module}:polite" and j.passed is True and j.overall == 5.0
    assert RubricJudge(f"{plugin_module}:polite", {"strict": True}).judge("r2", "q", "no").overall == 1.0
    assert get_rubric(f"{plugin_module}:polite").description == "Says the magic word."
    # a registered plug-in imported by path is its registered rubric, then also reachable by name
    assert get_rubric(f"{plugin_module}:shouting").name == "shouting"
    assert RubricJudge("shouting").judge("r3", "q", "HEY").passed is True


def test_plugin_params_are_checked(plugin_module):
    with pytest.raises(BadInput, match="'myrubrics_pkg.checks:polite' has no parameter 'wrod'.*'word', 'strict'"):
        RubricJudge(f"{plugin_module}:polite", {"wrod": "x"})
    with pytest.raises(BadInput, match="needs the parameter 'minimum'"):
        RubricJudge(f"{plugin_module}:needs_min")
    assert RubricJudge(f"{plugin_module}:needs_min", {"minimum": 2}).judge("r", "q", "abc").passed is True


def test_plugin_errors_fail_one_item(plugin_module):
    broken = RubricJudge(f"{plugin_module}:broken")
    out = broken.judge_batch([("r1", "q", "boom", None), ("r2", "q", "fine", None)])
    assert out[0].parse_status == "failed" and out[0].error == "RuntimeError: plug-in bug"
    assert out[1].parse_status == "failed" and "returned the score 0.5" in out[1].error
    wrong = RubricJudge(f"{plugin_module}:wrong_type").judge("r", "q", "x")
    assert wrong.parse_status == "failed" and "returned int, not a RubricResult" in wrong.error


def test_register_refuses_a_taken_name_and_bad_names():
    with pytest.raises(BadInput, match="A rubric named 'length' exists already"):
        @register_rubric("length")
        def other_length(instruction, response, reference, **params):
            return RubricResult(5.0, True, "")
    with pytest.raises(BadInput, match="The rubric name 'Bad Name' is not valid"):
        register_rubric("Bad Name")
    assert get_rubric("length").fn.__name__ == "length_rubric"
