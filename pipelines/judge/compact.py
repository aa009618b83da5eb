"""The compact judge format, for judges too small to write JSON (the embedded SmolLM2-135M).

Why: a 135M model wrote a readable JSON verdict in 1 of 36 replies, but answers a short question
with one digit or one letter most of the time when two demonstration turns show the exact form
(one good and one bad answer, so it does not learn "always 5" or "always A"). The reply is parsed
strictly first ("4", "B"), then with a narrow fallback on its first line ("The answer is 4.",
"A: Paris"); anything ambiguous (two numbers, both letters, a number outside 1-5) is no verdict,
because a guess would be noise dressed as a label. One overall score replaces the four aspects:
such a model cannot keep four scores apart anyway. Measured rates: tests/data/judge_outputs/README.md.
"""

from __future__ import annotations

import re

from pipelines.judge.parse import SCORE_MAX, SCORE_MIN, JudgeParseError

COMPACT_ASPECT = "overall"   # the one score a compact reply gives

# -- prompts: short, plus two demonstration turns ------------------------------------------------
COMPACT_SYSTEM_PROMPT = "You rate answers. You reply with the rating only."
COMPACT_POINTWISE_TEMPLATE = """Rate the answer from 1 (bad) to 5 (excellent). Reply with one digit.

Question: {instruction}
Answer: {response}"""
COMPACT_PAIRWISE_TEMPLATE = """Question: {instruction}

A: {response_a}

B: {response_b}

Which answer is better? Reply with one letter, A or B."""
COMPACT_LISTWISE_TEMPLATE = """Rate each answer from 1 (bad) to 5 (excellent). Reply with {count} digits separated by
spaces, one per answer, in order.

Question: {instruction}

{candidates}"""
COMPACT_REPAIR_PROMPT = "Reply with {json_shape} only."
# Demonstrations: one good and one bad answer, so the model does not learn "always 5" or "always A".
COMPACT_POINTWISE_DEMOS = (({"instruction": "What is 2 + 2?", "response": "2 + 2 = 4."}, "5"),
                           ({"instruction": "Name a colour.", "response": "Seven."}, "1"))
COMPACT_PAIRWISE_DEMOS = (({"instruction": "What is 2 + 2?", "response_a": "5.", "response_b": "4."}, "B"),
                          ({"instruction": "Name a colour.", "response_a": "Blue.", "response_b": "Seven."}, "A"))
COMPACT_LISTWISE_DEMOS = (({"instruction": "What is 2 + 2?", "count": "2",
                            "candidates": "Answer 1: 5.\n\nAnswer 2: 4."}, "1 5"),
                          ({"instruction": "Name a colour.", "count": "2",
                            "candidates": "Answer 1: Blue.\n\nAnswer 2: Seven."}, "5 1"))



# -- compact replies: one digit, one letter, or one digit per candidate ---------------------------------
_DIGIT_ONLY = re.compile(r"^\s*\[*\s*([1-5])\s*\]*\s*[.!]?\s*$")
_LETTER_ONLY = re.compile(r"^\s*\[*\s*([ABab])\s*\]*\s*[.!]?\s*$")
_OUT_OF_FIVE = re.compile(r"(\d+)\s*(?:/|out of)\s*5\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\d])")
_LETTER = re.compile(r"\b([AB])\b")
_FIRST_LINE_CHARS = 120


def _first_line(text: str) -> str:
    return next((line for line in (text or "").splitlines() if line.strip()), "")[:_FIRST_LINE_CHARS]


def parse_digit(text: str) -> int:
    """A compact pointwise reply: strictly one digit 1-5 ("4", "4."), else the first line holding
    exactly one number, which must be 1-5 ("The answer is 4.", "Rating: 4/5"). Two numbers, or one
    outside 1-5 ("261", "4, 9"), is no verdict: a guess would be noise dressed as a label."""
    strict = _DIGIT_ONLY.match(text or "")
    if strict:
        return int(strict.group(1))
    line = _first_line(text)
    out_of = _OUT_OF_FIVE.findall(line)
    numbers = out_of if out_of else _NUMBER.findall(line)
    if not numbers:
        raise JudgeParseError("no digit 1-5 in the reply")
    if len(numbers) > 1:
        raise JudgeParseError(f"more than one number in {line.strip()!r:.60}")
    value = int(numbers[0])
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise JudgeParseError(f"{value} is not a score from {SCORE_MIN} to {SCORE_MAX}")
    return value


def parse_letter(text: str) -> str:
    """A compact pairwise reply: strictly "A" or "B", else the first line naming exactly one of the
    capital letters A and B as a word ("A: Paris is right", "Response B"). "A or B" is no verdict."""
    strict = _LETTER_ONLY.match(text or "")
    if strict:
        return strict.group(1).lower()
    letters = set(_LETTER.findall(_first_line(text)))
    if len(letters) != 1:
        raise JudgeParseError("the reply names neither A nor B" if not letters else "the reply names both A and B")
    return letters.pop().lower()


def parse_digits(text: str, count: int) -> list[int]:
    """A compact listwise reply: the first line's numbers, exactly ``count`` of them, each 1-5
    ("4 2", "4, 2"); "Answer 1: 4" style labels are read as labels, not scores."""
    line = _first_line(text)
    labelled = re.findall(r"(?:answer|candidate)?\s*(\d)\s*[:=]\s*(\d)", line, re.I)
    if len(labelled) == count and sorted(int(i) for i, _ in labelled) == list(range(1, count + 1)):
        values = [int(v) for _, v in sorted(labelled, key=lambda pair: int(pair[0]))]
    else:
        values = [int(n) for n in _NUMBER.findall(line)]
    if len(values) != count:
        raise JudgeParseError(f"{len(values)} numbers in the first line, not one per candidate ({count})")
    bad = [v for v in values if not SCORE_MIN <= v <= SCORE_MAX]
    if bad:
        raise JudgeParseError(f"{bad[0]} is not a score from {SCORE_MIN} to {SCORE_MAX}")
    return values


# What a judge as small as the embedded SmolLM2-135M gives, measured on the real endpoint
# (tests/data/judge_outputs/README.md); the Generate page shows it under its warning.
SMALL_JUDGE_EXPECTATION = (
    "What to expect, measured on the embedded model: with the JSON format almost nothing is readable "
    "(1 of 36 pointwise replies, 0 of 24 pairwise). With **Judge replies with: Compact** most replies are "
    "readable (at temperature 0 all of them; over all sampled settings 50% pointwise, 83% pairwise, 63% "
    "listwise), but the verdicts follow the position, not the content: in all 16 checks in both orders the "
    "two orders named the same slot, and single verdicts were right about half the time. So expect pairs "
    "to come out as ties or with low confidence. Good for trying the pipeline; for labels to train on, "
    "use a bigger judge or a rubric."
)
