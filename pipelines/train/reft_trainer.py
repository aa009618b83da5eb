"""ReFT inside TRL's trainers: the base frozen, the LoReFT interventions (``pipelines.models.reft``) the only
trained parameters, and checkpoints that hold those alone.

``prepare(SFTTrainer, model, inp)`` gives back the trainer class and model unchanged for every other
PEFT method; for ``peft.method: reft`` it freezes the model, attaches the interventions and returns a
subclass of the trainer (``ReftTrainerMixin``) that

- tells the interventions where each row's prompt is before every loss (DPO's batches carry a
  ``completion_mask``; SFT's mark the prompt with label -100), so ``fN``/``lN`` count prompt tokens as
  they will at generation;
- saves ``reft_config.json`` + ``reft_model.safetensors`` (and the tokenizer) as the model of every
  checkpoint and of the final folder, and loads them back on resume (the optimizer, scheduler and RNG
  states stay the trainer's own).

DPO's reference model is ``ReferenceView``: the same weights with the interventions switched off, so
no second copy of the model is loaded.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.models.reft import Reft, ReftConfig
from pipelines.train.algorithms.common import StageInput
from core.errors import TrainingError


def prompt_mask(inputs: dict[str, Any]) -> torch.Tensor:
    """Each row's prompt tokens in a training batch (batch x seq, bool)."""
    ids = inputs["input_ids"]
    attended = inputs["attention_mask"].bool() if inputs.get("attention_mask") is not None else \
        torch.ones_like(ids, dtype=torch.bool)
    if inputs.get("completion_mask") is not None:
        return attended & ~inputs["completion_mask"].bool()
    if inputs.get("labels") is not None:  # the prompt is the leading run of ignored labels
        return attended & (inputs["labels"] == -100).long().cumprod(dim=1).bool()
    return attended


def reft_of(model: nn.Module) -> Reft:
    return model.get_submodule("reft")


class ReftTrainerMixin:
    """Put before a TRL trainer class (``reft_trainer_class``); see the module's docstring."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        reft = reft_of(self.model)
        reft.set_prompt(prompt_mask(inputs))
        try:
            return super().compute_loss(model, inputs, *args, **kwargs)
        finally:
            reft.set_prompt(None)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        reft_of(self.model).save(Path(output_dir))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        reft_of(self.model).load_weights(Path(resume_from_checkpoint))


@functools.cache
def reft_trainer_class(trainer_cls: type) -> type:
    return type(f"Reft{trainer_cls.__name__}", (ReftTrainerMixin, trainer_cls), {})


def reft_config(peft, model: nn.Module, model_path: str | Path) -> ReftConfig:
    """The interventions a run's PeftSpec asks for on ``model`` (empty ``layers``: every decoder layer)."""
    from pipelines.models.reft import decoder_layers

    layers = tuple(peft.layers) or tuple(range(len(decoder_layers(model))))
    hidden = model.config.get_text_config().hidden_size
    return ReftConfig(layers=layers, positions=peft.positions, rank=peft.r, hidden_size=hidden,
                      base_model_name_or_path=str(model_path))


def prepare(trainer_cls: type, model: nn.Module, inp: StageInput) -> tuple[type, nn.Module]:
    """(trainer class, model) for the stage: unchanged unless ``peft.method`` is reft (see the docstring)."""
    if inp.peft.method != "reft":
        return trainer_cls, model
    if inp.peft.r > model.config.get_text_config().hidden_size:
        raise TrainingError(f"peft.r={inp.peft.r} is larger than the model's hidden size.",
                            hint="ReFT edits a subspace of the hidden states: use a rank below the hidden size.")
    for param in model.parameters():
        param.requires_grad_(False)
    Reft(reft_config(inp.peft, model, inp.model_path)).attach(model, error=TrainingError)
    if inp.hyper.gradient_checkpointing:  # the frozen blocks' inputs carry gradients to the interventions
        model.enable_input_require_grads()
    return reft_trainer_class(trainer_cls), model


class ReferenceView(nn.Module):
    """DPO's reference: the policy with its interventions off. The policy is held in a list, not as a
    submodule, so what the trainer does to the reference (eval mode, device placement) leaves it alone."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self._policy = [policy]

    def forward(self, *args, **kwargs):
        policy = self._policy[0]
        with reft_of(policy).disabled():
            return policy(*args, **kwargs)
