"""A run with ``processes: 2`` on the CPU: its job starts ``accelerate launch --num_processes 2`` (gloo DDP,
the tiny Llama), as the Train page's "processes" field does. Cancel reaches both ranks (they stop at the
same step, one checkpoint), resume starts both from the same checkpoint, the run's metrics are recorded
once, and its adapter has the shapes of a single-process run's."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from pipelines.train.runner import run_training
from pipelines.train.spec import RunSpec
from storage import registry
from storage import training as run_store
from storage.db import get_database
from studio import jobs
from studio.services import training as train_svc
from studio.services import training_queue as queue
from tests.fixtures.core import wait_for

STEPS = 30


def spec(snapshot_id: str, processes: int, steps: int) -> RunSpec:
    return RunSpec.from_dict({"name": f"p{processes}", "recipe": "dpo", "base_model": "tiny", "snapshot_id": snapshot_id,
                              "preset": "cpu_smoke_test", "processes": processes, "evaluation": {"enabled": False},
                              "hyper": {"max_steps": steps, "save_steps": 2, "max_length": 64}})


def finished(run_id: str, timeout: float = 240.0):
    return wait_for(lambda: (r := train_svc.get_run(run_id)).status not in run_store.ACTIVE and r,
                    f"run {run_id} to end", timeout, 0.3,
                    detail=lambda: " | ".join(queue.log_tail(train_svc.get_run(run_id).job_id, 15)))


def job_end(job_id: str):
    return wait_for(lambda: (j := jobs.get_job(job_id)) and not j.active and j, f"job {job_id} to end", 60)


def adapter_shapes(run_id: str) -> dict[str, tuple]:
    db = get_database()
    record = next(m for m in registry.list_models(db) if m.id == run_store.get_run(db, run_id).output_model_id)
    return {k: tuple(v.shape) for k, v in load_file(str(Path(record.adapter_path) / "adapter_model.safetensors")).items()}


def test_two_processes_cancel_resume_and_record_once(tiny_training_home):
    db = get_database()
    run = train_svc.start_run(spec(tiny_training_home.id, 2, STEPS))
    wait_for(lambda: run_store.list_checkpoints(db, run.id) or not train_svc.get_run(run.id).active,
             "the first checkpoint of the 2-process run", 240, 0.2)
    assert train_svc.get_run(run.id).status == "running", " | ".join(queue.log_tail(run.job_id, 30))
    train_svc.cancel_run(run.id, wait_s=0)
    cancelled = finished(run.id)
    assert cancelled.status == "cancelled" and cancelled.device == "cpu x2", cancelled
    kept = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    assert kept and max(kept) < STEPS                         # both ranks stopped early, together
    assert job_end(run.job_id).status == "cancelled"

    resumed = train_svc.resume_run(run.id)
    done = finished(run.id)
    assert done.status == "succeeded", done.error
    assert done.device == "cpu x2" and done.output_model == "p2"
    metrics = run_store.list_metrics(db, run.id)
    assert sorted(m.step for m in metrics if m.name == "loss") == list(range(1, STEPS + 1))   # once each
    assert len({(m.step, m.name) for m in metrics}) == len(metrics)
    after = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    assert all(after[step] == ckpt for step, ckpt in kept.items()) and max(after) == STEPS
    job = job_end(resumed.job_id)
    assert job.status == "succeeded" and job.progress.get("stage") == "done"
    assert "launching 2 training processes" in jobs.job_log_path(resumed.job_id).read_text()

    one = run_store.insert_run(db, name="p1", recipe="dpo", stage="dpo", snapshot_id=tiny_training_home.id,
                               spec=spec(tiny_training_home.id, 1, 2).to_dict())
    assert run_training(one).status == "succeeded"
    assert adapter_shapes(run.id) == adapter_shapes(one)
