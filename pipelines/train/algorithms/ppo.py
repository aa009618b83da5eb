"""Proximal policy optimisation (``trl.experimental.ppo``): policy, reference, reward model, value model.

The reward model is the one a reward stage trained (or ``spec.reward_model``); the value model
starts from it too, as in TRL's examples. Rollouts generate up to ``max_length - max_prompt_length``
tokens from the chat-templated prompts. PPO's loop has no resume: a resumed PPO stage starts over
from its start weights (earlier stages are kept). It ignores ``should_training_stop``, so a cancel
is raised after the stop checkpoint is saved. Logs objective/kl, objective/scores,
objective/rlhf_reward, loss/policy_avg, loss/value_avg.
"""

from __future__ import annotations

from pipelines.train.algorithms.common import StageInput, StageOutput, base_args, save_final
from pipelines.train.data import tokenize_prompts
from pipelines.train.modeling import hidden_size, load_causal_lm, load_reward_model, load_tokenizer, peft_config
from pipelines.train.params import PeftSpec
from core.errors import TrainingError


def build_config(inp: StageInput):
    from trl.experimental.ppo import PPOConfig

    h = inp.hyper
    args = base_args(inp)
    episodes = None
    if h.max_steps > 0:  # PPO counts rollouts: one optimizer phase per batch of prompts
        episodes = h.max_steps * h.per_device_train_batch_size * h.gradient_accumulation_steps
    args.pop("max_steps")
    args.update(eval_strategy="no", eval_steps=None)
    return PPOConfig(**args, kl_coef=h.kl_coef, response_length=h.max_completion_length, total_episodes=episodes,
                     num_ppo_epochs=1, num_mini_batches=1, num_sample_generations=0, stop_token="eos",
                     missing_eos_penalty=1.0)


def train(inp: StageInput) -> StageOutput:
    from trl.experimental.ppo import PPOTrainer

    if inp.reward_model_path is None:
        raise TrainingError("The PPO stage has no reward model.",
                            hint="Set reward_model in the spec, or use the 'rlhf' recipe, which trains one first.")
    tokenizer = load_tokenizer(inp.model_path, inp.warnings, padding_side="left")
    pad = tokenizer.pad_token_id
    policy = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, pad)
    ref = None
    if not inp.peft.uses_adapter:
        ref = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, pad)
    full = PeftSpec(method="full")
    reward = load_reward_model(inp.reward_model_path, inp.hyper, full, inp.precision, pad, trainable=False)
    value = load_reward_model(inp.reward_model_path, inp.hyper, full, inp.precision, pad)
    reward.eval()
    prompts = tokenize_prompts(inp.train_rows, tokenizer, inp.hyper.max_prompt_length)
    eval_prompts = tokenize_prompts(inp.eval_rows, tokenizer, inp.hyper.max_prompt_length) if inp.eval_rows else prompts
    trainer = PPOTrainer(
        args=build_config(inp), processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward,
        train_dataset=prompts, value_model=value, eval_dataset=eval_prompts, callbacks=inp.callbacks,
        peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)),
    )
    trainer.train()
    return save_final(trainer, inp, {})
