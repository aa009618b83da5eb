"""Local transformers backend, batched vs one prompt at a time, tokens/s on SmolLM2-135M. Target: at least 3×.

Why: on CPU a single prompt leaves the matrix units mostly idle; the backend pads prompts on the
left and generates a micro-batch at once. This script measures both ways in the same process, on
the same loaded model and the same prompts (greedy, so both ways produce the same work), and
prints a markdown table with the ratio.

    .venv/bin/python benchmarks/bench_local_batching.py [--model-dir DIR] [--prompts 16] [--max-tokens 32]

``--model-dir`` is a transformers folder of SmolLM2-135M-Instruct (default: the registry's
``$STUDIO_HOME/models/smollm2-135m-instruct/hf``). When it does not exist, the script pulls it
the way ``python -m studio models pull smollm2-135m-instruct`` does. Under
``python -m benchmarks --quick``: 8 prompts, 16 tokens each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from pipelines.llm.base import SamplingParams  # noqa: E402
from pipelines.llm.transformers_local import TransformersBackend  # noqa: E402
from core import settings  # noqa: E402

TARGET_RATIO = 3.0
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain in one sentence why the sky is blue.",
    "List three fruits that are red.",
    "Give me a short tip for learning a new language, and explain why it works for most people.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Describe a cat to someone who has never seen one.",
    "Suggest a name for a small coffee shop near the sea.",
    "Why do we need sleep?",
    "Summarize the plot of Romeo and Juliet in two sentences, without spoiling more than necessary.",
    "What does a compiler do?",
    "Name a famous painter and one of their works.",
    "How many legs does a spider have?",
    "Write a friendly reminder to drink water.",
    "What is the boiling point of water at sea level, in Celsius and in Fahrenheit?",
]


def default_model_dir() -> Path:
    return settings.current().models_dir / "smollm2-135m-instruct" / "hf"


def resolve_model_dir(requested: Path | None) -> Path:
    if requested:
        return requested
    registry_dir = default_model_dir()
    if (registry_dir / "config.json").is_file():
        return registry_dir
    from studio.services.models import pull_model

    print("No SmolLM2 transformers folder yet: pulling it (python -m studio models pull) ...", flush=True)
    return Path(pull_model("smollm2-135m-instruct").hf_path)


def timed_run(llm: TransformersBackend, batch_size: int, prompts: list[str], params: SamplingParams):
    """Wall time and generations for all prompts in micro-batches of ``batch_size``."""
    llm.batch_size = batch_size
    messages = [[{"role": "user", "content": p}] for p in prompts]
    started = time.perf_counter()
    results = asyncio.run(llm.agenerate_batch(messages, params))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not hasattr(r, "completion_tokens")]
    if failed:
        sys.exit(f"Generation failed: {failed[0]}")
    return elapsed, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="transformers folder of SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=_report.size(16, 8), help="number of prompts (default 16)")
    parser.add_argument("--max-tokens", type=int, default=_report.size(32, 16),
                        help="new tokens per prompt (default 32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on busy cores)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    model_dir = resolve_model_dir(args.model_dir)
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    llm = TransformersBackend(model_dir, name="smollm2-135m-instruct")
    started = time.perf_counter()
    llm.load()
    print(f"Loaded {model_dir} in {time.perf_counter() - started:.1f} s on {llm.device} "
          f"({torch.get_num_threads()} torch threads, "
          f"{'default' if llm.used_default_template else 'its own'} chat template).", flush=True)
    llm.generate([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0, max_tokens=4))  # warm-up

    rows = []
    for label, size in (("one at a time (batch 1)", 1), (f"batched (batch {len(prompts)})", len(prompts))):
        elapsed, results = timed_run(llm, size, prompts, params)
        tokens = sum(r.completion_tokens for r in results)
        rows.append((label, elapsed, tokens, tokens / elapsed, [r.text for r in results]))
        print(f"{label}: {tokens} tokens in {elapsed:.1f} s", flush=True)

    ratio = rows[1][3] / rows[0][3]
    same = sum(a == b for a, b in zip(rows[0][4], rows[1][4]))
    print()
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    _report.params(prompts=len(prompts), max_tokens=args.max_tokens, threads=torch.get_num_threads())
    _report.record("batched / one at a time, tokens/s", rows[1][3], "tokens/s", baseline=rows[0][3], ratio=ratio,
                   target=f"≥ {TARGET_RATIO:.0f}×", met=ratio >= TARGET_RATIO,
                   notes=f"identical greedy outputs {same}/{len(prompts)}")
    _report.emit([
        f"SmolLM2-135M-Instruct, {len(prompts)} prompts, max_tokens {args.max_tokens}, greedy, "
        f"{llm.device}, {torch.get_num_threads()} threads",
        "",
        "| mode | wall s | completion tokens | tokens/s |",
        "|---|---:|---:|---:|",
        *(f"| {label} | {elapsed:.1f} | {tokens} | {rate:.1f} |" for label, elapsed, tokens, rate, _ in rows),
        "",
        f"Batched / one at a time: **{ratio:.2f}×** (target ≥ {TARGET_RATIO:.0f}×: {verdict}). "
        f"Identical greedy outputs: {same}/{len(prompts)}.",
    ])
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
