"""The embedded OpenAI-compatible endpoint: llama.cpp's own C++ server, with parallel slots.

Why this server: llama-cpp-python's server answers one request at a time (52.9 tokens/s at
concurrency 1, 56.1 at concurrency 8), so the studio's concurrent generation gained nothing from it.
llama.cpp's native server decodes every slot's next token in one batch (continuous batching).
``xllamacpp`` ships that server in a prebuilt PyPI wheel (it is the llama.cpp backend Xinference
uses), so setup compiles nothing. The figures are in docs/benchmarks.md ("endpoint_batching").

Run by ``studio.lifecycle.start_llm_server`` as
``python -m studio.llm_serve --model GGUF --host H --port P --alias NAME --parallel N --threads T``;
SIGTERM or SIGINT stops it. It logs llama.cpp's own lines, which ``explain_llm_failure`` reads.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

CTX_PER_SLOT = 2048  # what each request may use, as with the single-slot server before


def default_threads() -> int:
    """Half the cores: the other half stays with the studio (the pipeline, DuckDB, the app)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _params(args: argparse.Namespace):
    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # starve the other processes and themselves (measured: 5 tokens/s instead of 50).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import xllamacpp as xlc  # the wheel is large: only the server process loads it

    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = CTX_PER_SLOT * args.parallel
    params.cont_batching = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    return xlc, params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.llm_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GGUF file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", required=True, help="the model name clients ask for")
    parser.add_argument("--parallel", type=int, default=8, help="requests decoded together")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: half the cores)")
    args = parser.parse_args(argv)
    args.threads = args.threads or default_threads()
    xlc, params = _params(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = xlc.Server(params)  # loads the model and starts listening; raises if it cannot
    except Exception as exc:  # noqa: BLE001 - the supervisor reads why from this line and llama.cpp's log
        print(f"error loading model: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"serving {args.alias} at {server.listening_address} with {args.parallel} slots, "
          f"{args.threads} threads", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
