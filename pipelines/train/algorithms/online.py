"""Online RL with group baselines: GRPO and RLOO (``trl.GRPOTrainer`` / ``trl.RLOOTrainer``).

Rewards come from ``reward_funcs``: the trained reward model (a sequence classifier folder, which
TRL loads and scores with) and/or the studio's programmatic rubrics, adapted to TRL's reward-function
signature with their 1-5 score mapped to 0-1. ``kl_coef`` is the KL weight (TRL's ``beta``).
"""

from __future__ import annotations

from typing import Callable

from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, run_trainer
from pipelines.train.data import to_dataset
from pipelines.train.modeling import hidden_size, load_causal_lm, load_tokenizer, peft_config
from pipelines.train.spec import REWARD_MODEL_FUNC, rubric_entry
from core.errors import TrainingError


def _text(value) -> str:
    """Last message's content of a conversation, or the string itself."""
    if isinstance(value, list) and value:
        return str(value[-1].get("content", ""))
    return str(value)


def rubric_reward(name: str, params: dict | None = None) -> Callable[..., list[float]]:
    """A TRL reward function (prompts, completions, **columns) -> list of floats in [0, 1] from a rubric."""
    from pipelines.judge.rubrics import get_rubric

    rubric, params = get_rubric(name), dict(params or {})

    def reward(prompts, completions, **kwargs) -> list[float]:
        references = kwargs.get("reference") or [None] * len(completions)
        return [(float(rubric(_text(p), _text(c), r, **params).score) - 1.0) / 4.0
                for p, c, r in zip(prompts, completions, references)]

    reward.__name__ = f"rubric_{name}"
    return reward


def reward_functions(inp: StageInput) -> list:
    funcs: list = []
    for entry in inp.reward_funcs:
        if entry == REWARD_MODEL_FUNC:
            if inp.reward_model_path is None:
                raise TrainingError(f"The {inp.stage} stage lists 'reward_model' in reward_funcs but has no reward model.",
                                    hint="Set reward_model in the spec, or remove 'reward_model' from reward_funcs.")
            funcs.append(str(inp.reward_model_path))
        else:
            funcs.append(rubric_reward(*rubric_entry(entry)))
    return funcs


def build_config(inp: StageInput):
    h = inp.hyper
    if inp.stage == "grpo":
        from trl import GRPOConfig as Config
    else:
        from trl import RLOOConfig as Config
    return Config(**base_args(inp), beta=h.kl_coef, num_generations=h.num_generations,
                  max_completion_length=h.max_completion_length)


def train(inp: StageInput) -> StageOutput:
    if inp.stage == "grpo":
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOTrainer as Trainer
    tokenizer = load_tokenizer(inp.model_path, inp.warnings, padding_side="left")
    model = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id)
    trainer = Trainer(
        model=model, reward_funcs=reward_functions(inp), args=build_config(inp),
        train_dataset=to_dataset(inp.train_rows), eval_dataset=to_dataset(inp.eval_rows) if inp.eval_rows else None,
        processing_class=tokenizer, peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)),
        callbacks=inp.callbacks,
    )
    return run_trainer(trainer, inp)
