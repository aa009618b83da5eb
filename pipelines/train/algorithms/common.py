"""What every algorithm module shares: the stage's inputs and outputs, and the TrainingArguments part of
its TRL config.

Each algorithm module is a pair, as in TRL: ``build_config(stage) -> <TRL config>`` and
``train(stage) -> StageOutput``. The runner prepares a ``StageInput`` (start weights, rows,
callbacks, where to write) and never needs to know which trainer ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.models.adapters import adapter_config
from pipelines.train.monitoring import installed_reporters
from pipelines.train.params import PeftSpec, TrainingParams
from pipelines.train.speed import Switches


@dataclass
class StageInput:
    stage: str
    model_path: Path                    # the weights this stage starts from (a transformers folder)
    output_dir: Path                    # the trainer's output_dir: checkpoints live here
    final_dir: Path                     # where the stage's result (adapter or model) is saved
    hyper: TrainingParams
    peft: PeftSpec
    precision: str                      # fp32 | bf16 | fp16 (already resolved)
    cuda: bool
    train_rows: list[dict]
    eval_rows: list[dict] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)
    resume_from: str | None = None
    reward_model_path: Path | None = None
    reward_funcs: list[str | dict] = field(default_factory=list)
    report_to: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    switches: Switches = field(default_factory=Switches)   # speed switches as resolved (train/speed.py)


@dataclass
class StageOutput:
    final_dir: Path
    is_adapter: bool
    global_step: int
    metrics: dict[str, float]
    model_kind: str = "causal_lm"       # causal_lm | reward


def base_args(inp: StageInput) -> dict[str, Any]:
    """TrainingArguments fields every TRL config shares, from the run's hyperparameters. The trainer deletes
    no checkpoint (``save_total_limit=None``): the stage's writer thread keeps the newest catalogued ones and
    deletes older ones, off the training thread and never one that resume may still need."""
    h = inp.hyper
    evaluating = bool(inp.eval_rows) and h.eval_steps > 0
    return dict(
        output_dir=str(inp.output_dir), learning_rate=h.learning_rate, lr_scheduler_type=h.lr_scheduler_type,
        warmup_steps=h.warmup_steps if h.warmup_steps > 0 else h.warmup_ratio,
        num_train_epochs=h.num_train_epochs, max_steps=h.max_steps,
        per_device_train_batch_size=h.per_device_train_batch_size,
        per_device_eval_batch_size=h.per_device_train_batch_size,
        gradient_accumulation_steps=h.gradient_accumulation_steps, gradient_checkpointing=h.gradient_checkpointing,
        max_grad_norm=h.max_grad_norm, weight_decay=h.weight_decay, seed=h.seed, data_seed=h.seed,
        save_strategy="steps", save_steps=h.save_steps, save_total_limit=None, logging_steps=h.logging_steps,
        logging_first_step=True, eval_strategy="steps" if evaluating else "no",
        eval_steps=h.eval_steps if evaluating else None,
        report_to=installed_reporters(inp.report_to, inp.warnings) or "none", run_name=inp.output_dir.parent.name,
        use_cpu=not inp.cuda, bf16=inp.precision == "bf16", fp16=inp.precision == "fp16",
        dataloader_num_workers=0, disable_tqdm=True, use_liger_kernel=inp.switches.use_liger_kernel,
    )


def run_trainer(trainer, inp: StageInput, model_kind: str = "causal_lm") -> StageOutput:
    """Train (resuming when asked), evaluate once at the end when there is an eval split, save the result."""
    result = trainer.train(resume_from_checkpoint=inp.resume_from)
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    if inp.eval_rows and getattr(trainer, "eval_dataset", None) is not None:
        metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
    return save_final(trainer, inp, metrics, model_kind)


def save_final(trainer, inp: StageInput, metrics: dict, model_kind: str = "causal_lm") -> StageOutput:
    inp.final_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(inp.final_dir))
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is not None and trainer.args.should_save:  # with several processes, the main one writes
        tokenizer.save_pretrained(str(inp.final_dir))
    is_adapter = adapter_config(inp.final_dir) is not None   # a PEFT adapter or a ReFT intervention
    last = {k: v for cb in inp.callbacks for k, v in getattr(cb, "last", {}).items()}
    return StageOutput(inp.final_dir, is_adapter, int(trainer.state.global_step), {**last, **metrics}, model_kind)
