"""Training data snapshots on a real DuckDB file: filters, human labels, hashing and immutability,
the seeded split, every pre-training check, and too little data."""

from __future__ import annotations

import json

import pytest

from storage import snapshots as store
from storage.pairs import insert_preference_pairs
from storage.snapshots import SnapshotSpec
from core.errors import BadInput, NotFound


def _pairs(n: int, run_id: str = "gen_a", **overrides) -> list[dict]:
    rows = []
    for i in range(n):
        row = dict(id=f"{run_id}_pp{i:03d}", run_id=run_id, instruction_id=f"{run_id}_ins{i}",
                   prompt=f"Question {run_id} {i}?", chosen=f"A good, detailed answer number {i}.",
                   rejected=f"Bad {i}.", confidence=round(0.5 + i / (2 * n), 3))
        row.update(overrides)
        rows.append(row)
    return rows


def _sft(db, n: int, run_id: str = "gen_a") -> None:
    with db.session() as cur:
        for i in range(n):
            cur.execute("INSERT INTO sft_pairs (id, run_id, instruction_id, prompt, completion, confidence) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [f"{run_id}_sft{i}", run_id, f"{run_id}_ins{i}",
                                                      f"Task {i}", f"Answer {i}", 0.9])


def _review(db, kind: str, record_id: str, **label) -> None:
    """A human final label as the review stage stores it (storage.review.write_finals' format)."""
    final = {"label": "chosen", "chosen": None, "rejected": None, "corrected": False, "usable": True,
             "n_reviews": 2, "agreement": 1.0, **label}
    with db.session() as cur:
        cur.execute("INSERT INTO review_rounds (id, name, record_kind) VALUES (?, 'r', ?) "
                    "ON CONFLICT DO NOTHING", [f"round_{kind}", kind])
        cur.execute("INSERT INTO review_records (id, round_id, record_kind, record_id, final_label, final_rule, "
                    "final_source, reviewed) VALUES (?, ?, ?, ?, ?, 'majority', 'human', true)",
                    [f"rr_{record_id}", f"round_{kind}", kind, record_id, json.dumps(final)])


def _counts(summary) -> dict[str, int]:
    return {c["step"]: c["remaining"] for c in summary.counts}


def _check(summary, name: str) -> dict:
    return next(c for c in summary.checks if c["name"] == name)


def test_preference_snapshot_stores_trl_rows_and_lineage(db):
    insert_preference_pairs(db, _pairs(10))
    summary = store.create_snapshot(db, SnapshotSpec(name="first", eval_fraction=0.2))
    assert summary.created and (summary.n_train, summary.n_eval) == (8, 2)
    train = store.read_snapshot_rows(db, summary.id, "train")
    assert len(train) == 8 and set(train[0]) == {"prompt", "chosen", "rejected"}
    assert train[0]["prompt"][0]["role"] == "user" and train[0]["chosen"][0]["role"] == "assistant"
    ids = store.snapshot_record_ids(db, summary.id)
    assert sorted(ids["train"] + ids["eval"]) == [f"gen_a_pp{i:03d}" for i in range(10)]
    lineage = store.snapshot_lineage(db, summary.id)
    assert {(r["run_id"], r["split"], r["pairs"]) for r in lineage["by_generation_run"]} == \
        {("gen_a", "train", 8), ("gen_a", "eval", 2)}
    assert store.get_snapshot(db, summary.id).checks == summary.checks


def test_same_content_returns_the_existing_snapshot_and_stays_immutable(db):
    insert_preference_pairs(db, _pairs(6))
    first = store.create_snapshot(db, SnapshotSpec(name="one"))
    again = store.create_snapshot(db, SnapshotSpec(name="another name"))
    assert not again.created and again.id == first.id and again.name == "one"
    rows_before = store.read_snapshot_rows(db, first.id, None)
    with db.session() as cur:  # the pairs change after the snapshot: the snapshot keeps its copy
        cur.execute("UPDATE preference_pairs SET chosen = 'edited' WHERE id = 'gen_a_pp000'")
    assert store.read_snapshot_rows(db, first.id, None) == rows_before
    changed = store.create_snapshot(db, SnapshotSpec())
    assert changed.created and changed.id != first.id
    other_seed = store.create_snapshot(db, SnapshotSpec(split_seed=7))
    assert other_seed.id not in (first.id, changed.id)
    assert len(store.list_snapshots(db)) == 3


def test_split_is_deterministic_per_seed_and_independent_of_insert_order(db, tmp_path):
    rows = _pairs(40)
    insert_preference_pairs(db, list(reversed(rows)))
    a = store.preview_snapshot(db, SnapshotSpec(eval_fraction=0.25, split_seed=1))[1]
    b = store.preview_snapshot(db, SnapshotSpec(eval_fraction=0.25, split_seed=1))[1]
    c = store.preview_snapshot(db, SnapshotSpec(eval_fraction=0.25, split_seed=2))[1]
    evals = lambda placed: {r.record_id for r, split, _ in placed if split == "eval"}  # noqa: E731
    assert evals(a) == evals(b) and len(evals(a)) == 10
    assert evals(a) != evals(c)
    assert [p for _, s, p in a if s == "train"] == list(range(30))


def test_filters_in_order_with_counts(db):
    insert_preference_pairs(db, _pairs(10) + _pairs(4, run_id="gen_b"))
    insert_preference_pairs(db, [dict(id="gen_a_flagged", run_id="gen_a", prompt="p", chosen="c", rejected="r",
                                      confidence=0.99, flagged=True),
                                 dict(id="gen_a_same", run_id="gen_a", prompt="p2", chosen="same ", rejected="same",
                                      confidence=0.99),
                                 dict(id="gen_a_long", run_id="gen_a", prompt="p3", chosen="x" * 500, rejected="y",
                                      confidence=0.99),
                                 dict(id="gen_a_dup", run_id="gen_a", prompt="Question gen_a 9?",
                                      chosen="A good, detailed answer number 9.", rejected="Bad 9.", confidence=0.99)])
    spec = SnapshotSpec(generation_run_ids=("gen_a",), min_judge_confidence=0.7, max_length=200, eval_fraction=0)
    summary, _ = store.preview_snapshot(db, spec)
    counts = _counts(summary)
    assert counts["in the selected generation runs"] == 14
    assert counts["judge confidence >= 0.7"] == 10  # pp000..pp003 are below 0.7
    assert counts["not flagged"] == 9
    assert counts["chosen differs from rejected"] == 8
    assert counts["at most 200 chars"] == 7
    assert counts["no exact duplicates"] == 6 and summary.n_train == 6
    assert _check(summary, "chosen_equals_rejected")["count"] == 1
    assert _check(summary, "duplicates")["count"] == 1
    kept = store.preview_snapshot(db, SnapshotSpec(generation_run_ids=("gen_a",), drop_identical=False,
                                                   drop_duplicates=False, exclude_flagged=False, eval_fraction=0))[0]
    assert kept.n_train == 14
    assert _check(kept, "chosen_equals_rejected")["severity"] == "warning"
    assert _check(kept, "duplicates")["severity"] == "warning"


def test_human_labels_swap_correct_and_drop(db):
    insert_preference_pairs(db, _pairs(6))
    _review(db, "preference", "gen_a_pp000", label="rejected", chosen="Bad 0.",
            rejected="A good, detailed answer number 0.")
    _review(db, "preference", "gen_a_pp001", chosen="A corrected answer.", rejected="Bad 1.", corrected=True)
    _review(db, "preference", "gen_a_pp002", label="tie", usable=False)
    _review(db, "preference", "gen_a_pp003", agreement=0.5, chosen="A good, detailed answer number 3.",
            rejected="Bad 3.")
    summary = store.create_snapshot(db, SnapshotSpec(eval_fraction=0, min_reviewer_agreement=0.6))
    counts = _counts(summary)
    assert counts["usable after review (not tie, both bad or bad)"] == 5
    assert counts["reviewer agreement >= 0.6"] == 4  # pp003's reviewers disagreed; unreviewed pairs stay
    rows = {r["prompt"][0]["content"]: r for r in store.read_snapshot_rows(db, summary.id)}
    assert rows["Question gen_a 0?"]["chosen"][0]["content"] == "Bad 0."
    assert rows["Question gen_a 1?"]["chosen"][0]["content"] == "A corrected answer."
    human = store.preview_snapshot(db, SnapshotSpec(only_human_reviewed=True, eval_fraction=0))[0]
    assert _counts(human)["human-reviewed"] == 4
    judge = store.preview_snapshot(db, SnapshotSpec(label_rule="judge_only", eval_fraction=0))[1]
    texts = {r.payload["prompt"][0]["content"]: r.payload["chosen"][0]["content"] for r, _, _ in judge}
    assert texts["Question gen_a 0?"] == "A good, detailed answer number 0." and len(texts) == 6


def test_kto_sft_and_prompt_snapshots(db):
    insert_preference_pairs(db, _pairs(5))
    _sft(db, 4)
    kto = store.create_snapshot(db, SnapshotSpec(record_kind="kto", eval_fraction=0.2))
    rows = store.read_snapshot_rows(db, kto.id, None)
    assert len(rows) == 10 and sum(r["label"] for r in rows) == 5
    assert set(rows[0]) == {"prompt", "completion", "label"}
    ids = store.snapshot_record_ids(db, kto.id)
    assert not set(ids["train"]) & set(ids["eval"])  # a pair's good and bad rows stay in one split
    sft = store.create_snapshot(db, SnapshotSpec(record_kind="sft", eval_fraction=0))
    assert sft.n_train == 4 and set(store.read_snapshot_rows(db, sft.id)[0]) == {"prompt", "completion"}
    prompts = store.create_snapshot(db, SnapshotSpec(record_kind="prompts", eval_fraction=0))
    assert prompts.n_train == 9  # 5 preference prompts + 4 SFT prompts, each once
    assert set(store.read_snapshot_rows(db, prompts.id)[0]) == {"prompt"}


def test_kto_learns_unpaired_good_and_bad_labels_from_reviews(db):
    insert_preference_pairs(db, _pairs(5))
    _sft(db, 4)
    _review(db, "preference", "gen_a_pp000", label="rejected", chosen="Bad 0.",
            rejected="A good, detailed answer number 0.")
    _review(db, "preference", "gen_a_pp001", label="both_bad", usable=False)
    _review(db, "preference", "gen_a_pp002", label="both_bad", chosen="A fixed answer 2.",
            rejected="A good, detailed answer number 2.", corrected=True)
    _review(db, "preference", "gen_a_pp003", label="tie", usable=False)
    _review(db, "sft", "gen_a_sft0", label="good", chosen="Answer 0")
    _review(db, "sft", "gen_a_sft1", label="bad", chosen="Answer 1", usable=False)
    _review(db, "sft", "gen_a_sft2", label="bad", chosen="A fixed answer to task 2.", corrected=True)
    summary = store.create_snapshot(db, SnapshotSpec(record_kind="kto", eval_fraction=0))
    assert _counts(summary)["with a good or bad example (SFT pairs: reviewed by a person; not tie or undecided)"] == 7
    labels = {(r["prompt"][0]["content"], r["completion"][0]["content"]): r["label"]
              for r in store.read_snapshot_rows(db, summary.id)}
    assert labels == {
        ("Question gen_a 0?", "Bad 0."): True,                                 # the reviewers' swap
        ("Question gen_a 0?", "A good, detailed answer number 0."): False,
        ("Question gen_a 1?", "A good, detailed answer number 1."): False,     # both bad: two bad examples
        ("Question gen_a 1?", "Bad 1."): False,
        ("Question gen_a 2?", "A good, detailed answer number 2."): False,
        ("Question gen_a 2?", "Bad 2."): False,
        ("Question gen_a 2?", "A fixed answer 2."): True,                      # the correction
        ("Question gen_a 4?", "A good, detailed answer number 4."): True,      # not reviewed: the judge's
        ("Question gen_a 4?", "Bad 4."): False,
        ("Task 0", "Answer 0"): True,                                          # SFT, reviewed good
        ("Task 1", "Answer 1"): False,                                         # SFT, reviewed bad
        ("Task 2", "Answer 2"): False,
        ("Task 2", "A fixed answer to task 2."): True,
    }                                                                          # the tie and unreviewed sft3: nothing
    ids = store.snapshot_record_ids(db, summary.id)["train"]
    assert ids.count("gen_a_pp002") == 1 and "gen_a_sft2" in ids                # lineage: the source pairs
    judge_only = store.preview_snapshot(db, SnapshotSpec(record_kind="kto", eval_fraction=0, label_rule="judge_only"))
    assert judge_only[0].n_train == 10                                         # reviews ignored: 5 pairs x 2


def test_length_bias_and_truncation_checks(db):
    insert_preference_pairs(db, _pairs(10))
    summary = store.preview_snapshot(db, SnapshotSpec(check_max_length=12))[0]
    bias = _check(summary, "length_bias")
    assert bias["severity"] == "warning" and bias["share_chosen_longer"] == 1.0
    over = _check(summary, "over_max_length")
    assert over["count"] == 10 and not over["exact"]  # ~ (15 + 35) chars / 4 > 12 tokens
    by_words = store.preview_snapshot(db, SnapshotSpec(check_max_length=12), lambda t: len(t.split()))[0]
    assert _check(by_words, "over_max_length")["count"] == 0 and _check(by_words, "over_max_length")["exact"]
    tokens = store.preview_snapshot(db, SnapshotSpec(max_length=8, max_length_unit="tokens", eval_fraction=0),
                                    lambda t: len(t.split()))[0]
    assert _counts(tokens)["at most 8 tokens"] == 0


def test_balanced_lengths_are_not_flagged(db):
    rows = _pairs(10)
    for i, row in enumerate(rows):
        if i % 2:
            row["chosen"], row["rejected"] = "short", "a much longer rejected answer"
    insert_preference_pairs(db, rows)
    assert _check(store.preview_snapshot(db, SnapshotSpec())[0], "length_bias")["severity"] == "info"


def test_too_little_data_says_how_much_there_is_and_is_needed(db):
    with pytest.raises(BadInput, match="0 preference rows remain after the filters; training needs at least 2"):
        store.create_snapshot(db, SnapshotSpec())
    insert_preference_pairs(db, _pairs(3))
    with pytest.raises(BadInput, match=r"3 preference rows remain .* needs at least 5 \(1 to train, 4 to evaluate at eval_fraction 0.9\)"):
        store.create_snapshot(db, SnapshotSpec(eval_fraction=0.9))
    summary = store.preview_snapshot(db, SnapshotSpec(min_judge_confidence=0.99))[0]
    assert summary.blocking and summary.blocking[0]["rows"] == 0
    assert store.create_snapshot(db, SnapshotSpec(eval_fraction=0)).n_train == 3
    assert store.list_snapshots(db)[0].n_train == 3


@pytest.mark.parametrize("field, value, match", [
    ("record_kind", "dpo", "record_kind='dpo' is not one of the choices.*preference, sft, kto, prompts"),
    ("label_rule", "vote", "label_rule='vote'"),
    ("max_length_unit", "words", "max_length_unit='words'"),
    ("min_judge_confidence", 1.5, "min_judge_confidence=1.5 .*from 0 to 1"),
    ("min_reviewer_agreement", -0.1, "min_reviewer_agreement=-0.1"),
    ("eval_fraction", 1.0, "eval_fraction=1.0 is out of range.*at least 0 and below 1"),
    ("max_length", 0, "max_length=0 is out of range.*from 1 to"),
    ("check_max_length", 0, "check_max_length=0"),
    ("split_seed", "x", "split_seed='x' must be a whole number"),
])
def test_every_setting_is_validated(db, field, value, match):
    with pytest.raises(BadInput, match=match):
        store.preview_snapshot(db, SnapshotSpec(**{field: value}))


def test_token_limit_needs_a_tokenizer_and_unknown_things_are_named(db):
    with pytest.raises(BadInput, match="max_length_unit='tokens' needs a tokenizer"):
        store.preview_snapshot(db, SnapshotSpec(max_length=10, max_length_unit="tokens"))
    with pytest.raises(BadInput, match="colour: unknown key in the snapshot settings"):
        SnapshotSpec.from_dict({"colour": "red"})
    with pytest.raises(NotFound, match="There is no snapshot 'snap_nope'"):
        store.read_snapshot_rows(db, "snap_nope")
    with pytest.raises(BadInput, match="split='test' is not a split"):
        store.read_snapshot_rows(db, "snap_nope", "test")
