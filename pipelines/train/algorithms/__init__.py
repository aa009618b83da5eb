"""One small module per algorithm family; each has ``build_config(StageInput)`` and ``train(StageInput)``."""

from __future__ import annotations

from typing import Callable

from pipelines.train.algorithms.common import StageInput, StageOutput

def trainer_for(stage: str) -> Callable[[StageInput], StageOutput]:
    """The ``train`` function of a stage (imported on demand: TRL's imports are slow); the module is the
    one its registration names (pipelines/train/registry.py)."""
    from pipelines.train.registry import ALGORITHMS

    return ALGORITHMS[stage].train()


__all__ = ["StageInput", "StageOutput", "trainer_for"]
