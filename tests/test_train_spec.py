"""Run specs: every validation rule, presets, YAML, batch/step arithmetic, device checks, scale-out export,
and the training store (runs, metrics, checkpoints) on a real DuckDB file."""

from __future__ import annotations

import errno

import pytest
import yaml

from pipelines.train.params import HyperParams, PeftSpec, field_help
from pipelines.train.scaleout import accelerate_command, worker_command
from pipelines.train.spec import PRESETS, RunSpec, check_device, effective_batch, estimate_steps, resolve_precision
from pipelines.train.stages import map_failure
from storage import training as store
from core.errors import NotFound, StorageError, TrainingError

BASE = {"name": "r1", "recipe": "dpo", "base_model": "tiny", "snapshot_id": "snap_1"}


def spec(**over) -> RunSpec:
    data = {**BASE, **over}
    return RunSpec.from_dict(data)


@pytest.mark.parametrize("field, value, match", [
    ("learning_rate", 0.0, r"hyper.learning_rate = 0.0 .*> 0.0 and <= 1.0"),
    ("learning_rate", 2.0, r"hyper.learning_rate = 2.0"),
    ("lr_scheduler_type", "zigzag", r"hyper.lr_scheduler_type = 'zigzag'.*cosine"),
    ("warmup_steps", -1, r"hyper.warmup_steps = -1"),
    ("warmup_ratio", 0.9, r"hyper.warmup_ratio = 0.9.*<= 0.5"),
    ("num_train_epochs", 0, r"hyper.num_train_epochs = 0"),
    ("max_steps", 0, r"hyper.max_steps = 0.*>= 1"),
    ("per_device_train_batch_size", 0, r"hyper.per_device_train_batch_size = 0.*integer >= 1"),
    ("per_device_train_batch_size", 2.5, r"hyper.per_device_train_batch_size = 2.5.*an integer"),
    ("gradient_accumulation_steps", 0, r"hyper.gradient_accumulation_steps = 0"),
    ("gradient_checkpointing", "yes", r"hyper.gradient_checkpointing = 'yes'.*true or false"),
    ("max_grad_norm", -1.0, r"hyper.max_grad_norm = -1.0"),
    ("weight_decay", 1.5, r"hyper.weight_decay = 1.5"),
    ("dropout", 0.95, r"hyper.dropout = 0.95.*<= 0.9"),
    ("early_stopping_patience", -2, r"hyper.early_stopping_patience = -2"),
    ("early_stopping_patience", 2, r"hyper.eval_steps = 0 .*> 0 when early_stopping_patience is set"),
    ("beta", 0.0, r"hyper.beta = 0.0.*> 0.0"),
    ("kl_coef", -0.1, r"hyper.kl_coef = -0.1"),
    ("max_length", 8, r"hyper.max_length = 8.*>= 16"),
    ("max_prompt_length", 600, r"hyper.max_prompt_length = 600.*<= 504"),
    ("seed", -1, r"hyper.seed = -1"),
    ("precision", "fp8", r"hyper.precision = 'fp8'.*auto, fp32, bf16, fp16"),
    ("save_steps", 0, r"hyper.save_steps = 0"),
    ("logging_steps", 0, r"hyper.logging_steps = 0"),
    ("eval_steps", -5, r"hyper.eval_steps = -5"),
    ("num_generations", 1, r"hyper.num_generations = 1.*>= 2"),
    ("learning_rate", float("nan"), r"hyper.learning_rate = nan"),
])
def test_every_hyperparameter_rule_names_field_value_and_range(field, value, match):
    with pytest.raises(TrainingError, match=match):
        HyperParams(**{field: value})
    with pytest.raises(TrainingError, match=match):  # the same through a spec
        spec(hyper={field: value})


@pytest.mark.parametrize("field, value, match", [
    ("method", "adalora", r"peft.method = 'adalora'.*lora, qlora, prompt_tuning, p_tuning, full"),
    ("r", 0, r"peft.r = 0.*>= 1"),
    ("alpha", 0, r"peft.alpha = 0"),
    ("dropout", 1.0, r"peft.dropout = 1.0"),
    ("num_virtual_tokens", 0, r"peft.num_virtual_tokens = 0"),
    ("target_modules", [], r"peft.target_modules = \[\].*non-empty list"),
])
def test_every_peft_rule(field, value, match):
    with pytest.raises(TrainingError, match=match):
        PeftSpec(**{field: value})


@pytest.mark.parametrize("over, match", [
    ({"recipe": "magic"}, r"spec.recipe = 'magic'.*sft, reward, ppo, rlhf, dpo"),
    ({"name": ""}, r"spec.name = ''.*non-empty string"),
    ({"base_model": "  "}, r"spec.base_model"),
    ({"snapshot_id": None}, r"spec.snapshot_id = None"),
    ({"recipe": "reward", "include_sft": True}, r"spec.include_sft = True.*false for recipe 'reward'"),
    ({"stage_hyper": {"ppo": {}}}, r"spec.stage_hyper = 'ppo'.*a stage of this recipe: dpo"),
    ({"stage_hyper": {"dpo": {"beta": -1}}}, r"hyper.beta = -1"),
    ({"stage_hyper": {"dpo": {"bogus": 1}}}, r"stage_hyper.dpo has no setting 'bogus'"),
    ({"report_to": ["comet"]}, r"spec.report_to = 'comet'.*tensorboard, wandb, mlflow"),
    ({"merge_adapter": True, "peft": {"method": "full"}}, r"spec.merge_adapter = True.*only LoRA"),
    ({"recipe": "ppo"}, r"PPO needs a trained reward model.*rlhf"),
    ({"recipe": "grpo"}, r"spec.reward_funcs = \[\].*rubric name or 'reward_model'"),
    ({"recipe": "grpo", "reward_funcs": ["reward_model"]}, r"spec.reward_model = None"),
    ({"recipe": "grpo", "reward_funcs": ["no_such_rubric"]}, r"no rubric named 'no_such_rubric'"),
    ({"recipe": "grpo", "reward_funcs": ["length"]}, r"'length' has no bound"),
    ({"recipe": "grpo", "reward_funcs": [{"rubric": "length", "oops": 1}]}, r"spec.reward_funcs = .*params"),
    ({"recipe": "grpo", "reward_funcs": [{"rubric": "length", "params": {"max_words": 9}}],
      "hyper": {"per_device_train_batch_size": 3, "num_generations": 2}}, r"= 3 is not a multiple of hyper.num_generations = 2"),
    ({"preset": "huge"}, r"spec.preset = 'huge'.*cpu_smoke_test"),
    ({"peft": {"rank": 4}}, r"peft has no setting 'rank'"),
    ({"colour": "red"}, r"The run spec has no setting 'colour'"),
])
def test_every_spec_rule(over, match):
    with pytest.raises((TrainingError, NotFound), match=match):
        spec(**over)


def test_missing_required_key_and_bad_yaml_are_named(tmp_path):
    with pytest.raises(TrainingError, match=r"The run spec has no 'snapshot_id'"):
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
    with pytest.raises(TrainingError, match=r"estimate.n_train = -1"):
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
    for cls in (HyperParams, PeftSpec):
        assert all(len(text) > 15 for text in field_help(cls).values())
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


def test_metrics_are_buffered_and_flushed_at_checkpoints_and_the_end(db):
    """Each write opens the shared database file, so log events wait for the flush interval, a
    checkpoint, an evaluation or the end of training; nothing logged is lost."""
    from types import SimpleNamespace

    from pipelines.train.callbacks import MetricsCallback

    run_id = store.insert_run(db, name="buffered", recipe="dpo", stage="dpo", spec={}, snapshot_id="s")
    callback = MetricsCallback(db, run_id, flush_every_s=3600)
    state = SimpleNamespace(global_step=1, epoch=0.1, max_steps=3)
    callback.on_log(None, state, None, logs={"loss": 0.7, "learning_rate": 1e-4})
    assert store.list_metrics(db, run_id) == []                    # buffered, the file was not opened
    callback.on_save(None, state, None)
    assert {(m.step, m.name) for m in store.list_metrics(db, run_id)} == {(1, "loss"), (1, "learning_rate")}
    state.global_step = 2
    callback.on_log(None, state, None, logs={"loss": 0.6})
    callback.on_train_end(None, state, None)
    assert [(m.step, m.value) for m in store.list_metrics(db, run_id) if m.name == "loss"] == [(1, 0.7), (2, 0.6)]
    # a checkpoint follows this step (the trainer set should_save before logging): stored before it is written
    state.global_step = 3
    callback.on_log(None, state, SimpleNamespace(should_save=True), logs={"loss": 0.55})
    assert len([m for m in store.list_metrics(db, run_id) if m.name == "loss"]) == 3
    eager = MetricsCallback(db, run_id, flush_every_s=0)
    state.global_step = 4
    eager.on_log(None, state, None, logs={"loss": 0.5})
    assert len([m for m in store.list_metrics(db, run_id) if m.name == "loss"]) == 4
