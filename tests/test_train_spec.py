"""Run specs: every validation rule, presets, YAML, batch/step arithmetic, device checks, scale-out export,
and the training store (runs, metrics, checkpoints) on a real DuckDB file."""

from __future__ import annotations

import errno
from dataclasses import fields

import pytest
import yaml

from core.specs import describe_fields
from pipelines.train.registry import PARAMS
from pipelines.train.params import (DPOParams, PeftSpec, PPOParams, RewardParams, SFTParams,
                                    TrainingParams)
from pipelines.train.scaleout import accelerate_command, worker_command
from pipelines.train.spec import (PRESETS, RECIPES, RunSpec, check_device, effective_batch, estimate_steps,
                                  params_class, resolve_precision)
from pipelines.train.stages import map_failure
from storage import training as store
from core.errors import NotFound, StorageError, TrainingError

BASE = {"name": "r1", "recipe": "dpo", "base_model": "tiny", "snapshot_id": "snap_1"}


def spec(**over) -> RunSpec:
    data = {**BASE, **over}
    return RunSpec.from_dict(data)


# (field, value, a recipe whose class has the field, the message)
HYPER_RULES = [
    ("learning_rate", 0.0, "dpo", r"learning_rate=0.0 is out of range\. Use a number above 0.0 and at most 1.0"),
    ("learning_rate", 2.0, "dpo", r"learning_rate=2.0 is out of range"),
    ("lr_scheduler_type", "zigzag", "dpo", r"lr_scheduler_type='zigzag' is not one of the choices.*cosine"),
    ("warmup_steps", -1, "dpo", r"warmup_steps=-1 is out of range"),
    ("warmup_ratio", 0.9, "dpo", r"warmup_ratio=0.9 is out of range.*from 0.0 to 0.5"),
    ("num_train_epochs", 0, "dpo", r"num_train_epochs=0 is out of range"),
    ("max_steps", 0, "dpo", r"max_steps=0 is out of range.*Use -1 .*or a number of steps from 1"),
    ("per_device_train_batch_size", 0, "dpo", r"per_device_train_batch_size=0 is out of range.*from 1 to 4096"),
    ("per_device_train_batch_size", 2.5, "dpo", r"per_device_train_batch_size=2.5 must be a whole number"),
    ("gradient_accumulation_steps", 0, "dpo", r"gradient_accumulation_steps=0 is out of range"),
    ("gradient_checkpointing", "yes", "dpo", r"gradient_checkpointing='yes' must be true or false"),
    ("max_grad_norm", -1.0, "dpo", r"max_grad_norm=-1.0 is out of range"),
    ("weight_decay", 1.5, "dpo", r"weight_decay=1.5 is out of range"),
    ("dropout", 0.95, "dpo", r"dropout=0.95 is out of range.*to 0.9"),
    ("early_stopping_patience", -2, "dpo", r"early_stopping_patience=-2 is out of range"),
    ("early_stopping_patience", 2, "dpo", r"eval_steps=0 is out of range.*above 0 when early_stopping_patience is set"),
    ("beta", 0.0, "dpo", r"beta=0.0 is out of range.*above 0.0"),
    ("beta", True, "orpo", r"beta=True must be a number\. true and false are not numbers here"),
    ("kl_coef", -0.1, "ppo", r"kl_coef=-0.1 is out of range"),
    ("max_length", 8, "dpo", r"max_length=8 is out of range.*from 16"),
    ("max_prompt_length", 600, "orpo", r"max_prompt_length=600 is out of range.*at most 504 \(max_length - 8\)"),
    ("seed", -1, "dpo", r"seed=-1 is out of range"),
    ("precision", "fp8", "dpo", r"precision='fp8' is not one of the choices.*auto, fp32, bf16, fp16"),
    ("save_steps", 0, "dpo", r"save_steps=0 is out of range"),
    ("logging_steps", 0, "dpo", r"logging_steps=0 is out of range"),
    ("eval_steps", -5, "dpo", r"eval_steps=-5 is out of range"),
    ("num_generations", 1, "grpo", r"num_generations=1 is out of range.*from 2"),
    ("learning_rate", float("nan"), "dpo", r"learning_rate=nan must be a finite number"),
]


@pytest.mark.parametrize("field, value, recipe, match", HYPER_RULES)
def test_every_hyperparameter_rule_names_field_value_and_range(field, value, recipe, match):
    with pytest.raises(TrainingError, match="^" + match):
        PARAMS[recipe](**{field: value})
    extra = {"reward_model": "rm"} if recipe == "ppo" else {"reward_funcs": ["reward_model"], "reward_model": "rm"}
    with pytest.raises(TrainingError, match="^hyper." + match):  # the same through a spec
        spec(recipe=recipe, hyper={field: value}, **(extra if recipe in ("ppo", "grpo") else {}))


@pytest.mark.parametrize("recipe, hyper, match", [
    ("dpo", {"kl_coef": 0.1}, r"^hyper.kl_coef is a setting of GRPO, RLOO and PPO; this run's recipe is dpo "
                              r"\(stages: dpo\)\. Remove kl_coef, or pick a recipe .*\(grpo, rloo, ppo\)"),
    ("sft", {"beta": 0.1}, r"^hyper.beta is a setting of DPO, ORPO, CPO and KTO; this run's recipe is sft"),
    ("dpo", {"max_prompt_length": 32}, r"^hyper.max_prompt_length is a setting of ORPO, CPO, GRPO, RLOO and PPO"),
    ("ppo", {"num_generations": 4}, r"^hyper.num_generations is a setting of GRPO and RLOO; this run's recipe is ppo"),
    ("dpo", {"bta": 0.1}, r"^hyper.bta: unknown key in the run spec\. Did you mean 'beta'\?"),
])
def test_a_setting_of_another_algorithm_is_named_with_its_owners(recipe, hyper, match):
    with pytest.raises(TrainingError, match=match):
        spec(recipe=recipe, hyper=hyper, reward_model="rm")


def test_each_recipe_gets_its_own_parameter_class():
    assert type(spec().hyper) is DPOParams and not hasattr(spec().hyper, "kl_coef")
    assert type(spec(recipe="sft").hyper) is SFTParams
    rlhf = spec(recipe="rlhf", include_sft=True, hyper={"kl_coef": 0.2, "learning_rate": 1e-4},
                stage_hyper={"reward": {"learning_rate": 1e-3}})
    assert type(rlhf.hyper) is PPOParams and rlhf.hyper.kl_coef == 0.2
    reward = rlhf.hyper_for("reward")
    assert type(reward) is RewardParams and reward.learning_rate == 1e-3 and not hasattr(reward, "kl_coef")
    assert type(rlhf.hyper_for("sft")) is SFTParams and rlhf.hyper_for("sft").learning_rate == 1e-4
    with pytest.raises(TrainingError, match=r"^stage_hyper.reward.kl_coef is a setting of .*PPO.*the reward stage does "
                                            r"not use it"):
        spec(recipe="rlhf", stage_hyper={"reward": {"kl_coef": 0.1}})
    for recipe, stages in RECIPES.items():   # the recipe's class covers every one of its stages' fields
        covered = {f.name for f in fields(params_class(recipe))}
        assert all({f.name for f in fields(PARAMS[s])} <= covered for s in ("sft", *stages)), recipe
    with pytest.raises(TrainingError, match=r"^hyper.max_prompt_length is a setting of ORPO, CPO, GRPO, RLOO and PPO"):
        RunSpec(**BASE, hyper=PPOParams())
    assert RunSpec(**BASE, hyper=TrainingParams(max_steps=3)).hyper.max_steps == 3


def test_every_preset_works_with_every_recipe():
    """A preset's hyper values the recipe lacks (max_prompt_length for dpo) are left out, not refused."""
    extra = {"reward_model": "rm", "reward_funcs": ["reward_model"]}
    for name, preset in PRESETS.items():
        for recipe in RECIPES:
            loaded = spec(recipe=recipe, preset=name, **extra, hyper={"per_device_train_batch_size": 4,
                                                                     "gradient_accumulation_steps": 1})
            mine = {f.name for f in fields(loaded.hyper)}
            assert all(getattr(loaded.hyper, k) == v for k, v in preset["hyper"].items()
                       if k in mine and k not in ("per_device_train_batch_size", "gradient_accumulation_steps"))
            assert set(preset["hyper"]) <= set().union(*({f.name for f in fields(c)} for c in PARAMS.values()))


@pytest.mark.parametrize("field, value, match", [
    ("method", "adalora", r"method='adalora' is not one of the choices.*lora, qlora, prompt_tuning, p_tuning, full, reft"),
    ("r", 0, r"r=0 is out of range.*from 1"),
    ("alpha", 0, r"alpha=0 is out of range"),
    ("dropout", 1.0, r"dropout=1.0 is out of range"),
    ("num_virtual_tokens", 0, r"num_virtual_tokens=0 is out of range"),
    ("target_modules", [], r"target_modules=\[\] is empty.*module names"),
    ("target_modules", [""], r"target_modules\[0\]='' is empty"),
])
def test_every_peft_rule(field, value, match):
    with pytest.raises(TrainingError, match="^" + match):
        PeftSpec(**{field: value})
    with pytest.raises(TrainingError, match="^peft." + match):
        spec(peft={field: value})
    assert spec(peft={"target_modules": "all-linear"}).peft.target_modules == ["all-linear"]


@pytest.mark.parametrize("over, match", [
    ({"recipe": "magic"}, r"recipe='magic' is not one of the choices.*dpo, orpo, cpo, kto, reward, sft, grpo, rloo, ppo, rlhf"),
    ({"name": ""}, r"name='' is empty"),
    ({"base_model": "  "}, r"base_model='  ' is empty"),
    ({"snapshot_id": None}, r"snapshot_id=None must be text"),
    ({"recipe": "reward", "include_sft": True}, r"include_sft=True does not fit recipe 'reward'.*Use false"),
    ({"stage_hyper": {"ppo": {}}}, r"stage_hyper='ppo' is not a stage of this recipe.*stages: dpo"),
    ({"stage_hyper": {"dpo": {"beta": -1}}}, r"stage_hyper.dpo.beta=-1 is out of range"),
    ({"stage_hyper": {"dpo": {"bogus": 1}}}, r"stage_hyper.dpo.bogus: unknown key in the run spec"),
    ({"stage_hyper": {"dpo": 5}}, r"stage_hyper.dpo=5 must be a mapping"),
    ({"report_to": ["comet"]}, r"report_to\[0\]='comet' is not one of the choices.*tensorboard, wandb, mlflow"),
    ({"merge_adapter": True, "peft": {"method": "full"}}, r"merge_adapter=True does not fit.*only LoRA"),
    ({"processes": 0}, r"processes=0 is out of range"),
    ({"recipe": "ppo"}, r"PPO needs a trained reward model.*rlhf"),
    ({"recipe": "grpo"}, r"reward_funcs=\[\] is empty.*rubric name or 'reward_model'"),
    ({"recipe": "grpo", "reward_funcs": ["reward_model"]}, r"reward_model=None is empty"),
    ({"recipe": "grpo", "reward_funcs": ["no_such_rubric"]}, r"reward_funcs\[0\]: There is no rubric named 'no_such_rubric'"),
    ({"recipe": "grpo", "reward_funcs": ["length"]}, r"reward_funcs\[0\]: The rubric 'length' has no bound"),
    ({"recipe": "grpo", "reward_funcs": [{"rubric": "length", "oops": 1}]}, r"reward_funcs=.*is not a reward function"),
    ({"recipe": "grpo", "reward_funcs": [3]}, r"reward_funcs\[0\]=3 must be text or a mapping"),
    ({"recipe": "grpo", "reward_funcs": [{"rubric": "length", "params": {"max_words": 9}}],
      "hyper": {"per_device_train_batch_size": 3, "num_generations": 2}}, r"hyper.per_device_train_batch_size x gradient_accumulation_steps = 3 is not a multiple "
     r"of hyper.num_generations = 2"),
    ({"preset": "huge"}, r"preset='huge' is not one of the presets.*cpu_smoke_test"),
    ({"peft": {"rank": 4}}, r"peft.rank: unknown key in the run spec"),
    ({"colour": "red"}, r"colour: unknown key in the run spec\. Known keys here: name, recipe"),
    ({"evaluation": {"limit": 0}}, r"evaluation.limit=0 is out of range"),
    ({"evaluation": {"judge": {"kind": "rubric", "rubric": "length"}}}, r"evaluation.judge.params: The rubric 'length' has no bound"),
    ({"evaluation": {"judge": {"kind": "llm"}}}, r"evaluation.judge.target is empty for an LLM judge"),
])
def test_every_spec_rule(over, match):
    with pytest.raises((TrainingError, NotFound), match="^" + match):
        spec(**over)


def test_missing_required_key_and_bad_yaml_are_named(tmp_path):
    with pytest.raises(TrainingError, match=r"snapshot_id is missing from the run spec\. Add `snapshot_id: \.\.\.`"):
        RunSpec.from_dict({"name": "a", "recipe": "sft", "base_model": "m"})
    with pytest.raises(TrainingError, match=r"not valid YAML"):
        RunSpec.from_yaml("name: [unclosed\nrecipe: sft\n")
    with pytest.raises(TrainingError, match=r"must be a mapping"):
        RunSpec.from_yaml("- a\n- b\n")
    with pytest.raises(TrainingError, match=r"does not exist"):
        RunSpec.from_yaml(str(tmp_path / "nope.yaml"))


def test_stages_follow_the_recipe():
    assert spec(recipe="rlhf", reward_model=None).stages == ("reward", "ppo")
    assert spec(recipe="rlhf", include_sft=True).stages == ("sft", "reward", "ppo")
    assert spec(recipe="dpo", include_sft=True).stages == ("sft", "dpo")
    assert spec(recipe="orpo").stages == ("orpo",)
    assert spec(recipe="ppo", reward_model="rm").stages == ("ppo",)


def test_yaml_round_trip_with_preset_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**BASE, "preset": "cpu_smoke_test", "hyper": {"max_steps": 3},
                                    "stage_hyper": {"dpo": {"beta": 0.3}}}))
    loaded = RunSpec.from_yaml(str(path))
    assert loaded.hyper.max_steps == 3 and loaded.hyper.save_steps == PRESETS["cpu_smoke_test"]["hyper"]["save_steps"]
    assert loaded.hyper_for("dpo").beta == 0.3 and loaded.hyper.beta == 0.1
    again = RunSpec.from_yaml(loaded.to_yaml())
    assert again.to_dict() == loaded.to_dict()
    for name in PRESETS:
        assert spec(preset=name).peft.method in ("lora", "full")


def test_effective_batch_and_step_estimates():
    s = spec(hyper={"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_train_epochs": 2.0})
    assert effective_batch(s) == 8 and effective_batch(s, n_devices=4) == 32
    assert estimate_steps(s, 100) == 26           # ceil(ceil(100/4)/2)=13 per epoch, 2 epochs
    assert estimate_steps(spec(hyper={"max_steps": 7}), 100) == 7
    grpo = spec(recipe="grpo", reward_funcs=[{"rubric": "length", "params": {"max_words": 9}}],
                hyper={"per_device_train_batch_size": 4, "num_generations": 4})
    assert estimate_steps(grpo, 10) == 10          # 10 prompts x 4 completions / 4 per step
    with pytest.raises(TrainingError, match=r"n_train=-1 is not a count of examples"):
        estimate_steps(s, -1)


def test_gpu_only_options_are_refused_on_cpu():
    with pytest.raises(TrainingError, match=r"'qlora' needs a CUDA GPU.*lora on CPU"):
        check_device(spec(peft={"method": "qlora"}), cuda=False)
    with pytest.raises(TrainingError, match=r"precision = 'bf16' needs a GPU.*fp32"):
        check_device(spec(hyper={"precision": "bf16"}), cuda=False)
    with pytest.raises(TrainingError, match=r"precision = 'fp16' needs a GPU"):
        check_device(spec(stage_hyper={"dpo": {"precision": "fp16"}}), cuda=False)
    check_device(spec(hyper={"precision": "auto"}), cuda=False)
    assert resolve_precision("auto", cuda=False) == "fp32"
    assert resolve_precision("bf16", cuda=True) == "bf16"


def test_help_text_for_every_field():
    for cls in (*PARAMS.values(), PeftSpec):
        assert all(len(row.help) > 15 for row in describe_fields(cls)), cls
    assert all(f.metadata.get("help") for f in RunSpec.__dataclass_fields__.values())


def test_accelerate_command_and_configs():
    s = spec(preset="full_finetune_multi_gpu")
    command, config = accelerate_command(s, "deepspeed_zero3", num_processes=16, num_machines=2, run_id="run_x")
    parsed = yaml.safe_load(config)
    assert parsed["distributed_type"] == "DEEPSPEED" and parsed["deepspeed_config"]["zero_stage"] == 3
    assert parsed["num_processes"] == 16 and parsed["num_machines"] == 2 and parsed["mixed_precision"] == "bf16"
    assert command.startswith("accelerate launch --config_file accelerate.yaml --machine_rank $MACHINE_RANK")
    assert command.endswith("-m studio train --run run_x")
    _, fsdp = accelerate_command(s, "fsdp", num_processes=4)
    assert yaml.safe_load(fsdp)["distributed_type"] == "FSDP"
    assert yaml.safe_load(accelerate_command(spec(hyper={"precision": "fp32"}))[1])["mixed_precision"] == "no"
    with pytest.raises(TrainingError, match=r"backend = 'slurm' is not a scale-out backend"):
        accelerate_command(s, "slurm")
    with pytest.raises(TrainingError, match=r"num_processes = 1, num_machines = 2"):
        accelerate_command(s, num_processes=1, num_machines=2)
    assert worker_command("run_1")[-5:] == ["-m", "studio", "train", "--run", "run_1"]


def test_failures_are_mapped_to_what_to_change(tmp_path):
    import torch

    oom = map_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "dpo", tmp_path)
    assert isinstance(oom, TrainingError) and "smaller" not in oom.message
    with pytest.raises(TrainingError, match=r"dpo stage ran out of memory.*per_device_train_batch_size.*gradient_checkpointing.*lora"):
        raise oom
    full = map_failure(OSError(errno.ENOSPC, "No space left on device"), "sft", tmp_path / "ckpt")
    with pytest.raises(StorageError, match=rf"disk filled up .* saving under {tmp_path / 'ckpt'}.*resume"):
        raise full
    assert map_failure(KeyError("x"), "sft", tmp_path) is None


def test_training_store_runs_metrics_checkpoints(db):
    run_id = store.insert_run(db, name="r", recipe="rlhf", stage="rlhf", spec={"a": 1}, snapshot_id="s")
    child = store.insert_run(db, name="r:reward", recipe="rlhf", stage="reward", spec={}, snapshot_id="s",
                             parent_run_id=run_id, stage_index=0)
    assert [r.id for r in store.list_runs(db)] == [run_id]
    assert [r.id for r in store.child_runs(db, run_id)] == [child]
    store.set_status(db, run_id, "running", device="cpu")
    row = store.get_run(db, run_id)
    assert row.status == "running" and row.started_at and row.finished_at is None and row.device == "cpu"
    store.insert_metrics(db, child, 1, 0.1, {"loss": 1.5, "learning_rate": 1e-4, "note": "text", "nan": float("nan")})
    store.insert_metrics(db, child, 1, 0.1, {"loss": 1.25})   # idempotent per (run, step, name)
    store.insert_metrics(db, child, 2, 0.2, {"loss": 1.0})
    metrics = store.list_metrics(db, child)
    assert [(m.step, m.name, m.value) for m in metrics] == [
        (1, "learning_rate", 1e-4), (1, "loss", 1.25), (1, "nan", None), (2, "loss", 1.0)]
    assert [m.step for m in store.list_metrics(db, child, since_step=1)] == [2]
    store.insert_checkpoint(db, child, 2, "/x/checkpoint-2", {"loss": 1.0})
    store.insert_checkpoint(db, child, 4, "/x/checkpoint-4")
    store.insert_checkpoint(db, child, 4, "/x/checkpoint-4b")
    assert [c.path for c in store.list_checkpoints(db, child)] == ["/x/checkpoint-2", "/x/checkpoint-4b"]
    assert store.latest_checkpoint(db, child).step == 4
    store.set_status(db, run_id, "failed", error="boom", final_metrics={"loss": 1.0})
    row = store.get_run(db, run_id)
    assert row.status == "failed" and row.error == "boom" and row.final_metrics == {"loss": 1.0} and row.finished_at
    with pytest.raises(ValueError, match="unknown run status"):
        store.set_status(db, run_id, "exploded")


def test_a_spec_stored_before_per_algorithm_classes_still_loads():
    """Runs stored with the old flat hyperparameters (every algorithm's fields) still show and resume;
    a new spec with a foreign field is refused."""
    old = {"name": "old", "recipe": "dpo", "base_model": "tiny", "snapshot_id": "snap_x",
           "hyper": {"max_steps": 4, "beta": 0.2, "kl_coef": 0.05, "num_generations": 4},
           "stage_hyper": {"dpo": {"kl_coef": 0.1, "beta": 0.3}}}
    spec = RunSpec.from_stored(old)
    assert spec.hyper_for("dpo").beta == 0.3 and spec.hyper_for("dpo").max_steps == 4
    with pytest.raises(TrainingError, match="kl_coef is a setting of GRPO, RLOO and PPO"):
        RunSpec.from_dict(old)
