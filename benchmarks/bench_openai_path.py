"""Benchmark: the OpenAI path against a loopback endpoint with a fixed per-request latency.

Question: how many requests per minute get through ``OpenAICompatibleBackend`` (with the
response cache and the call ledger on, writing to a real DuckDB file) compared with the
endpoint's raw capacity at the same concurrency? Target: at least 90 %.

The endpoint is ``tests/fake_openai_server.py`` in its own process (so it does not share this
process's GIL), answering each request after ``--latency`` seconds and serving at most
``--capacity`` requests at once. Baselines, measured in this same run:
  * raw theoretical: capacity / latency * 60 requests per minute;
  * raw measured: a bare httpx client posting the same payloads at concurrency = capacity;
  * sequential: the backend at concurrency 1 (for context).

Run: ``.venv/bin/python benchmarks/bench_openai_path.py`` (about 30 s; 160 requests under
``python -m benchmarks --quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks import _report  # noqa: E402
from pipelines.llm.base import Generation, SamplingParams  # noqa: E402
from pipelines.llm.cache import CallLedger, ResponseCache  # noqa: E402
from pipelines.llm.openai_compat import OpenAICompatibleBackend  # noqa: E402
from pipelines.llm.pricing import PriceTable  # noqa: E402
from storage import llm_log  # noqa: E402
from storage.db import get_database  # noqa: E402

MODEL = "fake-model"
TARGET = 0.90


def start_server(latency: float, capacity: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai_server", "--latency", str(latency), "--capacity", str(capacity)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the loopback server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line.split()[1]}/v1"


def server_stats(proc: subprocess.Popen) -> dict:
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def prompts(n: int, tag: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{tag} prompt number {i}: say something short"}] for i in range(n)]


async def raw_client_run(base_url: str, batch: list, concurrency: int) -> float:
    """The endpoint's capacity as a bare async HTTP client sees it: seconds for the batch."""
    queue = list(reversed(batch))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def worker():
            while queue:
                messages = queue.pop()
                resp = await client.post("/chat/completions", json={"model": MODEL, "messages": messages,
                                                                     "max_tokens": 64})
                resp.raise_for_status()
                json.loads(resp.content)["choices"][0]["message"]["content"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def threaded_client_run(base_url: str, batch: list, concurrency: int) -> float:
    """The same with blocking ``http.client`` connections in threads: checks that the endpoint
    itself delivers its capacity (so any gap above is client-side, not the server)."""
    host_port = base_url.split("//", 1)[1].split("/", 1)[0]
    queue, lock = list(reversed(batch)), threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(host_port, timeout=30)
        while True:
            with lock:
                if not queue:
                    break
                messages = queue.pop()
            conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": MODEL, "messages": messages}),
                         headers={"Content-Type": "application/json"})
            json.loads(conn.getresponse().read())["choices"][0]
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def backend_run(base_url: str, batch: list, concurrency: int, db, job: str) -> tuple[float, int]:
    """Seconds for the batch through the backend with cache + ledger, including the final flush."""
    backend = OpenAICompatibleBackend(
        base_url, MODEL, None, concurrency=concurrency, timeout_s=30, max_retries=3,
        cache=ResponseCache(db), ledger=CallLedger(db, job_id=job, stage="bench"), prices=PriceTable.load(db),
    )
    start = time.perf_counter()
    results = backend.generate_batch(batch, SamplingParams(max_tokens=64))
    backend.close()
    elapsed = time.perf_counter() - start
    return elapsed, sum(isinstance(r, Generation) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI path throughput vs the endpoint's raw capacity")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request at the endpoint")
    parser.add_argument("--capacity", type=int, default=16, help="requests the endpoint serves at once")
    parser.add_argument("--requests", type=int, default=_report.size(800, 160))
    parser.add_argument("--sequential-requests", type=int, default=_report.size(20, 8))
    args = parser.parse_args()
    os.environ["STUDIO_HOME"] = tempfile.mkdtemp(prefix="bench-openai-")
    db = get_database()
    proc, base_url = start_server(args.latency, args.capacity)
    try:
        asyncio.run(raw_client_run(base_url, prompts(2 * args.capacity, "warmup"), args.capacity))
        raw_s = asyncio.run(raw_client_run(base_url, prompts(args.requests, "raw"), args.capacity))
        check_n = min(args.requests, 20 * args.capacity)
        threaded_s = threaded_client_run(base_url, prompts(check_n, "threads"), args.capacity)
        raw_seq_s = asyncio.run(raw_client_run(base_url, prompts(args.sequential_requests, "rawseq"), 1))
        seq_s, seq_ok = backend_run(base_url, prompts(args.sequential_requests, "seq"), 1, db, "bench_seq")
        batch = prompts(args.requests, "backend")
        be_s, be_ok = backend_run(base_url, batch, args.capacity, db, "bench_main")
        cached_s, cached_ok = backend_run(base_url, batch, args.capacity, db, "bench_rerun")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ledger = llm_log.ledger_totals(db, "bench_main", group_by=())[0]
    rerun = llm_log.ledger_totals(db, "bench_rerun", group_by=())[0]
    per_min = lambda n, s: n / s * 60  # noqa: E731
    theoretical = args.capacity / args.latency * 60
    raw = per_min(args.requests, raw_s)
    backend = per_min(be_ok, be_s)
    ratio = backend / raw
    seq_raw = per_min(args.sequential_requests, raw_seq_s)
    threaded, seq, cached = per_min(check_n, threaded_s), per_min(seq_ok, seq_s), per_min(cached_ok, cached_s)
    _report.params(requests=args.requests, latency_ms=round(args.latency * 1000), capacity=args.capacity)
    _report.record("backend / raw measured, requests/min", backend, "req/min", baseline=raw, ratio=ratio,
                   target=f"≥ {TARGET:.0%}", met=ratio >= TARGET,
                   notes=f"{be_ok}/{args.requests} succeeded; {ledger['calls']} calls in the ledger")
    print()
    _report.emit([
        f"OpenAI path, loopback endpoint: latency {args.latency * 1000:.0f} ms, capacity {args.capacity}, "
        f"{args.requests} requests, concurrency {args.capacity}, cache + ledger on (DuckDB)",
        "",
        "| measurement | requests/min | vs raw measured |",
        "|---|---:|---:|",
        f"| raw theoretical (capacity / latency) | {theoretical:,.0f} | {theoretical / raw:.1%} |",
        f"| raw measured (bare httpx, concurrency {args.capacity}) | {raw:,.0f} | 100.0% |",
        f"| endpoint check: blocking http.client threads, concurrency {args.capacity} ({check_n} requests) "
        f"| {threaded:,.0f} | {threaded / raw:.1%} |",
        f"| **backend (OpenAICompatibleBackend, concurrency {args.capacity})** | **{backend:,.0f}** | **{ratio:.1%}** |",
        f"| raw measured, sequential (concurrency 1, {args.sequential_requests} requests) "
        f"| {seq_raw:,.0f} | {seq_raw / raw:.1%} |",
        f"| backend, sequential (concurrency 1, {args.sequential_requests} requests) | {seq:,.0f} | {seq / raw:.1%} |",
        f"| backend re-run, all cache hits | {cached:,.0f} | {cached / raw:.1%} |",
        "",
        f"Backend / raw measured: **{ratio:.3f}** (target ≥ {TARGET:.0%}: {'met' if ratio >= TARGET else 'NOT met'}). "
        f"Ledger: {ledger['calls']} calls recorded ({ledger['errors']} errors); re-run: {rerun['cached_calls']} of "
        f"{rerun['calls']} served from the cache; {be_ok}/{args.requests} succeeded.",
    ])


if __name__ == "__main__":
    main()
