"""``python -m studio snapshots|train|runs``: the same services as the page, one line on bad input.

Most commands run in-process through ``studio.cli.main`` (real DuckDB, real services); one test
runs ``python -m studio train RUN.yaml`` as a subprocess, which is exactly what a user types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from storage.db import get_database
from storage.pairs import insert_preference_pairs
from studio.cli import main
from studio.services import models as models_svc
from studio.services import snapshots as snap_svc
from tests.fixtures.core import REPO_ROOT


def _pairs(n: int) -> list[dict]:
    return [dict(id=f"pp{i:03d}", run_id="gen1", prompt=f"Say something nice number {i}.",
                 chosen=f"The cat sat on the mat {i}.", rejected="No.", confidence=0.5 + i / 100) for i in range(n)]


@pytest.fixture
def pairs(studio_home):
    insert_preference_pairs(get_database(), _pairs(12))


def _out(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_snapshots_create_preview_list_show(pairs, capsys):
    assert main(["snapshots", "create", "--min-confidence", "0.55", "--eval-fraction", "0.2", "--preview"]) == 0
    out = _out(capsys)
    assert "preview (not stored)" in out and "judge confidence >= 0.55" in out and "length_bias" in out
    assert snap_svc.list_snapshots() == []
    assert main(["snapshots", "create", "--name", "cli", "--min-confidence", "0.55", "--eval-fraction", "0.2",
                 "--json"]) == 0
    created = json.loads(_out(capsys))
    assert created["created"] and created["n_train"] + created["n_eval"] == 7
    assert main(["snapshots", "create", "--name", "again", "--min-confidence", "0.55", "--eval-fraction", "0.2"]) == 0
    assert f"snapshot {created['id']} (cli, preference): stored" in _out(capsys)
    assert main(["snapshots", "list", "--json"]) == 0
    assert [s["id"] for s in json.loads(_out(capsys))] == [created["id"]]
    assert main(["snapshots", "show", created["id"]]) == 0
    out = _out(capsys)
    assert "from generation runs" in out and "gen1" in out


def test_snapshot_bad_input_is_one_line_and_non_zero(pairs, capsys):
    assert main(["snapshots", "create", "--eval-fraction", "1.5"]) == 2
    assert "argument --eval-fraction: '1.5' is out of range; use a number from 0 to 1" in _out(capsys)
    assert main(["snapshots", "create", "--min-confidence", "0.99"]) == 2
    assert "0 preference rows remain after the filters; training needs at least 2" in _out(capsys)
    assert main(["snapshots", "show", "snap_nope"]) == 3
    assert "There is no snapshot 'snap_nope'" in _out(capsys)


def test_train_and_runs_validation(pairs, capsys, tmp_path):
    snapshot = snap_svc.create_snapshot(snap_svc.SnapshotSpec(eval_fraction=0.25))
    spec = tmp_path / "run.yaml"
    spec.write_text(f"name: x\nrecipe: dpo\nbase_model: missing\nsnapshot_id: {snapshot.id}\n"
                    "hyper:\n  learning_rate: 5\n")
    assert main(["train", str(spec)]) == 2
    assert "hyper.learning_rate=5 is out of range" in _out(capsys)
    spec.write_text(f"name: x\nrecipe: dpo\nbase_model: missing\nsnapshot_id: {snapshot.id}\n")
    assert main(["train", str(spec)]) == 3
    assert "The base model 'missing' is neither a registered model nor a folder" in _out(capsys)
    assert main(["train"]) == 2
    assert "No run spec given" in _out(capsys)
    assert main(["runs", "show", "run_nope"]) == 3
    assert main(["runs", "list"]) == 0 and "(none)" in _out(capsys)


def test_train_yaml_in_the_foreground_then_runs_list_show_and_accelerate(pairs, tiny_model_dir, tmp_path, capsys):
    models_svc.add_model(str(tiny_model_dir), name="tiny")
    snapshot = snap_svc.create_snapshot(snap_svc.SnapshotSpec(eval_fraction=0.25))
    spec = tmp_path / "run.yaml"
    spec.write_text(f"name: cli-run\nrecipe: dpo\nbase_model: tiny\nsnapshot_id: {snapshot.id}\n"
                    "preset: cpu_smoke_test\nhyper:\n  max_steps: 2\n  max_length: 64\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "studio", "train", str(spec)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(cli-run): succeeded" in proc.stdout and "output model" in proc.stdout
    assert main(["runs", "list", "--json"]) == 0
    (run,) = json.loads(_out(capsys))
    assert run["status"] == "succeeded" and run["stages"] == ["dpo"]
    assert main(["runs", "show", run["id"]]) == 0
    out = _out(capsys)
    assert "latest metrics" in out and "rewards/margins" in out and "checkpoints" in out and "gen1" in out
    assert main(["runs", "resume", run["id"]]) == 2
    assert "only a failed, cancelled or interrupted run resumes" in _out(capsys)
    assert main(["runs", "accelerate", run["id"], "--backend", "fsdp", "--processes", "4",
                 "--out", str(tmp_path / "scale")]) == 0
    out = _out(capsys)
    assert "accelerate launch --config_file accelerate.yaml" in out and run["id"] in out
    assert "num_processes: 4" in (tmp_path / "scale" / "accelerate.yaml").read_text()
    assert "recipe: dpo" in (tmp_path / "scale" / "run.yaml").read_text()
