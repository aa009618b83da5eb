"""The speed switches (pipelines/train/speed.py): what each becomes for each algorithm, device and PEFT method,
the TRL config each produces, and a run with them trains the tiny model on this CPU (where they resolve off and
an explicit ``on`` says why on the run)."""

from __future__ import annotations

import pytest

from pipelines.train.algorithms.common import StageInput
from pipelines.train.params import PeftSpec
from pipelines.train.registry import ALGORITHMS, PARAMS
from pipelines.train.spec import PRESETS, RunSpec
from pipelines.train import speed
from storage import training as store
from tests.test_train_runner import make_snapshot, new_run, tiny  # noqa: F401  (the fixture)

LORA = PeftSpec(method="lora", r=4, alpha=8, target_modules=["q_proj", "v_proj"])


def hyper(stage: str, **values):
    return PARAMS[stage](**values)


@pytest.mark.parametrize("stage", sorted(ALGORITHMS))
def test_auto_turns_liger_on_only_on_a_gpu_with_it_installed_for_the_algorithms_that_support_it(stage):
    on_gpu = speed.resolve(stage, hyper(stage), LORA, cuda=True, liger_available=True)
    assert on_gpu.use_liger_kernel is (stage in ("sft", "dpo", "kto", "orpo", "cpo", "grpo"))
    assert on_gpu.reasons["liger_kernel"].startswith("on: " if on_gpu.use_liger_kernel else "off: TRL's")
    cpu = speed.resolve(stage, hyper(stage), LORA, cuda=False, liger_available=True)
    assert not cpu.use_liger_kernel and not cpu.warnings
    missing = speed.resolve(stage, hyper(stage), LORA, cuda=True, liger_available=False)
    assert not missing.use_liger_kernel


@pytest.mark.parametrize("peft, why", [
    (PeftSpec(method="prompt_tuning", num_virtual_tokens=4), "prompt_tuning"),
    (PeftSpec(method="p_tuning", num_virtual_tokens=4), "p_tuning"),
    (PeftSpec(method="reft", r=2), "reft"),
    (PeftSpec(method="lora", r=4, alpha=8, target_modules=["q_proj", "lm_head"]), "adapter on lm_head"),
])
def test_liger_stays_off_where_its_fused_loss_would_train_the_wrong_thing(peft, why):
    for wanted in ("auto", "on"):
        got = speed.resolve("dpo", hyper("dpo", liger_kernel=wanted), peft, cuda=True, liger_available=True)
        assert not got.use_liger_kernel and why in got.reasons["liger_kernel"]
        assert bool(got.warnings) is (wanted == "on")


def test_on_that_cannot_apply_is_said_and_off_is_off():
    cpu = speed.resolve("sft", hyper("sft", liger_kernel="on", padding_free="on"), LORA, cuda=False,
                        liger_available=True, flash_available=True)
    assert not cpu.use_liger_kernel and not cpu.padding_free
    assert [w.split(":")[0] for w in cpu.warnings] == ["liger_kernel", "padding_free"]
    assert "CPU run" in cpu.warnings[0] and "trained without it" in cpu.warnings[0]
    off = speed.resolve("sft", hyper("sft", liger_kernel="off", padding_free="off"), LORA, cuda=True,
                        liger_available=True, flash_available=True)
    assert not off.use_liger_kernel and not off.padding_free and off.reasons["liger_kernel"] == "off: set off"


def test_padding_free_needs_flash_attention_and_loads_the_model_with_it():
    no_flash = speed.resolve("sft", hyper("sft"), LORA, cuda=True, liger_available=True, flash_available=False)
    assert not no_flash.padding_free and no_flash.attn_implementation is None
    assert "FlashAttention 2 is not installed" in no_flash.reasons["padding_free"]
    flash = speed.resolve("sft", hyper("sft"), LORA, cuda=True, liger_available=True, flash_available=True)
    assert flash.padding_free and flash.attn_implementation == "flash_attention_2"
    prompt = speed.resolve("sft", hyper("sft"), PeftSpec(method="prompt_tuning", num_virtual_tokens=4), cuda=True,
                           liger_available=True, flash_available=True)
    assert not prompt.padding_free
    assert "padding_free" not in speed.resolve("dpo", hyper("dpo"), LORA, cuda=True).reasons  # SFT's switch only


@pytest.mark.parametrize("stage, module", [("sft", "sft"), ("dpo", "dpo"), ("kto", "kto"), ("orpo", "odds_ratio")])
def test_each_switch_reaches_the_trl_config(stage, module, tmp_path):
    import importlib

    build_config = importlib.import_module(f"pipelines.train.algorithms.{module}").build_config
    values = {"max_steps": 2, "max_length": 64}
    if stage == "orpo":
        values["max_prompt_length"] = 32
    h = hyper(stage, **values)
    for switches in (speed.resolve(stage, h, LORA, cuda=True, liger_available=True, flash_available=True),
                     speed.resolve(stage, h, LORA, cuda=False)):
        inp = StageInput(stage=stage, model_path=tmp_path, output_dir=tmp_path / "ckpt", final_dir=tmp_path / "final",
                         hyper=h, peft=LORA, precision="fp32", cuda=False, train_rows=[], switches=switches)
        config = build_config(inp)
        assert config.use_liger_kernel is switches.use_liger_kernel
        if stage == "sft":
            assert config.padding_free is switches.padding_free


def test_every_preset_leaves_the_switches_on_auto():
    for name, preset in PRESETS.items():
        spec = RunSpec.from_dict({"name": "p", "recipe": "sft", "base_model": "tiny", "snapshot_id": "snap_x",
                                  "preset": name})
        assert spec.hyper.liger_kernel == "auto" and spec.hyper.padding_free == "auto", name


def test_a_run_that_asks_for_the_switches_trains_on_this_cpu_and_says_they_were_off(db, tiny):  # noqa: F811
    snap = make_snapshot(db)
    run_id = new_run(db, snap, recipe="sft", hyper={"liger_kernel": "on", "padding_free": "on"})
    from pipelines.train.runner import run_training

    result = run_training(run_id)
    assert result.status == "succeeded" and result.output_model == "r1"
    assert any(w.startswith("liger_kernel: on was asked") and "CPU run" in w for w in result.warnings)
    assert any(w.startswith("padding_free: on was asked") for w in result.warnings)
    assert store.list_metrics(db, run_id)
