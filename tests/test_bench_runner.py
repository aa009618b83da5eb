"""``python -m benchmarks``: runs bench scripts from a folder and rewrites the doc's generated parts.

The benchmarks here are tiny scripts written into a temp folder that speak the real protocol
(``benchmarks/_report.py``); the runner starts them as real subprocesses. Nothing is timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from benchmarks import __main__ as runner

ROOT = Path(__file__).resolve().parents[1]

GOOD = '''
"""Widgets per second: the fast way vs the slow way."""
from benchmarks import _report
n = _report.size(1000, 10)
_report.params(n=n)
_report.record("widgets/s", 2.0 * n, "ops/s", baseline=float(n), ratio=2.0, target="≥ 1.5×", met=True)
_report.emit(["| size | ratio |", "|---|---|", f"| {n} | 2.0× |"])
'''
CRASH = '''
from benchmarks import _report
_report.record("half done", 1.0)
print("about to fail")
raise RuntimeError("the endpoint went away")
'''
SILENT = 'print("I print a table but never publish it")\n'
SLOW = '''
import subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
Path(sys.argv[0]).with_suffix(".pid").write_text(str(child.pid))
time.sleep(120)
'''

DOC = """# Benchmarks

Hand-written introduction that must survive.

## Widgets

How the widget benchmark works, written by a person.

<!-- bench:good -->
old widget table
<!-- /bench:good -->

Analysis after the table, also by hand.

## Crashing

<!-- bench:crash -->
<!-- bench-data: {"date": "2020-01-01", "machine": "old box", "quick": false, "results": [{"name": "old figure", "value": 7.0, "unit": "s", "baseline": null, "ratio": null, "target": "under 10 s", "met": true, "notes": ""}], "params": {}} -->
| previous | figures |
<!-- /bench:crash -->
"""


def write_benches(folder: Path, **scripts: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        (folder / f"bench_{name}.py").write_text(textwrap.dedent(body))
    return folder


@pytest.fixture
def doc(tmp_path) -> Path:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    return path


def run(folder: Path, doc: Path, *extra: str) -> int:
    return runner.main(["--dir", str(folder), "--doc", str(doc), *extra])


def test_rewrites_generated_parts_and_keeps_prose(tmp_path, doc):
    folder = write_benches(tmp_path / "b", good=GOOD)
    assert run(folder, doc) == 0
    text = doc.read_text()
    for prose in ("Hand-written introduction that must survive.", "How the widget benchmark works, written by a person.",
                  "Analysis after the table, also by hand.", "| previous | figures |"):
        assert prose in text
    assert "old widget table" not in text
    assert "| 1000 | 2.0× |" in text
    summary = text[text.index("<!-- bench:summary -->"):text.index("<!-- /bench:summary -->")]
    assert "| good | widgets/s | 2,000 ops/s | 1,000 ops/s | 2× | ≥ 1.5× | yes |" in summary
    assert "| crash | old figure | 7 s |" in summary  # not run this time: its stored figures stay listed
    assert text.index("<!-- bench:summary -->") < text.index("## Widgets")
    assert f"{os.cpu_count()} CPU cores" in text and "Python " in text


def test_failures_are_reported_and_keep_previous_figures(tmp_path, doc, capsys):
    folder = write_benches(tmp_path / "b", good=GOOD, crash=CRASH, silent=SILENT)
    assert run(folder, doc) == 1
    assert "Failed: crash, silent" in capsys.readouterr().err
    text = doc.read_text()
    crash = text[text.index("<!-- bench:crash -->"):text.index("<!-- /bench:crash -->")]
    assert "failed: exited with code 1 before publishing its results" in crash
    assert "RuntimeError: the endpoint went away" in crash
    assert "| previous | figures |" in crash and "from the last run that completed" in crash
    assert "half done" not in text  # partial figures of a crashed run are not trusted
    silent = text[text.index("<!-- bench:silent -->"):text.index("<!-- /bench:silent -->")]
    assert "finished without publishing results" in silent and "No run has completed yet." in silent
    assert "**last run failed: exited with code 1" in text
    # A second failure replaces the note instead of stacking another one.
    assert run(folder, doc, "--only", "crash") == 1
    assert doc.read_text().count("<!-- bench-failure -->") == 2


def test_only_and_quick(tmp_path, doc):
    folder = write_benches(tmp_path / "b", good=GOOD, crash=CRASH)
    assert run(folder, doc, "--only", "bench_good", "--quick") == 0
    text = doc.read_text()
    assert "| 10 | 2.0× |" in text and "with --quick sizes (n 10)" in text
    assert "| good | widgets/s | 20 ops/s | 10 ops/s | 2× |" in text and "(quick)" in text
    assert "bench-failure" not in text  # crash was not selected, so not run
    with pytest.raises(SystemExit, match="No benchmark named nope. Known: crash, good"):
        run(folder, doc, "--only", "nope")


def test_new_benchmark_gets_its_own_section(tmp_path):
    doc = tmp_path / "new.md"
    folder = write_benches(tmp_path / "b", good=GOOD)
    assert run(folder, doc) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Widgets per second: the fast way vs the slow way" in text
    assert text.count("<!-- bench:good -->") == 1 and text.count("<!-- bench:summary -->") == 1
    assert run(folder, doc) == 0  # idempotent structure: a second run replaces, never appends
    again = doc.read_text()
    assert again.count("<!-- bench:good -->") == 1 and again.count("## Widgets per second") == 1


def test_timeout_ends_the_benchmark_and_its_children(tmp_path, doc):
    folder = write_benches(tmp_path / "b", slow=SLOW)
    assert run(folder, doc, "--timeout", "5") == 1
    child = int((folder / "bench_slow.pid").read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert "failed: timed out after 5 s" in doc.read_text()


def test_refresh_and_no_doc(tmp_path, doc):
    folder = write_benches(tmp_path / "b", good=GOOD)
    assert run(folder, doc, "--no-doc") == 0
    assert doc.read_text() == DOC
    assert run(folder, doc, "--refresh") == 0
    text = doc.read_text()
    assert "| crash | old figure |" in text and "old widget table" in text


def test_a_bench_script_still_runs_by_hand(tmp_path):
    """Without the runner's environment the protocol calls do nothing and the script prints as before."""
    script = write_benches(tmp_path / "b", good=GOOD) / "bench_good.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| 1000 | 2.0× |" in out.stdout
    assert list(tmp_path.glob("**/*.json")) == []


def test_repo_benchmarks_speak_the_protocol():
    """Every benchmark in the repo publishes through _report (or the runner would report it failed)."""
    missing = [p.name for p in runner.discover(ROOT / "benchmarks") if "_report.publish" not in p.read_text()
               and "_report.emit" not in p.read_text()]
    assert missing == [], (f"{', '.join(missing)} never call _report.publish/emit, so `python -m benchmarks` reports "
                           "them as failed: add _report.record(...) and _report.emit(lines) (see benchmarks/_report.py)")
