"""Every training algorithm the studio knows, one registration line each.

An algorithm is a module under ``pipelines/train/algorithms/`` with ``train(StageInput) -> StageOutput``
(TRL imported inside it: the page imports this registry and must stay fast), a parameter class (a
dataclass of ``TrainingParams`` in ``params.py``, or ``"module:Class"`` for one that lives in the
algorithm's own module) and the snapshot kinds it learns from. Adding one is a new module plus one
``register(...)`` line below; the spec, the runner, the form, the recipe proposals and the time estimate
read everything from here.

A recipe is a chain of stages. Each algorithm is a one-stage recipe of its own name; ``register_recipe``
adds a longer chain (``rlhf``: reward model, then PPO against it).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from typing import Any

from core.errors import TrainingError
from core.specs import load_spec
from pipelines.train.params import (
    CPOParams, DPOParams, GRPOParams, KTOParams, ORPOParams, PPOParams, RewardParams, RLOOParams, SFTParams,
    TrainingParams, field_names,
)


@dataclass(frozen=True)
class Algorithm:
    name: str                              # the stage name in specs, YAML and the database
    module: str                            # pipelines.train.algorithms.<module>, or a dotted path of its own
    params: type[TrainingParams] | str     # the class, or "module.path:ClassName" imported on first use
    data: tuple[str, ...]                  # snapshot kinds it learns from (the runner converts the later ones)
    cost: float = 1.0                      # compute per example relative to SFT, for the time estimate
    sft_first: bool = False                # may an SFT stage run before it (include_sft)
    online: bool = False                   # generates during training; learns from prompts
    reft: bool = False                     # its trainer takes a ReFT intervention (train/reft_trainer.py)
    liger: bool = False                    # TRL's trainer for it uses Liger's kernels correctly (use_liger_kernel)

    def train(self):
        path = self.module if "." in self.module else f"pipelines.train.algorithms.{self.module}"
        return importlib.import_module(path).train

    def params_class(self) -> type[TrainingParams]:
        if isinstance(self.params, str):
            module, _, name = self.params.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.params


ALGORITHMS: dict[str, Algorithm] = {}
RECIPES: dict[str, tuple[str, ...]] = {}
RECIPE_SFT_FIRST: dict[str, bool] = {}


def register(algorithm: Algorithm) -> None:
    """Add ``algorithm`` and its one-stage recipe; the order of registration is the order recipes are
    proposed in for a kind of data (the usual choice first)."""
    if algorithm.name in ALGORITHMS:
        raise ValueError(f"training algorithm {algorithm.name!r} is registered twice")
    ALGORITHMS[algorithm.name] = algorithm
    register_recipe(algorithm.name, (algorithm.name,), sft_first=algorithm.sft_first)


def register_recipe(name: str, stages: tuple[str, ...], *, sft_first: bool = False) -> None:
    unknown = [s for s in stages if s not in ALGORITHMS]
    if unknown or name in RECIPES:
        raise ValueError(f"recipe {name!r}: unknown stages {unknown}" if unknown else f"recipe {name!r} exists")
    RECIPES[name] = tuple(stages)
    RECIPE_SFT_FIRST[name] = sft_first


class _Params(Mapping):
    """stage -> parameter class, resolved on first use (a class may live in its algorithm's module)."""

    def __getitem__(self, stage: str) -> type[TrainingParams]:
        return ALGORITHMS[stage].params_class()

    def __iter__(self) -> Iterator[str]:
        return iter(ALGORITHMS)

    def __len__(self) -> int:
        return len(ALGORITHMS)


PARAMS: Mapping[str, type[TrainingParams]] = _Params()

def build_params(stage: str, values: Any, *, path: str, context: str) -> TrainingParams:
    """The ``stage``'s parameter class from flat ``values``; a field of another algorithm is named as such,
    with ``context`` saying why it does not apply ("this run's recipe is dpo (stages: dpo)")."""
    cls = PARAMS[stage]
    for key in values if isinstance(values, dict) else ():
        owners = [s for s, c in PARAMS.items() if key in field_names(c)]
        if key not in field_names(cls) and owners:
            names = [s.upper() if s != "reward" else "reward-model" for s in owners]
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            raise TrainingError(f"{path}.{key} is a setting of {listed}; {context}.",
                                hint=f"Remove {key}, or pick a recipe that runs one of those stages "
                                     f"({', '.join(owners)}).")
    return load_spec(cls, values, error=TrainingError, label="the run spec", path=path)


PREFERENCE = ("preference",)
ANY_PROMPTS = ("prompts", "sft", "preference", "kto")

# -- the algorithms, in the order they are proposed --------------------------------------------------------
register(Algorithm("dpo", "dpo", DPOParams, PREFERENCE, cost=2.7, sft_first=True, reft=True, liger=True))
register(Algorithm("orpo", "odds_ratio", ORPOParams, PREFERENCE, cost=2.0, liger=True))
register(Algorithm("cpo", "odds_ratio", CPOParams, PREFERENCE, cost=2.0, liger=True))
register(Algorithm("kto", "kto", KTOParams, ("kto", "preference"), cost=1.4, sft_first=True, liger=True))
register(Algorithm("reward", "reward", RewardParams, PREFERENCE, cost=2.0))
register(Algorithm("sft", "sft", SFTParams, ("sft", "preference"), reft=True, liger=True))
register(Algorithm("grpo", "online", GRPOParams, ANY_PROMPTS, cost=4.0, sft_first=True, online=True, liger=True))
register(Algorithm("rloo", "online", RLOOParams, ANY_PROMPTS, cost=4.0, sft_first=True, online=True))
register(Algorithm("ppo", "ppo", PPOParams, ANY_PROMPTS, cost=4.0, sft_first=True, online=True))
register_recipe("rlhf", ("reward", "ppo"), sft_first=True)

__all__ = ["ALGORITHMS", "Algorithm", "PARAMS", "build_params", "RECIPES", "RECIPE_SFT_FIRST", "register", "register_recipe"]
