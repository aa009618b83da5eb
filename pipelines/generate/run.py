"""The generation pipeline: seeds -> instructions -> preprocess -> responses -> preprocess -> judge -> pairs.

The app's service (``studio.services.generate``) owns a run's lifecycle: it claims the run, resolves
its seeds and targets, calls :func:`run_stages` here with a backend opener and finishes the run's row.
Running again with the same id resumes: each stage skips the rows that exist (deterministic ids) and
the response cache answers the calls a killed run already paid for, so kill -9 at any moment followed
by a re-run leaves no duplicate and no half-written batch.

How a run ends (``generation_runs.status``, from :func:`outcome`):
* 'succeeded' - every stage finished without a failed call;
* 'warnings'  - it went through every stage without a failed call, but produced little or nothing of
                use (no pairs, or most judge replies unreadable): "succeeded with warnings", with the
                reason and what to change; never a bare success;
* 'partial'   - it went through every stage, but some calls failed (counted in ``failed``);
* 'failed'    - a stage gave up (every call of a batch failed: the endpoint is down) or an error
                stopped it; the message says what and how to resume;
* 'stopped'   - ``should_stop()`` returned true between batches (Stop button, Ctrl-C, SIGTERM).
Every one of them is resumable with the same run id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core.errors import BadInput, NotFound
from pipelines.generate.config import GenerationConfig
from pipelines.generate.context import RunContext
from pipelines.generate.labels import judge_stage, pairs_stage, pairwise_stage
from pipelines.generate.stages import instructions_stage, preprocess_stage, responses_stage
from pipelines.llm.base import run_sync
from storage import generation as store
from storage import generation_queries as queries
from storage import seeds as seed_store
from storage.db import Database

FINAL = ("succeeded", "warnings", "partial", "failed", "stopped", "interrupted")
UNREADABLE_SHARE = 0.5   # more unreadable judge replies than this share is a warning
SEED_PAGE = 1000


@dataclass
class RunSummary:
    """What a run produced and where it stands (the CLI prints it; the page lists it)."""

    run_id: str
    name: str | None
    status: str
    job_id: str | None = None
    seed_set_id: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    cost_usd: float = 0.0
    message: str | None = None
    errors: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def resume_hint(run_id: str) -> str:
    return f"Resume it with `python -m studio generations resume {run_id}` (or Resume on the Generate page)."


def run_stages(ctx: RunContext, seeds: list[dict]) -> RunContext:
    """Every stage of the run in order, stopping between batches when ``ctx.halted()``."""
    run_sync(_pipeline(ctx, seeds))
    return ctx


async def _pipeline(ctx: RunContext, seeds: list[dict]) -> None:
    await instructions_stage(ctx, seeds)
    if ctx.halted():
        return
    preprocess_stage(ctx, "instructions")
    await responses_stage(ctx)
    if ctx.halted():
        return
    preprocess_stage(ctx, "responses")
    await judge_stage(ctx)
    if ctx.halted():
        return
    if ctx.config.judge.kind == "llm" and ctx.config.judge.mode == "pairwise":
        await pairwise_stage(ctx)
        if ctx.halted():
            return
    pairs_stage(ctx)


def outcome(ctx: RunContext) -> tuple[str, str]:
    hint = resume_hint(ctx.run_id)
    if ctx.aborted:
        return "failed", f"Stopped early: {ctx.aborted.rstrip('.')}. Nothing is lost. Fix the endpoint, then resume. {hint}"
    if ctx.stopped:
        return "stopped", f"Stopped on request. {hint}"
    counts = queries.run_counts(ctx.db, ctx.run_id).get(ctx.run_id, {})
    warnings = " ".join(quality_warnings(ctx.config, counts))
    failed = sum(ctx.failed.values())
    if failed:
        parts = ", ".join(f"{n} {stage}" for stage, n in sorted(ctx.failed.items()))
        return "partial", f"{failed} calls failed ({parts}); everything else is stored. {hint} {warnings}".strip()
    if warnings:
        return "warnings", warnings
    return "succeeded", (f"Finished: {counts.get('preference_pairs', 0):,} preference pairs and "
                         f"{counts.get('sft_pairs', 0):,} SFT pairs.")


def quality_warnings(config: GenerationConfig, counts: dict[str, Any]) -> list[str]:
    """Why a finished run produced little or nothing, each with what to change."""
    out = []
    judged, unreadable = int(counts.get("judgments") or 0), int(counts.get("judgments_failed") or 0)
    judge = config.judge
    who = f"rubric {judge.rubric.name}" if judge.kind == "rubric" else judge.target
    if judged and unreadable / judged > UNREADABLE_SHARE:
        out.append(f"{unreadable} of {judged} judge replies from {who} could not be read, so those candidates "
                   "were not labelled. Use a programmatic rubric judge, or point the judge at a bigger endpoint "
                   "(Models page), or set reply_format: compact for a small judge.")
    per_instruction = sum(g.candidates for g in config.responses.generators)
    preference, sft = int(counts.get("preference_pairs") or 0), int(counts.get("sft_pairs") or 0)
    if not int(counts.get("instructions_kept") or 0):
        out.append("Preprocessing removed every instruction (see the run's preprocessing report). "
                   "Loosen the preprocessing settings or use other seeds.")
    elif not preference and per_instruction >= 2 and not out:
        out.append(f"No preference pairs: the judge ({who}) gave the candidates of every instruction the same "
                   "score, or too few candidates were kept. Try another judge or rubric, more candidates, or a "
                   "higher temperature for more varied answers.")
    elif not preference and not sft and not out:
        out.append("No pairs: with one candidate per instruction only SFT pairs can come out, and no candidate "
                   "scored high enough (min_sft_score). Ask for 2 or more candidates, or lower min_sft_score.")
    return out


# -- the run's summary ------------------------------------------------------------------------------
def summarize(db: Database, run_id: str, run: dict | None = None) -> RunSummary:
    run = run or store.get_run(db, run_id)
    if run is None:
        raise NotFound(f"There is no generation run {run_id!r}.", hint="`python -m studio generations list` lists them.")
    counts = queries.run_counts(db, run_id).get(run_id, {})
    return summary_from(run, counts)


def summary_from(run: dict, counts: dict) -> RunSummary:
    report = run.get("report") or {}
    return RunSummary(
        run_id=run["id"], name=run.get("name"), status=run["status"], job_id=run.get("job_id"),
        seed_set_id=run.get("seed_set_id"), counts={k: v for k, v in counts.items() if k not in ("tokens", "cost_usd")},
        failed=report.get("failed") or {}, tokens=int(counts.get("tokens") or 0),
        cost_usd=float(counts.get("cost_usd") or 0.0), message=report.get("message"), errors=report.get("errors") or [],
        created_at=run.get("created_at"), finished_at=run.get("finished_at"))


# -- seeds -----------------------------------------------------------------------------------------------
def load_seeds(db: Database, seed_set_id: str, limit: int | None) -> list[dict]:
    """The first ``limit`` seeds of a seed set (all of them when None), in their stored order."""
    out: list[dict] = []
    while limit is None or len(out) < limit:
        page = seed_store.list_seeds(db, seed_set_id, SEED_PAGE, len(out))
        out += page
        if len(page) < SEED_PAGE:
            break
    out = out[:limit] if limit else out
    if not out:
        raise BadInput(f"The seed set {seed_set_id} has no seeds.", hint="Import or type some seeds first.")
    return out
