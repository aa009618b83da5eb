"""``answer_quality``: a programmatic judge for ordinary prose answers, the studio's default when the
only model is the embedded 135M one (too small to judge: it rarely writes a readable verdict).

It checks what code can check about any answer, without knowing the right one: that there is an
answer, that it is not cut off at the token limit, not stuck repeating itself, not a refusal, not the
question echoed back, and of a sensible length. Each problem costs points on the 1-5 scale, graded
rather than pass/fail, so two candidates of one instruction rarely tie and a preference pair comes
out. It rewards well-formed answers, not correct ones: point the judge at a capable LLM endpoint
for helpfulness and truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput
from pipelines.judge.rubrics import SCORE_MAX, SCORE_MIN, RubricResult, build_params, register_rubric

REFUSALS = re.compile(r"\b(i can(?:no|')t|i am (?:not able|unable)|i'm (?:not able|unable)|as an ai\b|"
                      r"i (?:do not|don't) have (?:the ability|access))", re.I)
ENDINGS = tuple('.!?)"\'*`]') + ("```",)


@dataclass(frozen=True)
class AnswerQualityParams:
    min_words: int = field(default=5, metadata={"help": "Answers shorter than this lose points (graded)."})
    max_words: int = field(default=250, metadata={"help": "Answers longer than this lose a point (graded)."})

    def __post_init__(self):
        for name in ("min_words", "max_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                raise BadInput(f"The rubric 'answer_quality' got {name}={str(value)[:40]!r}.",
                               hint="Use a whole number from 0 to 100000.")
        if self.min_words > self.max_words:
            raise BadInput(f"The rubric 'answer_quality' got min_words={self.min_words} above "
                           f"max_words={self.max_words}.", hint="Make min_words at most max_words.")


def _repetition(words: list[str]) -> float:
    """Share of word trigrams that repeat an earlier one (0 = none, near 1 = a loop)."""
    grams = [tuple(w.lower() for w in words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


@register_rubric("answer_quality", params=AnswerQualityParams)
def answer_quality_rubric(instruction: str, response: str, reference: str | None = None, **params: Any
                          ) -> RubricResult:
    """A well-formed answer: present, complete, not repetitive, not a refusal or an echo, sensible length."""
    p = build_params(AnswerQualityParams, params, "answer_quality")
    text = response.strip()
    words = text.split()
    if not words:
        return RubricResult(SCORE_MIN, False, "no answer")
    penalties: list[tuple[float, str]] = []
    if not text.endswith(ENDINGS):
        penalties.append((1.5, "ends mid-sentence (cut off at the token limit?)"))
    repeated = _repetition(words)
    if repeated > 0.1:
        penalties.append((min(2.0, 4 * repeated), f"{repeated:.0%} of its word triples repeat"))
    if REFUSALS.search(text[:200]):
        penalties.append((2.0, "reads as a refusal"))
    if instruction.strip() and text.lower().startswith(instruction.strip().lower()[:80]):
        penalties.append((1.0, "repeats the instruction"))
    if len(words) < p.min_words:
        penalties.append((2.0 * (1 - len(words) / max(1, p.min_words)), f"{len(words)} words, under {p.min_words}"))
    elif len(words) > p.max_words:
        penalties.append((min(1.0, len(words) / p.max_words - 1), f"{len(words)} words, over {p.max_words}"))
    score = max(SCORE_MIN, SCORE_MAX - sum(cost for cost, _ in penalties))
    details = "; ".join(why for _, why in penalties) or f"complete, {len(words)} words"
    return RubricResult(round(score, 4), not penalties, details)
