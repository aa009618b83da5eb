"""The runner end to end on real snapshots and the tiny model: stages hand on, outputs land in the registry
with a model card and load for generation; cancel, kill -9 and resume; bad runs fail with clear messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.llm.base import SamplingParams
from pipelines.train.runner import run_training
from pipelines.train.params import field_names
from pipelines.train.spec import RunSpec, params_class
from storage import registry
from storage import training as store
from storage.pairs import insert_preference_pairs
from storage.snapshots import SnapshotSpec, create_snapshot
from core.errors import NotFound, StorageError, TrainingError
from studio.services import models as models_service
from tests.fixtures.tiny import kill_training_mid_run

REPO = Path(__file__).resolve().parents[1]
ANSWERS = [("The cat sat on the mat.", "Rain fell on the roof all night and the river rose."),
           ("Good answers are short and clear.", "The train left the station at nine in the morning.")]


class Recorder:
    """A progress reporter that keeps every event (the runner only calls update)."""

    def __init__(self):
        self.events: list[dict] = []

    def update(self, **event):
        self.events.append(event)


def make_snapshot(db, n: int = 8, eval_fraction: float = 0.0) -> str:
    rows = [{"prompt": f"Question {i}: what did the cat do?", "chosen": ANSWERS[i % 2][0], "rejected": ANSWERS[i % 2][1],
             "confidence": 0.9} for i in range(n)]
    insert_preference_pairs(db, rows)
    return create_snapshot(db, SnapshotSpec(record_kind="preference", eval_fraction=eval_fraction,
                                            drop_duplicates=False)).id


@pytest.fixture
def tiny(db, tiny_model_dir):
    return models_service.add_model(str(tiny_model_dir), name="tiny")


def new_run(db, snapshot_id: str, **over) -> str:
    hyper = {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "save_steps": 2,
             "max_length": 64}
    if "max_prompt_length" in field_names(params_class(over.get("recipe", "dpo"))):  # ppo, grpo...: a prompt budget
        hyper["max_prompt_length"] = 32
    hyper.update(over.pop("hyper", {}))
    spec = RunSpec.from_dict({"name": "r1", "recipe": "dpo", "base_model": "tiny", "snapshot_id": snapshot_id,
                              "hyper": hyper, **over})
    return store.insert_run(db, name=spec.name, recipe=spec.recipe, stage=spec.recipe, spec=spec.to_dict(),
                            snapshot_id=snapshot_id)


def test_sft_then_dpo_registers_adapter_with_card_and_lineage(db, tiny):
    snap = make_snapshot(db, eval_fraction=0.25)
    run_id = new_run(db, snap, include_sft=True)
    recorder = Recorder()
    result = run_training(run_id, reporter=recorder)
    assert result.status == "succeeded" and result.output_model == "r1"
    stages = store.child_runs(db, run_id)
    assert [(s.stage, s.status) for s in stages] == [("sft", "succeeded"), ("dpo", "succeeded")]
    sft_model, dpo_model = registry.get_model(db, "r1-sft"), registry.get_model(db, "r1")
    assert sft_model.kind == "hf" and sft_model.base_model_id == tiny.id       # merged, handed on
    assert dpo_model.kind == "adapter" and dpo_model.base_model_id == sft_model.id
    assert store.get_run(db, run_id).output_model_id == dpo_model.id
    assert {"rewards/margins", "rewards/accuracies", "loss"} <= {m.name for m in store.list_metrics(db, stages[1].id)}
    assert any("eval_loss" in k for k in store.get_run(db, stages[1].id).final_metrics)
    card = (Path(dpo_model.adapter_path) / "README.md").read_text()
    assert snap in card and "Recipe**: dpo" in card and stages[0].id in card and "rewards/margins" in card
    assert dpo_model.card["snapshot"]["id"] == snap
    assert any(e.get("stage") == "dpo (2/2)" and e.get("rss_mb") for e in recorder.events)
    backend = models_service.backend_for("local:r1")
    text = backend.generate([{"role": "user", "content": "What did the cat do?"}],
                            SamplingParams(max_tokens=6, temperature=0.0)).text
    assert text.strip()


def test_cancel_keeps_checkpoint_and_resume_continues_the_step_count(db, tiny):
    run_id = new_run(db, make_snapshot(db), hyper={"max_steps": 4, "save_steps": 10})
    calls = {"n": 0}

    def stop_after_two_steps() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    assert run_training(run_id, should_stop=stop_after_two_steps).status == "cancelled"
    row = store.get_run(db, run_id)
    assert row.status == "cancelled" and "checkpoint is kept" in row.error
    assert store.latest_checkpoint(db, run_id).step == 2       # saved on stop, although save_steps is 10
    recorder = Recorder()
    result = run_training(run_id, reporter=recorder)
    assert result.status == "succeeded"
    assert recorder.events[0]["done"] == 2                       # resumed at step 2, not 0
    assert max(m.step for m in store.list_metrics(db, run_id)) == 4


def test_kill_9_mid_run_then_resume_from_the_checkpoint(db, tiny, studio_home):
    run_id = new_run(db, make_snapshot(db), hyper={"max_steps": 24, "save_steps": 2})
    db.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "train", "--run", run_id], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_training_mid_run(run_id, past_step=2, pid=proc.pid)
    proc.wait()
    killed_at = store.latest_checkpoint(db, run_id).step
    assert store.get_run(db, run_id).status == "running"        # nobody reported: the service reconciles this
    recorder = Recorder()
    result = run_training(run_id, reporter=recorder)
    assert result.status == "succeeded"
    assert recorder.events[0]["done"] >= killed_at >= 2
    assert max(m.step for m in store.list_metrics(db, run_id)) == 24


def test_too_little_data_names_the_counts(db, tiny):
    run_id = new_run(db, make_snapshot(db, n=3), recipe="rlhf", include_sft=False,
                     hyper={"per_device_train_batch_size": 4})
    with pytest.raises(TrainingError, match=r"The reward stage has 3 training examples .*needs at least 4|"
                                            r"ppo stage has 3 prompts .* needs at least 4"):
        run_training(run_id)
    assert store.get_run(db, run_id).status == "failed"


def test_missing_reward_model_and_base_model_fail_clearly(db, tiny):
    snap = make_snapshot(db)
    run_id = new_run(db, snap, recipe="ppo", reward_model="no-such-rm")
    with pytest.raises(NotFound, match=r"reward model 'no-such-rm' is neither a registered model.*tiny"):
        run_training(run_id)
    row = store.get_run(db, run_id)
    assert row.status == "failed" and "no-such-rm" in row.error
    run_id = new_run(db, snap, reward_model="tiny", recipe="ppo")
    with pytest.raises(TrainingError, match=r"reward model 'tiny' is not a reward model.*LlamaForCausalLM"):
        run_training(run_id)
    with pytest.raises(NotFound, match="no training run"):
        run_training("run_missing")


def test_disk_full_while_saving_a_checkpoint_fails_clearly_and_keeps_the_database(db, tiny, studio_home):
    """A real full disk (a 64 KB tmpfs under STUDIO_HOME/runs) while the first checkpoint is written:
    the run fails with a message that names the disk and what to do; DuckDB, on another disk, is intact."""
    runs = studio_home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(runs)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and a tmpfs mount to make a full disk")
    try:
        run_id = new_run(db, make_snapshot(db), hyper={"max_steps": 2, "save_steps": 1})
        with pytest.raises(StorageError, match=r"The disk filled up while the dpo stage was saving under .*runs.*"
                                                r"Free some space .* then resume the run"):
            run_training(run_id)
        row = store.get_run(db, run_id)
        assert row.status == "failed" and "disk filled up" in row.error and str(runs) in row.error, row.error
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)
    assert store.get_run(db, run_id).status == "failed" and store.list_checkpoints(db, run_id) == []
