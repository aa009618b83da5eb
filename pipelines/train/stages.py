"""One stage of a run: its rows, its callbacks, where it resumes from, and how a failure reads.

Why separate from the runner: the runner decides the order and hands outputs on; this module runs
one trainer with everything a stage needs (live metrics, checkpoints, cancel, early stopping) and
turns out-of-memory and disk-full errors into messages that say what to change.
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
from pipelines.train.params import HyperParams
from storage import training as store
from storage.db import Database
from core.errors import StorageError, StudioError, TrainingCancelled, TrainingError

CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin",
                      "model.safetensors.index.json")
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


def resume_point(db: Database, stage_run_id: str, output_dir: Path) -> str | None:
    """The newest complete checkpoint of a stage: catalogued ones first, then any the folder holds."""
    candidates = [Path(c.path) for c in reversed(store.list_checkpoints(db, stage_run_id))]
    if output_dir.is_dir():
        on_disk = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                         if p.name.split("-")[-1].isdigit() else -1, reverse=True)
        candidates += [p for p in on_disk if p not in candidates]
    candidates.sort(key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
                    reverse=True)
    for path in candidates:
        if path.is_dir() and usable_checkpoint(path):
            return str(path)
    return None


def run_stage(db: Database, stage_run_id: str, inp: StageInput, *, reporter: Any, label: str,
              should_stop: Callable[[], bool]) -> StageOutput:
    """Train one stage with the studio's callbacks; raises TrainingCancelled when stopped."""
    metrics = MetricsCallback(db, stage_run_id, reporter, label)
    stop = StopCallback(should_stop, raise_after_save=inp.stage == "ppo")
    inp.callbacks = [metrics, CheckpointCallback(db, stage_run_id, metrics), stop]
    if inp.hyper.early_stopping_patience and inp.eval_rows:
        inp.callbacks.append(EarlyStoppingOnEvalLoss(inp.hyper.early_stopping_patience))
    try:
        output = trainer_for(inp.stage)(inp)
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
    finally:
        _flush_quietly(metrics)
    if stop.stopped:
        raise TrainingCancelled(f"The {inp.stage} stage was cancelled at step {output.global_step}; its checkpoint "
                                "is kept.", hint="Resume the run to continue from it.")
    return output


def _flush_quietly(metrics: MetricsCallback) -> None:
    """Keep the buffered curve of a stage that failed; a database that is itself the failure must not
    hide the original error."""
    try:
        metrics.flush()
    except StudioError:
        pass


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
