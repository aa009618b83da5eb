"""Tiny real models built offline in about a second, for tests of generation and training.

Why: tests need a real tokenizer, a real causal LM and a real PEFT adapter (padding, chat
templates, adapters and sampling all go through the same code paths as SmolLM2), but must not
touch the network and must stay fast. A byte-level BPE is trained on a small built-in corpus and a
2-layer Llama is briefly fitted to that corpus so its greedy outputs are varied English-like text
(a freshly initialised model repeats one token, which would make stop-string tests meaningless).
Everything is seeded, so a folder built twice gives the same weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

CORPUS = [
    "The cat sat on the mat and looked at the door.",
    "A dog ran across the park to find the red ball.",
    "Please write a short answer to the question below.",
    "The user asked the assistant to explain the idea in simple words.",
    "Water boils at one hundred degrees on the common scale.",
    "The sun rises in the east and sets in the west every day.",
    "Good answers are short, clear and kind to the reader.",
    "She opened the book and read the first page out loud.",
    "The model learns to follow the instructions of the user.",
    "A small garden needs water, light and a little care.",
    "The train left the station at nine in the morning.",
    "He wrote a letter to his friend about the long summer.",
    "Numbers like one, two and three are easy to count.",
    "The answer is yes, but only when the question is clear.",
    "Birds sing in the trees when the morning is warm.",
    "The teacher asked the class to read the story again.",
    "Rain fell on the roof all night and the river rose.",
    "The assistant gave a helpful answer and the user said thanks.",
    "Cold milk and fresh bread make a simple breakfast.",
    "The city was quiet after the market closed for the night.",
]


def _corpus_lines() -> list[str]:
    """The corpus plus ChatML turns (the chat variant's template) and plain role-tagged turns (the
    layout models without a template get from the local backend), so both variants answer."""
    pairs = [(CORPUS[i], CORPUS[i + 1]) for i in range(0, len(CORPUS) - 1, 2)]
    chatml = [f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}" for q, a in pairs]
    plain = [f"### User:\n{q}\n\n### Assistant:\n{a}" for q, a in pairs[::2]]
    return CORPUS + chatml + plain


def build_tiny_tokenizer(with_chat_template: bool = True):
    """A byte-level BPE (vocab ~500) as a ``PreTrainedTokenizerFast``.

    With a chat template it has bos/eos/pad (eos = ``<|im_end|>``, the end of a turn); without one it
    also has no pad token (eos = ``<|endoftext|>``), so the backend's fallbacks are exercised.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_corpus_lines(), trainer=trainer)
    if with_chat_template:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>",
            additional_special_tokens=["<|im_start|>"],
        )
        tok.chat_template = CHATML_TEMPLATE
    else:
        tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    return tok


@functools.lru_cache(maxsize=4)
def _fitted_weights(seed: int) -> dict:
    """Weights of a tiny Llama fitted to the corpus (40 Adam steps, about a second), cached per
    process so the variants of one session share them. Every text ends with ``<|im_end|>``, so the
    chat variant stops at the end of a turn and the plain one (eos ``<|endoftext|>``) runs to
    max_tokens."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(with_chat_template=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_tiny_config(tokenizer))
    ids = [tokenizer(line + "<|im_end|>", add_special_tokens=False)["input_ids"] for line in _corpus_lines()]
    width = max(len(x) for x in ids)
    batch = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    labels = batch.masked_fill(mask == 0, -100)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small gain nothing from threads, and suffer when cores are busy
    try:
        for _ in range(40):
            model(input_ids=batch, attention_mask=mask, labels=labels).loss.backward()
            optim.step()
            optim.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _tiny_config(tokenizer):
    from transformers import LlamaConfig

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id,
        tie_word_embeddings=False,
    )


def build_tiny_llama(path: str | Path, with_chat_template: bool = True, seed: int = 0) -> Path:
    """Save a 2-layer Llama (hidden 64, 4 heads) and its tokenizer into ``path``; returns ``path``."""
    from transformers import GenerationConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(with_chat_template)
    config = _tiny_config(tokenizer)
    model = LlamaForCausalLM(config)
    model.load_state_dict(_fitted_weights(seed))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_adapter(base_path: str | Path, out_path: str | Path, seed: int = 0) -> Path:
    """Save a LoRA adapter (q_proj/v_proj, r=8) for the model in ``base_path`` into ``out_path``.

    ``init_lora_weights=False`` keeps random non-zero B matrices, so the adapter changes outputs
    (a standard LoRA starts as a no-op).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out_path = Path(out_path)
    base = AutoModelForCausalLM.from_pretrained(str(base_path))
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    model.save_pretrained(out_path)
    return out_path
