"""Reference metrics beside the votes: held-out perplexity, reward-model scores and accuracy, F1 for
categorical labels, and BLEU / ROUGE where prompts carry a reference answer.

Why these libraries: sacrebleu and rouge-score compute the standard definitions without fetching
anything from a hub (a hub metric download is impossible offline). Models load with transformers
from registered folders only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.errors import BadInput, ModelLoadError


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu's default 13a tokenisation), 0-100."""
    import sacrebleu

    if len(hypotheses) != len(references) or not hypotheses:
        raise BadInput("BLEU needs one reference per answer.", hint="Give prompts with a reference answer.")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure, 0-1."""
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references) or not hypotheses:
        raise BadInput("ROUGE needs one reference per answer.", hint="Give prompts with a reference answer.")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)) / len(hypotheses)


def macro_f1(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Macro-averaged F1 over the labels that occur in either list (categorical reward labels)."""
    if len(predicted) != len(truth) or not truth:
        raise BadInput("F1 needs one prediction per label.", hint="Score the same held-out records.")
    scores = []
    for label in sorted(set(predicted) | set(truth)):
        tp = sum(p == label and t == label for p, t in zip(predicted, truth))
        fp = sum(p == label and t != label for p, t in zip(predicted, truth))
        fn = sum(p != label and t == label for p, t in zip(predicted, truth))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def _load(path: str | Path, kind: str):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(f"Metrics need transformers ({exc}).", hint="pip install torch transformers") from None
    cls = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        model = cls.from_pretrained(str(path), trust_remote_code=False).eval()
    except Exception as exc:  # damaged folders fail in library-specific ways
        raise ModelLoadError(f"Could not load {path} as a {kind} model: {str(exc).splitlines()[0]}",
                             hint="Pick a registered transformers folder.") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return torch, tokenizer, model


def perplexity(model_path: str | Path, texts: Sequence[str], max_length: int = 512, batch_size: int = 8,
               adapter_path: str | Path | None = None) -> float:
    """exp(mean negative log-likelihood per predicted token) of a causal LM over held-out texts; with
    ``adapter_path``, of the base model with that adapter applied (a trained LoRA or ReFT run's output)."""
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise BadInput("No held-out text to measure perplexity on.", hint="Pick a snapshot with an eval split.")
    torch, tokenizer, model = _load(model_path, "causal")
    if adapter_path:  # a PEFT adapter or a ReFT intervention
        from pipelines.models.reft import apply_adapter

        model = apply_adapter(model, adapter_path).eval()
    total_nll, total_tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                            truncation=True, max_length=max_length)
            logits = model(**enc).logits[:, :-1]
            target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total_nll += float(nll[mask].sum())
            total_tokens += int(mask.sum())
    return math.exp(total_nll / max(1, total_tokens))


@dataclass
class RewardScorer:
    """A sequence-classification reward model (one logit) that scores (prompt, answer)."""

    model_path: str
    batch_size: int = 8
    max_length: int = 512

    def __post_init__(self):
        self._torch, self._tokenizer, self._model = _load(self.model_path, "reward")

    def _text(self, prompt: str, answer: str) -> str:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False)
        return f"### User:\n{prompt}\n\n### Assistant:\n{answer}"

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        out: list[float] = []
        with self._torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                texts = [self._text(p, a) for p, a in pairs[start:start + self.batch_size]]
                enc = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                      max_length=self.max_length)
                out.extend(float(x) for x in self._model(**enc).logits[:, 0])
        return out

    def accuracy(self, triples: Sequence[tuple[str, str, str]]) -> float:
        """Share of held-out (prompt, chosen, rejected) where chosen scores higher."""
        if not triples:
            raise BadInput("No held-out pairs to measure reward accuracy on.", hint="Pick a preference snapshot.")
        chosen = self.score([(p, c) for p, c, _ in triples])
        rejected = self.score([(p, r) for p, _, r in triples])
        return sum(c > r for c, r in zip(chosen, rejected)) / len(triples)
