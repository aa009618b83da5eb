"""One small module per algorithm family; each has ``build_config(StageInput)`` and ``train(StageInput)``."""

from __future__ import annotations

import importlib
from typing import Callable

from pipelines.train.algorithms.common import StageInput, StageOutput

MODULES = {"sft": "sft", "reward": "reward", "dpo": "dpo", "orpo": "odds_ratio", "cpo": "odds_ratio", "kto": "kto",
           "ppo": "ppo", "grpo": "online", "rloo": "online"}


def trainer_for(stage: str) -> Callable[[StageInput], StageOutput]:
    """The ``train`` function of a stage (imported on demand: TRL's imports are slow)."""
    return importlib.import_module(f"pipelines.train.algorithms.{MODULES[stage]}").train


__all__ = ["MODULES", "StageInput", "StageOutput", "trainer_for"]
