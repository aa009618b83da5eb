"""The training writer: metrics, checkpoint rows and progress leave the training thread; a checkpoint is
catalogued only after the metrics queued before it are stored; a database held by another process
never stalls a step; a failed write fails the stage and catalogues nothing past the lost metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.train.stages import resume_point, run_stage
from pipelines.train.writer import CATALOGUED, TrainingWriter
from storage import training as store
from storage.db import Database
from core.errors import DatabaseBusy
from tests.fixtures.core import wait_for
from tests.test_train_algo import stage_input

HOLD = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.readline()"


@contextmanager
def held_by_another_process(db: Database):
    """Another process opens the DuckDB file (DuckDB then refuses every other process) until ``release()``."""
    db.close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db.path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"

        def release() -> None:
            if holder.poll() is None:
                holder.stdin.write("\n")
                holder.stdin.flush()
                holder.wait(timeout=30)
        yield release
    finally:
        holder.kill()
        holder.wait()


def new_run(db) -> str:
    return store.insert_run(db, name="w", recipe="dpo", stage="dpo", spec={}, snapshot_id="s")


def fake_checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return path


def test_metrics_wait_in_the_queue_and_a_checkpoint_follows_its_metrics(db, tmp_path):
    run_id = new_run(db)
    writer = TrainingWriter(db, run_id, interval_s=3600).start()
    try:
        writer.metrics(1, 0.1, {"loss": 0.7, "learning_rate": 1e-4, "note": "text is skipped"})
        writer.metrics(2, 0.2, {"loss": 0.6})
        assert store.list_metrics(db, run_id) == []            # queued, not written by the caller
        path = fake_checkpoint(tmp_path, 2)
        writer.checkpoint(2, str(path), {"loss": 0.6})
        writer.flush(timeout_s=60)
        assert [(m.step, m.name) for m in store.list_metrics(db, run_id)] == [(1, "learning_rate"), (1, "loss"),
                                                                               (2, "loss")]
        assert [(c.step, c.metrics) for c in store.list_checkpoints(db, run_id)] == [(2, {"loss": 0.6})]
        assert (path / CATALOGUED).exists()
        writer.metrics(2, 0.2, {"loss": 0.55})                  # a resumed run logs step 2 again: replaced
    finally:
        assert writer.close() is None
    assert [m.value for m in store.list_metrics(db, run_id) if m.name == "loss"] == [0.7, 0.55]


def test_the_writer_keeps_the_newest_catalogued_checkpoints_and_never_an_uncatalogued_one(db, tmp_path):
    """The trainer deletes no checkpoint: were it to rotate, it could delete the last catalogued folder while
    newer ones still wait for their drain. The writer deletes only catalogued folders past the newest two."""
    run_id = new_run(db)
    folders = {step: fake_checkpoint(tmp_path, step) for step in (2, 4, 6, 8)}
    writer = TrainingWriter(db, run_id, interval_s=3600).start()
    for step in (2, 4, 6):
        writer.checkpoint(step, str(folders[step]), {})
    assert writer.close() is None
    assert [step for step, folder in folders.items() if folder.is_dir()] == [4, 6, 8]   # 8: not catalogued
    assert [c.step for c in store.list_checkpoints(db, run_id)] == [2, 4, 6]
    assert resume_point(db, run_id) == str(folders[6])


def test_resume_starts_from_the_newest_catalogued_checkpoint_only(db, tmp_path):
    """A folder the trainer finished but the writer had not catalogued (a kill between the two) may follow
    unstored metrics: resume does not start from it."""
    run_id = new_run(db)
    first, second = fake_checkpoint(tmp_path, 2), fake_checkpoint(tmp_path, 4)
    assert resume_point(db, run_id) is None
    store.insert_checkpoint(db, run_id, 2, str(first))
    assert resume_point(db, run_id) == str(first)
    store.insert_checkpoint(db, run_id, 4, str(second))
    (second / "trainer_state.json").write_text("{cut short")
    assert resume_point(db, run_id) == str(first)


def test_a_failed_write_is_raised_and_nothing_after_it_is_catalogued(db, tmp_path):
    run_id = new_run(db)
    impatient = Database(db.path, busy_timeout_s=0.3)
    writer = TrainingWriter(impatient, run_id, interval_s=0).start()
    with held_by_another_process(db) as release:
        writer.metrics(1, 0.1, {"loss": 0.7})
        writer.checkpoint(1, str(fake_checkpoint(tmp_path, 1)), {})
        with pytest.raises(DatabaseBusy, match="stayed locked"):
            writer.flush(timeout_s=60)
        with pytest.raises(DatabaseBusy):
            writer.check()                                        # what the next step end does
        release()
    writer.metrics(2, 0.2, {"loss": 0.6})
    assert isinstance(writer.close(), DatabaseBusy)
    impatient.close()
    assert store.list_metrics(db, run_id) == [] and store.list_checkpoints(db, run_id) == []


def test_a_database_held_by_another_process_never_stalls_a_training_step(db, tiny_model_dir, tmp_path):
    """Another process holds the DuckDB file from before the first step to the end of the last: every
    step still trains (only the writer thread waits), and once the file is free every metric and both
    checkpoints are stored."""
    run_id = new_run(db)
    inp = stage_input("dpo", tiny_model_dir, tmp_path, max_steps=4, save_steps=2, logging_steps=1)
    steps_while_held = []
    with held_by_another_process(db) as release:
        def at_each_step_end() -> bool:              # the stop check runs on the training thread every step
            steps_while_held.append(len(steps_while_held) + 1)
            if len(steps_while_held) == inp.hyper.max_steps:   # the last step is done
                wait_for(lambda: db.lock_waits > 0, "the writer to find the file held", 60)
                release()                                       # let the writer in
            return False

        output = run_stage(db, run_id, inp, reporter=None, label="dpo", should_stop=at_each_step_end)
    assert steps_while_held == [1, 2, 3, 4] and output.global_step == 4
    assert sorted(m.step for m in store.list_metrics(db, run_id) if m.name == "loss") == [1, 2, 3, 4]
    assert [c.step for c in store.list_checkpoints(db, run_id)] == [2, 4]

