"""Listwise judging: one call rates all N candidates of an instruction, with position-bias handling.

Why: pointwise judging costs one call per candidate (2N calls per pair with N candidates);
UltraFeedback-style listwise judging costs one (N+1 per pair), and the judge sees the candidates
side by side, which calibrates its scores against each other. Its weakness is position bias:
judges favour a slot (often the first). So
- the shown order is shuffled per instruction by an RNG seeded from the instruction's key, which
  spreads any slot preference over all candidates and makes the order reproducible (it is stored
  with the judgments and the pair);
- "adaptive swap": when the best and the worst candidate end up at most ``swap_margin`` points
  apart (or tied), the list is judged again in REVERSED order. The final score of a candidate is
  the mean over the passes that were read, and ``swap_agreement`` says whether both passes put the
  chosen candidate above the rejected one. A clear verdict costs one call, a close one two: the
  confidence of close calls still comes from the score gap plus a swap check, as in pairwise mode.
- A reply that cannot be read after the repair prompt leaves every candidate of that pass
  unscored (kept, marked failed); a call with no reply at all marks the item ``call_failed`` so
  the pipeline stores nothing for it and a resume asks again.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from pipelines.judge.llm import LLMJudge, _Attempt, choose_pair, worst_status
from pipelines.judge.compact import COMPACT_ASPECT, COMPACT_LISTWISE_DEMOS, parse_digits
from pipelines.judge.parse import ParsedListwise, parse_listwise
from pipelines.judge.prompts import listwise_block
from pipelines.llm.base import Messages


@dataclass
class ListwiseItem:
    """One instruction and its candidates, in the canonical (generator, candidate index) order."""

    key: str                                  # seeds the shuffle: the instruction id (with the run id)
    instruction: str
    candidates: list[tuple[str, str]]         # (response_id, text)
    order: list[int] | None = None            # shown order as indexes into candidates; None = shuffled


@dataclass
class ListwisePass:
    """One listwise call: the order it showed and what it said about each candidate."""

    order: list[str]                          # response ids as shown; index 0 was "candidate 1"
    reversed: bool
    scores: dict[str, dict[str, int]] = field(default_factory=dict)   # empty when the reply was unreadable
    rationales: dict[str, str | None] = field(default_factory=dict)
    raw_output: str = ""
    parse_status: str = "failed"
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    call_id: str | None = None

    def overall(self, rid: str) -> float | None:
        scores = self.scores.get(rid)
        return round(sum(scores.values()) / len(scores), 4) if scores else None

    @property
    def called(self) -> bool:
        """A reply came back (readable or not); False when the call itself failed."""
        return bool(self.raw_output)


@dataclass
class ListwiseJudgment:
    key: str
    candidate_ids: list[str]                  # canonical order
    passes: list[ListwisePass]
    overall: dict[str, float | None]          # mean over the passes that were read
    choice: tuple[str, str, float] | None     # (chosen, rejected, score gap) from ``overall``
    swap_checked: bool
    swap_agreement: bool | None               # None when unchecked (no second pass, or it was unreadable)
    judge_model: str
    parse_status: str
    error: str | None = None

    @property
    def call_failed(self) -> bool:
        return any(not p.called for p in self.passes)


def shuffled_order(key: str, n: int) -> list[int]:
    """A permutation of range(n) that depends only on ``key``: reproducible across resumes and machines."""
    rng = random.Random(int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16))
    order = list(range(n))
    rng.shuffle(order)
    return order


def mean_overall(passes: list[ListwisePass], rid: str) -> float | None:
    values = [v for v in (p.overall(rid) for p in passes) if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def swap_agreement(first: dict[str, float | None], second: dict[str, float | None] | None,
                   chosen: str, rejected: str) -> bool | None:
    """Both passes score ``chosen`` strictly above ``rejected``; None when a pass has no scores for them."""
    if second is None:
        return None
    values = [first.get(chosen), first.get(rejected), second.get(chosen), second.get(rejected)]
    if any(v is None for v in values):
        return None
    return values[0] > values[1] and values[2] > values[3]


def needs_swap(first: ListwisePass, candidate_ids: list[str], margin: float | None) -> bool:
    """Re-judge reversed when pass one was read and its best and worst are within ``margin`` (or tied)."""
    if margin is None or len(candidate_ids) < 2 or first.parse_status == "failed":
        return False
    choice = choose_pair([(rid, first.overall(rid)) for rid in candidate_ids])
    return choice is None or choice[2] <= margin


class ListwiseJudge:
    """Listwise prompts, parsing and the adaptive swap on top of an ``LLMJudge`` (same backend, config)."""

    def __init__(self, judge: LLMJudge):
        self.judge = judge
        self.config = judge.config

    def shape(self, count: int) -> str:
        if self.config.compact:
            return f"{count} digits from 1 to 5 separated by spaces"
        scores = ", ".join(f'"{a}": <1-5>' for a in self.config.aspects)
        return ('{"ratings": [{"candidate": 1, ' + scores + ', "rationale": "<one sentence>"}, ... '
                f'one entry for each candidate, 1 to {count}]}}')

    def messages(self, instruction: str, texts: list[str]) -> Messages:
        return self.judge.messages("listwise", {
            "instruction": instruction, "candidates": listwise_block(texts, self.config.compact),
            "aspects": self.judge.aspects_text(), "count": str(len(texts)), "json_shape": self.shape(len(texts))},
            COMPACT_LISTWISE_DEMOS)

    def parser(self, count: int):
        if self.config.compact:
            return lambda text: ParsedListwise([{COMPACT_ASPECT: d} for d in parse_digits(text, count)], [None] * count)
        aspects = self.config.aspects
        return lambda text: parse_listwise(text, aspects, count)

    async def _passes(self, items: list[ListwiseItem], orders: list[list[int]], reverse: bool) -> list[ListwisePass]:
        prompts, parsers, shapes = [], [], []
        for item, order in zip(items, orders):
            prompts.append(self.messages(item.instruction, [item.candidates[i][1] for i in order]))
            parsers.append(self.parser(len(order)))
            shapes.append(self.shape(len(order)))
        attempts = await self.judge.run_prompts(prompts, parsers, shapes)
        return [_pass([item.candidates[i][0] for i in order], reverse, attempt)
                for item, order, attempt in zip(items, orders, attempts)]

    async def ajudge(self, items: list[ListwiseItem]) -> list[ListwiseJudgment]:
        """One judgment per item, in order: a first pass for all items in one concurrent batch,
        then the reversed pass for the close calls in a second batch."""
        orders = [item.order if item.order is not None else shuffled_order(item.key, len(item.candidates))
                  for item in items]
        first = await self._passes(items, orders, reverse=False)
        ids = [[rid for rid, _ in item.candidates] for item in items]
        close = [i for i, p in enumerate(first) if needs_swap(p, ids[i], self.config.swap_margin)]
        second = await self._passes([items[i] for i in close], [orders[i][::-1] for i in close], reverse=True)
        by_item: dict[int, ListwisePass] = dict(zip(close, second))
        return [self._judgment(item, ids[i], [first[i], *([by_item[i]] if i in by_item else [])])
                for i, item in enumerate(items)]

    def _judgment(self, item: ListwiseItem, ids: list[str], passes: list[ListwisePass]) -> ListwiseJudgment:
        overall = {rid: mean_overall(passes, rid) for rid in ids}
        choice = choose_pair([(rid, overall[rid]) for rid in ids])
        agreement = None
        if choice is not None and len(passes) > 1:
            agreement = swap_agreement({r: passes[0].overall(r) for r in ids},
                                       {r: passes[1].overall(r) for r in ids}, choice[0], choice[1])
        errors = [f"{'reversed' if p.reversed else 'first'} pass: {p.error}" for p in passes if p.error]
        return ListwiseJudgment(
            key=item.key, candidate_ids=ids, passes=passes, overall=overall, choice=choice,
            swap_checked=len(passes) > 1, swap_agreement=agreement, judge_model=self.judge.backend.model,
            parse_status=worst_status(*(p.parse_status for p in passes)), error="; ".join(errors) or None)


def _pass(order: list[str], reverse: bool, attempt: _Attempt) -> ListwisePass:
    parsed: Any = attempt.parsed if isinstance(attempt.parsed, ParsedListwise) else None
    out = ListwisePass(order=order, reversed=reverse, raw_output=attempt.raw_output, parse_status=attempt.status,
                       error=attempt.error, prompt_tokens=attempt.prompt_tokens,
                       completion_tokens=attempt.completion_tokens, cost_usd=attempt.cost_usd, call_id=attempt.call_id)
    if parsed is not None:
        out.scores = {rid: dict(s) for rid, s in zip(order, parsed.scores)}
        out.rationales = dict(zip(order, parsed.rationales))
    return out
