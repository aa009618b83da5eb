"""Run every benchmark and rewrite docs/benchmarks.md with the figures, the machine and the date.

    .venv/bin/python -m benchmarks [--only NAME ...] [--quick] [--timeout S] [--dir DIR] [--doc PATH]

Each ``bench_*.py`` in the folder runs in its own process (its own process group, so a timeout
also ends the servers it started) with ``BENCH_JSON`` pointing at a results file; see
``benchmarks/_report.py`` for that protocol. The doc keeps its hand-written prose: only the parts
between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` are generated, and the summary of
every target sits between ``<!-- bench:summary -->`` markers. Each generated section carries its
figures as a JSON comment, so ``--only`` refreshes one section and the summary still lists all.
A benchmark that fails or times out keeps its previous figures under a note saying so.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._report import ENV_JSON, ENV_QUICK, Report, Result  # noqa: E402

SUMMARY = "summary"
SECTION_RE = re.compile(r"<!-- bench:(?P<name>[\w-]+) -->\n?(?P<body>.*?)<!-- /bench:(?P=name) -->", re.S)
DATA_RE = re.compile(r"<!-- bench-data: (?P<json>.*?) -->\n?")
FAILURE_RE = re.compile(r"<!-- bench-failure -->.*?<!-- /bench-failure -->\n*", re.S)
TAIL_LINES = 15


@dataclass
class Outcome:
    """How one benchmark run ended: its report, or why it has none."""

    name: str
    script: Path
    report: Report
    exit_code: int | None
    seconds: float
    failure: str = ""          # empty when the run completed
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failure


def bench_name(script: Path) -> str:
    return script.stem.removeprefix("bench_")


def discover(directory: Path) -> list[Path]:
    """The benchmark scripts of a folder, in name order."""
    return sorted(p for p in Path(directory).glob("bench_*.py") if p.is_file())


def select(scripts: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the scripts named by ``--only`` (``duckdb`` or ``bench_duckdb``); unknown names fail."""
    if not only:
        return scripts
    by_name = {bench_name(s): s for s in scripts}
    wanted = [name.removeprefix("bench_").removesuffix(".py") for name in only]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise SystemExit(f"No benchmark named {', '.join(unknown)}. Known: {', '.join(by_name) or 'none'}.")
    return [by_name[name] for name in wanted]


def _pump(stream, sink: list[str], echo: bool, prefix: str) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))
        if echo:
            print(f"{prefix}{line}", end="", flush=True)


def run_one(script: Path, *, timeout_s: float, quick: bool, echo: bool = True) -> Outcome:
    """Run one script in its own process group; read its results file afterwards."""
    name = bench_name(script)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        results_path = Path(tmp) / "results.json"
        env = dict(os.environ, **{ENV_JSON: str(results_path), "PYTHONUNBUFFERED": "1"})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.pop(ENV_QUICK, None)
        if quick:
            env[ENV_QUICK] = "1"
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines, echo, f"[{name}] "), daemon=True)
        reader.start()
        failure = ""
        try:
            exit_code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            exit_code, failure = None, f"timed out after {timeout_s:.0f} s"
        reader.join(timeout=10)
        seconds = time.perf_counter() - started
        report = Report.load(results_path)
    if not failure and not report.complete:
        failure = (f"exited with code {exit_code} before publishing its results" if exit_code
                   else "finished without publishing results (does it call _report.publish?)")
    return Outcome(name, script, report, exit_code, seconds, failure, lines[-TAIL_LINES:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def machine() -> str:
    """Cores, memory, GPU, Python and OS, in one line for the doc."""
    gpu = "no GPU"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
            gpu = ", ".join(out.splitlines()) or gpu
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        ram = "RAM unknown"
    system = platform.platform(terse=True)
    try:
        system = platform.freedesktop_os_release().get("PRETTY_NAME", system)
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores, {ram}, {gpu}, Python {platform.python_version()}, {system}"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}".strip() if unit not in ("x", "×", "%") else f"{text}{unit}"


def _met(met: bool | None) -> str:
    return "" if met is None else "yes" if met else "**no**"


def section_data(body: str) -> dict:
    match = DATA_RE.search(body)
    if not match:
        return {}
    try:
        data = json.loads(match.group("json"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def render_section(outcome: Outcome, previous_body: str, run_info: dict) -> str:
    """The generated body of one benchmark's section: fresh figures, or a failure note above the old."""
    if outcome.ok:
        data = {**run_info, "results": [asdict(r) for r in outcome.report.results],
                "params": outcome.report.params, "seconds": round(outcome.seconds, 1)}
        sizes = ", ".join(f"{k} {v}" for k, v in outcome.report.params.items())
        header = (f"*Measured {run_info['date']}{' with --quick sizes' if run_info['quick'] else ''}"
                  f"{f' ({sizes})' if sizes else ''}, in {outcome.seconds:.0f} s, on {run_info['machine']}.*")
        return f"<!-- bench-data: {json.dumps(data)} -->\n{header}\n\n{outcome.report.markdown}\n"
    old = FAILURE_RE.sub("", previous_body).strip()
    tail = "\n".join(outcome.tail) or "(no output)"
    kept = "The figures below are from the last run that completed." if old else "No run has completed yet."
    note = (f"<!-- bench-failure -->\n> **The run of {run_info['date']} failed: {outcome.failure}.** {kept}\n\n"
            f"```\n{tail}\n```\n<!-- /bench-failure -->\n\n")
    return note + (old + "\n" if old else "")


def render_summary(sections: dict[str, str], failed: dict[str, str]) -> str:
    """The table of every target, from the figures stored in each section."""
    datas = {name: section_data(body) for name, body in sections.items()}
    machines = sorted({d["machine"] for d in datas.values() if d.get("machine")})
    where = f"Measured on {machines[0]}" if len(machines) == 1 else f"Measured on: {'; '.join(machines)}"
    lines = [f"*{where if machines else 'No figures yet'}. Regenerate with `.venv/bin/python -m benchmarks` "
             "(or `--only NAME`); each section below says when and where it was measured.*", "",
             "| benchmark | figure | value | baseline | ratio | target | met | measured |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for name, data in datas.items():
        if name in failed:
            lines.append(f"| {name} | **last run failed: {failed[name]}** | | | | | | |")
        for raw in data.get("results", []):
            r = Result(**raw)
            lines.append(f"| {name} | {r.name} | {_fmt(r.value, r.unit)} | {_fmt(r.baseline, r.unit)} | "
                         f"{_fmt(r.ratio, '×')} | {r.target} | {_met(r.met)} | "
                         f"{data.get('date', '')}{' (quick)' if data.get('quick') else ''} |")
    return "\n".join(lines) + "\n"


def _heading(script: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        doc = ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else bench_name(script)


def update_doc(text: str, outcomes: list[Outcome], run_info: dict) -> str:
    """Replace the generated parts of the doc; keep every other line as it was."""
    if not text.strip():
        text = "# Benchmarks\n\n"
    bodies = {m.group("name"): m.group("body") for m in SECTION_RE.finditer(text)}
    fresh = {o.name: render_section(o, bodies.get(o.name, ""), run_info) for o in outcomes}
    for outcome in outcomes:
        if outcome.name not in bodies:  # a benchmark the doc has not seen: its own section at the end
            text = (text.rstrip("\n") + f"\n\n## {_heading(outcome.script)}\n\n"
                    f"`.venv/bin/python benchmarks/{outcome.script.name}`\n\n"
                    f"<!-- bench:{outcome.name} -->\n<!-- /bench:{outcome.name} -->\n")
    text = SECTION_RE.sub(lambda m: _replace(m, fresh), text)
    sections = {m.group("name"): m.group("body") for m in SECTION_RE.finditer(text) if m.group("name") != SUMMARY}
    failed = {o.name: o.failure for o in outcomes if not o.ok}
    summary = render_summary(sections, failed)
    if f"<!-- bench:{SUMMARY} -->" not in text:
        at = text.find("\n## ")
        at = len(text) if at < 0 else at + 1
        text = text[:at] + f"## Summary\n\n<!-- bench:{SUMMARY} -->\n<!-- /bench:{SUMMARY} -->\n\n" + text[at:]
    return SECTION_RE.sub(lambda m: _replace(m, {SUMMARY: summary}), text)


def _replace(match: re.Match, fresh: dict[str, str]) -> str:
    name = match.group("name")
    body = fresh.get(name, match.group("body"))
    return f"<!-- bench:{name} -->\n{body}<!-- /bench:{name} -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent,
                        help="folder of bench_*.py scripts (default: this package)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. duckdb openai_path)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, where a script supports them")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the doc to rewrite")
    parser.add_argument("--no-doc", action="store_true", help="run and print, leave the doc alone")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--refresh", action="store_true",
                        help="run nothing: regenerate the summary from the figures already in the doc")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scripts = select(discover(args.dir), args.only)
    if args.list or not scripts:
        print("\n".join(bench_name(s) for s in scripts) or f"No bench_*.py in {args.dir}.")
        return 0 if scripts else 1
    if args.refresh:
        args.doc.write_text(update_doc(args.doc.read_text(encoding="utf-8"), [], {}), encoding="utf-8")
        print(f"Refreshed the summary of {args.doc}")
        return 0
    run_info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(), "quick": args.quick}
    print(f"Running {len(scripts)} benchmark(s) on {run_info['machine']}", flush=True)
    outcomes = []
    for script in scripts:
        print(f"\n=== {bench_name(script)} ({script.name}) ===", flush=True)
        outcome = run_one(script, timeout_s=args.timeout, quick=args.quick)
        outcomes.append(outcome)
        print(f"=== {outcome.name}: {'done' if outcome.ok else 'FAILED: ' + outcome.failure} "
              f"in {outcome.seconds:.0f} s ===", flush=True)
    if not args.no_doc:
        doc = args.doc
        text = doc.read_text(encoding="utf-8") if doc.exists() else ""
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(update_doc(text, outcomes, run_info), encoding="utf-8")
        print(f"\nRewrote {doc}")
    for outcome in outcomes:
        for r in outcome.report.results if outcome.ok else []:
            verdict = f" (target {r.target}: {_met(r.met) or 'n/a'})" if r.target else ""
            print(f"  {outcome.name}: {r.name} = {_fmt(r.value, r.unit)}{verdict}")
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
