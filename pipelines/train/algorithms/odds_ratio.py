"""Reference-free preference optimisation: ORPO and CPO (``trl.experimental``).

Both add a preference term to the SFT loss, so they need no reference model and no SFT stage first.
``beta`` is ORPO's odds-ratio weight (lambda in the paper) and CPO's temperature.
"""

from __future__ import annotations

from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, run_trainer
from pipelines.train.data import to_dataset
from pipelines.train.modeling import hidden_size, load_causal_lm, load_tokenizer, peft_config


def build_config(inp: StageInput):
    if inp.stage == "orpo":
        from trl.experimental.orpo import ORPOConfig as Config
    else:
        from trl.experimental.cpo import CPOConfig as Config
    h = inp.hyper
    return Config(**base_args(inp), beta=h.beta, max_length=h.max_length, max_completion_length=h.max_completion_length)


def train(inp: StageInput) -> StageOutput:
    if inp.stage == "orpo":
        from trl.experimental.orpo import ORPOTrainer as Trainer
    else:
        from trl.experimental.cpo import CPOTrainer as Trainer
    tokenizer = load_tokenizer(inp.model_path, inp.warnings)
    model = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id)
    trainer = Trainer(
        model=model, args=build_config(inp), train_dataset=to_dataset(inp.train_rows),
        eval_dataset=to_dataset(inp.eval_rows) if inp.eval_rows else None, processing_class=tokenizer,
        peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)), callbacks=inp.callbacks,
    )
    return run_trainer(trainer, inp)
