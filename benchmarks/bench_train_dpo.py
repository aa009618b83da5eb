"""Studio DPO run vs the same TRL DPOTrainer configuration called directly, tokens/s. Target: overhead ≤ 5%.

Why: the studio wraps TRL with callbacks that write every logged metric to DuckDB, catalogue each
checkpoint and report progress; that must not slow training down. Both sides train SmolLM2-135M-Instruct
with LoRA (r=8, q_proj/v_proj) on CPU on the same preference rows (a real snapshot, read back for the
baseline), with the same DPOConfig values and seed. Throughput is the tokens of the processed examples
(prompt + chosen + prompt + rejected, truncated to max_length) over the trainer's own train_runtime,
so both sides time the same loop; the studio's end-to-end wall time (loading, merging nothing,
registering, the model card) is printed too. One warm-up run per side, then best of two, alternating.
``--device cuda`` runs bf16 at a batch and length that fill a GPU and adds peak GPU memory and MFU for
both sides (``benchmarks/_train.py``); ``bench_train_overhead.py`` measures the studio's overhead on
GPU-short steps.

    .venv/bin/python benchmarks/bench_train_dpo.py [--model-dir DIR] [--steps 4] [--batch 2] [--max-length 128]
    .venv/bin/python benchmarks/bench_train_dpo.py --device cuda [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _report, _train  # noqa: E402
from benchmarks.bench_local_batching import resolve_model_dir  # noqa: E402

TARGET_OVERHEAD = 0.05
TOPICS = ["the cat on the mat", "boiling water", "a train timetable", "a small garden", "rain on the roof",
          "counting to three", "reading a book aloud", "a quiet city at night"]


def pairs(n: int, max_length: int = 128) -> list[dict]:
    """Short explanations on the CPU; answers long enough to fill ``max_length`` in GPU mode."""
    if max_length > 128:
        from benchmarks.bench_train_overhead import pairs as long_pairs

        return long_pairs(n, max_length)
    return [{"prompt": f"Explain {TOPICS[i % len(TOPICS)]} in one or two sentences. ({i})",
             "chosen": f"Here is a short, clear explanation of {TOPICS[i % len(TOPICS)]}: it is simple, and "
                       "the key idea fits in a sentence a child can follow.",
             "rejected": "I do not know. Rain fell on the roof all night and the river rose.", "confidence": 0.9}
            for i in range(n)]


def example_tokens(tokenizer, rows: list[dict], max_length: int) -> float:
    """Mean tokens per DPO example: prompt + chosen and prompt + rejected, each truncated to max_length."""
    total = 0
    for row in rows:
        for side in ("chosen", "rejected"):
            ids = tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=True, return_dict=False)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            total += min(len(ids), max_length)
    return total / len(rows)


def hyper(args) -> dict:
    return {"max_steps": args.steps, "per_device_train_batch_size": args.batch, "learning_rate": 5e-5,
            "save_steps": 1000, "logging_steps": 1, "max_length": args.max_length, "seed": 42,
            "precision": args.precision}


def studio_run(snapshot_id: str, args, label: str) -> tuple[float, float, float]:
    """(train_runtime, end-to-end wall seconds, peak GPU MB) of one studio DPO run."""
    from pipelines.train.runner import run_training
    from pipelines.train.spec import RunSpec
    from storage import training as store
    from storage.db import get_database

    spec = RunSpec.from_dict({"name": f"bench-{label}", "recipe": "dpo", "base_model": "smollm2",
                              "snapshot_id": snapshot_id, "peft": {"method": "lora", "r": 8, "alpha": 16,
                              "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
                              "hyper": hyper(args), "evaluation": {"enabled": False}})
    db = get_database()
    run_id = store.insert_run(db, name=spec.name, recipe="dpo", stage="dpo", spec=spec.to_dict(), snapshot_id=snapshot_id)
    _train.reset_peak(args.device == "cuda")
    started = time.perf_counter()
    result = run_training(run_id)
    assert result.status == "succeeded", result
    return (result.final_metrics["train_runtime"], time.perf_counter() - started,
            _train.peak_mb(args.device == "cuda"))


def direct_run(model_dir: Path, rows: list[dict], args, out: Path) -> tuple[float, float]:
    """(train_runtime, peak GPU MB) of plain TRL: DPOTrainer + LoRA with the same values, no studio code."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    cuda = args.device == "cuda"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16 if cuda else torch.float32)
    h = hyper(args)
    config = DPOConfig(output_dir=str(out), learning_rate=h["learning_rate"], lr_scheduler_type="linear",
                       warmup_steps=0.0, num_train_epochs=1.0, max_steps=args.steps,
                       per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.batch,
                       gradient_accumulation_steps=1, gradient_checkpointing=False, max_grad_norm=1.0,
                       weight_decay=0.0, seed=42, data_seed=42, save_strategy="steps", save_steps=1000,
                       save_total_limit=2, logging_steps=1, logging_first_step=True, eval_strategy="no",
                       report_to="none", use_cpu=not cuda, bf16=cuda, fp16=False, dataloader_num_workers=0,
                       disable_tqdm=True, beta=0.1, max_length=args.max_length)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora)
    _train.reset_peak(cuda)
    result = trainer.train()
    peak = _train.peak_mb(cuda)
    trainer.save_model(str(out / "final"))
    return result.metrics["train_runtime"], peak


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: bf16, batch 8, max_length 1024, plus peak memory and MFU (see benchmarks/_train.py)")
    parser.add_argument("--model-dir", type=Path, default=None, help="transformers folder of SmolLM2-135M-Instruct "
                        "(on cuda, default: a model of its shape with random weights)")
    parser.add_argument("--steps", type=int, default=_report.size(16, 4))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = _train.GPU_SIZES if args.device == "cuda" else {"batch": 2, "max_length": 128, "precision": "fp32"}
    for key, value in sizes.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def measure(args, tmp: Path) -> dict:
    """Warm-up, then best of two alternating runs per side; the figures of each side."""
    from transformers import AutoTokenizer

    from storage.db import get_database
    from storage.pairs import insert_preference_pairs
    from storage.snapshots import SnapshotSpec, create_snapshot, read_snapshot_rows
    from studio.services import models as models_service

    if args.device == "cuda":
        _train.require_cuda()
    model_dir = args.model_dir or (_train.build_gpu_model(tmp) if args.device == "cuda" else resolve_model_dir(None))
    models_service.add_model(str(model_dir), name="smollm2")
    db = get_database()
    insert_preference_pairs(db, pairs(args.steps * args.batch * 2, args.max_length))
    snapshot_id = create_snapshot(db, SnapshotSpec(record_kind="preference", eval_fraction=0.0)).id
    rows = read_snapshot_rows(db, snapshot_id, "train")
    per_example = example_tokens(AutoTokenizer.from_pretrained(str(model_dir)), rows, args.max_length)
    warm = argparse.Namespace(**{**vars(args), "steps": 1})
    studio_run(snapshot_id, warm, "warmup")
    direct_run(model_dir, rows, warm, tmp / "direct-warmup")
    studio, direct = [], []
    for attempt in range(2):
        studio.append(studio_run(snapshot_id, args, f"s{attempt}"))
        direct.append(direct_run(model_dir, rows, args, tmp / f"direct-{attempt}"))
        print(f"attempt {attempt + 1}: studio {studio[-1][0]:.2f} s (wall {studio[-1][1]:.1f} s), "
              f"TRL {direct[-1][0]:.2f} s", flush=True)
    return {"model_dir": model_dir, "tokens": per_example * args.steps * args.batch, "per_example": per_example,
            "studio": min(studio), "direct": min(direct), "n_params": _train.parameters(model_dir)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")
        import torch

        got = measure(args, Path(tmp))
    (studio_time, wall, studio_peak), (direct_time, direct_peak) = got["studio"], got["direct"]
    studio_rate, direct_rate = got["tokens"] / studio_time, got["tokens"] / direct_time
    overhead = direct_rate / studio_rate - 1
    met = overhead <= TARGET_OVERHEAD
    cuda = args.device == "cuda"
    _report.params(device=args.device, steps=args.steps, batch=args.batch, max_length=args.max_length,
                   threads=torch.get_num_threads())
    _report.record(f"studio DPO overhead vs TRL{' (cuda)' if cuda else ''}", studio_rate, "tokens/s",
                   baseline=direct_rate, ratio=studio_rate / direct_rate, target=f"overhead ≤ {TARGET_OVERHEAD:.0%}",
                   met=met)
    extra = lambda peak, rate: f" {peak:,.0f} | {_train.mfu(got['n_params'], rate):.1%} |" if cuda else ""  # noqa: E731
    _report.emit([
        f"{got['model_dir'].name} ({got['n_params'] / 1e6:.0f}M parameters), DPO + LoRA r=8 (q_proj, v_proj), "
        f"{args.device} {args.precision}, {args.steps} steps of batch {args.batch}, max_length {args.max_length} "
        f"({got['per_example']:.0f} tokens per example), {torch.get_num_threads()} threads; best of two after a warm-up",
        "",
        "| side | train_runtime s (best) | tokens/s |" + (" peak GPU MB | MFU |" if cuda else ""),
        "|---|---:|---:|" + ("---:|---:|" if cuda else ""),
        f"| TRL DPOTrainer called directly | {direct_time:.2f} | {direct_rate:.1f} |" + extra(direct_peak, direct_rate),
        f"| studio run (callbacks → writer thread → DuckDB, checkpoints, progress) | {studio_time:.2f} | "
        f"{studio_rate:.1f} |" + extra(studio_peak, studio_rate),
        "",
        f"Overhead: **{overhead:+.1%}** (target ≤ {TARGET_OVERHEAD:.0%}: {'met' if met else 'NOT met'}). "
        f"Studio end-to-end wall (load, train, save, card, register): {wall:.1f} s.",
    ])
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
