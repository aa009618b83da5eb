"""Comparisons: outputs of 2 local models on 1,000 prompts, batched vs one at a time (target ≥ 3×), and
the leaderboard with bootstrap intervals from 100,000 votes (target within 2 s).

Why these two: a comparison's cost is generating every model's answer to every prompt (the local
backend pads and batches them), and the leaderboard is recomputed on every page view (one DuckDB
read into numpy, then Bradley–Terry fits for the point and all bootstrap resamples at once).

    .venv/bin/python benchmarks/bench_compare.py [--prompts 1000] [--max-tokens 8] [--votes 100000] [--model-dir DIR]

Without ``--model-dir`` the tiny offline 2-layer Llama of the tests is built (a second, so the
figures measure the studio's overheads and batching, not a big model's arithmetic). Both sides
are the real comparison pipeline in a temporary STUDIO_HOME (DuckDB writes included), with the same
loaded models at batch size 32 and at batch size 1 (one prompt at a time). The leaderboard's
baseline is the same bootstrap fitted one resample at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402

GEN_TARGET, BOARD_TARGET_S = 3.0, 2.0
WORDS = ("the cat sat on the mat and looked at the door while a dog ran across the park to find the red "
         "ball please write a short answer to the question below").split()


def prompts(n: int) -> list[str]:
    return [f"Question {i}: " + " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(5 + i % 20)) + "?"
            for i in range(n)]


def bench_generation(model_dir: Path, n: int, max_tokens: int, work: Path, batch: int) -> tuple[float, float, int]:
    """The same comparison pipeline twice: the local backends at batch size 1, then at ``batch``.
    The seeds differ (greedy, so the work is the same) so the second run cannot reuse the first's answers."""
    from pipelines.compare.spec import ComparisonSpec
    from pipelines.llm.base import SamplingParams
    from studio.services import compare as svc
    from studio.services import models as models_svc

    for name in ("bench-a", "bench-b"):
        models_svc.add_model(str(model_dir), name=name)
    path = work / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts(n)))
    backends = [models_svc.backend_for(f"local:{m}") for m in ("bench-a", "bench-b")]
    for backend in backends:  # load and warm up outside both timings
        backend.generate([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0, max_tokens=2))
    times, generated = [], 0
    for seed, size in ((1, 1), (0, batch)):
        for backend in backends:
            backend.batch_size = size
        created = svc.create_comparison(ComparisonSpec(
            models=("local:bench-a", "local:bench-b"), prompt_source="upload", prompt_source_id=str(path),
            sampling={"temperature": 0.0, "max_tokens": max_tokens, "seed": seed}), background=False)
        started = time.perf_counter()
        result = svc.run_comparison(created.comparison_id)
        times.append(time.perf_counter() - started)
        generated = result.outputs.generated
        print(f"batch size {size}: {generated} answers in {times[-1]:.1f} s", flush=True)
    return times[0], times[1], generated


def bench_leaderboard(n_votes: int) -> tuple[float, float, float]:
    import numpy as np

    from pipelines.compare import stats
    from storage import compare as store
    from storage.db import get_database
    from studio.services import compare as svc

    db = get_database()
    rng = np.random.default_rng(0)
    models = [f"model-{i}" for i in range(8)]
    strength = np.linspace(-1, 1, len(models))
    prompt_rows = [store.PromptRow(f"p{i}", "cmp_bench", f"prompt {i}", None, None, {"topic": f"t{i % 4}"})
                   for i in range(1000)]
    store.create_comparison(db, store.ComparisonRow("cmp_bench", "bench", None, "upload", "x", models, {}, None,
                                                    "ready"), prompt_rows)
    a = rng.integers(0, len(models), n_votes)
    b = (a + rng.integers(1, len(models), n_votes)) % len(models)
    p_a = 1 / (1 + np.exp(strength[b] - strength[a]))
    u = rng.random(n_votes)
    winner = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p_a, "a", "b"))
    votes = [store.VoteRow("cmp_bench", f"p{i % 1000}", models[x], models[y], w, "human", f"voter-{i}")
             for i, (x, y, w) in enumerate(zip(a, b, winner))]
    for start in range(0, n_votes, 20_000):
        store.write_votes(db, votes[start:start + 20_000], replace=False)
    svc.leaderboard(n_boot=10)  # warm-up (imports, first open)
    started = time.perf_counter()
    board = svc.leaderboard(n_boot=200)
    elapsed = time.perf_counter() - started
    print(f"leaderboard of {board.votes:,} votes with 200 resamples: {elapsed:.2f} s", flush=True)
    # Baseline: the same point fit and 200 resamples, each fitted on its own (one optimiser run per resample).
    table = stats.VoteTable.from_votes([models[x] for x in a],
                                       [models[y] for y in b], winner.tolist())
    cells, counts = np.unique(np.stack([table.first, table.second, table.code]), axis=1, return_counts=True)
    outcome = np.array(list(stats.OUTCOME.values()))[cells[2]]
    started = time.perf_counter()
    draws = np.random.default_rng(0).multinomial(len(table), counts / len(table), size=200).astype(float)
    for draw in draws:
        stats.fit_bradley_terry(stats._wins_matrix(cells[0], cells[1], outcome, draw, len(models)))
    loop = time.perf_counter() - started
    started = time.perf_counter()
    stats.bradley_terry(table, n_boot=200)
    vectorised = time.perf_counter() - started
    print(f"bootstrap fits: one at a time {loop:.2f} s, all at once {vectorised:.2f} s", flush=True)
    return elapsed, loop, vectorised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=_report.size(1000, 200))
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32, help="the local backend's batch size on the batched side")
    parser.add_argument("--model-dir", type=Path, help="a transformers folder (default: the tiny test model)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["STUDIO_HOME"] = str(work / "home")
        model_dir = args.model_dir
        if model_dir is None:
            from tests.tiny_models import build_tiny_llama

            model_dir = build_tiny_llama(work / "tiny")
        single, batched, answers = bench_generation(model_dir, args.prompts, args.max_tokens, work, args.batch)
        board_s, loop_s, vector_s = bench_leaderboard(args.votes)
    ratio = single / batched
    _report.params(prompts=args.prompts, models=2, max_tokens=args.max_tokens, votes=args.votes,
                   model=str(args.model_dir or "tiny 2-layer Llama"))
    _report.record("comparison outputs, batched / one at a time", ratio, "×", baseline=1.0, ratio=ratio,
                   target=f"≥ {GEN_TARGET:.0f}×", met=ratio >= GEN_TARGET)
    _report.record(f"leaderboard with intervals, {args.votes:,} votes", board_s, "s", baseline=loop_s,
                   ratio=loop_s / vector_s, target=f"≤ {BOARD_TARGET_S:.0f} s", met=board_s <= BOARD_TARGET_S)
    gen_ok, board_ok = ratio >= GEN_TARGET, board_s <= BOARD_TARGET_S
    _report.emit([
        f"{args.prompts:,} prompts × 2 local models, greedy, max_tokens {args.max_tokens}",
        "",
        "| measure | baseline | studio | ratio / target |",
        "|---|---:|---:|---:|",
        f"| outputs ({answers:,}) | batch size 1: {single:.1f} s | batch size {args.batch}: {batched:.1f} s | "
        f"**{ratio:.2f}×** (≥ {GEN_TARGET:.0f}×: {'met' if gen_ok else 'NOT met'}) |",
        f"| leaderboard, {args.votes:,} votes, 200 resamples | per-resample fits {loop_s:.2f} s | "
        f"{board_s:.2f} s end to end | ≤ {BOARD_TARGET_S:.0f} s: {'met' if board_ok else 'NOT met'} |",
    ])
    return 0 if gen_ok and board_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
