"""The LLM judge: pointwise rubric scores, pairwise preferences with a position swap, and listwise
scores of all candidates in one call.

Why it looks like this:
- Pointwise: each candidate gets 1-5 per aspect (helpfulness, honesty, instruction following,
  truthfulness, as in UltraFeedback) and a rationale; ``choose_pair`` then takes the best and the
  worst candidate of an instruction, and ``pair_confidence`` turns the score gap into a confidence.
- Pairwise: LLM judges favour whichever answer they read first, so every pair is judged in both
  orders (A,B and B,A) in one concurrent batch; the verdicts are mapped back to the original order
  and combined, and whether they agree lowers or keeps the confidence.
- Listwise (``judge_listwise``): one call rates all N candidates of an instruction, as
  UltraFeedback does: N+1 calls per pair instead of 2N. The shown order is shuffled per
  instruction by a seeded RNG, and when the best and the worst end up within ``swap_margin`` the
  list is judged again in reversed order ("adaptive swap"), so a close call is checked against
  position bias while a clear one costs a single call.
- Replies are parsed tolerantly (``judge_parse``). A reply that still cannot be read gets ONE repair
  prompt (the conversation so far + "reply again with only valid JSON in this shape"); if that fails
  too the item is marked ``failed`` with both raw replies kept, and the batch goes on. A backend
  error on one item likewise fails that item only.
- ``reply_format`` 'compact' swaps the JSON prompts for short ones answered with one digit or one
  letter (``judge_prompts``), for judges too small to write JSON.
- The backend interface has no ``response_format`` (JSON mode), so the templates ask for JSON in
  words; a judge model served with JSON mode would only make the parser's life easier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.judge import compact
from pipelines.judge.compact import COMPACT_ASPECT, parse_digit, parse_letter
from pipelines.judge.parse import (JudgeParseError, ParsedPairwise, ParsedPointwise, parse_pairwise,
                                            parse_pointwise)
from pipelines.judge.prompts import (  # noqa: F401 (the templates are re-exported)
    ASPECT_HELP, ASPECTS, DEFAULT_LISTWISE_TEMPLATE, DEFAULT_PAIRWISE_TEMPLATE, DEFAULT_POINTWISE_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT, PLACEHOLDER, REPAIR_PROMPT, render)
from pipelines.llm.base import Generation, LLMBackend, Messages, SamplingParams
from core.errors import BackendError, BadInput
from core.specs import check_fields, load_spec

MODES = ("pointwise", "pairwise", "listwise")
REPLY_FORMATS = ("json", "compact")
REPAIR_SEPARATOR = "\n\n----- repair reply -----\n"
COMPACT_MAX_TOKENS = 24   # a digit or a letter (and the chatter a small model adds before it)
_ASPECT_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
POINTWISE_FIELDS = ("instruction", "response", "aspects")
PAIRWISE_FIELDS = ("instruction", "response_a", "response_b", "aspects")
LISTWISE_FIELDS = ("instruction", "candidates", "aspects")
OPTIONAL_FIELDS = ("json_shape", "count")


def _check_template(name: str, template: str, required: tuple[str, ...]) -> None:
    if not isinstance(template, str) or not template.strip():
        raise BadInput(f"JudgeConfig.{name} is empty.", hint=f"Write a prompt with {{{'}, {'.join(required)}}}.")
    used = set(PLACEHOLDER.findall(template))
    missing = [p for p in required if p not in used]
    if missing:
        wanted = ", ".join(f"{{{p}}}" for p in required)
        raise BadInput(f"JudgeConfig.{name} lacks the placeholder {{{missing[0]}}}.",
                       hint=f"A {name.split('_')[0]} judge prompt must contain {wanted}; "
                            "{json_shape} and {count} are optional.")
    unknown = sorted(used - set(required) - set(OPTIONAL_FIELDS))
    if unknown:
        raise BadInput(f"JudgeConfig.{name} has an unknown placeholder {{{unknown[0]}}}.",
                       hint="Known: " + ", ".join(f"{{{p}}}" for p in (*required, *OPTIONAL_FIELDS))
                       + ". Other text in braces must not be a bare name.")


@dataclass(frozen=True)
class JudgeConfig:
    """How the LLM judge prompts and reads; every field is validated on creation."""

    mode: str = field(default="pointwise", metadata={"help": "'pointwise' (1-5 per aspect per candidate), "
                      "'pairwise' (which of two candidates is better, judged in both orders) or 'listwise' (all "
                      "candidates of an instruction rated in one call, shuffled, re-judged reversed when close).",
                      "choices": MODES})
    aspects: tuple[str, ...] = field(default=ASPECTS, metadata={"help": "Aspects to rate, snake_case names."})
    pointwise_template: str = field(default=DEFAULT_POINTWISE_TEMPLATE, metadata={
        "help": "Pointwise prompt; placeholders {instruction}, {response}, {aspects}, optional {json_shape}."})
    pairwise_template: str = field(default=DEFAULT_PAIRWISE_TEMPLATE, metadata={
        "help": "Pairwise prompt; placeholders {instruction}, {response_a}, {response_b}, {aspects}, "
                "optional {json_shape}."})
    listwise_template: str = field(default=DEFAULT_LISTWISE_TEMPLATE, metadata={
        "help": "Listwise prompt; placeholders {instruction}, {candidates}, {aspects}, optional {json_shape} "
                "and {count}."})
    system_prompt: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System message; empty = none."})
    temperature: float = field(default=0.0, metadata={"help": "Judge sampling temperature (0 to 2); 0 = greedy.",
                                                      "min": 0, "max": 2})
    max_tokens: int = field(default=400, metadata={"help": "Most tokens of one judge reply (16 to 32768); 400 fits "
                                                   "four scores and a rationale.", "min": 16, "max": 32768})
    repair: bool = field(default=True, metadata={"help": "Send one repair prompt when a reply is not valid JSON."})
    reply_format: str = field(default="json", metadata={
        "help": "'json' (scores per aspect and a rationale) or 'compact' (one digit or one letter, for judges "
                "too small to write JSON; one 'overall' score, built-in prompts).", "choices": REPLY_FORMATS})
    swap_margin: float | None = field(default=1.0, metadata={
        "help": "Listwise: judge again in reversed order when the best and the worst candidate are at most "
                "this many points apart (0 to 4); empty = never.", "min": 0, "max": 4})

    def __post_init__(self):
        if isinstance(self.aspects, str):
            raise BadInput(f"JudgeConfig.aspects={self.aspects!r} is empty or not a list.",
                           hint=f"Give at least one aspect, e.g. {list(ASPECTS)}.")
        check_fields(self)
        self._check_aspects()
        _check_template("pointwise_template", self.pointwise_template, POINTWISE_FIELDS)
        _check_template("pairwise_template", self.pairwise_template, PAIRWISE_FIELDS)
        _check_template("listwise_template", self.listwise_template, LISTWISE_FIELDS)

    def _check_aspects(self) -> None:
        if not self.aspects:
            raise BadInput(f"JudgeConfig.aspects={self.aspects!r} is empty or not a list.",
                           hint=f"Give at least one aspect, e.g. {list(ASPECTS)}.")
        for aspect in self.aspects:
            if not _ASPECT_NAME.fullmatch(aspect):
                raise BadInput(f"JudgeConfig.aspects has an invalid name {aspect!r}.",
                               hint="Use snake_case names of at most 40 characters, e.g. 'instruction_following'.")
        if len(set(self.aspects)) != len(self.aspects):
            raise BadInput(f"JudgeConfig.aspects={list(self.aspects)} names an aspect twice.", hint="List each once.")

    @property
    def compact(self) -> bool:
        return self.reply_format == "compact"

    @property
    def scored_aspects(self) -> tuple[str, ...]:
        """The aspects a reply scores: the configured ones, or the one overall score of a compact reply."""
        return (COMPACT_ASPECT,) if self.compact else self.aspects

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str = "") -> "JudgeConfig":
        """From a run config (YAML); unknown keys are an error naming the key (``path``: where it sits)."""
        return load_spec(cls, data, label="the judge config", path=path)


@dataclass
class PointwiseJudgment:
    response_id: str
    aspect_scores: dict[str, float]      # LLM: whole numbers 1..5 per scored aspect; rubric: its 1..5 score
    overall: float | None                # mean of aspect_scores; None when failed
    rationale: str | None
    raw_output: str                      # the first reply, then REPAIR_SEPARATOR + the repair reply if any
    parse_status: str                    # 'ok' | 'repaired' | 'failed'
    judge_model: str                     # backend.model, or 'rubric:<name>'
    judge_kind: str                      # 'llm' | 'rubric'
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    call_id: str | None = None           # ledger row of the call whose reply was used (or the last one)
    error: str | None = None             # why it failed: the parse error or the backend's message
    passed: bool | None = None           # rubric judges: whether the check passed


@dataclass
class PairwiseJudgment:
    response_a_id: str
    response_b_id: str
    preferred: str | None                # 'a' | 'b' | 'tie' in the ORIGINAL order; None when both orders failed
    swap_agreement: bool | None          # both orders picked the same response; None if one order failed
    order_results: list[dict[str, Any]]  # {'order': 'ab'|'ba', 'preferred_original', 'raw_output', ...}
    confidence: float | None
    parse_status: str                    # the worse of the two orders
    judge_model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


@dataclass
class _Attempt:
    """One judged prompt after the optional repair round."""

    parsed: ParsedPointwise | ParsedPairwise | None = None
    status: str = "failed"
    raw_output: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    call_id: str | None = None

    def add(self, gen: Generation) -> None:
        self.prompt_tokens += gen.prompt_tokens or 0
        self.completion_tokens += gen.completion_tokens or 0
        self.cost_usd += gen.cost_usd or 0.0
        self.call_id = gen.call_id


_STATUS_RANK = {"ok": 0, "repaired": 1, "failed": 2}


def worst_status(*statuses: str) -> str:
    return max(statuses, key=_STATUS_RANK.__getitem__)


class LLMJudge:
    """Judges with one backend (which may be a different model from the generators)."""

    def __init__(self, backend: LLMBackend, config: JudgeConfig | None = None):
        self.backend = backend
        self.config = config or JudgeConfig()
        max_tokens = min(self.config.max_tokens, COMPACT_MAX_TOKENS) if self.config.compact else self.config.max_tokens
        self.params = SamplingParams(temperature=self.config.temperature, top_p=1.0, max_tokens=max_tokens)

    # -- prompts --------------------------------------------------------------------------------
    def aspects_text(self) -> str:
        return "\n".join(f"- {a}: {ASPECT_HELP.get(a, a.replace('_', ' '))}" for a in self.config.aspects)

    def pointwise_shape(self) -> str:
        if self.config.compact:
            return "one digit from 1 to 5"
        scores = ", ".join(f'"{a}": <1-5>' for a in self.config.aspects)
        return "{" + scores + ', "rationale": "<one or two sentences>"}'

    def pairwise_shape(self) -> str:
        if self.config.compact:
            return "one letter, A or B"
        return '{"winner": "<A, B or tie>", "rationale": "<one or two sentences>"}'

    def template(self, mode: str) -> str:
        """The prompt text a mode uses (stored with the judgments for lineage)."""
        if self.config.compact:
            return {"pointwise": compact.COMPACT_POINTWISE_TEMPLATE, "pairwise": compact.COMPACT_PAIRWISE_TEMPLATE,
                    "listwise": compact.COMPACT_LISTWISE_TEMPLATE}[mode]
        return getattr(self.config, f"{mode}_template")

    def system_text(self) -> str:
        return compact.COMPACT_SYSTEM_PROMPT if self.config.compact else self.config.system_prompt

    def messages(self, mode: str, values: dict[str, str], demos=()) -> Messages:
        """System message, then (compact) the demonstration turns, then the filled-in prompt."""
        system = self.system_text()
        out: Messages = [{"role": "system", "content": system}] if system.strip() else []
        template = self.template(mode)
        for demo_values, answer in demos if self.config.compact else ():
            out += [{"role": "user", "content": render(template, demo_values)},
                    {"role": "assistant", "content": answer}]
        return [*out, {"role": "user", "content": render(template, values)}]

    def pointwise_messages(self, instruction: str, response: str) -> Messages:
        return self.messages("pointwise", {"instruction": instruction, "response": response,
                                           "aspects": self.aspects_text(), "json_shape": self.pointwise_shape()},
                             compact.COMPACT_POINTWISE_DEMOS)

    def pairwise_messages(self, instruction: str, response_a: str, response_b: str) -> Messages:
        return self.messages("pairwise", {"instruction": instruction, "response_a": response_a,
                                          "response_b": response_b, "aspects": self.aspects_text(),
                                          "json_shape": self.pairwise_shape()}, compact.COMPACT_PAIRWISE_DEMOS)

    def parse_pointwise(self, text: str) -> ParsedPointwise:
        if self.config.compact:
            return ParsedPointwise({COMPACT_ASPECT: parse_digit(text)}, None)
        return parse_pointwise(text, self.config.aspects)

    def parse_pairwise(self, text: str) -> ParsedPairwise:
        return ParsedPairwise(parse_letter(text), None) if self.config.compact else parse_pairwise(text)

    # -- one round of prompts plus the repair round --------------------------------------------------
    async def run_prompts(self, prompts: list[Messages], parsers: list[Callable[[str], Any]],
                          shapes: list[str]) -> list[_Attempt]:
        """Each prompt with its own parser and reply shape; unreadable replies get one repair round."""
        attempts = [_Attempt() for _ in prompts]
        if not prompts:
            return attempts
        repairs: list[int] = []
        for i, result in enumerate(await self.backend.agenerate_batch(prompts, self.params)):
            attempt = attempts[i]
            if isinstance(result, BackendError):
                attempt.error = f"judge call failed: {result}"
                continue
            attempt.add(result)
            attempt.raw_output = result.text
            try:
                attempt.parsed, attempt.status = parsers[i](result.text), "ok"
            except JudgeParseError as exc:
                attempt.error = f"unreadable reply: {exc.reason}"
                if self.config.repair:
                    repairs.append(i)
        if repairs:
            second = await self.backend.agenerate_batch(
                [self._repair_messages(prompts[i], attempts[i].raw_output, attempts[i].error.split(": ", 1)[1],
                                       shapes[i]) for i in repairs], self.params)
            for i, result in zip(repairs, second):
                self._after_repair(attempts[i], result, parsers[i])
        return attempts

    async def _run(self, prompts: list[Messages], parse: Callable[[str], Any], shape: str) -> list[_Attempt]:
        return await self.run_prompts(prompts, [parse] * len(prompts), [shape] * len(prompts))

    def _repair_messages(self, prompt: Messages, reply: str, reason: str, shape: str) -> Messages:
        template = compact.COMPACT_REPAIR_PROMPT if self.config.compact else REPAIR_PROMPT
        return [*prompt, {"role": "assistant", "content": reply},
                {"role": "user", "content": render(template, {"reason": reason, "json_shape": shape})}]

    @staticmethod
    def _after_repair(attempt: _Attempt, result: Generation | BackendError, parse: Callable[[str], Any]) -> None:
        if isinstance(result, BackendError):
            attempt.error = f"{attempt.error}; the repair call failed: {result}"
            return
        attempt.add(result)
        attempt.raw_output = f"{attempt.raw_output}{REPAIR_SEPARATOR}{result.text}"
        try:
            attempt.parsed, attempt.status, attempt.error = parse(result.text), "repaired", None
        except JudgeParseError as exc:
            attempt.error = f"{attempt.error}; repair reply unreadable too: {exc.reason}"

    # -- pointwise ---------------------------------------------------------------------------------------
    async def ajudge_pointwise(self, items: list[tuple[str, str, str]]) -> list[PointwiseJudgment]:
        """``items``: (response_id, instruction, response). One judgment per item, in order."""
        prompts = [self.pointwise_messages(instruction, response) for _, instruction, response in items]
        attempts = await self._run(prompts, self.parse_pointwise, self.pointwise_shape())
        return [self._pointwise(response_id, a) for (response_id, _, _), a in zip(items, attempts)]

    def _pointwise(self, response_id: str, attempt: _Attempt) -> PointwiseJudgment:
        parsed = attempt.parsed if isinstance(attempt.parsed, ParsedPointwise) else None
        scores = dict(parsed.aspect_scores) if parsed else {}
        return PointwiseJudgment(
            response_id=response_id, aspect_scores=scores,
            overall=round(sum(scores.values()) / len(scores), 4) if scores else None,
            rationale=parsed.rationale if parsed else None, raw_output=attempt.raw_output,
            parse_status=attempt.status, judge_model=self.backend.model, judge_kind="llm",
            prompt_tokens=attempt.prompt_tokens, completion_tokens=attempt.completion_tokens,
            cost_usd=attempt.cost_usd, call_id=attempt.call_id, error=attempt.error)

    # -- pairwise ----------------------------------------------------------------------------------------
    async def ajudge_pairwise(self, items: list[tuple[str, tuple[str, str], tuple[str, str]]]
                              ) -> list[PairwiseJudgment]:
        """``items``: (instruction, (id_a, text_a), (id_b, text_b)). Both orders of every pair go
        out in one concurrent batch; ``preferred`` is reported in the order given here."""
        prompts: list[Messages] = []
        for instruction, (_, text_a), (_, text_b) in items:
            prompts += [self.pairwise_messages(instruction, text_a, text_b),
                        self.pairwise_messages(instruction, text_b, text_a)]
        attempts = await self._run(prompts, self.parse_pairwise, self.pairwise_shape())
        return [self._pairwise(item, attempts[2 * i], attempts[2 * i + 1]) for i, item in enumerate(items)]

    def _pairwise(self, item: tuple[str, tuple[str, str], tuple[str, str]], ab: _Attempt, ba: _Attempt
                  ) -> PairwiseJudgment:
        results = [_order_result("ab", ab), _order_result("ba", ba)]
        preferred, agreement = combine_orders(results[0]["preferred_original"], results[1]["preferred_original"])
        errors = [f"order {r['order']}: {r['error']}" for r in results if r["error"]]
        return PairwiseJudgment(
            response_a_id=item[1][0], response_b_id=item[2][0], preferred=preferred, swap_agreement=agreement,
            order_results=results, confidence=pair_confidence(None, agreement) if preferred is not None else None,
            parse_status=worst_status(ab.status, ba.status), judge_model=self.backend.model,
            prompt_tokens=ab.prompt_tokens + ba.prompt_tokens,
            completion_tokens=ab.completion_tokens + ba.completion_tokens,
            cost_usd=ab.cost_usd + ba.cost_usd, error="; ".join(errors) or None)


_UNSWAP = {"a": "b", "b": "a", "tie": "tie"}


def _order_result(order: str, attempt: _Attempt) -> dict[str, Any]:
    parsed = attempt.parsed if isinstance(attempt.parsed, ParsedPairwise) else None
    shown = parsed.preferred if parsed else None
    original = (_UNSWAP[shown] if order == "ba" else shown) if shown else None
    return {"order": order, "preferred_shown": shown, "preferred_original": original,
            "rationale": parsed.rationale if parsed else None, "raw_output": attempt.raw_output,
            "parse_status": attempt.status, "error": attempt.error, "prompt_tokens": attempt.prompt_tokens,
            "completion_tokens": attempt.completion_tokens, "cost_usd": attempt.cost_usd, "call_id": attempt.call_id}


def combine_orders(ab: str | None, ba: str | None) -> tuple[str | None, bool | None]:
    """Verdicts of the two orders, both already in the original order -> (preferred, swap_agreement).

    Same verdict -> it, agreement True. A tie against a preference -> the preference, agreement
    False (a weak one). A against B -> 'tie', agreement False: the verdict followed the position,
    not the content. One order failed -> the other's verdict, agreement None (unchecked)."""
    if ab is None or ba is None:
        return (ab or ba), None
    if ab == ba:
        return ab, True
    if "tie" in (ab, ba):
        return (ba if ab == "tie" else ab), False
    return "tie", False


PAIRWISE_ONLY_CONFIDENCE = {True: 0.75, None: 0.375, False: 0.25}


def pair_confidence(score_gap: float | None, swap_agreement: bool | None, max_gap: float = 4.0) -> float:
    """How much to trust chosen-over-rejected, in [0, 1].

    With scores: ``min(|gap| / max_gap, 1)`` (a 1-5 scale has a largest gap of 4), halved when a
    pairwise check in both orders disagreed (``swap_agreement`` False); None means no pairwise
    check ran, which costs nothing. Pairwise only (``score_gap`` None): 0.75 when both orders
    agreed, 0.375 for one order's verdict (not checked against position bias), 0.25 when they
    disagreed. With both a gap and an agreeing swap the gap decides alone."""
    if isinstance(max_gap, bool) or not max_gap > 0:
        raise BadInput(f"max_gap={max_gap!r} must be above 0.", hint="Use 4.0 for 1-5 scores.")
    if score_gap is None:
        return PAIRWISE_ONLY_CONFIDENCE[swap_agreement]
    base = min(abs(float(score_gap)) / max_gap, 1.0)
    return round(base * (0.5 if swap_agreement is False else 1.0), 6)


def choose_pair(scored: list[tuple[str, float | None]]) -> tuple[str, str, float] | None:
    """(chosen_id, rejected_id, score_gap): the best and the worst scored candidate (the first one
    listed wins ties, so the choice is stable). None with fewer than two scored or all equal."""
    usable = [(rid, float(score)) for rid, score in scored if score is not None]
    if len(usable) < 2:
        return None
    best = max(usable, key=lambda item: item[1])
    worst = min(usable, key=lambda item: item[1])
    gap = best[1] - worst[1]
    if gap <= 0:
        return None
    return best[0], worst[0], round(gap, 6)
