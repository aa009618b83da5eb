"""Each algorithm trains two steps on the tiny Llama on CPU, writes metrics and a checkpoint through the
studio's callbacks, changes weights, and the checkpoint loads back and generates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.llm.base import SamplingParams
from pipelines.llm.transformers_local import TransformersBackend
from pipelines.train.algorithms import StageInput, trainer_for
from pipelines.train.data import rows_for_stage
from pipelines.train.outputs import merge_adapter
from pipelines.train.params import PeftSpec, field_names
from pipelines.train.registry import PARAMS
from pipelines.train.stages import run_stage
from storage import training as store

EXPECTED = {
    "sft": {"loss", "learning_rate", "grad_norm", "mean_token_accuracy"},
    "reward": {"loss", "accuracy", "margin"},
    "dpo": {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"},
    "orpo": {"loss", "rewards/margins", "rewards/accuracies"},
    "cpo": {"loss", "rewards/margins"},
    "kto": {"loss", "learning_rate"},
    "grpo": {"loss", "reward", "rewards/rubric_length/mean"},
    "rloo": {"loss", "reward"},
    "ppo": {"objective/kl", "objective/scores", "objective/rlhf_reward", "loss/policy_avg", "loss/value_avg",
            "learning_rate"},
}


def preference_rows(n: int = 8) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"Question {i}: what did the cat do?"}],
             "chosen": [{"role": "assistant", "content": "The cat sat on the mat."}],
             "rejected": [{"role": "assistant", "content": "Rain fell on the roof all night and the river rose."}]}
            for i in range(n)]


def stage_input(stage, model_path, out: Path, rows=None, peft=None, **hyper) -> StageInput:
    settings = dict(max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3, save_steps=2, max_length=64,
                    max_prompt_length=32, num_generations=2)
    settings.update(hyper)
    params = PARAMS[stage]   # the stage's own class: only the settings it has
    settings = {k: v for k, v in settings.items() if k in field_names(params)}
    return StageInput(stage=stage, model_path=model_path, output_dir=out / "checkpoints", final_dir=out / "final",
                      hyper=params(**settings), peft=peft or PeftSpec(), precision="fp32", cuda=False,
                      train_rows=rows_for_stage(stage, "preference", rows or preference_rows()))


def train_with_callbacks(db, stage, inp, run_id="run_algo"):
    """The stage as the runner trains it: metrics and checkpoints through the writer thread, the stop check."""
    return run_stage(db, run_id, inp, reporter=None, label=stage, should_stop=lambda: False)


@pytest.fixture(scope="module")
def reward_dir(tiny_model_dir, tmp_path_factory):
    """A trained (LoRA, merged) reward model, for PPO and the reward-model reward of GRPO."""
    out = tmp_path_factory.mktemp("reward")
    result = trainer_for("reward")(stage_input("reward", tiny_model_dir, out))
    return merge_adapter(result.final_dir, tiny_model_dir, out / "merged", "reward")


def assert_generates(base: Path, adapter: Path | None) -> None:
    backend = TransformersBackend(base, adapter_path=adapter, batch_size=1)
    text = backend.generate([{"role": "user", "content": "What did the cat do?"}],
                            SamplingParams(max_tokens=6, temperature=0.0)).text
    assert isinstance(text, str) and text.strip()


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "orpo", "cpo", "kto", "grpo", "rloo", "ppo"])
def test_algorithm_trains_logs_checkpoints_and_generates(stage, db, tiny_model_dir, reward_dir, tmp_path):
    inp = stage_input(stage, tiny_model_dir, tmp_path, per_device_train_batch_size=4 if stage in ("grpo", "rloo") else 2)
    if stage in ("ppo", "grpo"):
        inp.reward_model_path = reward_dir
    if stage in ("grpo", "rloo"):
        inp.reward_funcs = [{"rubric": "length", "params": {"max_words": 5}}]
        if stage == "grpo":
            inp.reward_funcs.append("reward_model")
    out = train_with_callbacks(db, stage, inp)
    assert out.global_step == 2 and out.is_adapter
    names = {m.name for m in store.list_metrics(db, "run_algo")}
    assert EXPECTED[stage] <= names, sorted(names)
    checkpoint = store.latest_checkpoint(db, "run_algo")
    assert checkpoint.step == 2 and Path(checkpoint.path).is_dir()
    weights = load_file(str(out.final_dir / "adapter_model.safetensors"))
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero: non-zero means it trained
    if stage != "reward":
        assert_generates(tiny_model_dir, Path(checkpoint.path))


def test_full_finetune_dpo_changes_base_weights(db, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).model.layers[0].self_attn.q_proj.weight.clone()
    out = train_with_callbacks(db, "dpo", stage_input("dpo", tiny_model_dir, tmp_path, peft=PeftSpec(method="full")))
    assert not out.is_adapter
    after = AutoModelForCausalLM.from_pretrained(str(out.final_dir)).model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(before, after)
    assert_generates(out.final_dir, None)


def test_prompt_tuning_sft_and_default_chat_template(db, tiny_model_no_template_dir, tmp_path):
    inp = stage_input("sft", tiny_model_no_template_dir, tmp_path, peft=PeftSpec(method="prompt_tuning",
                                                                              num_virtual_tokens=4))
    out = train_with_callbacks(db, "sft", inp)
    assert out.is_adapter and out.global_step == 2
    assert any("no chat template" in w for w in inp.warnings)
    saved = (out.final_dir / "tokenizer_config.json").read_text() + "".join(
        p.read_text() for p in out.final_dir.glob("chat_template.jinja"))
    assert "### Assistant" in saved  # the default template travels with the output
