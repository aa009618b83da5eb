"""Judges for comparisons: the LLM judge (pairwise, both orders) and programmatic rubric judges.

Both reuse the Generate pipeline's judges (``pipelines.judge.llm`` and ``rubrics``) and turn
their verdicts into votes beside the human ones: ``voter_kind`` 'llm' or 'rubric', ``voter`` the
judge's target or ``rubric:<name>``. An LLM vote keeps which slot the judge picked in each order
(``metadata.shown``), which is what the position-bias check counts. Pairs the judge already voted
on are skipped, so judging resumes; a verdict that could not be parsed in either order is no vote.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from pipelines.judge.llm import JudgeConfig, LLMJudge
from pipelines.judge.rubrics import RubricJudge, get_rubric
from pipelines.llm.base import LLMBackend, run_sync
from storage import compare as store
from storage.db import Database
from core.errors import BadInput
from core.specs import check_fields, load_spec

KINDS = ("llm", "rubric")
LLM_CHUNK = 16


@dataclass(frozen=True)
class JudgeSpec:
    """Who judges a comparison; validated on creation."""

    kind: str = field(default="llm", metadata={"help": "'llm' (a model compares two answers in both orders) or "
                                                      "'rubric' (a programmatic check scores each answer).",
                                                      "choices": KINDS})
    target: str | None = field(default=None, metadata={"help": "The judge model for kind 'llm': endpoint:NAME or local:NAME."})
    rubric: str | None = field(default=None, metadata={"help": "The rubric for kind 'rubric', e.g. reference_match."})
    params: dict = field(default_factory=dict, metadata={"help": "The rubric's parameters."})
    config: dict = field(default_factory=dict, metadata={"help": "JudgeConfig overrides for the LLM judge (aspects, template...)."})
    length_controlled: bool = field(default=False, metadata={"help": "Also report win rates controlled for answer length."})

    def __post_init__(self):
        check_fields(self)
        if self.kind == "llm" and not self.target:
            raise BadInput("target is empty for an LLM judge.", hint="Pick the judge model, e.g. endpoint:embedded.")
        if self.kind == "rubric":
            if not self.rubric:
                raise BadInput("rubric is empty for a rubric judge.", hint="Name a rubric, e.g. reference_match.")
            get_rubric(self.rubric).check_params(self.params, path="params")   # the name and the params, now
        if self.kind == "llm":
            JudgeConfig.from_dict({**self.config, "mode": "pairwise"}, path="config")

    @property
    def voter(self) -> str:
        return self.target if self.kind == "llm" else f"rubric:{self.rubric}"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, path: str = "judge") -> "JudgeSpec | None":
        """The judge settings of a comparison (``judge:``) or of a run's evaluation; empty = no judge."""
        if not data:
            return None
        return load_spec(cls, data, label="the judge settings", path=path)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class JudgeReport:
    votes: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"votes": self.votes, "skipped": self.skipped, "failed": self.failed, "errors": self.errors[:5]}


def pairs_to_judge(db: Database, comparison_id: str, models: list[str], voter: str
                   ) -> tuple[list[tuple[store.PromptRow, store.OutputRow, store.OutputRow]], int]:
    """(prompt, output of model i, output of model j) for every prompt and model pair i < j in the
    comparison's model order that both answered and this voter has not judged; and how many were skipped."""
    by_prompt: dict[str, dict[str, store.OutputRow]] = {}
    for output in store.outputs_of(db, comparison_id):
        by_prompt.setdefault(output.prompt_id, {})[output.model_id] = output
    judged = store.voted_pairs(db, comparison_id, voter)
    todo, skipped = [], 0
    for prompt in store.prompts_of(db, comparison_id):
        answers = by_prompt.get(prompt.id, {})
        for first, second in itertools.combinations(models, 2):
            if first in answers and second in answers:
                if (prompt.id, *sorted([first, second])) in judged:
                    skipped += 1
                else:
                    todo.append((prompt, answers[first], answers[second]))
    return todo, skipped


def _vote(prompt: store.PromptRow, a: store.OutputRow, b: store.OutputRow, winner: str, kind: str, voter: str,
          rationale: str | None, metadata: dict[str, Any]) -> store.VoteRow:
    return store.VoteRow(comparison_id=prompt.comparison_id, prompt_id=prompt.id, model_a=a.model_id,
                         model_b=b.model_id, winner=winner, voter_kind=kind, voter=voter, output_a_id=a.id,
                         output_b_id=b.id, order_swapped=False, rationale=rationale, metadata=metadata)


def judge_with_llm(db: Database, comparison_id: str, models: list[str], spec: JudgeSpec, backend: LLMBackend,
                   progress: Callable[..., None] | None = None) -> JudgeReport:
    judge = LLMJudge(backend, JudgeConfig.from_dict({**spec.config, "mode": "pairwise"}))
    todo, skipped = pairs_to_judge(db, comparison_id, models, spec.voter)
    report = JudgeReport(skipped=skipped)
    progress = progress or (lambda **kw: None)
    progress(stage="judging", done=0, total=len(todo), unit="pairs")
    for start in range(0, len(todo), LLM_CHUNK):
        chunk = todo[start:start + LLM_CHUNK]
        items = [(p.prompt, (a.id, a.text), (b.id, b.text)) for p, a, b in chunk]
        votes = []
        for (prompt, a, b), verdict in zip(chunk, run_sync(judge.ajudge_pairwise(items))):
            if verdict.preferred is None:
                report.failed += 1
                report.errors.append(verdict.error or "no verdict")
                continue
            shown = [r["preferred_shown"] for r in verdict.order_results if r["preferred_shown"]]
            rationale = next((r["rationale"] for r in verdict.order_results if r["rationale"]), None)
            votes.append(_vote(prompt, a, b, verdict.preferred, "llm", spec.voter, rationale, {
                "shown": shown, "swap_agreement": verdict.swap_agreement, "confidence": verdict.confidence,
                "parse_status": verdict.parse_status, "orders": [r["order"] for r in verdict.order_results]}))
        store.write_votes(db, votes, replace=True)
        report.votes += len(votes)
        progress(stage="judging", done=start + len(chunk), total=len(todo), unit="pairs", message=spec.voter)
    return report


def rubric_winner(score_a: float, score_b: float, passed_a: bool | None, passed_b: bool | None) -> str:
    if score_a > score_b:
        return "a"
    if score_b > score_a:
        return "b"
    return "both_bad" if passed_a is False and passed_b is False else "tie"


def judge_with_rubric(db: Database, comparison_id: str, models: list[str], spec: JudgeSpec,
                      progress: Callable[..., None] | None = None) -> JudgeReport:
    rubric = RubricJudge(spec.rubric or "", spec.params)
    todo, skipped = pairs_to_judge(db, comparison_id, models, spec.voter)
    report = JudgeReport(skipped=skipped)
    scores: dict[str, Any] = {}
    votes = []
    for prompt, a, b in todo:
        for out in (a, b):
            if out.id not in scores:
                scores[out.id] = rubric.judge(out.id, prompt.prompt, out.text, prompt.reference)
        ja, jb = scores[a.id], scores[b.id]
        if ja.overall is None or jb.overall is None:
            report.failed += 1
            report.errors.append(ja.error or jb.error or "the rubric could not score an answer")
            continue
        votes.append(_vote(prompt, a, b, rubric_winner(ja.overall, jb.overall, ja.passed, jb.passed), "rubric",
                           spec.voter, f"A: {ja.rationale} | B: {jb.rationale}",
                           {"scores": [ja.overall, jb.overall], "passed": [ja.passed, jb.passed]}))
    store.write_votes(db, votes, replace=True)
    report.votes = len(votes)
    if progress:
        progress(stage="judging", done=len(todo), total=len(todo), unit="pairs", message=spec.voter)
    return report
