"""Comparison statistics against values computed by hand on small fixed vote tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.compare import stats
from pipelines.compare.diff import to_html, word_diff
from pipelines.compare.leakage import check_leakage
from pipelines.compare.metrics import bleu, macro_f1, rouge_l
from core.errors import BadInput


def table(*votes: tuple[str, str, str]) -> stats.VoteTable:
    a, b, w = zip(*votes)
    return stats.VoteTable.from_votes(a, b, w)


def test_bradley_terry_known_answer_three_to_one():
    # x beats y 3 times of 4: P = 3/4 = 1 / (1 + 10^(-d/400))  =>  d = 400·log10(3) = 190.85
    ratings = stats.bradley_terry(table(*[("x", "y", "a")] * 3, ("x", "y", "b")), n_boot=0, reg=0)
    by = {r.model: r for r in ratings}
    assert by["x"].rating - by["y"].rating == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert by["x"].rating + by["y"].rating == pytest.approx(2000, abs=1e-6)   # centred on 1000
    assert [r.rank for r in ratings] == [1, 2] and ratings[0].model == "x"
    assert by["x"].wins == 3 and by["y"].games == 4


def test_bradley_terry_three_models_matches_expected_probabilities():
    # A transitive table fitted exactly: the fitted ratings reproduce each pair's observed share.
    votes = ([("a", "b", "a")] * 6 + [("a", "b", "b")] * 4 + [("b", "c", "a")] * 6 + [("b", "c", "b")] * 4
             + [("a", "c", "a")] * 69 + [("a", "c", "b")] * 31)
    by = {r.model: r.rating for r in stats.bradley_terry(table(*votes), n_boot=0, reg=0)}
    # By the score equations each model's expected wins equal its observed wins.
    expected_a = 10 * stats.expected_win_probability(by["a"], by["b"]) + 100 * stats.expected_win_probability(by["a"], by["c"])
    assert expected_a == pytest.approx(6 + 69, abs=1e-3)
    assert by["a"] > by["b"] > by["c"]


def test_all_ties_give_equal_ratings_and_half_win_rates():
    votes = table(("x", "y", "tie"), ("y", "z", "tie"), ("z", "x", "both_bad"), ("x", "y", "tie"))
    ratings = stats.bradley_terry(votes, n_boot=50)
    assert {round(r.rating, 6) for r in ratings} == {1000.0}
    assert all(r.ci_low == pytest.approx(1000) and r.ci_high == pytest.approx(1000) for r in ratings)
    rows = stats.pairwise_win_rates(votes, n_boot=100)
    assert all(r.win_rate == 0.5 and r.ci_low == 0.5 and r.ci_high == 0.5 for r in rows)
    xz = next(r for r in rows if (r.model, r.opponent) == ("x", "z"))
    assert (xz.ties, xz.both_bad) == (0, 1)


def test_win_rate_counts_ties_half_and_both_directions():
    # x as first: 4 wins, 1 loss, 1 tie; x as second (y first): y won 1, x won 2, 1 both bad
    votes = table(*[("x", "y", "a")] * 4, ("x", "y", "b"), ("x", "y", "tie"),
                  ("y", "x", "a"), *[("y", "x", "b")] * 2, ("y", "x", "both_bad"))
    rows = {(r.model, r.opponent): r for r in stats.pairwise_win_rates(votes, n_boot=2000, seed=3)}
    xy = rows[("x", "y")]
    assert (xy.wins, xy.losses, xy.ties, xy.both_bad, xy.n) == (6, 2, 1, 1, 10)
    assert xy.win_rate == pytest.approx((6 + 1) / 10)
    assert rows[("y", "x")].win_rate == pytest.approx(0.3)
    assert xy.ci_low < xy.win_rate < xy.ci_high
    assert 0.35 <= xy.ci_low <= 0.5 and 0.85 <= xy.ci_high <= 1.0   # ±1.96·sqrt(.7·.3/10) ≈ ±0.28, bounded


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    votes = table(*[("p", "q", w) for w in rng.choice(["a", "b", "tie"], 200, p=[0.6, 0.3, 0.1])],
                  *[("q", "r", w) for w in rng.choice(["a", "b"], 200, p=[0.55, 0.45])])
    first = stats.bradley_terry(votes, n_boot=100, seed=7)
    again = stats.bradley_terry(votes, n_boot=100, seed=7)
    other = stats.bradley_terry(votes, n_boot=100, seed=8)
    assert [(r.ci_low, r.ci_high) for r in first] == [(r.ci_low, r.ci_high) for r in again]
    assert [(r.ci_low, r.ci_high) for r in first] != [(r.ci_low, r.ci_high) for r in other]
    for r in first:
        assert r.ci_low < r.rating < r.ci_high


def test_vote_table_validation():
    with pytest.raises(BadInput, match="Unknown vote outcome 'draw'"):
        table(("x", "y", "draw"))
    with pytest.raises(BadInput, match="differ in length"):
        stats.VoteTable.from_votes(["x"], ["y", "z"], ["a"])
    with pytest.raises(BadInput, match="at least two models"):
        stats.bradley_terry(stats.VoteTable.from_votes([], [], []), n_boot=0)
    with pytest.raises(BadInput, match="n_boot=-1"):
        stats.pairwise_win_rates(table(("x", "y", "a")), n_boot=-1)
    with pytest.raises(BadInput, match="confidence=1.5"):
        stats.bradley_terry(table(("x", "y", "a")), confidence=1.5)


def test_length_controlled_win_rate_removes_a_length_preference():
    # A wins exactly when its answer is the longer one: the raw rate 0.8 is all length.
    outcomes = [1] * 8 + [0] * 2
    length_a, length_b = [120] * 8 + [20] * 2, [20] * 8 + [120] * 2
    lc = stats.length_controlled_win_rate(outcomes, length_a, length_b)
    assert lc < 0.7 and abs(lc - 0.5) < abs(0.8 - 0.5)
    # Equal lengths: nothing to control for, the rate stays the raw one.
    assert stats.length_controlled_win_rate([1, 1, 1, 0], [10] * 4, [10] * 4) == pytest.approx(0.75, abs=0.01)
    with pytest.raises(BadInput, match="No votes to control for length"):
        stats.length_controlled_win_rate([], [], [])


def test_position_bias_binomial_test():
    biased = stats.position_bias("judge", first=45, second=5, ties=3)
    assert biased.biased and biased.p_value < 1e-6 and "first (A)" in biased.message
    fair = stats.position_bias("judge", first=27, second=23)
    assert not fair.biased and fair.p_value > 0.5 and fair.message == ""
    slight = stats.position_bias("judge", first=52_000, second=48_000)   # significant, but only 52%
    assert slight.p_value < 0.01 and not slight.biased
    assert stats.position_bias("judge", 0, 0, 4).share_first is None


def test_agreement_and_kappa_by_hand():
    pairs = [("first", "first")] * 4 + [("second", "second")] * 3 + [("first", "second")] * 2 + [("tie", "first")]
    result = stats.agreement(pairs)
    assert (result.n, result.agree) == (10, 7) and result.rate == pytest.approx(0.7)
    # expected agreement: human first 6, second 3, tie 1; judge first 5, second 5, tie 0 -> (30 + 15) / 100
    assert result.kappa == pytest.approx((0.7 - 0.45) / 0.55)
    assert stats.agreement([]).rate is None


def test_word_diff_marks_changed_words_and_escapes_html():
    left, right = word_diff("the cat sat on <b>mat</b>", "the dog sat on <b>mat</b>")
    assert ("cat", "changed") in left and ("dog", "changed") in right and ("the", "same") in left
    html = to_html(right)
    assert "<mark" in html and "&lt;b&gt;" in html and "<b>" not in html


def test_leakage_guard_exact_and_near_duplicates():
    train = ["Explain how a hash map stores keys and values in buckets with a hash function please",
             "Write a haiku about the sea"]
    evals = ["write a  HAIKU about the sea",                                        # exact after normalising
             "Explain how a hash map stores keys and values in buckets with a hash function, please!",  # near
             "What is the capital of France?"]
    report = check_leakage("local:tuned", evals, train)
    assert report.exact == [0]
    assert [p for p, _ in report.near] == [1] and report.near[0][1] >= 0.8
    assert "2 of 3 evaluation prompts overlap the training prompts of local:tuned" in report.message(3)
    assert check_leakage("local:base", evals, []).leaked == 0


def test_reference_metrics():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["a completely different text here"], ["the cat sat on the mat"]) < 10
    assert rouge_l(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert macro_f1(["good", "bad", "good", "bad"], ["good", "bad", "bad", "bad"]) == pytest.approx((2 / 3 + 0.8) / 2)
    with pytest.raises(BadInput, match="one reference per answer"):
        bleu(["x"], [])
