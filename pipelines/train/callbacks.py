"""TrainerCallbacks: live metrics into DuckDB, checkpoints into the catalogue, cancel, early stopping.

Why callbacks: every TRL trainer (and the experimental PPO loop) reports through the same hooks, so
one implementation serves all algorithms. Writes are one small upsert per log event (every
``logging_steps``), which keeps the database free for the app between steps.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from storage import training as store
from storage.db import Database

IGNORED_LOG_KEYS = ("total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second")


class StopRequested(Exception):
    """Raised after the stop checkpoint is saved, for loops that ignore ``should_training_stop`` (PPO)."""


def memory_usage() -> dict[str, float]:
    """This process's resident memory and, on a GPU, the CUDA memory allocated (MB)."""
    import psutil
    import torch

    out = {"rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)}
    if torch.cuda.is_available():
        out["cuda_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class MetricsCallback(TrainerCallback):
    """on_log → training_metrics (loss, lr, grad norm, each algorithm's own metrics) + the progress event.

    Log events are buffered and written at most every ``flush_every_s`` seconds, and always before a
    checkpoint is written, at an evaluation and at the end of training. Why: each write opens the shared DuckDB file
    (no process keeps it open while idle), and doing that at every step cost ~15% of a small
    model's CPU step time in benchmarks/bench_train_dpo.py. A kill loses at most the steps after the
    last checkpoint, which resume retrains (and logs) anyway."""

    def __init__(self, db: Database, run_id: str, reporter: Any = None, label: str = "training",
                 flush_every_s: float = 5.0):
        self.db, self.run_id, self.reporter, self.label = db, run_id, reporter, label
        self.flush_every_s = flush_every_s
        self.last: dict[str, float] = {}
        self._pending: list[tuple[int, float | None, dict[str, Any]]] = []
        self._flushed = time.monotonic()
        self._start_step = 0
        self._started = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_step, self._started = state.global_step, time.monotonic()
        self._report(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: v for k, v in (logs or {}).items() if k not in IGNORED_LOG_KEYS}
        if "lr" in values and "learning_rate" not in values:  # PPO logs 'lr'
            values["learning_rate"] = values.pop("lr")
        self._pending.append((state.global_step, state.epoch, values))
        self.last.update({k: v for k, v in values.items() if isinstance(v, (int, float))})
        if self._saving(control) or time.monotonic() - self._flushed >= self.flush_every_s:
            self.flush()
        self._report(state)

    def on_step_end(self, args, state, control, **kwargs):
        if self._saving(control):
            self.flush()

    @staticmethod
    def _saving(control) -> bool:
        """A checkpoint is written right after this step's log: flush first, so a checkpoint on disk
        never holds steps whose metrics were not stored (a kill between the two would lose them, and
        resume starts after that checkpoint)."""
        return bool(getattr(control, "should_save", False))

    def on_save(self, args, state, control, **kwargs):
        self.flush()

    def on_evaluate(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()

    def flush(self) -> None:
        """Write the buffered log events in one transaction."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if pending:
            store.insert_metrics_batch(self.db, self.run_id, pending)

    def _report(self, state) -> None:
        if self.reporter is None:
            return
        done, total = state.global_step, state.max_steps or None
        rate = (done - self._start_step) / max(1e-9, time.monotonic() - self._started)
        eta = round((total - done) / rate, 1) if total and rate > 0 else None
        shown = {k: round(v, 5) for k, v in self.last.items() if k in ("loss", "learning_rate", "grad_norm")}
        self.reporter.update(stage=self.label, done=done, total=total, unit="step",
                             message=f"{self.label}: step {done}/{total or '?'}", train_eta_s=eta,
                             **shown, **memory_usage())


class CheckpointCallback(TrainerCallback):
    """on_save → a checkpoints row pointing at ``output_dir/checkpoint-<step>``."""

    def __init__(self, db: Database, run_id: str, metrics: MetricsCallback | None = None):
        self.db, self.run_id, self.metrics = db, run_id, metrics

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            store.insert_checkpoint(self.db, self.run_id, state.global_step, str(path),
                                    dict(self.metrics.last) if self.metrics else {})


class StopCallback(TrainerCallback):
    """Stops at the next step end when ``should_stop()`` says so, saving a checkpoint first."""

    def __init__(self, should_stop: Callable[[], bool], raise_after_save: bool = False):
        self.should_stop = should_stop
        self.raise_after_save = raise_after_save
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.should_stop():
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.stopped and self.raise_after_save:
            raise StopRequested()


class EarlyStoppingOnEvalLoss(TrainerCallback):
    """Stops when eval loss has not improved for ``patience`` evaluations (no best-model reloading)."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best: float | None = None
        self.bad_evals = 0
        self.triggered = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return control
        if self.best is None or loss < self.best:
            self.best, self.bad_evals = loss, 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                self.triggered = True
                control.should_training_stop = True
        return control
