"""Training parameters the TRL way: the settings every trainer shares (``TrainingParams``, like
transformers' ``TrainingArguments``) and one small class per algorithm family on top of them
(``DPOParams``, ``PPOParams``..., like TRL's ``DPOConfig``), each field documented once in
``metadata["help"]`` with its bounds; plus the PEFT settings.

Why one class per algorithm: a DPO run carries no ``kl_coef``, and the Train page's DPO form shows
DPO's fields only. The run spec picks the class by stage (``registry.PARAMS``); the YAML stays flat
(``hyper: {learning_rate: 1e-4, beta: 0.1}``), and ``build_params`` names a field of another algorithm
("hyper.kl_coef is a PPO, GRPO and RLOO setting; this run's recipe is dpo"). Types and bounds are
checked by the one spec loader (``core.specs``); ``validate`` keeps the rules between fields. Help
texts follow the meaning the transformers/TRL/PEFT docs give the matching argument. The algorithm
modules (``algorithms/*.py``) translate these into TRL configs.

Not here: online DPO (TRL's ``OnlineDPOConfig``) has no stage in the studio yet.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from pipelines.models.adapters import MAX_POSITIONS, parse_positions
from core.errors import TrainingError
from core.specs import bad_value, check_fields

PEFT_METHODS = ("lora", "qlora", "prompt_tuning", "p_tuning", "full", "reft")
# The PeftSpec fields each method uses (the Train form shows only those).
_LORA_FIELDS = ("r", "alpha", "dropout", "target_modules")
PEFT_FIELDS = {"lora": _LORA_FIELDS, "qlora": _LORA_FIELDS, "prompt_tuning": ("num_virtual_tokens",),
               "p_tuning": ("num_virtual_tokens",), "reft": ("r", "layers", "positions"), "full": ()}
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SWITCHES = ("auto", "on", "off")  # a speed switch: auto turns it on where it is known to be correct
REPORT_TO = ("tensorboard", "wandb", "mlflow")
MAX_STEPS = 10_000_000


def _help(text: str, default: Any = MISSING, **limits: Any) -> Any:
    meta = {"help": text, **limits}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def bad_setting(name: str, value: Any, problem: str, fix: str) -> TrainingError:
    """A run spec's error in the one message shape: ``{name}={value} {problem}.`` and the fix."""
    return bad_value(name, value, problem, fix, TrainingError)


@dataclass
class PeftSpec:
    """How the base model is adapted: a LoRA adapter (optionally on a 4-bit base), soft prompts, a ReFT
    intervention on its hidden states, or all weights."""

    method: str = _help("lora: train low-rank adapters; qlora: LoRA on a 4-bit quantized base (CUDA + "
                        "bitsandbytes); prompt_tuning / p_tuning: learn virtual prompt tokens; reft: learn a low-rank "
                        "edit of the hidden states at chosen layers and prompt positions (LoReFT; sft and dpo); "
                        "full: train every weight.", "lora", choices=PEFT_METHODS)
    r: int = _help("Rank: the inner dimension of LoRA's update matrices, or of the subspace ReFT edits.", 8,
                   min=1, max=1024)
    alpha: int = _help("LoRA alpha: the update is scaled by alpha / r.", 16, min=1, max=4096)
    dropout: float = _help("Dropout probability applied to the LoRA layers' input.", 0.05, min=0.0, max=0.9)
    target_modules: list[str] = _help("Module names to wrap with LoRA (e.g. q_proj, v_proj); "
                                      "'all-linear' wraps every linear layer except the output head.",
                                      ["q_proj", "v_proj"], accepts_one=True, min_len=1)
    num_virtual_tokens: int = _help("Number of virtual tokens learned by prompt tuning / p-tuning.", 8, min=1, max=512)
    layers: list[int] = _help("ReFT: the decoder layers (0 = the first) whose output, the residual stream, is edited; "
                              "empty = every layer.", [], accepts_one=True, min=0, max=1023)
    positions: str = _help("ReFT: the prompt tokens edited, in pyreft's notation: fN = the first N, lN = the last N, "
                           "fN+lN = both (e.g. f1+l1).", "f1+l1", max_len=20)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, error=TrainingError)
        if not self.target_modules:
            raise bad_setting("target_modules", self.target_modules, "is empty",
                        "List module names such as [q_proj, v_proj], or all-linear.")
        if parse_positions(self.positions) is None:
            raise bad_setting("positions", self.positions, "is not fN, lN or fN+lN",
                              "Write e.g. f1+l1 (the first and the last prompt token), with N from 1 to "
                              f"{MAX_POSITIONS}.")

    @property
    def uses_adapter(self) -> bool:
        return self.method != "full"

    def to_dict(self) -> dict:
        """The method and the settings it uses (what a model card states)."""
        return {k: v for k, v in asdict(self).items() if k == "method" or k in PEFT_FIELDS[self.method]}


@dataclass
class TrainingParams:
    """The optimisation settings every trainer shares (transformers' ``TrainingArguments``)."""

    learning_rate: float = _help("Initial learning rate of the AdamW optimizer.", 5e-5, gt=0.0, max=1.0)
    lr_scheduler_type: str = _help("How the learning rate decays after warmup.", "linear", choices=SCHEDULERS)
    warmup_steps: int = _help("Steps of linear warmup from 0 to learning_rate (overrides warmup_ratio when > 0).", 0,
                              min=0, max=1_000_000)
    warmup_ratio: float = _help("Fraction of the total training steps used for linear warmup.", 0.0, min=0.0, max=0.5)
    num_train_epochs: float = _help("Passes over the training data (ignored when max_steps > 0).", 1.0,
                                    gt=0.0, max=1000)
    max_steps: int = _help("Total optimizer steps to perform; -1 means use num_train_epochs.", -1,
                           min=-1, max=MAX_STEPS)
    per_device_train_batch_size: int = _help("Examples per device per forward pass.", 2, min=1, max=4096)
    gradient_accumulation_steps: int = _help("Forward passes whose gradients are summed before one optimizer step.", 1,
                                             min=1, max=4096)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass: less memory, slower steps.",
                                         False)
    max_grad_norm: float = _help("Gradients are clipped to this global norm (0 disables clipping).", 1.0,
                                 min=0.0, max=1000)
    weight_decay: float = _help("Decoupled weight decay applied by AdamW to all weights but biases and norms.", 0.0,
                                min=0.0, max=1.0)
    dropout: float = _help("Dropout probability set in the model's config (attention/hidden dropout) for training.",
                           0.0, min=0.0, max=0.9)
    early_stopping_patience: int = _help("Stop after this many evaluations without an improvement in eval loss "
                                         "(0 disables early stopping; needs an eval split).", 0, min=0, max=1000)
    max_length: int = _help("Maximum tokens of prompt + completion; longer examples are truncated.", 512,
                            min=16, max=1_048_576)
    seed: int = _help("Random seed for initialisation, shuffling and sampling.", 42, min=0, max=2**32 - 1)
    precision: str = _help("auto: fp32 on CPU, bf16 on a GPU that supports it (else fp16); or force one.",
                           "auto", choices=PRECISIONS)
    save_steps: int = _help("Save a checkpoint every this many optimizer steps (and at the end).", 50,
                            min=1, max=MAX_STEPS)
    logging_steps: int = _help("Log metrics every this many optimizer steps.", 1, min=1, max=MAX_STEPS)
    eval_steps: int = _help("Evaluate on the eval split every this many steps (0: only at the end).", 0,
                            min=0, max=MAX_STEPS)
    liger_kernel: str = _help(
        "Liger's Triton kernels (fused RMSNorm, RoPE, SwiGLU, and a loss fused with the LM head that never builds "
        "the full logits): faster steps and less memory on a CUDA GPU, same loss. auto: on for SFT, DPO, KTO, "
        "ORPO, CPO and GRPO on a CUDA GPU with liger-kernel installed (bash scripts/setup.sh --gpu); off on a "
        "CPU (Triton needs a GPU), for prompt tuning, p-tuning and ReFT (the fused loss bypasses their forward) "
        "and for an adapter on lm_head (the fused loss reads the frozen head). on: the same, said on the run "
        "when it cannot apply.", "auto", choices=SWITCHES)
    padding_free: str = _help(
        "SFT stages (also the SFT stage before DPO, KTO, GRPO...): concatenate a batch's examples into one sequence "
        "with no padding tokens (TRL's padding_free), so no compute goes to padding. auto: on on a CUDA GPU with "
        "FlashAttention 2 installed (the only attention that keeps the examples apart; the model is then loaded "
        "with it); off otherwise, and for prompt tuning and p-tuning (their virtual tokens need the padded "
        "layout).", "auto", choices=SWITCHES)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, error=TrainingError)
        if self.max_steps == 0:
            raise bad_setting("max_steps", 0, "is out of range",
                        f"Use -1 (train for num_train_epochs) or a number of steps from 1 to {MAX_STEPS}.")
        if self.early_stopping_patience and not self.eval_steps:
            raise bad_setting("eval_steps", self.eval_steps, "is out of range", "Use a number of steps above 0 when "
                        "early_stopping_patience is set (early stopping watches the eval loss).")

    def to_dict(self) -> dict:
        return asdict(self)


HyperParams = TrainingParams  # the older name, still used for type hints (pipelines/train/stages.py)


def _beta(text: str) -> Any:
    return _help(text, 0.1, gt=0.0, max=100.0)


@dataclass
class SFTParams(TrainingParams):
    """Supervised fine-tuning (``trl.SFTConfig``): the shared settings; the loss covers the completion only."""


@dataclass
class RewardParams(TrainingParams):
    """A reward model (``trl.RewardConfig``): the shared settings; a one-label classifier on chosen/rejected."""


@dataclass
class DPOParams(TrainingParams):
    """Direct preference optimisation (``trl.DPOConfig``)."""

    beta: float = _beta("DPO temperature: how strongly the policy is kept near the reference model "
                        "(higher = closer to it).")


@dataclass
class KTOParams(TrainingParams):
    """Kahneman-Tversky optimisation on unpaired good/bad rows (``trl.KTOConfig``)."""

    beta: float = _beta("KTO temperature: how strongly the policy is kept near the reference model "
                        "(higher = closer to it).")


@dataclass
class PromptLengthParams(TrainingParams):
    """The shared settings plus a prompt budget: what max_length leaves after the prompt is the completion's."""

    max_prompt_length: int = _help("Maximum prompt tokens; the rest of max_length is left for the completion "
                                   "(online algorithms generate up to max_length - max_prompt_length tokens).", 256,
                                   min=8)

    def validate(self) -> None:
        super().validate()
        if self.max_prompt_length > self.max_length - 8:
            raise bad_setting("max_prompt_length", self.max_prompt_length, "is out of range",
                        f"Use at most {self.max_length - 8} (max_length - 8), or raise max_length.")

    @property
    def max_completion_length(self) -> int:
        return self.max_length - self.max_prompt_length


@dataclass
class ORPOParams(PromptLengthParams):
    """Odds-ratio preference optimisation (``trl.experimental.orpo.ORPOConfig``): no reference model."""

    beta: float = _beta("ORPO: weight (lambda) of the odds-ratio term added to the SFT loss.")


@dataclass
class CPOParams(PromptLengthParams):
    """Contrastive preference optimisation (``trl.experimental.cpo.CPOConfig``): no reference model."""

    beta: float = _beta("CPO temperature of the preference term (higher = a sharper preference).")


@dataclass
class PPOParams(PromptLengthParams):
    """Proximal policy optimisation against a reward model (``trl.experimental.ppo.PPOConfig``)."""

    kl_coef: float = _help("PPO: coefficient of the KL penalty between policy and reference in the reward.", 0.05,
                           min=0.0, max=100.0)


@dataclass
class GRPOParams(PromptLengthParams):
    """Group relative policy optimisation (``trl.GRPOConfig``): groups of completions per prompt, scored by
    the run's reward functions."""

    kl_coef: float = _help("Weight of the KL penalty between policy and reference (TRL's beta).", 0.05,
                           min=0.0, max=100.0)
    num_generations: int = _help("Completions sampled per prompt: the group whose rewards are compared.", 4,
                                 min=2, max=256)


@dataclass
class RLOOParams(GRPOParams):
    """REINFORCE leave-one-out (``trl.RLOOConfig``): GRPO's settings; each completion's baseline is the mean
    reward of the others in its group."""


@functools.cache
def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))
