"""``run_generation``: seeds -> instructions -> preprocess -> responses -> preprocess -> judge -> pairs.

One implementation: the CLI (``python -m studio generate``) and the Generate page (through a
background job running that same command) both call it. A run is identified by its id; running
again with the same id resumes it: each stage skips the rows that exist (deterministic ids) and the
response cache answers the calls a killed run already paid for, so kill -9 at any moment followed
by a re-run leaves no duplicate and no half-written batch.

How a run ends (``generation_runs.status``):
* 'succeeded' - every stage finished without a failed call;
* 'partial'   - it went through every stage, but some calls failed (counted in ``failed``);
* 'failed'    - a stage gave up (every call of a batch failed: the endpoint is down) or an error
                stopped it; the message says what and how to resume;
* 'stopped'   - ``should_stop()`` returned true between batches (Stop button, Ctrl-C, SIGTERM).
Every one of them is resumable with the same run id.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable

from pipelines.generate.config import GenerationConfig
from pipelines.generate.context import RunContext
from pipelines.generate.labels import judge_stage, pairs_stage, pairwise_stage
from pipelines.generate.stages import instructions_stage, preprocess_stage, responses_stage
from pipelines.llm.base import run_sync
from storage import generation as store
from storage import generation_queries as queries
from storage import seeds as seed_store
from storage.db import Database, get_database
from storage.ids import new_id
from studio.errors import BadInput, NotFound, StudioError

FINAL = ("succeeded", "partial", "failed", "stopped", "interrupted")
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


def check_targets(config: GenerationConfig) -> None:
    """Every endpoint and local model the config names exists (before anything starts)."""
    from studio.services.models import get_endpoint, get_model

    for target in config.targets():
        kind, _, name = target.partition(":")
        (get_endpoint if kind == "endpoint" else get_model)(name)


def run_generation(config: GenerationConfig, run_id: str | None = None, job_id: str | None = None,
                   progress: Any = None, should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Run (or resume, with the id of an existing run) a whole generation; see the module docstring."""
    db = get_database()
    run_id = run_id or new_id("gen")
    check_targets(config)
    run = _claim_run(db, config, run_id, job_id)
    ctx = RunContext(db=db, run_id=run_id, config=config, progress=progress, should_stop=should_stop)
    started = datetime.now().astimezone().isoformat()
    try:
        seeds = _load_seeds(ctx, run)
        run_sync(_pipeline(ctx, seeds))
    except StudioError as exc:
        _finish(ctx, "failed", f"{exc} {resume_hint(run_id)}", started)
        raise
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        _finish(ctx, status, f"{type(exc).__name__}: {exc}. {resume_hint(run_id)}", started)
        raise
    status, message = _outcome(ctx)
    return _finish(ctx, status, message, started)


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


def _outcome(ctx: RunContext) -> tuple[str, str]:
    hint = resume_hint(ctx.run_id)
    if ctx.aborted:
        return "failed", f"Stopped early: {ctx.aborted.rstrip('.')}. Nothing is lost. Fix the endpoint, then resume. {hint}"
    if ctx.stopped:
        return "stopped", f"Stopped on request. {hint}"
    failed = sum(ctx.failed.values())
    if failed:
        parts = ", ".join(f"{n} {stage}" for stage, n in sorted(ctx.failed.items()))
        return "partial", f"{failed} calls failed ({parts}); everything else is stored. {hint}"
    return "succeeded", "Finished."


# -- the run row -------------------------------------------------------------------------------------
def process_alive(process: dict | None) -> bool:
    """Whether the runner process a run's report names (pid on this host) still lives."""
    if not process or process.get("host") != socket.gethostname() or not process.get("pid"):
        return False
    from studio.jobs import _alive

    return _alive(int(process["pid"]))


def _claim_run(db: Database, config: GenerationConfig, run_id: str, job_id: str | None) -> dict:
    wanted = config.to_dict()
    created = store.create_run(db, run_id, config.name, wanted, status="running", job_id=job_id)
    run = store.get_run(db, run_id)
    if not created:
        if json.dumps(run["config"], sort_keys=True) != json.dumps(wanted, sort_keys=True):
            raise BadInput(f"The run {run_id} was started with a different config.",
                           hint=f"Use a new run id for the new config, or {resume_hint(run_id)[0].lower()}"
                                f"{resume_hint(run_id)[1:]}")
        process = run["report"].get("process")
        if process_alive(process) and process.get("pid") != os.getpid():
            raise BadInput(f"The run {run_id} is already running (process {process['pid']}).",
                           hint="Wait for it to finish, or stop it first: `python -m studio generations stop "
                                f"{run_id}`.")
        store.set_run_status(db, run_id, "running", finished=False)
        if job_id:
            store.set_run_job(db, run_id, job_id)
    store.update_report(db, run_id, {"process": {"pid": os.getpid(), "host": socket.gethostname(),
                                                 "job_id": job_id}})
    return store.get_run(db, run_id)


def _finish(ctx: RunContext, status: str, message: str, started: str) -> RunSummary:
    report = store.get_run(ctx.db, ctx.run_id)["report"]
    attempts = (report.get("attempts") or [])[-19:] + [{
        "started_at": started, "finished_at": datetime.now().astimezone().isoformat(), "status": status,
        "failed": dict(ctx.failed), "pid": os.getpid()}]
    store.update_report(ctx.db, ctx.run_id, {"message": message, "failed": dict(ctx.failed), "errors": ctx.errors,
                                             "attempts": attempts, "process": None})
    store.set_run_status(ctx.db, ctx.run_id, status, finished=True)
    if ctx.progress is not None:
        ctx.progress.update(stage="done", message=message, run_id=ctx.run_id, status=status)
    return summarize(ctx.db, ctx.run_id)


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
def _resolve_seed_set(ctx: RunContext, run: dict) -> str:
    """The run's seed set: fixed at the first attempt, so a resume sees the very same seeds."""
    if run.get("seed_set_id"):
        return run["seed_set_id"]
    seeds, name = ctx.config.seeds, f"{ctx.config.name} ({ctx.run_id})"
    if seeds.seed_set:
        found = seed_store.get_seed_set(ctx.db, seeds.seed_set) or seed_store.find_seed_set(ctx.db, seeds.seed_set)
        if found is None:
            raise NotFound(f"There is no seed set {seeds.seed_set!r}.",
                           hint="`python -m studio seeds list` shows the seed sets (by id and name).")
        seed_set_id = found["id"]
    elif seeds.texts:
        from studio.services.seeds import add_typed_seeds

        seed_set_id = add_typed_seeds(list(seeds.texts), name=name).seed_set_id
    else:
        from pipelines.generate.seeds_io import ColumnMapping
        from studio.services.seeds import import_seeds

        mapping = ColumnMapping(seeds.mapping.text, seeds.mapping.reference, tuple(seeds.mapping.metadata))
        seed_set_id = import_seeds(seeds.file, mapping, name=name).seed_set_id
    if not seed_set_id:
        raise BadInput("The seeds gave no usable seed.", hint="Check the seed texts or the file's text column.")
    store.set_run_seed_set(ctx.db, ctx.run_id, seed_set_id)
    return seed_set_id


def _load_seeds(ctx: RunContext, run: dict) -> list[dict]:
    seed_set_id = _resolve_seed_set(ctx, run)
    limit = ctx.config.seeds.limit
    out: list[dict] = []
    while limit is None or len(out) < limit:
        page = seed_store.list_seeds(ctx.db, seed_set_id, SEED_PAGE, len(out))
        out += page
        if len(page) < SEED_PAGE:
            break
    out = out[:limit] if limit else out
    if not out:
        raise BadInput(f"The seed set {seed_set_id} has no seeds.", hint="Import or type some seeds first.")
    return out
