"""What the Train page's form needs: the spec's fields with their help text, presets, recipes, a spec
built from the form's values, and the effective batch / step count / time estimate.

Why a service: the page may not import ``pipelines``; the field list comes from the spec dataclasses
themselves (``metadata["help"]``), so the form and the YAML never disagree.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from pipelines.train.params import HyperParams, PeftSpec
from pipelines.train.spec import PRESETS, RECIPES, REWARD_MODEL_FUNC, SFT_PREFIXABLE, RunSpec
from storage import registry
from storage.db import get_database

__all__ = ["FieldInfo", "Estimate", "form_fields", "presets", "recipes", "build_spec", "estimate", "RunSpec",
           "REWARD_MODEL_FUNC", "SFT_PREFIXABLE", "rubric_names"]
SECTIONS = {"hyper": HyperParams, "peft": PeftSpec}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: str                       # 'bool', 'int', 'float', 'str', 'list'
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


def form_fields(section: str) -> list[FieldInfo]:
    """The fields of ``hyper`` or ``peft`` in declaration order, with defaults and help text."""
    out = []
    for f in fields(SECTIONS[section]):
        default = f.default if f.default is not MISSING else f.default_factory()
        kind = "list" if isinstance(default, list) else type(default).__name__
        out.append(FieldInfo(f.name, kind, default, f.metadata.get("help", ""), f.metadata.get("choices")))
    return out


def presets() -> dict[str, dict[str, dict[str, Any]]]:
    return {name: {"peft": dict(v["peft"]), "hyper": dict(v["hyper"])} for name, v in PRESETS.items()}


def recipes() -> dict[str, tuple[str, ...]]:
    return dict(RECIPES)


def rubric_names() -> list[str]:
    from pipelines.judge.rubrics import list_rubrics

    return sorted(r.name for r in list_rubrics())


def build_spec(data: dict[str, Any]) -> RunSpec:
    """A validated RunSpec from the form's values (errors name the field and the allowed range)."""
    return RunSpec.from_dict(data)


# Rough throughput for the time estimate (sustained training FLOP/s); the page labels it as rough.
FLOPS_PER_S = {"cpu": 2e10, "cuda": 1e14}
STAGE_COST = {"sft": 1.0, "reward": 2.0, "dpo": 2.7, "orpo": 2.0, "cpo": 2.0, "kto": 1.4, "ppo": 4.0,
              "grpo": 4.0, "rloo": 4.0}


@dataclass(frozen=True)
class Estimate:
    effective_batch: int
    steps: int
    seconds: float | None          # None when the model's size is unknown
    basis: str                     # how the time was estimated


def estimate(spec: RunSpec, n_train: int, device: str | None = None) -> Estimate:
    """Effective batch, optimizer steps and a rough duration (6 x params x tokens FLOPs per example)."""
    from pipelines.train.spec import effective_batch, estimate_steps

    batch, steps = effective_batch(spec), estimate_steps(spec, n_train)
    record = registry.get_model(get_database(), spec.base_model)
    params = record.parameters if record else None
    if not params:
        return Estimate(batch, steps, None, "unknown model size")
    kind = "cuda" if (device or "cpu").startswith("cuda") else "cpu"
    stage = spec.stages[-1]
    tokens = batch * spec.hyper_for(stage).max_length * 0.5  # examples are rarely at max_length
    seconds = steps * 6 * params * tokens * STAGE_COST.get(stage, 1.0) / FLOPS_PER_S[kind]
    if spec.peft.method in ("lora", "qlora", "prompt_tuning", "p_tuning"):
        seconds *= 0.7  # no weight gradients for the frozen base
    return Estimate(batch, steps, round(seconds, 1), f"rough, {kind}, {params / 1e6:.0f}M parameters")


