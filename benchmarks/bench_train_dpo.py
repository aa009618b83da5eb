"""Studio DPO run vs the same TRL DPOTrainer configuration called directly, tokens/s. Target: overhead ≤ 5%.

Why: the studio wraps TRL with callbacks that write every logged metric to DuckDB, catalogue each
checkpoint and report progress; that must not slow training down. Both sides train SmolLM2-135M-Instruct
with LoRA (r=8, q_proj/v_proj) on CPU on the same preference rows (a real snapshot, read back for the
baseline), with the same DPOConfig values and seed. Throughput is the tokens of the processed examples
(prompt + chosen + prompt + rejected, truncated to max_length) over the trainer's own train_runtime,
so both sides time the same loop; the studio's end-to-end wall time (loading, merging nothing,
registering, the model card) is printed too. One warm-up run per side, then best of two, alternating.

    .venv/bin/python benchmarks/bench_train_dpo.py [--model-dir DIR] [--steps 4] [--batch 2] [--max-length 128]
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

from benchmarks import _report  # noqa: E402
from benchmarks.bench_local_batching import resolve_model_dir  # noqa: E402

TARGET_OVERHEAD = 0.05
TOPICS = ["the cat on the mat", "boiling water", "a train timetable", "a small garden", "rain on the roof",
          "counting to three", "reading a book aloud", "a quiet city at night"]


def pairs(n: int) -> list[dict]:
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


def hyper(steps: int, batch: int, max_length: int) -> dict:
    return {"max_steps": steps, "per_device_train_batch_size": batch, "learning_rate": 5e-5, "save_steps": 1000,
            "logging_steps": 1, "max_length": max_length, "max_prompt_length": max_length // 2, "seed": 42}


def studio_run(snapshot_id: str, steps: int, batch: int, max_length: int, label: str) -> tuple[float, float]:
    """(train_runtime, end-to-end wall seconds) of one studio DPO run."""
    from pipelines.train.runner import run_training
    from pipelines.train.spec import RunSpec
    from storage import training as store
    from storage.db import get_database

    spec = RunSpec.from_dict({"name": f"bench-{label}", "recipe": "dpo", "base_model": "smollm2",
                              "snapshot_id": snapshot_id, "peft": {"method": "lora", "r": 8, "alpha": 16,
                              "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
                              "hyper": hyper(steps, batch, max_length)})
    db = get_database()
    run_id = store.insert_run(db, name=spec.name, recipe="dpo", stage="dpo", spec=spec.to_dict(), snapshot_id=snapshot_id)
    started = time.perf_counter()
    result = run_training(run_id)
    assert result.status == "succeeded", result
    return result.final_metrics["train_runtime"], time.perf_counter() - started


def direct_run(model_dir: Path, rows: list[dict], steps: int, batch: int, max_length: int, out: Path) -> float:
    """train_runtime of plain TRL: DPOTrainer + LoRA with the same values, no studio code."""
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    h = hyper(steps, batch, max_length)
    args = DPOConfig(output_dir=str(out), learning_rate=h["learning_rate"], lr_scheduler_type="linear", warmup_steps=0.0,
                     num_train_epochs=1.0, max_steps=steps, per_device_train_batch_size=batch,
                     per_device_eval_batch_size=batch, gradient_accumulation_steps=1, gradient_checkpointing=False,
                     max_grad_norm=1.0, weight_decay=0.0, seed=42, data_seed=42, save_strategy="steps",
                     save_steps=1000, save_total_limit=2, logging_steps=1, logging_first_step=True, eval_strategy="no",
                     report_to="none", use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0,
                     disable_tqdm=True, beta=0.1, max_length=max_length)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora)
    result = trainer.train()
    trainer.save_model(str(out / "final"))
    return result.metrics["train_runtime"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="transformers folder of SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=_report.size(16, 4))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args(argv)
    model_dir = resolve_model_dir(args.model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")
        import torch
        from transformers import AutoTokenizer

        from storage.db import get_database
        from storage.pairs import insert_preference_pairs
        from storage.snapshots import SnapshotSpec, create_snapshot, read_snapshot_rows
        from studio.services import models as models_service

        models_service.add_model(str(model_dir), name="smollm2")
        db = get_database()
        insert_preference_pairs(db, pairs(args.steps * args.batch * 2))
        snapshot_id = create_snapshot(db, SnapshotSpec(record_kind="preference", eval_fraction=0.0)).id
        rows = read_snapshot_rows(db, snapshot_id, "train")
        per_example = example_tokens(AutoTokenizer.from_pretrained(str(model_dir)), rows, args.max_length)
        tokens = per_example * args.steps * args.batch
        print(f"{model_dir}: {len(rows)} rows, {per_example:.0f} tokens per example, {torch.get_num_threads()} threads",
              flush=True)
        studio_run(snapshot_id, 1, args.batch, args.max_length, "warmup")           # warm-up, both sides
        direct_run(model_dir, rows, 1, args.batch, args.max_length, Path(tmp) / "direct-warmup")
        studio_times, direct_times, walls = [], [], []
        for attempt in range(2):
            runtime, wall = studio_run(snapshot_id, args.steps, args.batch, args.max_length, f"s{attempt}")
            studio_times.append(runtime)
            walls.append(wall)
            direct_times.append(direct_run(model_dir, rows, args.steps, args.batch, args.max_length,
                                           Path(tmp) / f"direct-{attempt}"))
            print(f"attempt {attempt + 1}: studio {runtime:.2f} s (wall {wall:.1f} s), TRL {direct_times[-1]:.2f} s",
                  flush=True)
    studio_rate, direct_rate = tokens / min(studio_times), tokens / min(direct_times)
    overhead = direct_rate / studio_rate - 1
    met = overhead <= TARGET_OVERHEAD
    _report.params(steps=args.steps, batch=args.batch, max_length=args.max_length, threads=torch.get_num_threads())
    _report.record("studio DPO overhead vs TRL", studio_rate, "tokens/s", baseline=direct_rate,
                   ratio=studio_rate / direct_rate, target=f"overhead ≤ {TARGET_OVERHEAD:.0%}", met=met)
    _report.emit([
        f"SmolLM2-135M-Instruct, DPO + LoRA r=8 (q_proj, v_proj), CPU fp32, {args.steps} steps of batch {args.batch}, "
        f"max_length {args.max_length}, {torch.get_num_threads()} threads; best of two after a warm-up",
        "",
        "| side | train_runtime s (best) | tokens/s |",
        "|---|---:|---:|",
        f"| TRL DPOTrainer called directly | {min(direct_times):.2f} | {direct_rate:.1f} |",
        f"| studio run (callbacks → DuckDB, checkpoints, progress) | {min(studio_times):.2f} | {studio_rate:.1f} |",
        "",
        f"Overhead: **{overhead:+.1%}** (target ≤ {TARGET_OVERHEAD:.0%}: {'met' if met else 'NOT met'}). "
        f"Studio end-to-end wall (load, train, save, card, register): {min(walls):.1f} s.",
    ])
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
