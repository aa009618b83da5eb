"""TrainerCallbacks: live metrics, checkpoints into the catalogue, cancel, early stopping.

Why callbacks: every TRL trainer (and the experimental PPO loop) reports through the same hooks, so
one implementation serves all algorithms. Nothing here writes to the database or blocks a step: the
metrics and checkpoint callbacks hand their items to the stage's ``TrainingWriter`` (a background
thread, see ``writer.py`` for the ordering that keeps kill -9 safe), and the stop check reads a flag
or a marker file, never the database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from pipelines.train.writer import TrainingWriter

IGNORED_LOG_KEYS = ("total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second")
SHOWN = ("loss", "learning_rate", "grad_norm")


class StopRequested(Exception):
    """Raised after the stop checkpoint is saved, for loops that ignore ``should_training_stop`` (PPO)."""


class MetricsCallback(TrainerCallback):
    """on_log → the writer: the event's metrics (loss, lr, grad norm, each algorithm's own) and a progress
    event (step, total, ETA, loss). ``last`` keeps the newest value of each metric for the stage's result."""

    def __init__(self, writer: TrainingWriter, label: str = "training"):
        self.writer, self.label = writer, label
        self.last: dict[str, float] = {}
        self._start_step = 0
        self._started = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_step, self._started = state.global_step, time.monotonic()
        self._report(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: v for k, v in (logs or {}).items() if k not in IGNORED_LOG_KEYS}
        if "lr" in values and "learning_rate" not in values:  # PPO logs 'lr'
            values["learning_rate"] = values.pop("lr")
        self.writer.metrics(state.global_step, state.epoch, values)
        self.last.update({k: v for k, v in values.items() if isinstance(v, (int, float))})
        self._report(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.writer.check()

    def _report(self, state) -> None:
        if self.writer.reporter is None:
            return
        done, total = state.global_step, state.max_steps or None
        rate = (done - self._start_step) / max(1e-9, time.monotonic() - self._started)
        eta = round((total - done) / rate, 1) if total and rate > 0 else None
        shown = {k: round(v, 5) for k, v in self.last.items() if k in SHOWN}
        self.writer.progress(dict(stage=self.label, done=done, total=total, unit="step",
                                  message=f"{self.label}: step {done}/{total or '?'}", train_eta_s=eta, **shown))


class CheckpointCallback(TrainerCallback):
    """on_save → the writer catalogues ``output_dir/checkpoint-<step>`` once the metrics before it are stored."""

    def __init__(self, writer: TrainingWriter, metrics: MetricsCallback | None = None):
        self.writer, self.metrics = writer, metrics

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.writer.checkpoint(state.global_step, str(path), dict(self.metrics.last) if self.metrics else {})


class StopCallback(TrainerCallback):
    """Stops at the next step end when ``should_stop()`` says so, saving a checkpoint first.

    ``agree`` turns this process's wish into the decision of every process of a multi-process run
    (``distributed.Ranks.agree``), so all ranks stop at the same step and save one checkpoint together."""

    def __init__(self, should_stop: Callable[[], bool], raise_after_save: bool = False,
                 agree: Callable[[bool], bool] | None = None):
        self.should_stop = should_stop
        self.raise_after_save = raise_after_save
        self.agree = agree
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        wanted = bool(self.should_stop())
        if self.agree is not None:
            wanted = self.agree(wanted)
        if wanted:
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
