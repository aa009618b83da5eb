"""report_to for real, with no network: two runs of the tiny Llama in one process log to TensorBoard, Weights &
Biases (offline) and MLflow (a file store), and each logger's files, read back with its own reader, carry the
run's loss curve at the steps the studio recorded, in the run's own folder. A tracking URI the user set (a
team server; here another file store) is where MLflow's run goes instead. An API key in the environment lands
in no file under STUDIO_HOME and in no output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.train.monitoring import reporter_env
from pipelines.train.runner import run_training
from pipelines.train.spec import RunSpec
from storage import training as store
from core import settings as settings_mod

SECRET = "studio-test-wandb-key-0123456789abcdef0123"   # 40 characters, the shape of a W&B key
LOGGER_VARS = ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
               "MLFLOW_ALLOW_FILE_STORE", "TENSORBOARD_LOGGING_DIR")


def test_defaults_write_under_the_run_and_a_users_team_settings_are_kept(tmp_path):
    local = reporter_env(["tensorboard", "wandb", "mlflow"], tmp_path, environ={})
    assert local == {"TENSORBOARD_LOGGING_DIR": str(tmp_path / "tensorboard"), "WANDB_DIR": str(tmp_path),
                     "WANDB_MODE": "offline", "WANDB_PROJECT": "studio",
                     "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
                     "MLFLOW_EXPERIMENT_NAME": "studio"}
    team = {"WANDB_MODE": "online", "WANDB_PROJECT": "alignment", "MLFLOW_TRACKING_URI": "https://mlflow.example:5000",
            "MLFLOW_EXPERIMENT_NAME": "dpo-sweeps", "WANDB_API_KEY": SECRET}
    env = reporter_env(["wandb", "mlflow"], tmp_path, environ=team)
    assert env["WANDB_MODE"] == "online" and env["WANDB_PROJECT"] == "alignment"
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000" and env["MLFLOW_EXPERIMENT_NAME"] == "dpo-sweeps"
    assert "MLFLOW_ALLOW_FILE_STORE" not in env and SECRET not in json.dumps(env)
    assert reporter_env([], tmp_path, environ=team) == {}


def _run(db, snapshot_id: str, name: str, recipe: str, steps: int) -> str:
    spec = RunSpec.from_dict({"name": name, "recipe": recipe, "base_model": "tiny", "snapshot_id": snapshot_id,
                              "report_to": ["tensorboard", "wandb", "mlflow"], "evaluation": {"enabled": False},
                              "hyper": {"max_steps": steps, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
                                        "save_steps": 10, "logging_steps": 1, "max_length": 64}})
    run_id = store.insert_run(db, name=name, recipe=recipe, stage=recipe, spec=spec.to_dict(), snapshot_id=snapshot_id)
    assert run_training(run_id).status == "succeeded"
    return run_id


def _studio_curve(db, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store.list_metrics(db, run_id) if m.name == "loss")


def _tensorboard_curve(run_dir: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def _mlflow_curve(tracking_uri: str, run_name: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("studio")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_name and run.info.status == "FINISHED"
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))


def _wandb_curve(run_dir: Path) -> list[tuple[int, float]]:
    """The offline run's transaction log, read by W&B's own reader (``wandb leet inspect --json``)."""
    (log,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    items = [r["history"]["item"] for r in records if r.get("type") == "history"]
    return [(int(i["train/global_step"]), i["train/loss"]) for i in items if "train/loss" in i]


def _same_curve(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    return [s for s, _ in got] == [s for s, _ in want] and all(g == pytest.approx(w, rel=1e-5) for (_, g), (_, w)
                                                               in zip(got, want))


def test_each_logger_gets_each_runs_loss_curve_at_its_steps_and_no_key_leaks(db, tiny_training_home, tmp_path,
                                                                            monkeypatch, capfd):
    for var in LOGGER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    sft = _run(db, tiny_training_home.id, "watched-sft", "sft", steps=3)
    team = (tmp_path / "team-mlruns").as_uri()          # stands in for a team server's MLFLOW_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    dpo = _run(db, tiny_training_home.id, "watched-dpo", "dpo", steps=2)
    runs = settings_mod.current().runs_dir
    for run_id, steps in ((sft, [1, 2, 3]), (dpo, [1, 2])):
        want = _studio_curve(db, run_id)
        assert [s for s, _ in want] == steps
        assert _same_curve(_tensorboard_curve(runs / run_id), want)
        assert _same_curve(_wandb_curve(runs / run_id), want)
    assert _same_curve(_mlflow_curve((runs / sft / "mlruns").as_uri(), sft), _studio_curve(db, sft))
    assert _same_curve(_mlflow_curve(team, dpo), _studio_curve(db, dpo))
    assert not (runs / dpo / "mlruns").exists()
    home = settings_mod.current().home
    leaked = [p for p in [*home.rglob("*"), *(tmp_path / "team-mlruns").rglob("*")]
              if p.is_file() and SECRET.encode() in p.read_bytes()]
    captured = capfd.readouterr()
    assert not leaked and SECRET not in captured.out + captured.err
