"""ReFT (peft.method: reft): the LoReFT intervention against its definition, the positions it edits, the
spec's rules, and real SFT and DPO runs on the tiny Llama: the base weights stay as they were while the
outputs change, checkpoints hold the interventions only and resume, and the registered output answers
prompts through the local backend and Compare's perplexity with the intervention applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.llm.base import SamplingParams
from pipelines.models.adapters import REFT_CONFIG, REFT_WEIGHTS, parse_positions
from pipelines.models.reft import LoReFT, Reft, ReftConfig, select_positions
from pipelines.train.reft_trainer import prompt_mask
from pipelines.train.runner import run_training
from pipelines.train.spec import RunSpec
from storage import registry
from storage import training as store
from core.errors import TrainingError

PROMPTS = ["Say something nice number 1.", "What did the cat do?", "Tell me about the weather.", "Write a word."]


def test_loreft_is_h_plus_rt_of_wh_plus_b_minus_rh_with_orthonormal_r():
    torch.manual_seed(0)
    loreft = LoReFT(hidden_size=64, rank=4)
    r, w, b = loreft.rotate.weight, loreft.source.weight, loreft.source.bias
    assert torch.allclose(r @ r.T, torch.eye(4), atol=1e-5)
    h = torch.randn(2, 5, 64)
    assert torch.allclose(loreft(h), h + (h @ w.T + b - h @ r.T) @ r, atol=1e-5)
    assert torch.allclose(loreft(h) @ r.T, (h @ w.T + b), atol=1e-4)   # in R's subspace, h becomes W h + b
    assert torch.allclose(LoReFT(64, 4)(h), h, atol=1e-5)              # a new one is the identity (W = R, b = 0)


def test_positions_are_counted_in_each_rows_prompt_whatever_the_padding():
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)     # generation: left padding
    assert select_positions(left, 1, 1).int().tolist() == [[0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1]]
    assert select_positions(left, 0, 2).int().tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]]
    # SFT marks the prompt with label -100 (and the padding after the completion too); DPO has a completion_mask.
    sft = {"input_ids": torch.ones(1, 6, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]]),
           "labels": torch.tensor([[-100, -100, -100, 7, 8, -100]])}
    dpo = {"input_ids": torch.ones(1, 6, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]]),
           "completion_mask": torch.tensor([[0, 0, 1, 1, 0, 0]])}
    assert prompt_mask(sft).int().tolist() == [[1, 1, 1, 0, 0, 0]]
    assert prompt_mask(dpo).int().tolist() == [[1, 1, 0, 0, 0, 0]]
    assert [parse_positions(t) for t in ("f2+l3", "l1", "f1+f2", "x1", "f0")] == [(2, 3), (0, 1), None, None, None]


def _spec(**over) -> dict:
    return {"name": "r", "recipe": "sft", "base_model": "tiny", "snapshot_id": "s", **over}


@pytest.mark.parametrize("over, message", [
    ({"peft": {"method": "reft", "positions": "first3"}}, r"peft\.positions='first3' is not fN, lN or fN\+lN"),
    ({"peft": {"method": "reft", "layers": [-1]}}, r"peft\.layers\[0\]=-1 is out of range"),
    ({"recipe": "kto", "peft": {"method": "reft"}}, r"peft\.method='reft' does not fit recipe 'kto'.*sft or dpo"),
    ({"recipe": "dpo", "include_sft": True, "peft": {"method": "reft"}}, r"does not fit recipe 'dpo' with include_sft"),
    ({"processes": 2, "peft": {"method": "reft"}}, r"processes=2 does not fit peft\.method='reft'"),
])
def test_reft_spec_rules_name_the_field_and_the_fix(over, message):
    with pytest.raises(TrainingError, match=message):
        RunSpec.from_dict(_spec(**over))


def test_a_layer_past_the_models_last_is_refused_with_the_range(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    config = ReftConfig(layers=(0, 5), positions="f1", rank=2, hidden_size=64)
    with pytest.raises(TrainingError, match=r"peft\.layers=\[5\] is out of range: the model has 2 decoder layers"):
        Reft(config).attach(model, error=TrainingError)


def test_sft_trains_only_the_interventions_and_changes_the_outputs(tiny_model_dir, tmp_path):
    from trl import SFTTrainer

    from pipelines.train.algorithms import StageInput, sft
    from pipelines.train.data import to_dataset
    from pipelines.train.modeling import load_causal_lm, load_tokenizer
    from pipelines.train.params import PeftSpec, SFTParams
    from pipelines.train.reft_trainer import prepare, reft_of

    rows = [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": "The cat."}]}
            for p in PROMPTS]
    inp = StageInput(stage="sft", model_path=tiny_model_dir, output_dir=tmp_path / "ckpt", final_dir=tmp_path / "final",
                     hyper=SFTParams(max_steps=3, per_device_train_batch_size=2, learning_rate=1e-2, save_steps=10,
                                     max_length=64),
                     peft=PeftSpec(method="reft", r=4, positions="f2+l2"), precision="fp32", cuda=False,
                     train_rows=rows)
    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir, inp.hyper, inp.peft, "fp32", tokenizer.pad_token_id)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainer_cls, model = prepare(SFTTrainer, model, inp)
    reft = reft_of(model)
    start = {k: v.clone() for k, v in reft.state_dict().items()}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {f"reft.{k}" for k in start}
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What did the cat do?"}], tokenize=False,
                                           add_generation_prompt=True)
    batch = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad(), reft.disabled():
        base_logits = model(**batch).logits
    trainer = trainer_cls(model=model, args=sft.build_config(inp), train_dataset=to_dataset(rows),
                          processing_class=tokenizer)
    trainer.train()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())                     # the base did not move
    assert all(not torch.equal(after[f"reft.{k}"], v) for k, v in start.items())      # every intervention did
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, base_logits, atol=1e-4)


def _preference_snapshot(db, chosen: str = "The cat sat on the mat.", rejected: str = "Rain fell on the roof.") -> str:
    from storage.pairs import insert_preference_pairs
    from storage.snapshots import SnapshotSpec, create_snapshot

    rows = [{"prompt": f"Question {i}: what did the cat do?", "chosen": chosen, "rejected": rejected,
             "confidence": 0.9} for i in range(8)]
    insert_preference_pairs(db, rows)
    return create_snapshot(db, SnapshotSpec(record_kind="preference", eval_fraction=0.25, drop_duplicates=False)).id


def _new_run(db, snapshot_id: str, recipe: str, **hyper) -> str:
    spec = RunSpec.from_dict({"name": f"reft-{recipe}", "recipe": recipe, "base_model": "tiny",
                              "snapshot_id": snapshot_id, "evaluation": {"enabled": False},
                              "peft": {"method": "reft", "r": 4, "layers": [0, 1], "positions": "f1+l2"},
                              "hyper": {"max_steps": 3, "per_device_train_batch_size": 2, "learning_rate": 2e-2,
                                        "save_steps": 2, "max_length": 64, **hyper}})
    return store.insert_run(db, name=spec.name, recipe=spec.recipe, stage=spec.recipe, spec=spec.to_dict(),
                            snapshot_id=snapshot_id)


def _greedy(key: str) -> list[str]:
    """Greedy answers one prompt at a time, checked against the same prompts in one left-padded batch (the
    intervention edits each row's own first and last prompt tokens, wherever its padding ends)."""
    from studio.services import models as models_svc

    backend = models_svc.backend_for(key)
    params = SamplingParams(max_tokens=8, temperature=0.0)
    alone = [backend.generate([{"role": "user", "content": p}], params).text for p in PROMPTS]
    batched = backend.generate_batch([[{"role": "user", "content": p}] for p in PROMPTS], params)
    assert [g.text for g in batched] == alone
    return alone


def test_sft_output_is_registered_and_generation_and_compare_apply_the_intervention(db, tiny, tiny_model_dir):
    """The answers it learns start with a word the base never starts with here, so the edit of the last
    prompt token's state shows in the first word generated."""
    from pipelines.compare.metrics import perplexity

    snapshot_id = _preference_snapshot(db, chosen="Rain fell on the roof all night and the river rose.")
    run_id = _new_run(db, snapshot_id, "sft", max_steps=8, learning_rate=5e-2)
    assert run_training(run_id).status == "succeeded"
    record = registry.get_model(db, "reft-sft")
    folder = Path(record.adapter_path)
    assert record.kind == "adapter" and record.base_model_id == registry.get_model(db, "tiny").id
    assert record.architecture == "LoReFT adapter" and record.parameters == 2 * (2 * 4 * 64 + 4)
    assert set(load_file(str(folder / REFT_WEIGHTS))) == {f"{layer}.{name}" for layer in (0, 1) for name in
                                                          ("rotate.parametrizations.weight.original", "source.weight",
                                                           "source.bias")}
    assert not list(folder.glob("model*.safetensors"))
    assert json.loads((folder / REFT_CONFIG).read_text())["layers"] == [0, 1]
    assert "reft_config.json" in (folder / "README.md").read_text() and record.card["peft"]["positions"] == "f1+l2"
    base, trained = _greedy("local:tiny"), _greedy("local:reft-sft")
    assert not any(a.startswith("Rain") for a in base) and any(a.startswith("Rain") for a in trained)
    texts = ["The cat sat on the mat.", "Rain fell on the roof all night."]
    assert perplexity(tiny_model_dir, texts, adapter_path=folder) != pytest.approx(perplexity(tiny_model_dir, texts))


def test_dpo_with_reft_cancels_keeping_the_interventions_and_resumes(db, tiny):
    run_id = _new_run(db, _preference_snapshot(db), "dpo", max_steps=4, save_steps=10)
    calls = {"n": 0}

    def stop_after_two_steps() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    assert run_training(run_id, should_stop=stop_after_two_steps).status == "cancelled"
    checkpoint = Path(store.latest_checkpoint(db, run_id).path)
    assert store.latest_checkpoint(db, run_id).step == 2
    assert (checkpoint / REFT_WEIGHTS).is_file() and not (checkpoint / "model.safetensors").is_file()
    saved = load_file(str(checkpoint / REFT_WEIGHTS))
    assert run_training(run_id).status == "succeeded"
    assert max(m.step for m in store.list_metrics(db, run_id)) == 4
    assert min(m.step for m in store.list_metrics(db, run_id) if m.name == "loss") == 1
    margins = {m.step: m.value for m in store.list_metrics(db, run_id) if m.name == "rewards/margins"}
    assert margins[1] == pytest.approx(0.0, abs=1e-6) and any(abs(v) > 1e-6 for v in margins.values())
    final = load_file(str(Path(registry.get_model(db, "reft-dpo").adapter_path) / REFT_WEIGHTS))
    assert set(final) == set(saved) and any(not torch.equal(final[k], saved[k]) for k in saved)


@pytest.fixture
def tiny(db, tiny_model_dir):
    from studio.services import models as models_svc

    return models_svc.add_model(str(tiny_model_dir), name="tiny")
