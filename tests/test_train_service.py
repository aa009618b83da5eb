"""The training service on the tiny model, with real job processes: validation before a process
starts, a foreground run with lineage, the queue (two runs started at once: one runs, one waits),
kill -9 of the job process -> interrupted -> resume continues from the checkpoint, cancel, and a
failed run's error and hint."""

from __future__ import annotations

import pytest

from pipelines.train.spec import RunSpec
from storage import jobs as job_store
from storage import training as run_store
from storage.db import get_database
from core.errors import BadInput, NotFound, TrainingError
from studio.services import compare as compare_svc
from studio.services import models as models_svc
from studio.services import snapshots as snap_svc
from studio.services import training as svc
from studio.services import training_form as form_svc
from tests.fixtures.core import wait_for
from tests.fixtures.tiny import kill_training_mid_run

WAIT_S = 240


@pytest.fixture
def home(tiny_training_home):
    return tiny_training_home


def _spec(snapshot_id: str, name: str = "run", steps: int = 4, evaluation: dict | None = None, **hyper) -> RunSpec:
    return RunSpec.from_dict({"name": name, "recipe": "dpo", "base_model": "tiny", "snapshot_id": snapshot_id,
                              "preset": "cpu_smoke_test", "evaluation": evaluation or {"enabled": False},
                              "hyper": {"max_steps": steps, "save_steps": 2, "max_length": 64, **hyper}})


def _wait(predicate, what: str, timeout: float = WAIT_S, every: float = 0.3):
    return wait_for(predicate, what, timeout, every,
                    detail=lambda: f"runs: {[r.to_dict() for r in svc.list_runs()]}")


def _ghost_run(snapshot, name: str, pid: int) -> str:
    """A run stored as running whose job's process (``pid``, on this host) does not exist."""
    import socket

    db = get_database()
    run_id = run_store.insert_run(db, name=name, recipe="dpo", stage="dpo", spec=_spec(snapshot.id).to_dict(),
                                  snapshot_id=snapshot.id, status="running")
    job_store.insert_job(db, f"job_{name}", "training", name, {})
    job_store.set_pid(db, f"job_{name}", pid, socket.gethostname())
    run_store.set_job(db, run_id, f"job_{name}")
    return run_id


def test_start_refuses_what_cannot_train_before_a_process_starts(home, tiny_model_dir):
    with pytest.raises(NotFound, match="There is no snapshot 'snap_missing'"):
        svc.start_run(_spec("snap_missing"))
    sft = snap_svc.create_snapshot(snap_svc.SnapshotSpec(record_kind="prompts", eval_fraction=0))
    with pytest.raises(TrainingError, match="The dpo stage cannot learn from a prompts snapshot"):
        svc.start_run(_spec(sft.id))
    spec = _spec(home.id)
    spec.base_model = "nope"
    with pytest.raises(NotFound, match="The base model 'nope' is neither a registered model nor a folder"):
        svc.start_run(spec)
    spec.base_model, spec.peft.method = "tiny", "qlora"
    with pytest.raises(TrainingError, match="qlora.*needs a CUDA GPU"):
        svc.start_run(spec)
    assert svc.list_runs() == []


def test_estimate_counts_effective_batch_steps_and_time(home):
    spec = _spec(home.id, gradient_accumulation_steps=3, max_steps=-1, num_train_epochs=2.0)
    est = form_svc.estimate(spec, 9)
    assert est.effective_batch == 6 and est.steps == 4  # ceil(ceil(9 / 2) / 3) = 2 steps an epoch, 2 epochs
    assert est.seconds is not None and est.seconds > 0 and "cpu" in est.basis
    assert "no run finished here yet" in est.basis
    dpo = {f.name for f in form_svc.form_fields("hyper", "dpo")}
    assert dpo >= {"learning_rate", "beta", "max_grad_norm"} and not dpo & {"kl_coef", "num_generations"}
    assert {"kl_coef", "num_generations", "max_prompt_length"} <= {f.name for f in form_svc.form_fields("hyper", "grpo")}
    assert "beta" not in {f.name for f in form_svc.form_fields("hyper", "sft")}
    assert "liger_kernel" in dpo and "padding_free" not in dpo     # an SFT stage's switch, shown with one
    assert "padding_free" in {f.name for f in form_svc.form_fields("hyper", "dpo", include_sft=True)}
    assert "padding_free" in {f.name for f in form_svc.form_fields("hyper", "sft")}
    assert all(f.help for f in form_svc.form_fields("peft"))


def test_foreground_run_trains_registers_its_output_and_shows_lineage(home):
    judge = {"kind": "rubric", "rubric": "length", "params": {"max_words": 3}}
    run = svc.start_run(_spec(home.id, name="fg", evaluation={"judge": judge, "max_tokens": 8}), detach=False)
    assert run.status == "queued" and run.job_id
    run = svc.execute_run(run.id, run.job_id, show_bar=False)
    assert run.status == "succeeded", run.error
    # the closed loop: the new model was compared with its base on the snapshot's 3 held-out prompts
    summary, board = compare_svc.run_evaluation(run.id)
    assert summary.training_run_id == run.id and summary.status == "ready"
    assert set(summary.models) == {f"local:{run.output_model}", "local:tiny"}
    assert summary.counts["prompts"] == 3 and board.votes == 3 and len(board.ratings) == 2
    assert run.output_model and models_svc.get_model(run.output_model).training_run_id == run.id
    detail = svc.get_run_detail(run.id)
    names = {m["name"] for m in detail.metrics}
    assert {"loss", "learning_rate", "grad_norm"} <= names and any(n.startswith("rewards/") for n in names)
    assert [c["step"] for c in detail.checkpoints][-1] == 4
    lineage = detail.lineage["snapshot_id"]
    assert lineage["snapshot"]["id"] == home.id
    assert {(r["run_id"], r["split"], r["pairs"]) for r in lineage["by_generation_run"]} == \
        {("gen1", "train", 9), ("gen1", "eval", 3)}
    assert job_store.get_job(get_database(), run.job_id).status == "succeeded"
    # the next estimate is calibrated on this run's real duration: the same spec predicts about what it took
    took = (run.finished_at - run.started_at).total_seconds()
    again = form_svc.estimate(_spec(home.id, name="fg"), home.n_train)
    assert "calibrated on the last 1 run" in again.basis and again.seconds == pytest.approx(took, rel=0.05, abs=0.06)  # shown to 0.1 s
    # the model card shows on the Models page, with the snapshot it learned from
    assert home.id in models_svc.model_card(run.output_model)
    from streamlit.testing.v1 import AppTest

    from tests.fixtures.core import REPO_ROOT

    page = AppTest.from_file(str(REPO_ROOT / "pages" / "models.py"), default_timeout=60).run()
    page.selectbox(key="card_model").set_value(run.output_model).run()
    assert not page.exception and any(home.id in m.value for m in page.markdown)
    assert models_svc.model_card("tiny") is None
    with pytest.raises(BadInput, match="is succeeded; only a failed, cancelled or interrupted run resumes"):
        svc.resume_run(run.id)
    with pytest.raises(BadInput, match="is already succeeded"):
        svc.cancel_run(run.id)


def test_two_runs_started_at_once_one_runs_one_waits(home):
    first = svc.start_run(_spec(home.id, name="first"))
    second = svc.start_run(_spec(home.id, name="second"))
    seen_waiting = False

    def both_done() -> bool:
        nonlocal seen_waiting
        runs = {r.id: r for r in svc.list_runs()}
        assert not (runs[first.id].status == "running" and runs[second.id].status == "running"), "both running"
        if runs[first.id].status == "running" and runs[second.id].status == "queued":
            seen_waiting = seen_waiting or runs[second.id].queue_position == 0
        return all(r.status not in ("queued", "running") for r in runs.values())

    _wait(both_done, "both runs to finish", every=0.1)
    a, b = svc.get_run(first.id), svc.get_run(second.id)
    assert (a.status, b.status) == ("succeeded", "succeeded"), (a.error, b.error)
    assert seen_waiting and b.started_at >= a.finished_at


def test_kill_9_of_the_job_is_reconciled_and_resume_continues_from_the_checkpoint(home):
    run = svc.start_run(_spec(home.id, name="killed", steps=40))
    db = get_database()
    kill_training_mid_run(run.id, past_step=4)
    killed = _wait(lambda: (r := svc.get_run(run.id)).status == "interrupted" and r, "reconcile")
    assert "Resume it from its last checkpoint with `python -m studio runs resume" in killed.error
    assert "resume" in killed.hint
    before = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    resumed = svc.resume_run(run.id)
    assert resumed.status in ("queued", "running") and resumed.job_id != run.job_id
    done = _wait(lambda: (r := svc.get_run(run.id)).status not in ("queued", "running") and r, "the resumed run")
    assert done.status == "succeeded", done.error
    after = {c.step: c.id for c in run_store.list_checkpoints(db, run.id)}
    assert max(after) == 40
    # continued, not restarted: the checkpoints from before the kill were not written again
    assert all(after[step] == ckpt_id for step, ckpt_id in before.items() if step <= max(before))


def test_cancel_a_running_run_keeps_its_checkpoint_and_a_queued_one_never_starts(home):
    running = svc.start_run(_spec(home.id, name="long", steps=200))
    waiting = svc.start_run(_spec(home.id, name="waiting"))
    db = get_database()
    _wait(lambda: run_store.list_checkpoints(db, running.id), "a checkpoint")
    assert svc.get_run(waiting.id).status == "queued"
    assert svc.cancel_run(waiting.id).status == "cancelled"
    cancelled = svc.cancel_run(running.id, wait_s=60)
    assert cancelled.status == "cancelled", cancelled
    assert run_store.list_checkpoints(db, running.id)
    assert svc.get_run(waiting.id).started_at is None
    with pytest.raises(BadInput, match="is already cancelled"):
        svc.cancel_run(running.id)


def test_a_failed_run_shows_its_error_and_a_hint(home, tmp_path, tiny_model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    models_svc.add_model(str(broken), name="broken")
    (broken / "config.json").write_text("{not json")
    spec = _spec(home.id, name="bad")
    spec.base_model = "broken"
    run = svc.start_run(spec)
    failed = _wait(lambda: (r := svc.get_run(run.id)).status not in ("queued", "running") and r, "the failure")
    assert failed.status == "failed" and failed.error
    assert failed.hint and "resume" in failed.hint
    assert svc.get_run_detail(run.id).log_tail


def test_reconcile_marks_a_run_whose_process_is_gone(home):
    run_id = _ghost_run(home, "ghost", 2**22 + 12345)
    assert svc.reconcile_runs() == [run_id]
    assert svc.get_run(run_id).status == "interrupted"


@pytest.mark.parametrize("error, hint", [
    ("CUDA out of memory. Tried to allocate 2.00 GiB", "smaller per_device_train_batch_size"),
    ("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory", "gradient_checkpointing"),
    ("OSError: [Errno 28] No space left on device", "The disk is full"),
    ("ValueError: something else", "runs resume run_x"),
])
def test_failure_hints(error, hint):
    assert hint in svc.hint_for(error, "run_x")


def test_studio_start_reconciles_runs_left_running(home):
    """`up` marks a run whose process died with the last session interrupted, and says how to resume."""
    from studio import lifecycle

    run_id = _ghost_run(home, "ghost2", 2**22 + 12346)
    said = []
    lifecycle._reconcile_interrupted_work(said.append)
    assert run_store.get_run(get_database(), run_id).status == "interrupted"
    assert run_id in said[0] and "runs resume" in said[0]


def test_a_double_click_on_start_makes_one_run(home):
    """Two starts of the same spec at once (a double click, two tabs) give one run and one process."""
    from concurrent.futures import ThreadPoolExecutor

    spec = _spec(home.id, name="double", steps=2)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: svc.start_run(spec), range(2))
    assert first.id == second.id and first.job_id == second.job_id
    assert [r.id for r in svc.list_runs() if r.name == "double"] == [first.id]
    _wait(lambda: svc.get_run(first.id).status not in ("queued", "running"), "the run to finish")
    assert svc.get_run(first.id).status == "succeeded"
    assert len([m for m in models_svc.list_models() if m.name.startswith("double")]) == 1
