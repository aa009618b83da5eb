"""The embedded OpenAI-compatible endpoint: llama.cpp's own C++ server, with parallel slots.

Why this server: llama-cpp-python's server answers one request at a time (52.9 tokens/s at
concurrency 1, 56.1 at concurrency 8), so the studio's concurrent generation gained nothing from it.
llama.cpp's native server decodes every slot's next token in one batch (continuous batching).

Which build: ``scripts/setup.sh`` compiles llama.cpp's ``llama-server`` for this machine's CPU
(``pipelines.models.llama_server``); this module then execs it, serving the pulled GGUF expanded to
bfloat16, the form whose batches this CPU computes best. Without that build (no compiler) it serves
the GGUF as pulled with the server of the ``xllamacpp`` wheel (AVX2, prebuilt), in this process.
``--server xllamacpp`` (``STUDIO_LLM_SERVER``) picks the wheel even when the native build is there. The figures
are in docs/benchmarks.md ("endpoint_batching").

Run by ``studio.lifecycle.start_llm_server`` as
``python -m studio.llm_serve --model GGUF --host H --port P --alias NAME --parallel N --threads T
--threads-batch B``; SIGTERM or SIGINT stops it. It logs llama.cpp's own lines, which
``explain_llm_failure`` reads.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from core.settings import LLM_SERVERS

CTX_PER_SLOT = 2048  # what each request may use, as with the single-slot server before
# llama.cpp's server answers any web page's cross-origin requests by default ("*"): a site open in the
# user's browser could use the endpoint. Only pages served from this machine may.
CORS_ORIGINS = "localhost"


def default_threads() -> int:
    """Half the cores: the other half stays with the studio (the pipeline, DuckDB, the app)."""
    return max(1, (os.cpu_count() or 2) // 2)


def default_batch_threads() -> int:
    """Every core for a batch of several requests: one token alone gains little from a second
    thread (measured: 186 against 191 tokens/s), a batch of 8 nearly doubles (docs/benchmarks.md)."""
    return max(1, os.cpu_count() or 2)


def native_argv(server: Path, model: Path, args: argparse.Namespace) -> list[str]:
    return [str(server), "--model", str(model), "--host", args.host, "--port", str(args.port),
            "--alias", args.alias, "--parallel", str(args.parallel), "--ctx-size", str(CTX_PER_SLOT * args.parallel),
            "--cont-batching", "--threads", str(args.threads), "--threads-batch", str(args.threads_batch),
            "--cors-origins", CORS_ORIGINS, "--no-cors-credentials"]


def _exec_native(args: argparse.Namespace) -> None:
    """Replace this process with the native server when it is built and wanted (returns otherwise)."""
    from pipelines.models.llama_server import bf16_copy, native_server

    server = native_server()
    if server is None or args.server == "xllamacpp":
        return
    try:
        model = bf16_copy(Path(args.model))
    except Exception as exc:  # noqa: BLE001 - a GGUF gguf-py cannot read: llama.cpp says why below
        print(f"serving the GGUF as pulled: expanding it to bfloat16 failed ({exc})", file=sys.stderr, flush=True)
        model = Path(args.model)
    print(f"serving {args.alias} with llama.cpp's server built for this CPU ({server}), {args.parallel} slots, "
          f"{args.threads} threads ({args.threads_batch} for batches), weights {model.name}", flush=True)
    os.execv(server, native_argv(server, model, args))


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
    params.cors_origins = CORS_ORIGINS
    params.cors_credentials = False
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads_batch
    return xlc, params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.llm_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GGUF file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", required=True, help="the model name clients ask for")
    parser.add_argument("--parallel", type=int, default=8, help="requests decoded together")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for one token (0: half the cores)")
    parser.add_argument("--server", choices=LLM_SERVERS, default="auto",
                        help="auto: llama.cpp's server built for this CPU when setup built it; xllamacpp: the wheel")
    parser.add_argument("--threads-batch", type=int, default=0, help="CPU threads for a batch (0: every core)")
    args = parser.parse_args(argv)
    args.threads = args.threads or default_threads()
    args.threads_batch = args.threads_batch or default_batch_threads()
    _exec_native(args)
    xlc, params = _params(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = xlc.Server(params)  # loads the model and starts listening; raises if it cannot
    except Exception as exc:  # noqa: BLE001 - the supervisor reads why from this line and llama.cpp's log
        print(f"error loading model: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"serving {args.alias} at {server.listening_address} with the xllamacpp wheel, {args.parallel} slots, "
          f"{args.threads} threads ({args.threads_batch} for batches)", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
