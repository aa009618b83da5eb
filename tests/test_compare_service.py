"""Comparisons end to end with real tiny models, a real loopback endpoint and the real DuckDB file:
generation (batched, cached, truncated), faults (a model that cannot load, an endpoint going down and
the resume), the arena, judges, the leaderboard, the closed loop after a training run and leakage."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from pipelines.compare.spec import ComparisonSpec
from storage import compare as store
from storage.db import get_database
from core.errors import BadInput, NotFound
from studio.services import compare as svc
from studio.services import models as models_svc

pytestmark = pytest.mark.timeout(240)
PROMPTS = [
    {"prompt": "Name a colour of the sky.", "answer": "blue", "topic": "nature"},
    {"prompt": "What do cats like to sit on?", "answer": "a mat", "topic": "animals"},
    {"prompt": "Say something about the sun.", "answer": "it rises in the east", "topic": "nature"},
]
SAMPLING = {"temperature": 0.0, "max_tokens": 8, "seed": 0}


@pytest.fixture(scope="module")
def tiny_b_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with different weights (noise added), so the two answer differently."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-b")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(str(out))
    for item in tiny_model_dir.iterdir():
        if item.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy2(item, out / item.name)
    return out


@pytest.fixture
def setup(studio_home, tiny_model_dir, tiny_b_dir, tmp_path):
    models_svc.add_model(str(tiny_model_dir), name="tiny-a")
    models_svc.add_model(str(tiny_b_dir), name="tiny-b")
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PROMPTS) + "\n")
    return path


def spec(path, models=("local:tiny-a", "local:tiny-b"), **extra) -> ComparisonSpec:
    return ComparisonSpec(models=models, prompt_source="upload", prompt_source_id=str(path),
                          reference_column="answer", metadata_columns=("topic",), sampling=SAMPLING, **extra)


def test_spec_validation(tmp_path):
    with pytest.raises(BadInput, match="at least two models; got 1"):
        ComparisonSpec(models=("local:a",), prompt_source_id="x")
    with pytest.raises(BadInput, match="lists a model twice"):
        ComparisonSpec(models=("local:a", "local:a"), prompt_source_id="x")
    with pytest.raises(BadInput, match="prompt_source='web' is not one of the choices.*upload"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source="web", prompt_source_id="x")
    with pytest.raises(BadInput, match="No prompt set given"):
        ComparisonSpec(models=("local:a", "local:b"))
    with pytest.raises(BadInput, match="limit=0 is out of range.*at least 1"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", limit=0)
    with pytest.raises(BadInput, match="sampling.temp: unknown key in the comparison config.*Did you mean 'temperature'"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", sampling={"temp": 1})
    with pytest.raises(BadInput, match="temperature=5"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", sampling={"temperature": 5})
    with pytest.raises(BadInput, match="judge.target is empty"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", judge={"kind": "llm"})
    with pytest.raises(NotFound, match="no rubric named 'nope'"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", judge={"kind": "rubric", "rubric": "nope"})
    with pytest.raises(BadInput, match=r"context_tokens.local:a=3 is out of range.*at least 32"):
        ComparisonSpec(models=("local:a", "local:b"), prompt_source_id="x", context_tokens={"local:a": 3})
    with pytest.raises(BadInput, match="modles: unknown key in the comparison config.*Did you mean 'models'"):
        ComparisonSpec.from_dict({"modles": []})
    config = tmp_path / "c.yaml"
    config.write_text("models: [local:a, local:b]\nprompts: {source: upload, path: p.jsonl}\n")
    assert ComparisonSpec.from_yaml(config).prompt_source_id == str(tmp_path / "p.jsonl")


def test_create_refuses_unknown_models_and_missing_files(setup, tmp_path):
    with pytest.raises(NotFound, match="'local:ghost' is not a model or endpoint"):
        svc.create_comparison(spec(setup, models=("local:tiny-a", "local:ghost")), background=False)
    with pytest.raises(BadInput, match="does not exist"):
        svc.create_comparison(spec(tmp_path / "none.jsonl"), background=False)
    with pytest.raises(NotFound, match="no dataset snapshot"):
        svc.create_comparison(ComparisonSpec(models=("local:tiny-a", "local:tiny-b"), prompt_source="snapshot_eval",
                                             prompt_source_id="snap_x"), background=False)


def test_local_and_endpoint_outputs_cached_and_recorded(setup, fake_openai):
    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    targets = ("local:tiny-a", "local:tiny-b", "endpoint:fake")
    created = svc.create_comparison(spec(setup, models=targets), background=False)
    result = svc.run_comparison(created.comparison_id)
    assert result.status == "ready", result.messages
    assert result.outputs.generated == 9 and result.outputs.reused == 0
    page = svc.get_side_by_side(created.comparison_id, page_size=10)
    assert page.total == 3 and [a.model for a in page.rows[0].answers] == list(targets)
    assert page.rows[0].metadata == {"topic": "nature", "source": "upload:prompts.jsonl"}
    assert page.rows[0].answers[2].text.startswith("echo #")
    outputs = store.outputs_of(get_database(), created.comparison_id)
    local = next(o for o in outputs if o.model_id == "local:tiny-a")
    assert local.sampling_params["temperature"] == 0.0 and local.sampling_params["max_tokens"] == 8
    assert local.sampling_params["backend"] == "transformers" and local.completion_tokens <= 8
    # The same prompts, models and settings again: every answer comes from the stored outputs.
    requests = fake_openai.stats.requests
    again = svc.create_comparison(spec(setup, models=targets), background=False)
    second = svc.run_comparison(again.comparison_id)
    assert (second.outputs.generated, second.outputs.reused) == (0, 9)
    assert fake_openai.stats.requests == requests
    assert svc.get_side_by_side(again.comparison_id).rows[1].answers[0].text == page.rows[1].answers[0].text
    assert svc.get_side_by_side(created.comparison_id, search="cats").total == 1
    assert svc.get_side_by_side(created.comparison_id, slice_key="topic", slice_value="nature").total == 2


def test_prompt_longer_than_context_is_truncated_and_flagged(setup, tmp_path):
    path = tmp_path / "long.jsonl"
    long_prompt = "the cat sat on the mat " * 200        # ~1,200 words, far past the tiny model's 512 positions
    path.write_text(json.dumps({"prompt": long_prompt}) + "\n" + json.dumps({"prompt": "Short one."}) + "\n")
    created = svc.create_comparison(ComparisonSpec(models=("local:tiny-a", "local:tiny-b"), prompt_source="upload",
                                                   prompt_source_id=str(path), sampling=SAMPLING), background=False)
    result = svc.run_comparison(created.comparison_id)
    assert result.status == "ready" and result.outputs.truncated == 2
    assert any("longer than a model's context" in m for m in result.messages)
    flagged = svc.get_side_by_side(created.comparison_id, truncated_only=True)
    assert flagged.total == 1 and all(a.truncated for a in flagged.rows[0].answers)
    out = next(o for o in store.outputs_of(get_database(), created.comparison_id) if o.truncated)
    assert out.sampling_params["prompt_tokens_before_truncation"] > 512


def test_a_model_that_fails_to_load_is_named_with_the_reason(setup, tiny_b_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_b_dir, broken)
    models_svc.add_model(str(broken), name="broken")
    (broken / "model.safetensors").unlink()
    created = svc.create_comparison(spec(setup, models=("local:tiny-a", "local:tiny-b", "local:broken")),
                                    background=False)
    result = svc.run_comparison(created.comparison_id)
    assert result.status == "partial"
    (message,) = [m for m in result.messages if "broken" in m]
    assert "local:broken could not be loaded" in message and "has no weights" in message
    assert svc.get_comparison(created.comparison_id).report["status"] == "partial"


def test_endpoint_down_mid_run_then_resume(setup, fake_openai):
    models_svc.add_endpoint("flaky", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10, concurrency=1)
    fake_openai.configure(fail_500_after=1)            # answers one request, then every request fails
    created = svc.create_comparison(spec(setup, models=("local:tiny-a", "endpoint:flaky")), background=False)
    first = svc.run_comparison(created.comparison_id)
    assert first.status == "partial" and first.outputs.failed == {"endpoint:flaky": 2}
    assert any("endpoint:flaky: 2 answers failed" in m for m in first.messages)
    fake_openai.configure(fail_500_after=None)          # the endpoint is back
    before = fake_openai.stats.requests
    second = svc.run_comparison(created.comparison_id)
    assert second.status == "ready" and second.outputs.generated == 2 and second.outputs.already == 4
    assert fake_openai.stats.requests - before == 2    # only the missing answers were asked for


def _ready(setup, **extra) -> str:
    created = svc.create_comparison(spec(setup, **extra), background=False)
    assert svc.run_comparison(created.comparison_id).status == "ready"
    return created.comparison_id


def test_arena_hides_names_randomises_order_and_allows_one_vote_per_pair(setup):
    comparison_id = _ready(setup)
    rng = random.Random(0)
    seen_first = set()
    for _ in range(3):
        pair = svc.next_arena_pair(comparison_id, "ann", rng)
        assert "tiny" not in json.dumps(pair.__dict__)          # nothing names the models
        seen_first.add(store.get_output(get_database(), pair.output_a_id).model_id)
        result = svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_b_id, "a", "ann")
        assert {result.model_a, result.model_b} == {"local:tiny-a", "local:tiny-b"}
        with pytest.raises(BadInput, match="ann has already voted on this pair"):
            svc.cast_vote(comparison_id, pair.prompt_id, pair.output_b_id, pair.output_a_id, "b", "ann")
    assert seen_first == {"local:tiny-a", "local:tiny-b"}           # the order was randomised
    assert svc.next_arena_pair(comparison_id, "ann") is None        # ann has judged every pair
    assert svc.next_arena_pair(comparison_id, "bob") is not None
    with pytest.raises(BadInput, match="winner='c' is not a vote"):
        svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_b_id, "c", "bob")
    with pytest.raises(BadInput, match="voter name is empty"):
        svc.next_arena_pair(comparison_id, "  ")
    with pytest.raises(BadInput, match="not a pair of this comparison"):
        svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_a_id, "a", "bob")
    board = svc.leaderboard(comparison_id=comparison_id, voter_kind="human")
    assert board.votes == 3 and len(board.ratings) == 2


def test_rubric_judge_leaderboard_slices_and_agreement(setup):
    comparison_id = _ready(setup, judge={"kind": "rubric", "rubric": "reference_match", "params": {"mode": "f1"}})
    counts = svc.get_comparison(comparison_id).counts
    assert counts["judge_votes"] == 3
    votes = store.vote_table(get_database(), comparison_id=comparison_id)
    assert set(votes["voter"]) == {"rubric:reference_match"}
    # Every rubric verdict is either a decision, a tie or "both bad" (neither answer matched).
    assert set(votes["winner"]) <= {"a", "b", "tie", "both_bad"}
    pair = svc.next_arena_pair(comparison_id, "ann", random.Random(1))
    svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_b_id, "tie", "ann")
    board = svc.leaderboard(comparison_id=comparison_id, slice_key="topic", length_controlled=True)
    assert board.votes == 4 and {r.model for r in board.ratings} == {"local:tiny-a", "local:tiny-b"}
    assert set(board.slices) <= {"nature", "animals"} and board.slices
    assert board.agreement is not None and board.agreement.n == 1
    assert board.length_controlled and 0 <= board.length_controlled[0].lc_win_rate <= 1
    assert svc.judge_comparison(comparison_id, {"kind": "rubric", "rubric": "reference_match",
                                                "params": {"mode": "f1"}}).skipped == 3   # resumes, never twice
    with pytest.raises(BadInput, match="voter_kind='robot'"):
        svc.leaderboard(voter_kind="robot")
    with pytest.raises(BadInput, match="slice_key='a;b'"):
        svc.leaderboard(slice_key="a;b")


def test_llm_judge_in_both_orders_and_position_bias_warning(setup, fake_openai):
    fake_openai.configure(reply=lambda request: '{"winner": "A", "rationale": "the first one"}')
    models_svc.add_endpoint("judge", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    comparison_id = _ready(setup, judge={"kind": "llm", "target": "endpoint:judge"})
    assert fake_openai.stats.requests == 6               # 3 pairs, each judged in both orders
    votes = store.vote_table(get_database(), comparison_id=comparison_id)
    assert list(votes["winner"]) == ["tie"] * 3           # "A" in both orders = it follows the slot, not the answer
    board = svc.leaderboard(comparison_id=comparison_id)
    (bias,) = board.position_bias
    assert (bias.first, bias.second) == (6, 0) and not bias.biased   # 6 verdicts: p = 0.03, not yet below 0.01
    extra = store.VoteRow(comparison_id, "p", "x", "y", "tie", "llm", "endpoint:judge", metadata={"shown": ["a"] * 20})
    store.write_votes(get_database(), [extra], replace=True)
    board = svc.leaderboard(comparison_id=comparison_id)
    assert board.warnings and "endpoint:judge preferred the first (A) answer in 100%" in board.warnings[0]


def _snapshot_and_run(db, base_id: str, output_id: str) -> str:
    from storage import generation as gen_store
    from storage import snapshots, training

    gen_store.create_run(db, "gen_1", "g", {}, status="succeeded")
    pairs = [{"id": f"pp_{i}", "run_id": "gen_1", "prompt": f"Tell me fact number {i} about the sun.",
              "chosen": "the sun rises in the east", "rejected": "no", "confidence": 0.9, "flagged": False,
              "label_source": "judge",
              "metadata": {}} for i in range(6)]
    gen_store.write_batch(db, preference_pairs=pairs)
    snap = snapshots.create_snapshot(db, snapshots.SnapshotSpec(record_kind="preference", eval_fraction=0.5))
    run_id = training.insert_run(db, name="dpo-1", recipe="dpo", stage="dpo", spec={}, snapshot_id=snap.id,
                                 base_model_id=base_id, status="succeeded")
    training.set_output_model(db, run_id, output_id)
    return run_id


def test_evaluate_run_against_base_and_leakage_guard(setup, tiny_b_dir):
    from storage import registry

    db = get_database()
    base = models_svc.get_model("tiny-a")
    tuned = registry.insert_model(db, registry.ModelRecord(name="tuned", kind="hf", source="training",
                                                           hf_path=str(tiny_b_dir), base_model_id=base.id))
    run_id = _snapshot_and_run(db, base.id, tuned.id)
    with db.session() as cur:  # the training engine records the run on the model it registers
        cur.execute("UPDATE models SET training_run_id = ? WHERE id = ?", [run_id, tuned.id])
    created = svc.evaluate_run_against_base(run_id, judge={"kind": "rubric", "rubric": "reference_match",
                                                           "params": {"mode": "f1"}},
                                            background=False, sampling=SAMPLING)
    summary, board = svc.run_evaluation(run_id)
    assert summary.comparison_id == created.comparison_id and summary.training_run_id == run_id
    assert summary.models == ["local:tuned", "local:tiny-a"] and summary.status == "ready"
    assert created.prompts == 3 and board.votes == 3 and created.warnings == []   # held-out prompts: no leakage
    with pytest.raises(NotFound, match="no training run 'run_x'"):
        svc.evaluate_run_against_base("run_x")
    # Training prompts as the evaluation set: the guard names the model and the overlap.
    from storage import snapshots

    train = snapshots.read_snapshot_rows(db, summary.prompt_source_id, "train")
    path = setup.parent / "leak.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": r["prompt"][0]["content"]}) for r in train) + "\n")
    leaked = svc.create_comparison(ComparisonSpec(models=("local:tuned", "local:tiny-a"), prompt_source="upload",
                                                  prompt_source_id=str(path)), background=False)
    assert leaked.warnings and "3 of 3 evaluation prompts overlap the training prompts of local:tuned" in leaked.warnings[0]


def test_reference_metrics_bleu_rouge_perplexity_and_an_endpoint_note(setup, fake_openai):
    """BLEU / ROUGE-L equal the libraries' values on the same answers; perplexity is finite and differs
    between the two tiny models; an endpoint gets a note instead of a perplexity; the result is stored."""
    import math

    import sacrebleu
    from rouge_score import rouge_scorer

    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)
    comparison_id = _ready(setup, models=("local:tiny-a", "local:tiny-b", "endpoint:fake"))
    report = svc.compute_metrics(comparison_id)
    by_model = {m["model"]: m for m in report["models"]}
    prompts = {p.id: p for p in store.prompts_of(get_database(), comparison_id)}
    outs = [o for o in store.outputs_of(get_database(), comparison_id) if o.model_id == "local:tiny-a"]
    hyps, refs = [o.text for o in outs], [prompts[o.prompt_id].reference for o in outs]
    assert by_model["local:tiny-a"]["with_reference"] == len(PROMPTS)
    assert by_model["local:tiny-a"]["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
    assert by_model["local:tiny-a"]["rouge_l"] == round(expected, 4)
    ppl_a, ppl_b = by_model["local:tiny-a"]["perplexity"], by_model["local:tiny-b"]["perplexity"]
    assert math.isfinite(ppl_a) and ppl_a > 1 and ppl_a != ppl_b
    assert by_model["endpoint:fake"]["perplexity"] is None and "endpoint" in by_model["endpoint:fake"]["notes"][0]
    assert report["reward_accuracy"] is None            # no reward model in this comparison
    assert svc.stored_metrics(comparison_id) == report


def test_reward_model_accuracy_on_the_snapshots_held_out_pairs(setup, tiny_model_dir, tmp_path):
    """With a reward model and a preference snapshot's eval split as the prompts, the metrics give the
    reward model's accuracy on exactly those held-out pairs (checked against RewardScorer directly)."""
    from transformers import AutoModelForSequenceClassification

    from pipelines.compare.metrics import RewardScorer
    from storage import registry

    db = get_database()
    rm_dir = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1).save_pretrained(str(rm_dir))
    for item in tiny_model_dir.iterdir():
        if item.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy2(item, rm_dir / item.name)
    registry.insert_model(db, registry.ModelRecord(name="rm", kind="hf", source="folder", hf_path=str(rm_dir),
                                                   details={"task": "reward"}))
    base = models_svc.get_model("tiny-a")
    run_id = _snapshot_and_run(db, base.id, models_svc.get_model("tiny-b").id)
    snapshot_id = store.training_run(db, run_id)["snapshot_id"]
    created = svc.create_comparison(ComparisonSpec(models=("local:tiny-a", "local:tiny-b"), prompt_source="snapshot_eval",
                                                   prompt_source_id=snapshot_id, reward_model="rm", sampling=SAMPLING),
                                    background=False)
    assert svc.run_comparison(created.comparison_id).status == "ready"
    report = svc.compute_metrics(created.comparison_id, with_perplexity=False)
    accuracy = report["reward_accuracy"]
    held_out = store.snapshot_payloads(db, snapshot_id, "eval")
    triples = [(p["prompt"][0]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for _, p in held_out]
    assert accuracy["pairs"] == len(triples) == 3 and accuracy["reward_model"] == "rm"
    assert accuracy["accuracy"] == round(RewardScorer(str(rm_dir)).accuracy(triples), 4)
    assert all(m["perplexity"] is None for m in report["models"])
