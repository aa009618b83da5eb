"""Direct preference optimisation (``trl.DPOTrainer``).

The reference model: with an adapter, the frozen base (PEFT disables the adapter for reference
log-probs; ReFT's ``ReferenceView`` switches the interventions off); for full fine-tuning, a second
copy loaded from the saved start folder (TRL's default, ``config._name_or_path``, fails for a model
that was never saved).
Logs rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies.
"""

from __future__ import annotations

from pipelines.train import reft_trainer
from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, run_trainer
from pipelines.train.data import to_dataset
from pipelines.train.modeling import hidden_size, load_causal_lm, load_tokenizer, peft_config


def build_config(inp: StageInput):
    from trl import DPOConfig

    return DPOConfig(**base_args(inp), beta=inp.hyper.beta, max_length=inp.hyper.max_length)


def reference_model(inp: StageInput, pad_token_id, policy=None):
    if inp.peft.method == "reft":
        return reft_trainer.ReferenceView(policy)
    if inp.peft.uses_adapter:
        return None
    ref = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, pad_token_id)
    ref.eval()
    return ref


def train(inp: StageInput) -> StageOutput:
    from trl import DPOTrainer

    tokenizer = load_tokenizer(inp.model_path, inp.warnings)
    model = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id)
    trainer_cls, model = reft_trainer.prepare(DPOTrainer, model, inp)  # ReFT: interventions on a frozen base
    trainer = trainer_cls(
        model=model, ref_model=reference_model(inp, tokenizer.pad_token_id, model), args=build_config(inp),
        train_dataset=to_dataset(inp.train_rows), eval_dataset=to_dataset(inp.eval_rows) if inp.eval_rows else None,
        processing_class=tokenizer, peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)),
        callbacks=inp.callbacks,
    )
    return run_trainer(trainer, inp)
