"""DuckDB at scale: ingest 1,000,000 preference pairs, then a paged, filtered listing query.

Targets (issue "Foundation"): ingest within 15 s; listing p95 within 50 ms. The baseline in the same
run is a bare ``duckdb`` connection doing the same INSERT ... SELECT from the same Arrow table, so
the ratio shows what the storage layer costs on top of DuckDB itself.

    .venv/bin/python -m benchmarks.bench_duckdb [--rows 1000000] [--queries 200]

Under ``python -m benchmarks --quick``: 300,000 rows and 60 queries.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _report  # noqa: E402
from storage import pairs  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import apply_migrations  # noqa: E402

WORDS = np.array("the model answer explain write a short list of steps why how data code python test review "
                 "prompt chosen rejected helpful honest safe clear brief detailed example".split())


def _texts(rng: np.random.Generator, n: int, words: int, vocab_rows: int = 4096) -> pa.Array:
    """Realistic-length texts without a million Python string joins: a pool reused with a suffix."""
    pool = [" ".join(rng.choice(WORDS, size=words)) for _ in range(vocab_rows)]
    picks = rng.integers(0, vocab_rows, size=n)
    base = pa.array(np.array(pool, dtype=object)[picks], pa.string())
    suffix = pa.array(np.char.mod(" #%d", np.arange(n)), pa.string())
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(base, suffix, "")


def make_pairs(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    prompt, chosen, rejected = _texts(rng, n, 14), _texts(rng, n, 45), _texts(rng, n, 35)
    models = np.array(["smollm2-135m-instruct", "qwen-0.5b", "gpt-4o-mini", "llama-3-8b"], dtype=object)
    now = datetime.now(timezone.utc)
    return pa.table({
        "id": pa.array(np.char.mod("pp_%09d", np.arange(n)), pa.string()),
        "run_id": pa.array(np.char.mod("run_%03d", rng.integers(0, 200, n)), pa.string()),
        "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "chosen_model": pa.array(models[rng.integers(0, 4, n)], pa.string()),
        "rejected_model": pa.array(models[rng.integers(0, 4, n)], pa.string()),
        "judge_model": pa.array(np.full(n, "judge-7b", dtype=object), pa.string()),
        "confidence": pa.array(rng.random(n)),
        "score_gap": pa.array(rng.integers(0, 5, n).astype(float)),
        "swap_agreement": pa.array(rng.random(n) > 0.2),
        "label_source": pa.array(np.full(n, "llm", dtype=object), pa.string()),
        "human_reviewed": pa.array(np.zeros(n, dtype=bool)),
        "flagged": pa.array(np.zeros(n, dtype=bool)),
        "chosen_length": pa.compute.utf8_length(chosen).cast(pa.int32()),
        "rejected_length": pa.compute.utf8_length(rejected).cast(pa.int32()),
        "created_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
    })


def bench_ingest(folder: Path, table: pa.Table) -> tuple[float, float]:
    raw_path = folder / "raw.duckdb"
    conn = duckdb.connect(str(raw_path))
    apply_migrations(conn.cursor())
    columns = ", ".join(table.column_names)
    conn.register("incoming", table)
    start = time.perf_counter()
    conn.execute(f"INSERT INTO preference_pairs ({columns}) SELECT {columns} FROM incoming")
    conn.execute("CHECKPOINT")
    raw_s = time.perf_counter() - start
    conn.close()

    db = Database(folder / "studio.duckdb")
    with db.session() as cur:  # migrations run here, outside the timed part
        cur.execute("SELECT 1")
    start = time.perf_counter()
    pairs.insert_preference_pairs(db, table)
    with db.session() as cur:
        cur.execute("CHECKPOINT")
    studio_s = time.perf_counter() - start
    db.close()
    return raw_s, studio_s


def listing_queries(count: int, seed: int = 1) -> list[tuple[pairs.PairFilter, str, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        filters = [
            pairs.PairFilter(run_id=f"run_{rng.randrange(200):03d}"),
            pairs.PairFilter(min_confidence=0.2, max_confidence=0.4, swap_disagreement=True),
            pairs.PairFilter(model="qwen-0.5b", max_length=400),
            pairs.PairFilter(),
        ][i % 4]
        out.append((filters, ["newest", "least_confident", "most_confident"][i % 3], rng.randrange(0, 20) * 50))
    return out


BASELINE_CLAUSES = {  # the hand-written equivalent: only the active filters, one phase
    "run_id": "run_id = ?", "model": "(chosen_model = ? OR rejected_model = ?)", "min_confidence": "confidence >= ?",
    "max_confidence": "confidence <= ?", "swap_disagreement": "swap_agreement = NOT ?",
    "max_length": "greatest(chosen_length, rejected_length) <= ?",
}


def bench_listing_baseline(path: Path, queries) -> list[float]:
    conn = duckdb.connect(str(path))
    timings = []
    for filters, order, offset in queries:
        clauses, params = [], []
        for name, clause in BASELINE_CLAUSES.items():
            value = getattr(filters, name)
            if value is not None:
                clauses.append(clause)
                params.extend([value] * clause.count("?"))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (f"SELECT {pairs.LIST_COLUMNS} FROM preference_pairs {where} "
               f"ORDER BY {pairs.ORDERS[order][0]} LIMIT 50 OFFSET {offset}")
        start = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        timings.append((time.perf_counter() - start) * 1000)
        assert rows
    conn.close()
    return timings


def bench_listing(db: Database, queries) -> list[float]:
    timings = []
    for i, (filters, order, offset) in enumerate(queries):
        start = time.perf_counter()
        rows = pairs.list_preference_pairs(db, filters, limit=50, offset=offset, order=order)
        timings.append((time.perf_counter() - start) * 1000)
        assert rows, f"query {i} returned nothing"
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=_report.size(1_000_000, 300_000))
    parser.add_argument("--queries", type=int, default=_report.size(200, 60))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        table = make_pairs(args.rows)
        print(f"built {args.rows:,} pairs in memory in {time.perf_counter() - start:.1f} s "
              f"({table.nbytes / 1e6:.0f} MB of Arrow data)")
        raw_s, studio_s = bench_ingest(folder, table)
        queries = listing_queries(args.queries)
        base_timings = bench_listing_baseline(folder / "raw.duckdb", queries)
        db = Database(folder / "studio.duckdb")
        timings = bench_listing(db, queries)
        opens = db.opens
        db.close()
    p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=20)[18]
    b50, b95 = statistics.median(base_timings), statistics.quantiles(base_timings, n=20)[18]
    print()
    _report.params(rows=args.rows, queries=args.queries)
    _report.record(f"ingest {args.rows:,} preference pairs", studio_s, "s", baseline=raw_s, ratio=studio_s / raw_s,
                   target="within 15 s", met=studio_s <= 15)
    _report.record("paged filtered listing, p95", p95, "ms", baseline=b95, ratio=p95 / b95,
                   target="p95 within 50 ms", met=p95 <= 50, notes=f"p50 {p50:.1f} ms (bare DuckDB {b50:.1f} ms)")
    _report.emit([
        "| measure | baseline (bare DuckDB) | studio storage | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| ingest {args.rows:,} preference pairs | {raw_s:.2f} s | {studio_s:.2f} s | "
        f"{studio_s / raw_s:.2f}x | within 15 s | {'yes' if studio_s <= 15 else 'no'} |",
        f"| paged filtered listing, p50 / p95 ({args.queries} queries, 50 rows a page) | {b50:.1f} / {b95:.1f} ms | "
        f"{p50:.1f} / {p95:.1f} ms | {p95 / b95:.2f}x (p95) | p95 within 50 ms | {'yes' if p95 <= 50 else 'no'} |",
        "",
        f"The listing opened the database file {opens} time(s) for {args.queries} queries.",
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
