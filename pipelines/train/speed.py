"""The speed switches of a training stage: what ``auto``, ``on`` and ``off`` become on this machine.

Each switch turns on what TRL and transformers already offer, only where it is known to give the same
training: Liger's kernels (``use_liger_kernel``: TRL's fused losses for DPO, KTO and GRPO, the patched
model for the others) and padding-free SFT batches (``padding_free``, with FlashAttention 2). ``auto``
decides from the device, what is installed and the PEFT method; ``on`` decides the same way but says on
the run why it could not apply (a speed switch never fails a run: its warnings join the run's); ``off``
is off. Every decision carries its reason (``Switches.reasons``), which the runner logs at INFO.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from pipelines.train.params import PeftSpec, TrainingParams
from pipelines.train.registry import ALGORITHMS

PROMPT_LEARNING = ("prompt_tuning", "p_tuning")


@dataclass
class Switches:
    use_liger_kernel: bool = False
    padding_free: bool = False
    attn_implementation: str | None = None      # what the model is loaded with (None: transformers' default, sdpa)
    reasons: dict[str, str] = field(default_factory=dict)   # switch -> "on: ..." / "off: ..."
    warnings: list[str] = field(default_factory=list)       # an ``on`` that could not apply


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def flash_attention_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve(stage: str, hyper: TrainingParams, peft: PeftSpec, cuda: bool, *,
            liger_available: bool | None = None, flash_available: bool | None = None) -> Switches:
    """The switches of ``stage`` for this run; ``*_available`` default to what is installed here."""
    out = Switches()
    liger_ok = liger_installed() if liger_available is None else liger_available
    flash_ok = flash_attention_installed() if flash_available is None else flash_available
    targets = peft.target_modules if peft.method in ("lora", "qlora") else []

    blocked = None
    if not ALGORITHMS[stage].liger:
        blocked = f"TRL's {stage} trainer has no Liger path the studio has checked"
    elif not cuda:
        blocked = "a CPU run (Liger's Triton kernels need a CUDA GPU)"
    elif peft.method in PROMPT_LEARNING + ("reft",):
        blocked = f"{peft.method} (the fused loss calls the model below the method's own forward)"
    elif "lm_head" in targets:
        blocked = "an adapter on lm_head (the fused loss reads the frozen head's weight, so the adapter would not train)"
    elif not liger_ok:
        blocked = "liger-kernel is not installed (bash scripts/setup.sh --gpu installs it)"
    out.use_liger_kernel = _decide(out, "liger_kernel", hyper.liger_kernel, blocked,
                                   "fused kernels and a loss that never builds the full logits")

    if stage == "sft":
        wanted = hyper.padding_free
        blocked = None
        if not cuda:
            blocked = "a CPU run (padding-free batches need FlashAttention 2, a CUDA kernel)"
        elif peft.method in PROMPT_LEARNING:
            blocked = f"{peft.method} (its virtual tokens need the padded layout)"
        elif not flash_ok:
            blocked = ("FlashAttention 2 is not installed (flash-attn); other attention kernels would let the "
                       "examples of a batch see each other")
        out.padding_free = _decide(out, "padding_free", wanted, blocked, "a batch is one sequence with no padding")
        if out.padding_free:
            out.attn_implementation = "flash_attention_2"
    return out


def _decide(out: Switches, name: str, wanted: str, blocked: str | None, what: str) -> bool:
    if wanted == "off":
        out.reasons[name] = "off: set off"
        return False
    if blocked:
        out.reasons[name] = f"off: {blocked}"
        if wanted == "on":
            out.warnings.append(f"{name}: on was asked, but it is off for {blocked}; the run trained without it.")
        return False
    out.reasons[name] = f"on: {what}"
    return True


__all__ = ["Switches", "flash_attention_installed", "liger_installed", "resolve"]
