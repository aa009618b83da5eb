"""Reward model (``trl.RewardTrainer``): a one-label sequence classifier trained on chosen/rejected pairs.

It logs ``accuracy`` (how often chosen outscores rejected) and ``margin`` (mean score gap). With LoRA
the classification head is trained in full (PEFT's SEQ_CLS task keeps ``score`` trainable).
"""

from __future__ import annotations

from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, run_trainer
from pipelines.train.data import to_dataset
from pipelines.train.modeling import load_reward_model, load_tokenizer, peft_config


def build_config(inp: StageInput):
    from trl import RewardConfig

    return RewardConfig(**base_args(inp), max_length=inp.hyper.max_length)


def train(inp: StageInput) -> StageOutput:
    from trl import RewardTrainer

    tokenizer = load_tokenizer(inp.model_path, inp.warnings)
    model = load_reward_model(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id)
    trainer = RewardTrainer(
        model=model, args=build_config(inp), train_dataset=to_dataset(inp.train_rows),
        eval_dataset=to_dataset(inp.eval_rows) if inp.eval_rows else None, processing_class=tokenizer,
        peft_config=peft_config(inp.peft, task="SEQ_CLS"), callbacks=inp.callbacks,
    )
    return run_trainer(trainer, inp, model_kind="reward")
