"""One comparison run: the missing outputs, reward scores, then the judge; status and report saved.

The run is idempotent and resumable: outputs and judge votes already stored are skipped, so the same
call after a crash, a stop or an endpoint outage only does what is left. Status afterwards:
'ready' (every model answered every prompt), 'partial' (gaps: a model failed to load, an endpoint
went down; the report says which and why), 'stopped', or 'failed' (fewer than two models answered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.compare.judging import JudgeReport, judge_with_llm, judge_with_rubric
from pipelines.compare.outputs import ModelSlot, OutputGenerator, OutputReport
from pipelines.compare.spec import ComparisonSpec
from pipelines.llm.base import LLMBackend
from storage import compare as store
from storage.db import Database
from core.errors import StudioError


@dataclass
class RunResult:
    status: str
    outputs: OutputReport
    judge: JudgeReport | None = None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "outputs": self.outputs.to_dict(),
                "judge": self.judge.to_dict() if self.judge else None, "messages": self.messages}


def _status(db: Database, comparison_id: str, models: list[str], outputs: OutputReport) -> str:
    answered = {o.model_id for o in store.outputs_of(db, comparison_id)}
    if outputs.stopped:
        return "stopped"
    if len(answered & set(models)) < 2:
        return "failed"
    return "ready" if outputs.complete else "partial"


def score_rewards(db: Database, comparison_id: str, model_path: str) -> int:
    """The reward model's score for every answer that has none yet."""
    from pipelines.compare.metrics import RewardScorer

    prompts = {p.id: p.prompt for p in store.prompts_of(db, comparison_id)}
    todo = [o for o in store.outputs_of(db, comparison_id) if o.reward_score is None]
    if not todo:
        return 0
    scores = RewardScorer(model_path).score([(prompts[o.prompt_id], o.text) for o in todo])
    store.set_reward_scores(db, {o.id: s for o, s in zip(todo, scores)})
    return len(todo)


def run_comparison(db: Database, comparison_id: str, *, backend_for: Callable[[str], LLMBackend],
                   identity_for: Callable[[str], dict], reward_model_path: Callable[[str], str] | None = None,
                   progress: Callable[..., None] | None = None, should_stop: Callable[[], bool] | None = None
                   ) -> RunResult:
    row = store.get_comparison(db, comparison_id)
    spec = ComparisonSpec.from_dict(row.spec["spec"])
    models = list(spec.models)
    store.set_status(db, comparison_id, "generating")
    slots = [ModelSlot(t, identity_for(t), spec.context_tokens.get(t)) for t in models]
    outputs = OutputGenerator(db, comparison_id, slots, spec.sampling_params(), backend_for, progress,
                              should_stop).run()
    result = RunResult(_status(db, comparison_id, models, outputs), outputs)
    result.messages += list(outputs.errors.values())
    if outputs.truncated:
        result.messages.append(f"{outputs.truncated} prompts were longer than a model's context and were cut to fit "
                               "(flagged 'truncated' in the side-by-side view).")
    if result.status in ("ready", "partial") and spec.reward_model and reward_model_path:
        try:
            score_rewards(db, comparison_id, reward_model_path(spec.reward_model))
        except StudioError as err:
            result.messages.append(f"Reward scores were skipped: {err}")
    judge = spec.judge_spec()
    if judge and result.status in ("ready", "partial"):
        store.set_status(db, comparison_id, "judging")
        try:
            if judge.kind == "llm":
                backend = backend_for(judge.target)
                try:
                    result.judge = judge_with_llm(db, comparison_id, models, judge, backend, progress)
                finally:
                    if judge.target.startswith("endpoint:"):
                        backend.close()
            else:
                result.judge = judge_with_rubric(db, comparison_id, models, judge, progress)
        except StudioError as err:
            result.messages.append(f"The judge {judge.voter} failed: {err}")
        if result.judge and result.judge.failed:
            result.messages.append(f"The judge gave no readable verdict on {result.judge.failed} pairs.")
    store.set_status(db, comparison_id, result.status)
    store.update_spec(db, comparison_id, {"report": result.to_dict()})
    return result
