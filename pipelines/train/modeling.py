"""Loading models and tokenizers for training, and the PEFT config of a run.

Why here: every algorithm needs the same things done the same way: a pad token, a chat template
(a base model without one gets the studio's default, the same role-tagged layout the local backend
uses for generation, and the run records a warning), dropout in the config, precision per device,
4-bit loading for QLoRA (its ``LoadPlan``: everything not quantized stays in half precision), and the
PEFT config for the task (causal LM or a one-label classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.train.params import PeftSpec, TrainingParams
from core.errors import ModelLoadError, TrainingError

# Same layout as pipelines.llm.transformers_local.default_chat_prompt, so what is trained is what is served.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] + '\n\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)
DROPOUT_ATTRS = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                 "hidden_dropout_prob", "attention_probs_dropout_prob")


def load_tokenizer(path: str | Path, warnings: list[str] | None = None, padding_side: str | None = None):
    """The model's tokenizer with a pad token and a chat template (defaults applied, and said so)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The tokenizer in {path} cannot be loaded ({exc}).",
                             hint="Pick a model folder saved with save_pretrained, with its tokenizer.") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        if warnings is not None:
            warnings.append(f"The base model {Path(str(path)).name} has no chat template; the studio's default "
                            "('### User:' / '### Assistant:' turns) was applied and saved with the output.")
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def torch_dtype(precision: str, peft: PeftSpec):
    """Weights dtype: fp32 master weights for full fine-tuning (the trainer autocasts), half for adapters."""
    import torch

    if precision == "fp32" or peft.method == "full":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _config(path: str | Path, hyper: TrainingParams, **overrides: Any):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False, **overrides)
    if hyper.dropout > 0:
        for attr in DROPOUT_ATTRS:
            if hasattr(config, attr):
                setattr(config, attr, hyper.dropout)
    return config


@dataclass(frozen=True)
class LoadPlan:
    """What ``from_pretrained`` is given: the weights' dtype, and for QLoRA the 4-bit config and the GPU the
    weights go to. A value, so the dtype of every layer can be checked on a CPU (``dtype_plan``)."""

    dtype: Any
    quantization: Any = None            # a BitsAndBytesConfig for QLoRA
    device_map: dict | None = None

    def kwargs(self) -> dict[str, Any]:
        if self.quantization is None:
            return {"dtype": self.dtype}
        return {"dtype": self.dtype, "quantization_config": self.quantization, "device_map": self.device_map}


def load_plan(peft: PeftSpec, precision: str, device_index: int | None = None) -> LoadPlan:
    """The dtype of ``torch_dtype``; for QLoRA, NF4 with double quantization whose compute dtype is that same
    half precision, on this process's GPU (its local rank's in a multi-process run). What bitsandbytes does
    not quantize (embeddings, norms, the LM or score head) stays in the half precision."""
    dtype = torch_dtype(precision, peft)
    if peft.method != "qlora":
        return LoadPlan(dtype)
    import torch
    from transformers import BitsAndBytesConfig

    if device_index is None:
        device_index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=dtype)
    return LoadPlan(dtype, quantization, {"": device_index})


def dtype_plan(model, plan: LoadPlan) -> dict[str, str]:
    """How ``from_pretrained`` with ``plan`` stores each parameter of ``model`` (built on the meta device):
    "nf4" for the linear weights bitsandbytes replaces, else a dtype name. It applies transformers' own
    rules (the modules the 4-bit quantizer skips: tied and output embeddings, the last module, the
    model's fp32 modules), so it needs no bitsandbytes kernels."""
    import torch.nn as nn

    half = str(plan.dtype).removeprefix("torch.")
    if plan.quantization is None:
        return {name: half for name, _ in model.named_parameters()}
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    keep_fp32 = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    skip = HfQuantizer.get_modules_to_not_convert(model, plan.quantization.llm_int8_skip_modules, keep_fp32)
    quantized = {name for name, module in model.named_modules()
                 if type(module) is nn.Linear and should_convert_module(name, skip)}
    out = {}
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        if module in quantized and leaf == "weight":
            out[name] = "nf4"
        else:
            out[name] = "float32" if keep_fp32 and not should_convert_module(module, keep_fp32) else half
    return out


def prepare_quantized(model, hyper: TrainingParams):
    """QLoRA's preparation, without the fp32 upcast of PEFT's ``prepare_model_for_kbit_training``: that casts
    every weight bitsandbytes left in half precision (embeddings, norms, the LM head: ~100M parameters of a
    1B model, and with the head, the logits) to fp32, so a QLoRA run peaked above bf16 LoRA at the same
    batch. The base is frozen; with gradient checkpointing the inputs carry gradients, so the adapters'
    gradients flow through the checkpointed blocks. (The trainer enables the checkpointing itself.)"""
    for param in model.parameters():
        param.requires_grad_(False)
    if hyper.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def load_causal_lm(path: str | Path, hyper: TrainingParams, peft: PeftSpec, precision: str, pad_token_id: int | None,
                   attn_implementation: str | None = None):
    """A causal LM ready for a trainer (4-bit, base frozen, for QLoRA); ``attn_implementation`` when a speed
    switch needs one (padding-free SFT: flash_attention_2)."""
    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = _load(AutoModelForCausalLM, path, hyper, peft, precision, **extra)
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def load_reward_model(path: str | Path, hyper: TrainingParams, peft: PeftSpec, precision: str, pad_token_id: int | None,
                      trainable: bool = True):
    """A sequence classifier with one output (the reward), its pad token set (it scores the last token)."""
    from transformers import AutoModelForSequenceClassification

    model = _load(AutoModelForSequenceClassification, path, hyper, peft if trainable else PeftSpec(method="full"),
                  precision, num_labels=1)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def _load(auto_cls, path, hyper: TrainingParams, peft: PeftSpec, precision: str, **overrides: Any):
    plan = load_plan(peft, precision)
    try:
        config = _config(path, hyper, **overrides)
        model = auto_cls.from_pretrained(str(path), config=config, trust_remote_code=False, **plan.kwargs())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The model in {path} cannot be loaded for training ({str(exc).splitlines()[0]}).",
                             hint="Pick a transformers model folder (config.json, weights, tokenizer).") from None
    return prepare_quantized(model, hyper) if plan.quantization is not None else model


def peft_config(peft: PeftSpec, task: str = "CAUSAL_LM", hidden_size: int | None = None):
    """PEFT's config for the method (None for full fine-tuning, and for ReFT: train/reft_trainer.py attaches
    it). ``task`` is CAUSAL_LM or SEQ_CLS."""
    if peft.method in ("full", "reft"):
        return None
    from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig

    if peft.method in ("lora", "qlora"):
        targets: Any = peft.target_modules
        if targets == ["all-linear"]:
            targets = "all-linear"
        return LoraConfig(r=peft.r, lora_alpha=peft.alpha, lora_dropout=peft.dropout, target_modules=targets,
                          task_type=task)
    if task != "CAUSAL_LM":
        raise TrainingError(f"peft.method = {peft.method!r} cannot train a reward model (a classifier).",
                            hint="Use peft.method: lora or full for the reward stage.")
    if peft.method == "prompt_tuning":
        return PromptTuningConfig(task_type=task, num_virtual_tokens=peft.num_virtual_tokens)
    return PromptEncoderConfig(task_type=task, num_virtual_tokens=peft.num_virtual_tokens,
                               encoder_hidden_size=hidden_size or 128)


def hidden_size(path: str | Path) -> int | None:
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(str(path), trust_remote_code=False), "hidden_size", None)
