"""Seed import: the studio's importer against DuckDB's bare read_csv of the same file.

    .venv/bin/python benchmarks/bench_seed_import.py [--sizes-mb 85 1000] [--data-dir DIR] [--python-reader]

CSV files of rows like the issue's (a 40-70 word task, a 15-30 word reference, a category; about
520 bytes a row) are generated into ``--data-dir`` (a temp folder by default; an existing file of
the right size is reused). Each measurement runs in a fresh process: the baseline is
``CREATE TABLE t AS SELECT * FROM read_csv(file)`` into a new DuckDB file; the studio is
``studio.services.seeds.import_seeds`` into a new STUDIO_HOME (text, reference and category
mapped; content hashes, ids, line numbers, dedup, reports, all of it). Timings are taken inside
each process (no interpreter start-up), peak memory (max RSS) per process; the two sides
alternate, twice, and each keeps its best, as this shared machine's speed drifts. Target: the
studio at least 0.5x DuckDB's speed. ``--python-reader`` also times the Python reader (the
importer before this change) on the smallest file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402

BARE = """
import duckdb, json, resource, sys, time
start = time.perf_counter()
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [sys.argv[1]])
rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
con.close()
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
STUDIO = """
import json, os, resource, sys, time
os.environ["STUDIO_HOME"] = sys.argv[2]
from pipelines.generate import seed_bulk
from pipelines.generate.seeds_io import ColumnMapping
from studio.services import seeds
if sys.argv[3] == "python":
    def refuse(self, *args, **kwargs):
        raise seed_bulk.BulkUnsupported("timing the Python reader")
    seed_bulk.BulkReader.__init__ = refuse
start = time.perf_counter()
summary = seeds.import_seeds(sys.argv[1], ColumnMapping("text", "reference", ("category",)))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": summary.imported, "reader": summary.reader,
                  "skipped": summary.skipped, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_csv(path: Path, target_bytes: int, seed: int = 7) -> int:
    """Rows of about 520 bytes until the file has ``target_bytes``; returns the row count."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
    categories = ["math", "poetry", "code", "history", "science", "cooking"]
    rows = 0
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["text", "reference", "category"])
        while out.tell() < target_bytes:
            writer.writerow([f"Task {rows}: {' '.join(rnd.choices(words, k=rnd.randint(40, 70)))}?",
                             " ".join(rnd.choices(words, k=rnd.randint(15, 30))), rnd.choice(categories)])
            rows += 1
    tmp.rename(path)
    return rows


def ensure_file(folder: Path, size_mb: int) -> Path:
    path = folder / f"seeds-{size_mb}mb.csv"
    if not path.exists() or abs(path.stat().st_size - size_mb * 1e6) > 1e6:
        start = time.perf_counter()
        rows = make_csv(path, int(size_mb * 1e6))
        print(f"generated {path} ({rows:,} rows) in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def measure(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; the JSON line it prints (seconds, rows, its peak RSS)."""
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore"))
    if proc.returncode:
        raise SystemExit(f"measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pair(path: Path, work: Path, rounds: int) -> tuple[dict, dict]:
    best: dict[str, dict] = {}
    for i in range(rounds):
        for side, code, extra in (("bare", BARE, ()), ("studio", STUDIO, ("duckdb",))):
            target = work / f"{side}-{path.stem}-{i}"
            target.mkdir(parents=True, exist_ok=True)
            result = measure(code, str(path), str(target / "db.duckdb" if side == "bare" else target / "home"), *extra)
            print(f"  {side:6s} round {i + 1}: {result['seconds']:.2f} s, peak {result['peak_mib']:.0f} MiB", flush=True)
            if side not in best or result["seconds"] < best[side]["seconds"]:
                best[side] = {**result, "peak_mib": max(result["peak_mib"], best.get(side, {}).get("peak_mib", 0))}
            _cleanup(target)
    return best["bare"], best["studio"]


def _cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[85] if _report.quick() else [85, 1000])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("BENCH_SEED_DIR") or None,
                        help="where the CSV files are kept and reused (default: a temp folder; or BENCH_SEED_DIR)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--python-reader", action="store_true", help="also time the Python reader (smallest file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-seeds-") as tmp:
        data = Path(args.data_dir) if args.data_dir else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()[0]
        rows_md, bare_seconds = [], {}
        for size in args.sizes_mb:
            path = ensure_file(data, size)
            print(f"{path.name}: {path.stat().st_size / 1e6:,.0f} MB", flush=True)
            bare, studio = run_pair(path, Path(tmp) / "work", args.rounds)
            assert studio["rows"] == bare["rows"] and studio["reader"] == "duckdb", (bare, studio)
            ratio = bare["seconds"] / studio["seconds"]
            bare_seconds[size] = bare["seconds"]
            _report.record(f"seed import {size:,} MB CSV, studio speed / DuckDB read_csv", ratio, "x",
                           baseline=1.0, ratio=ratio, target=">= 0.5x", met=ratio >= 0.5,
                           notes=f"studio {studio['seconds']:.2f} s, DuckDB {bare['seconds']:.2f} s; peak "
                                 f"{studio['peak_mib']:.0f} / {bare['peak_mib']:.0f} MiB")
            rows_md.append(f"| {path.stat().st_size / 1e6:,.0f} MB, {bare['rows']:,} rows | {bare['seconds']:.2f} s "
                           f"({bare['peak_mib']:.0f} MiB) | {studio['seconds']:.2f} s ({studio['peak_mib']:.0f} MiB) | "
                           f"**{ratio:.2f}x** | {'yes' if ratio >= 0.5 else 'no'} |")
        if args.python_reader:
            small = ensure_file(data, min(args.sizes_mb))
            old = measure(STUDIO, str(small), str(Path(tmp) / "python-home"), "python")
            ratio = bare_seconds[min(args.sizes_mb)] / old["seconds"]
            rows_md.append(f"| {small.stat().st_size / 1e6:,.0f} MB, the Python reader (the importer before) | | "
                           f"{old['seconds']:.2f} s ({old['peak_mib']:.0f} MiB) | {ratio:.2f}x | |")
        load_after = os.getloadavg()[0]
    _report.params(sizes_mb=" + ".join(str(s) for s in args.sizes_mb), rounds=args.rounds)
    _report.emit([
        "| file | DuckDB `CREATE TABLE AS SELECT * FROM read_csv` (peak RSS) | studio `import_seeds` (peak RSS) "
        "| studio speed / DuckDB | target >= 0.5x met |",
        "|---|---:|---:|---:|---|",
        *rows_md,
        "",
        f"Best of {args.rounds} alternating runs per side, each in a fresh process, timed inside it. "
        f"Load average {load_before:.1f} at the start, {load_after:.1f} at the end (2 cores).",
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
