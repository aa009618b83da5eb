"""The CLI: same services as the pages; bad input is one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from studio.cli import main
from tests.fixtures.core import REPO_ROOT


def run_cli(studio_home, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_status_json_on_a_fresh_home(studio_home):
    result = run_cli(studio_home, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] >= 1 and data["home"] == str(studio_home)
    assert set(data["counts"]) >= {"seeds", "preference_pairs", "sft_pairs", "training_runs", "votes"}
    assert {s["name"] for s in data["services"]} >= {"app", "llm"}
    assert any("models pull" in step for step in data["next_steps"])


@pytest.mark.parametrize("argv, code, message", [
    ([], 2, "the following arguments are required: command"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["models", "remove", "no-such-model"], 3, "no-such-model"),
    (["prices", "set", "gpt-x", "-1", "2"], 2, "argument input: '-1' is out of range; use a number from 0 to 10,000"),
    (["prices", "set", "gpt-x", "one", "2"], 2, "invalid float value: 'one'"),
    (["models", "pull", "not-a-packaged-model"], 2, "not-a-packaged-model"),
    (["jobs", "show", "job_missing"], 3, "There is no job 'job_missing'"),
    # a push filtered by a run that does not exist is a mistake, not an empty success
    (["review", "push", "--run", "gen_nope"], 3, "There is no generation run 'gen_nope'"),
    (["review", "push", "--kind", "comparison", "--run", "cmp_nope"], 3, "There is no comparison 'cmp_nope'"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(studio_home, capsys, argv, code, message):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1


def test_a_subprocess_sees_the_same_one_line(studio_home):
    result = run_cli(studio_home, "models", "add", str(studio_home / "nowhere"))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_prices_round_trip(studio_home, capsys):
    assert main(["prices", "set", "gpt-4o-mini", "0.15", "0.6"]) == 0
    assert main(["prices", "list"]) == 0
    assert "gpt-4o-mini  0.15" in capsys.readouterr().out


def test_read_only_home_is_one_line(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only tmpfs")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)]).returncode:
        pytest.skip("tmpfs mounts are not allowed here")
    try:
        result = run_cli(ro / "home", "status")
    finally:
        subprocess.run(["umount", "-l", str(ro)])
    assert result.returncode == 1
    assert "is not writable" in result.stderr and "Point STUDIO_HOME" in result.stderr


def _all_parsers(parser, prefix=()):
    """Every (sub)command's parser with its argv prefix, walked from the top-level parser."""
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _all_parsers(child, (*prefix, name))


def test_every_command_prints_its_help():
    """argparse formats help lazily: a stray '%' in one help text only crashes when someone asks."""
    from studio.cli import build_parser

    seen = 0
    for prefix, parser in _all_parsers(build_parser()):
        assert parser.format_help(), prefix
        seen += 1
    assert seen > 40


def test_a_closed_pipe_ends_the_listing_quietly(studio_home):
    """`python -m studio status | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(REPO_ROOT))
    try:
        proc = subprocess.run([sys.executable, "-m", "studio", "status"], cwd=REPO_ROOT, env=env, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
