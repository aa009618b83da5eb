"""LoReFT (representation fine-tuning, Wu et al. 2024) on plain PyTorch forward hooks.

At chosen decoder layers and chosen prompt positions, the layer's output ``h`` (the residual stream)
becomes ``h + Rᵀ(W h + b - R h)``: ``R`` (rank x hidden) has orthonormal rows, so only the subspace it
spans is edited, towards what ``W h + b`` says there. The base weights stay frozen; ``R``, ``W`` and
``b`` are the whole trained state (2·rank·hidden + rank numbers per layer).

Why hand-written and not pyreft: pyreft 0.0.8-0.1.0 pin transformers==4.45.1, and 0.0.7 (what pip
picks beside transformers 5) fails on the first training step (its ReftTrainer.compute_loss lacks
``num_items_in_batch``; it also passes ``tokenizer=`` to Trainer) and pulls jupyter, wandb and
ydata-profiling. The intervention itself is a few lines, checked here against its definition.

Positions follow pyreft's notation: ``fN`` (the first N prompt tokens), ``lN`` (the last N),
``fN+lN``. Each row's prompt is a boolean mask: training sets it from the batch
(``set_prompt``); otherwise it is the attended tokens of the forward pass (generation's prefill; all
of them when transformers passes no mask, as for one unpadded prompt). Decoding steps, whose KV cache
already holds the prompt, are left alone, as in pyreft: the edited prompt states reach the new tokens
through the cache, and one prompt alone or in a padded batch gets the same answer.

On disk: ``reft_config.json`` (method, layers, positions, rank, hidden size, base model) and
``reft_model.safetensors`` (the interventions only), next to the tokenizer.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pipelines.models.adapters import REFT_CONFIG, REFT_WEIGHTS, is_reft_folder, parse_positions
from core.errors import ModelLoadError, StudioError


def select_positions(prompt: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """Of each row's prompt tokens (``prompt``: batch x seq, bool, one contiguous run per row, padding on
    either side), the first ``first`` and the last ``last``."""
    rank = prompt.long().cumsum(dim=1)                      # 1, 2, ... along each row's prompt
    length = prompt.long().sum(dim=1, keepdim=True)
    return prompt & ((rank <= first) | (rank > length - last))


@dataclass(frozen=True)
class ReftConfig:
    """What ``reft_config.json`` holds: enough to rebuild the interventions on the base model."""

    layers: tuple[int, ...]
    positions: str
    rank: int
    hidden_size: int
    base_model_name_or_path: str = ""
    method: str = "loreft"

    @property
    def first_last(self) -> tuple[int, int]:
        parsed = parse_positions(self.positions)
        if parsed is None:
            raise ModelLoadError(f"ReFT positions {self.positions!r} are not fN, lN or fN+lN.",
                                 hint="Fix positions in reft_config.json, or train the intervention again.")
        return parsed

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "layers": list(self.layers)}, indent=2)

    @classmethod
    def read(cls, folder: Path) -> ReftConfig:
        try:
            data = json.loads((Path(folder) / REFT_CONFIG).read_text(encoding="utf-8"))
            config = cls(**{**data, "layers": tuple(int(i) for i in data["layers"])})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"{folder}/{REFT_CONFIG} is not a readable ReFT config ({exc}).",
                                 hint="Pick the folder a ReFT training run saved.") from None
        if config.method != "loreft":
            raise ModelLoadError(f"{folder}/{REFT_CONFIG} names method {config.method!r}; the studio runs loreft.",
                                 hint="Pick a folder a studio ReFT run saved.")
        return config


class LoReFT(nn.Module):
    """``h + Rᵀ(W h + b - R h)`` with orthonormal rows of ``R`` (PyTorch's orthogonal parametrization).
    pyreft draws W at random; here it starts equal to R, so the intervention starts as the identity."""

    def __init__(self, hidden_size: int, rank: int):
        super().__init__()
        # Without the "dynamic trivialization", R is a function of its parameter alone: no extra buffer to save.
        self.rotate = nn.utils.parametrizations.orthogonal(nn.Linear(hidden_size, rank, bias=False),
                                                           use_trivialization=False)
        self.source = nn.Linear(hidden_size, rank)
        with torch.no_grad():  # W = R, b = 0: the edit starts at zero (as LoRA's B does); DPO starts at its reference
            self.source.weight.copy_(self.rotate.weight)
            self.source.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(self.source.weight.dtype)
        r = self.rotate.weight                               # rank x hidden, orthonormal rows
        return (x + (self.source(x) - x @ r.T) @ r).to(hidden.dtype)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (Llama, Qwen, Mistral... ``model.layers``; GPT-2 ``h``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    for holder in (decoder, getattr(decoder, "model", None), getattr(decoder, "transformer", None)):
        for name in ("layers", "h", "block"):
            found = getattr(holder, name, None) if holder is not None else None
            if isinstance(found, nn.ModuleList):
                return found
    raise ModelLoadError(f"ReFT cannot find the decoder layers of {type(model).__name__}.",
                         hint="Use a decoder-only causal LM (Llama, Qwen, Mistral, GPT-2 style), or peft.method: lora.")


class Reft(nn.Module):
    """The interventions of one model and the hooks that apply them. ``attach`` registers it as the
    model's ``reft`` submodule, so it moves with the model and its parameters reach the optimizer."""

    def __init__(self, config: ReftConfig):
        super().__init__()
        self.config = config
        self.first, self.last = config.first_last
        self.interventions = nn.ModuleDict({str(i): LoReFT(config.hidden_size, config.rank) for i in config.layers})
        self.enabled = True
        self._prompt: torch.Tensor | None = None
        self._where: torch.Tensor | None = None

    def attach(self, model: nn.Module, error: type[StudioError] = ModelLoadError) -> Reft:
        layers = decoder_layers(model)
        bad = [i for i in self.config.layers if not 0 <= i < len(layers)]
        if bad:
            raise error(f"peft.layers={bad} is out of range: the model has {len(layers)} decoder layers.",
                        hint=f"Use layer numbers from 0 to {len(layers) - 1}, or leave layers empty for all.")
        model.add_module("reft", self)
        model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        for index in self.config.layers:
            layers[index].register_forward_hook(partial(self._after_layer, str(index)))
        return self

    def set_prompt(self, mask: torch.Tensor | None) -> None:
        """The prompt tokens (batch x seq, bool) of the next forward passes of that shape; None to clear."""
        self._prompt = mask

    @contextmanager
    def disabled(self):
        """The base model's behaviour (DPO's reference) for the forward passes inside."""
        before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = before

    def _before_forward(self, module, args, kwargs):
        """Which positions the layers' hooks edit in this forward pass (``_where``), or none."""
        self._where = None
        if not self.enabled:
            return None
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and hasattr(cache, "get_seq_length") and int(cache.get_seq_length()) > 0:
            return None                                        # a decoding step: the prompt is in the KV cache
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape = (ids if ids is not None else kwargs["inputs_embeds"]).shape[:2]
        prompt, mask = self._prompt, kwargs.get("attention_mask")
        if prompt is None or tuple(prompt.shape) != tuple(shape):
            if mask is not None and (mask.dim() != 2 or tuple(mask.shape) != tuple(shape)):
                return None                                    # a mask over more than the input: decoding too
            prompt = mask.bool() if mask is not None else torch.ones(shape, dtype=torch.bool)
        self._where = select_positions(prompt.bool(), self.first, self.last)
        return None

    def _after_layer(self, key: str, module, args, output):
        if self._where is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        where = self._where.to(hidden.device).unsqueeze(-1)
        edited = torch.where(where, self.interventions[key](hidden), hidden)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.interventions.state_dict().items()}
        save_file(state, str(folder / REFT_WEIGHTS), metadata={"format": "pt"})
        (folder / REFT_CONFIG).write_text(self.config.to_json(), encoding="utf-8")

    def load_weights(self, folder: Path) -> None:
        from safetensors.torch import load_file

        path = Path(folder) / REFT_WEIGHTS
        try:
            self.interventions.load_state_dict(load_file(str(path)))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path} does not hold this ReFT config's interventions ({str(exc)[:200]}).",
                                 hint="Pick the folder a ReFT training run saved.") from None


def apply_adapter(model: nn.Module, folder: str | Path) -> nn.Module:
    """``model`` with the adaptation saved in ``folder`` applied: the base with its ReFT hooks for an
    intervention, a ``PeftModel`` for a PEFT adapter (LoRA, prompt tuning)."""
    if is_reft_folder(folder):
        return load_reft(model, folder)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder))


def load_reft(model: nn.Module, folder: str | Path) -> nn.Module:
    """``model`` (the base) with the interventions saved in ``folder`` applied; returns ``model``."""
    config = ReftConfig.read(Path(folder))
    hidden = getattr(model.config.get_text_config(), "hidden_size", None)
    if hidden != config.hidden_size:
        raise ModelLoadError(f"The ReFT intervention in {folder} was trained on a model of hidden size "
                             f"{config.hidden_size}, and this base has {hidden}.",
                             hint="Load it on the base model it was trained on.")
    reft = Reft(config).attach(model)
    reft.load_weights(Path(folder))
    return model
