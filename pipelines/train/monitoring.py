"""TensorBoard, Weights & Biases and MLflow for a run's ``report_to``: where each writes, and one run of
each per stage.

transformers' own callbacks do the logging (``report_to`` in the trainer's arguments); this module
decides where, by the variables those callbacks and the libraries read, set for the stage's lifetime
and restored after it:

========== ======================================================= ===========================================
logger     by default, under STUDIO_HOME/runs/<run>/               a team server
========== ======================================================= ===========================================
tensorboard ``tensorboard/`` (event files)                         ``tensorboard --logdir STUDIO_HOME/runs``
wandb      ``wandb/`` offline (WANDB_MODE=offline, WANDB_DIR)       WANDB_MODE=online, WANDB_API_KEY, WANDB_PROJECT
mlflow     ``mlruns/`` (a file store, MLFLOW_TRACKING_URI=file:...) MLFLOW_TRACKING_URI=http(s)://...
========== ======================================================= ===========================================

A variable the user already set (WANDB_MODE, WANDB_PROJECT, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME)
is kept. The W&B and MLflow runs are opened here, before the trainer, and closed when the stage ends:
so a stage's final evaluation lands in its run, the next stage of the recipe gets a run of its own,
and a failed or cancelled stage is marked so. Nothing here reads or writes an API key: W&B reads
WANDB_API_KEY itself, and only when online.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

from core.errors import TrainingCancelled

REPORTER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
DEFAULT_PROJECT = "studio"
MONITORING_DIRS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}


def installed_reporters(wanted: list[str], warnings: list[str] | None = None) -> list[str]:
    """The requested loggers whose package is installed (the others are skipped with a warning)."""
    out = []
    for name in wanted:
        if importlib.util.find_spec(REPORTER_PACKAGES[name]) is not None:
            out.append(name)
        elif warnings is not None:
            warnings.append(f"report_to {name!r} skipped: the {REPORTER_PACKAGES[name]} package is not installed "
                            "(bash scripts/setup.sh --monitoring).")
    return out


def reporter_env(report_to: list[str], run_dir: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables to set for ``report_to``, each under ``run_dir`` unless ``environ`` points elsewhere."""
    env: dict[str, str] = {}
    if "tensorboard" in report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(run_dir / MONITORING_DIRS["tensorboard"])
    if "wandb" in report_to:
        env["WANDB_DIR"] = str(run_dir)                 # W&B adds the wandb/ folder itself
        env["WANDB_MODE"] = environ.get("WANDB_MODE") or "offline"
        env["WANDB_PROJECT"] = environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    if "mlflow" in report_to:
        uri = environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # the file store is in maintenance mode in MLflow 3, and refused unless allowed
            uri = (run_dir / MONITORING_DIRS["mlflow"]).absolute().as_uri()
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        env["MLFLOW_TRACKING_URI"] = uri
        env["MLFLOW_EXPERIMENT_NAME"] = environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
    return env


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _open_wandb(run_dir: Path, run_name: str) -> Callable[[str], None]:
    import wandb

    run = wandb.init(project=os.environ["WANDB_PROJECT"], name=run_name, dir=str(run_dir),
                     settings=wandb.Settings(console="off", disable_git=True))
    def close(outcome: str) -> None:
        run.finish(exit_code=0 if outcome == "FINISHED" else 1)
        wandb.teardown()  # its background service ends with the stage, not at the process's exit

    return close


def _open_mlflow(run_dir: Path, run_name: str) -> Callable[[str], None]:
    import mlflow

    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    mlflow.start_run(run_name=run_name)

    def close(outcome: str) -> None:
        mlflow.flush_async_logging()
        mlflow.end_run(status=outcome)

    return close


OPENERS = {"wandb": _open_wandb, "mlflow": _open_mlflow}


@contextmanager
def reporting(report_to: list[str], run_dir: Path, run_name: str, *, main: bool = True,
              cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """The stage's loggers (those of ``report_to`` that are installed) writing as the module's docstring says.
    ``main``: False on the other processes of a multi-process run, which log nothing. ``cancelled``: whether
    a stage that returned was stopped (its W&B and MLflow runs end as killed, not finished)."""
    wanted = installed_reporters(report_to) if main else []
    if not wanted:
        yield
        return
    with _environment(reporter_env(wanted, run_dir)):
        closers: list[Callable[[str], None]] = []
        outcome = "FAILED"
        try:
            for name in (n for n in wanted if n in OPENERS):
                closers.append(OPENERS[name](run_dir, run_name))
            yield
            outcome = "KILLED" if cancelled() else "FINISHED"
        except TrainingCancelled:
            outcome = "KILLED"
            raise
        finally:
            for close in reversed(closers):
                close(outcome)
