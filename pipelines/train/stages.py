"""One stage of a run: its rows, its callbacks, where it resumes from, and how a failure reads.

Why separate from the runner: the runner decides the order and hands outputs on; this module runs
one trainer with everything a stage needs (live metrics and checkpoints through the stage's writer
thread, cancel, early stopping) and turns out-of-memory and disk-full errors into messages that say
what to change.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any, Callable

from pipelines.train.algorithms import StageInput, StageOutput, trainer_for
from pipelines.train.callbacks import (CheckpointCallback, EarlyStoppingOnEvalLoss, MetricsCallback, StopCallback,
                                       StopRequested)
from pipelines.train.data import check_enough, rows_for_stage
from pipelines.train.distributed import SINGLE, Ranks
from pipelines.train.monitoring import reporting
from pipelines.train.params import HyperParams
from pipelines.train.writer import TrainingWriter
from storage import training as store
from storage.db import Database
from core.errors import StorageError, StudioError, TrainingCancelled, TrainingError

CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin",
                      "model.safetensors.index.json", "reft_model.safetensors")
OOM_HINT = ("Lower hyper.per_device_train_batch_size (raise gradient_accumulation_steps to keep the effective batch), "
            "turn on hyper.gradient_checkpointing, use peft.method: lora, or shorten hyper.max_length.")


def stage_rows(stage: str, kind: str, rows: list[dict], hyper: HyperParams, snapshot_id: str) -> list[dict]:
    converted = rows_for_stage(stage, kind, rows)
    check_enough(stage, converted, hyper, snapshot_id)
    return converted


def usable_checkpoint(path: Path) -> bool:
    """A checkpoint a kill did not cut short: trainer state plus weights."""
    if not (path / "trainer_state.json").is_file():
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return any((path / name).is_file() for name in CHECKPOINT_WEIGHTS)


def resume_point(db: Database, stage_run_id: str) -> str | None:
    """The newest complete checkpoint the catalogue holds. A checkpoint folder that is on disk but not
    catalogued (a kill came between the trainer's save and the writer's drain) may follow steps whose
    metrics were never stored, so it is not resumed from: those steps train and log again."""
    for checkpoint in reversed(store.list_checkpoints(db, stage_run_id)):
        path = Path(checkpoint.path)
        if path.is_dir() and usable_checkpoint(path):
            return str(path)
    return None


def run_stage(db: Database, stage_run_id: str, inp: StageInput, *, reporter: Any, label: str,
              should_stop: Callable[[], bool], ranks: Ranks = SINGLE) -> StageOutput:
    """Train one stage with the studio's callbacks; raises TrainingCancelled when stopped. Only the main
    process records (its writer thread); every process votes on stopping."""
    writer = TrainingWriter(db, stage_run_id, reporter).start() if ranks.is_main else None
    stop = StopCallback(should_stop, raise_after_save=inp.stage == "ppo", agree=ranks.agree if ranks.several else None)
    inp.callbacks = [stop]
    if writer is not None:
        metrics = MetricsCallback(writer, label)
        inp.callbacks = [metrics, CheckpointCallback(writer, metrics), stop]
    if inp.hyper.early_stopping_patience and inp.eval_rows:
        inp.callbacks.append(EarlyStoppingOnEvalLoss(inp.hyper.early_stopping_patience))
    try:  # TensorBoard / W&B / MLflow, as report_to asks, under the stage's run folder
        with reporting(inp.report_to, inp.output_dir.parent, stage_run_id, main=ranks.is_main,
                       cancelled=lambda: stop.stopped):
            output = _train(inp)
    finally:
        failed_write = writer.close() if writer is not None else None
        ranks.settle()
    if failed_write is not None:
        raise failed_write
    if stop.stopped:
        raise TrainingCancelled(f"The {inp.stage} stage was cancelled at step {output.global_step}; its checkpoint "
                                "is kept.", hint="Resume the run to continue from it.")
    return output


def _train(inp: StageInput) -> StageOutput:
    """The stage's trainer, with its failures said in the user's terms."""
    try:
        return trainer_for(inp.stage)(inp)
    except StopRequested:
        raise TrainingCancelled(f"The {inp.stage} stage was cancelled; its last checkpoint is kept.",
                                hint="Resume the run to continue from it.") from None
    except StudioError:
        raise
    except BaseException as exc:
        mapped = map_failure(exc, inp.stage, inp.output_dir)
        if mapped is None:
            raise
        raise mapped from exc


def map_failure(exc: BaseException, stage: str, output_dir: Path) -> StudioError | None:
    """Out of memory and a full disk, said in the user's terms; None for anything else (a bug)."""
    text = str(exc)
    oom = type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError) or "out of memory" in text.lower()
    if oom:
        return TrainingError(f"The {stage} stage ran out of memory ({text.splitlines()[0][:160] if text else 'MemoryError'}).",
                             hint=OOM_HINT)
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in text:
        return StorageError(f"The disk filled up while the {stage} stage was saving under {output_dir}.",
                            hint="Free some space (or raise hyper.save_steps to save fewer checkpoints), then resume "
                                 "the run: it continues from its last complete checkpoint.")
    return None
