"""Supervised fine-tuning (``trl.SFTTrainer``) on prompt/completion rows: loss on the completion only."""

from __future__ import annotations

from pipelines.train import reft_trainer
from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, run_trainer
from pipelines.train.data import to_dataset
from pipelines.train.modeling import hidden_size, load_causal_lm, load_tokenizer, peft_config


def build_config(inp: StageInput):
    from trl import SFTConfig

    return SFTConfig(**base_args(inp), max_length=inp.hyper.max_length, packing=False,
                     padding_free=inp.switches.padding_free)


def train(inp: StageInput) -> StageOutput:
    from trl import SFTTrainer

    tokenizer = load_tokenizer(inp.model_path, inp.warnings)
    model = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id,
                           attn_implementation=inp.switches.attn_implementation)
    trainer_cls, model = reft_trainer.prepare(SFTTrainer, model, inp)  # ReFT: interventions on a frozen base
    trainer = trainer_cls(
        model=model, args=build_config(inp), train_dataset=to_dataset(inp.train_rows),
        eval_dataset=to_dataset(inp.eval_rows) if inp.eval_rows else None, processing_class=tokenizer,
        peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)), callbacks=inp.callbacks,
    )
    return run_trainer(trainer, inp)
