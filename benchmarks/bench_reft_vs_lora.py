"""ReFT against LoRA on the same tiny run: trained parameters and CPU tokens/s.

Both train the tests' tiny Llama (2 layers, hidden 64) through the studio's own path (``start_run`` +
``execute_run``: the job runner, the writer thread, checkpoints, the card and the registry), on the same
preference snapshot, with the same steps, batch, length and learning rate, for SFT and DPO. LoRA is r=8 on
q_proj and v_proj (the studio's default); ReFT is LoReFT r=8 on every layer at the first and last prompt
token (f1+l1). Trained parameters are counted in the saved output (LoRA's adapter, ReFT's interventions);
tokens/s is the trainer's token count (TRL's ``num_tokens``) over its ``train_runtime``. Rounds alternate
which method goes first, and each keeps its best, because a shared machine's speed drifts.

    .venv/bin/python -m benchmarks --only reft_vs_lora
    .venv/bin/python benchmarks/bench_reft_vs_lora.py [--rounds 3] [--steps 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402

ALGOS = ("sft", "dpo")
PEFT = {"lora": {"method": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "reft": {"method": "reft", "r": 8, "layers": [], "positions": "f1+l1"}}
SENTENCES = ("The cat sat on the mat and looked at the door.", "A dog ran across the park to find the red ball.",
             "Water boils at one hundred degrees.", "The sun rises in the east and sets in the west.",
             "Good answers are short, clear and kind to the reader.", "Rain fell on the roof all night.")


def snapshot(n: int) -> str:
    """The tiny model registered as 'bench' and ``n`` preference pairs frozen into a snapshot."""
    from storage.db import get_database
    from storage.pairs import insert_preference_pairs
    from storage.snapshots import SnapshotSpec, create_snapshot
    from studio.services import models as models_service
    from tests.tiny_models import build_tiny_llama

    models_service.add_model(str(build_tiny_llama(Path(os.environ["STUDIO_HOME"]).parent / "tiny")), name="bench")
    k = len(SENTENCES)
    rows = [{"prompt": f"Question {i}: {SENTENCES[i % k]} What next?", "chosen": SENTENCES[(i + 1) % k],
             "rejected": SENTENCES[(i + 3) % k], "confidence": 0.9} for i in range(n)]
    insert_preference_pairs(get_database(), rows)
    return create_snapshot(get_database(), SnapshotSpec(record_kind="preference", eval_fraction=0.0,
                                                        drop_duplicates=False)).id


def train(algo: str, method: str, snapshot_id: str, args, label: str) -> dict:
    """One studio run; its trained parameters, tokens and train_runtime."""
    from pipelines.train.spec import RunSpec
    from storage import registry
    from storage import training as store
    from storage.db import get_database
    from studio.services import training as service

    spec = RunSpec.from_dict({"name": f"{algo}-{method}-{label}", "recipe": algo, "base_model": "bench",
                              "snapshot_id": snapshot_id, "evaluation": {"enabled": False}, "peft": PEFT[method],
                              "hyper": {"max_steps": args.steps, "per_device_train_batch_size": args.batch,
                                        "learning_rate": 1e-3, "save_steps": args.steps, "logging_steps": 1,
                                        "max_length": args.max_length, "precision": "fp32"}})
    gc.collect()
    run = service.start_run(spec, detach=False)
    done = service.execute_run(run.id, run.job_id, show_bar=False)
    assert done.status == "succeeded", done.error
    db = get_database()
    row = store.get_run(db, run.id)
    output = next(m for m in registry.list_models(db) if m.id == row.output_model_id)
    tokens = max(m.value or 0 for m in store.list_metrics(db, run.id) if m.name == "num_tokens")
    return {"params": output.parameters, "tokens": tokens, "runtime": row.final_metrics["train_runtime"]}


def measure(args) -> dict[tuple[str, str], list[dict]]:
    snapshot_id = snapshot(args.steps * args.batch)
    results: dict[tuple[str, str], list[dict]] = {(a, m): [] for a in ALGOS for m in PEFT}
    for algo in ALGOS:  # warm-up: imports and first loads
        for method in PEFT:
            train(algo, method, snapshot_id, args, "warmup")
    for round_ in range(args.rounds):
        for algo in ALGOS:
            for method in (("lora", "reft") if round_ % 2 == 0 else ("reft", "lora")):
                results[algo, method].append(train(algo, method, snapshot_id, args, f"r{round_}"))
            lora, reft = results[algo, "lora"][-1], results[algo, "reft"][-1]
            print(f"round {round_ + 1} {algo}: LoRA {lora['tokens'] / lora['runtime']:,.0f} tokens/s, "
                  f"ReFT {reft['tokens'] / reft['runtime']:,.0f} tokens/s", flush=True)
    return results


def report(results: dict[tuple[str, str], list[dict]], args, threads: int) -> None:
    lines = [f"The tests' tiny Llama (2 layers, hidden 64), fp32 on the CPU with {threads} torch thread(s), "
             f"{args.steps} steps of batch {args.batch}, max_length {args.max_length}; LoRA r=8 (q_proj, v_proj), "
             f"ReFT LoReFT r=8 on both layers at f1+l1; best of {args.rounds} alternating rounds after a warm-up.", "",
             "| algorithm | method | trained parameters | train_runtime s (best) | tokens/s |",
             "|---|---|---:|---:|---:|"]
    for algo in ALGOS:
        best = {m: min(results[algo, m], key=lambda r: r["runtime"]) for m in PEFT}
        for method, b in best.items():
            lines.append(f"| {algo} | {method} | {b['params']:,} | {b['runtime']:.3f} | "
                         f"{b['tokens'] / b['runtime']:,.0f} |")
        lora, reft = best["lora"], best["reft"]
        _report.record(f"{algo.upper()} ReFT tokens/s vs LoRA (cpu)", reft["tokens"] / reft["runtime"], "tokens/s",
                       baseline=lora["tokens"] / lora["runtime"],
                       ratio=(reft["tokens"] / reft["runtime"]) / (lora["tokens"] / lora["runtime"]))
        _report.record(f"{algo.upper()} ReFT trained parameters vs LoRA", reft["params"], "",
                       baseline=lora["params"], ratio=reft["params"] / lora["params"])
    _report.emit(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=_report.size(5, 1))
    parser.add_argument("--steps", type=int, default=_report.size(24, 8))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one leaves a core spare)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-reft-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")
        results = measure(args)
    _report.params(steps=args.steps, batch=args.batch, max_length=args.max_length, rounds=args.rounds,
                   threads=torch.get_num_threads())
    report(results, args, torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
