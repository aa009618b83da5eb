"""Hyperparameters and PEFT settings of a training run, each documented once in ``metadata["help"]``.

Why one place: the Train page builds its form from these fields (label, help text, range), the YAML
spec is read into them, and the algorithm modules translate them into TRL configs. Help texts are
taken from the meaning the transformers/TRL/PEFT docs give the matching argument. Every check names
the field, the value and the allowed range, so a bad YAML line or form input says what to change.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from core.errors import TrainingError

PEFT_METHODS = ("lora", "qlora", "prompt_tuning", "p_tuning", "full")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REPORT_TO = ("tensorboard", "wandb", "mlflow")


def _help(text: str, default: Any = MISSING, **extra: Any) -> Any:
    meta = {"help": text, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def bad_field(where: str, name: str, value: Any, allowed: str) -> TrainingError:
    return TrainingError(f"{where}.{name} = {value!r} is not allowed.", hint=f"Allowed: {allowed}.")


def check_range(where: str, name: str, value: Any, lo: float, hi: float | None = None, *, integer: bool = False,
                lo_open: bool = False) -> None:
    """Raise a TrainingError naming ``where.name`` unless ``lo <= value <= hi`` (``lo < value`` if lo_open)."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise bad_field(where, name, value, f"{kind} {_range_text(lo, hi, lo_open)}")
    if (value <= lo if lo_open else value < lo) or (hi is not None and value > hi):
        raise bad_field(where, name, value, f"{kind} {_range_text(lo, hi, lo_open)}")


def _range_text(lo: float, hi: float | None, lo_open: bool) -> str:
    left = f"> {lo}" if lo_open else f">= {lo}"
    return f"{left} and <= {hi}" if hi is not None else left


def check_choice(where: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise bad_field(where, name, value, "one of " + ", ".join(choices))


def build(cls: type, data: dict | None, where: str):
    """``cls(**data)`` that names unknown keys instead of a TypeError."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainingError(f"{where} has no setting {unknown[0]!r}.", hint=f"Known settings: {', '.join(sorted(known))}.")
    return cls(**data)


@dataclass
class PeftSpec:
    """How the base model's weights are adapted: a LoRA adapter (optionally on a 4-bit base), soft
    prompts, or all weights."""

    method: str = _help("lora: train low-rank adapters; qlora: LoRA on a 4-bit quantized base (CUDA + "
                        "bitsandbytes); prompt_tuning / p_tuning: learn virtual prompt tokens; full: train every weight.",
                        "lora", choices=PEFT_METHODS)
    r: int = _help("LoRA rank: the inner dimension of the low-rank update matrices.", 8)
    alpha: int = _help("LoRA alpha: the update is scaled by alpha / r.", 16)
    dropout: float = _help("Dropout probability applied to the LoRA layers' input.", 0.05)
    target_modules: list[str] = _help("Module names to wrap with LoRA (e.g. q_proj, v_proj); "
                                      "'all-linear' wraps every linear layer except the output head.",
                                      ["q_proj", "v_proj"])
    num_virtual_tokens: int = _help("Number of virtual tokens learned by prompt tuning / p-tuning.", 8)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_choice("peft", "method", self.method, PEFT_METHODS)
        check_range("peft", "r", self.r, 1, 1024, integer=True)
        check_range("peft", "alpha", self.alpha, 1, 4096, integer=True)
        check_range("peft", "dropout", self.dropout, 0.0, 0.9)
        check_range("peft", "num_virtual_tokens", self.num_virtual_tokens, 1, 512, integer=True)
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise bad_field("peft", "target_modules", self.target_modules, "a non-empty list of module names")

    @property
    def uses_adapter(self) -> bool:
        return self.method != "full"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HyperParams:
    """Optimisation settings shared by every algorithm (each uses the ones that apply to it)."""

    learning_rate: float = _help("Initial learning rate of the AdamW optimizer.", 5e-5)
    lr_scheduler_type: str = _help("How the learning rate decays after warmup.", "linear", choices=SCHEDULERS)
    warmup_steps: int = _help("Steps of linear warmup from 0 to learning_rate (overrides warmup_ratio when > 0).", 0)
    warmup_ratio: float = _help("Fraction of the total training steps used for linear warmup.", 0.0)
    num_train_epochs: float = _help("Passes over the training data (ignored when max_steps > 0).", 1.0)
    max_steps: int = _help("Total optimizer steps to perform; -1 means use num_train_epochs.", -1)
    per_device_train_batch_size: int = _help("Examples per device per forward pass.", 2)
    gradient_accumulation_steps: int = _help("Forward passes whose gradients are summed before one optimizer step.", 1)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass: less memory, slower steps.", False)
    max_grad_norm: float = _help("Gradients are clipped to this global norm (0 disables clipping).", 1.0)
    weight_decay: float = _help("Decoupled weight decay applied by AdamW to all weights but biases and norms.", 0.0)
    dropout: float = _help("Dropout probability set in the model's config (attention/hidden dropout) for training.", 0.0)
    early_stopping_patience: int = _help("Stop after this many evaluations without an improvement in eval loss "
                                         "(0 disables early stopping; needs an eval split).", 0)
    beta: float = _help("DPO/ORPO/CPO/KTO temperature: how strongly the policy is kept near the reference "
                        "(higher = closer); ORPO: weight of the odds-ratio loss.", 0.1)
    kl_coef: float = _help("PPO: coefficient of the KL penalty between policy and reference in the reward.", 0.05)
    max_length: int = _help("Maximum tokens of prompt + completion; longer examples are truncated.", 512)
    max_prompt_length: int = _help("Maximum prompt tokens; the rest of max_length is left for the completion "
                                   "(PPO/GRPO/RLOO generate up to max_length - max_prompt_length tokens).", 256)
    seed: int = _help("Random seed for initialisation, shuffling and sampling.", 42)
    precision: str = _help("auto: fp32 on CPU, bf16 on a GPU that supports it (else fp16); or force one.",
                           "auto", choices=PRECISIONS)
    save_steps: int = _help("Save a checkpoint every this many optimizer steps (and at the end).", 50)
    logging_steps: int = _help("Log metrics every this many optimizer steps.", 1)
    eval_steps: int = _help("Evaluate on the eval split every this many steps (0: only at the end).", 0)
    num_generations: int = _help("GRPO/RLOO: completions sampled per prompt (the group compared to each other).", 4)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        w = "hyper"
        check_range(w, "learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        check_choice(w, "lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        check_range(w, "warmup_steps", self.warmup_steps, 0, 1_000_000, integer=True)
        check_range(w, "warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        check_range(w, "num_train_epochs", self.num_train_epochs, 0.0, 1000, lo_open=True)
        if self.max_steps != -1:
            check_range(w, "max_steps", self.max_steps, 1, 10_000_000, integer=True)
        check_range(w, "per_device_train_batch_size", self.per_device_train_batch_size, 1, 4096, integer=True)
        check_range(w, "gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 4096, integer=True)
        if not isinstance(self.gradient_checkpointing, bool):
            raise bad_field(w, "gradient_checkpointing", self.gradient_checkpointing, "true or false")
        check_range(w, "max_grad_norm", self.max_grad_norm, 0.0, 1000)
        check_range(w, "weight_decay", self.weight_decay, 0.0, 1.0)
        check_range(w, "dropout", self.dropout, 0.0, 0.9)
        check_range(w, "early_stopping_patience", self.early_stopping_patience, 0, 1000, integer=True)
        check_range(w, "beta", self.beta, 0.0, 100.0, lo_open=True)
        check_range(w, "kl_coef", self.kl_coef, 0.0, 100.0)
        check_range(w, "max_length", self.max_length, 16, 1_048_576, integer=True)
        check_range(w, "max_prompt_length", self.max_prompt_length, 8, self.max_length - 8, integer=True)
        check_range(w, "seed", self.seed, 0, 2**32 - 1, integer=True)
        check_choice(w, "precision", self.precision, PRECISIONS)
        check_range(w, "save_steps", self.save_steps, 1, 10_000_000, integer=True)
        check_range(w, "logging_steps", self.logging_steps, 1, 10_000_000, integer=True)
        check_range(w, "eval_steps", self.eval_steps, 0, 10_000_000, integer=True)
        check_range(w, "num_generations", self.num_generations, 2, 256, integer=True)
        if self.early_stopping_patience and not self.eval_steps:
            raise bad_field(w, "eval_steps", self.eval_steps, "a number of steps > 0 when early_stopping_patience is "
                            "set (early stopping watches the eval loss)")

    @property
    def max_completion_length(self) -> int:
        return self.max_length - self.max_prompt_length

    def to_dict(self) -> dict:
        return asdict(self)


def field_help(cls: type) -> dict[str, str]:
    """{field name: help text}: what the page shows next to each input."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}
