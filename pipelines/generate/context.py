"""What every stage of a generation run shares: the database, the config, backends, progress, stop and
failure bookkeeping, and the batch driver.

Why a batch driver: the backend's concurrency only pays off when many calls are in flight, and a
run must survive kill -9. So work goes in batches through ``agenerate_batch``; each finished batch
is written in ONE transaction (after the backend's cache and ledger rows, so a row never exists
without the cached call that made it); and the next batch is already in flight while one is being
written, so the endpoint does not idle at batch boundaries. ``should_stop`` is checked between
batches. A batch whose every call failed means the endpoint is down: the stage gives up (the
items are counted as failed, nothing is written for them) and a resume retries exactly those.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from pipelines.generate.config import GenerationConfig
from pipelines.llm.base import Generation, LLMBackend
from pipelines.llm.cache import CallLedger
from storage.db import Database
from core.errors import BackendError

log = logging.getLogger(__name__)
IN_FLIGHT_BATCHES = 3   # batches in flight: keeps the endpoint busy while one batch is written
LIVE_EVERY_S = 0.5      # how often a finished call inside a batch updates the progress line
MAX_ERRORS_KEPT = 10


@dataclass
class RunContext:
    db: Database
    run_id: str
    config: GenerationConfig
    open_backend: Callable[..., LLMBackend] | None = None  # pipelines.llm.targets.open_backend, handed in
    progress: Any = None                      # core.progress.ProgressReporter or None
    should_stop: Callable[[], bool] | None = None
    failed: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False
    aborted: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    answered: int = 0                         # calls of the current stage answered so far (live progress)
    _last_live: float = 0.0

    # -- control ------------------------------------------------------------------------------
    def halted(self) -> bool:
        """True once the user asked to stop or a stage gave up; checked between batches."""
        if not self.stopped and self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped or self.aborted is not None

    def report(self, stage: str, done: int, total: int, unit: str, message: str | None = None) -> None:
        if self.progress is not None:
            self.progress.update(stage=stage, done=done, total=total, unit=unit, message=message,
                                 tokens=self.tokens, cost_usd=round(self.cost_usd, 6), run_id=self.run_id,
                                 failed=sum(self.failed.values()), answered=self.answered)

    def call_answered(self, _result: Any) -> None:
        """One call of a batch finished (before the batch is written): the live count moves, so a slow
        batch (a small judge, say) shows work going on rather than a frozen line."""
        self.answered += 1
        now = time.monotonic()
        if self.progress is not None and now - self._last_live >= LIVE_EVERY_S:
            self._last_live = now
            self.progress.update(answered=self.answered)

    def count(self, results: Sequence[Any]) -> None:
        """Tokens and cost of fresh (not cached) generations, for the progress line."""
        for gen in results:
            if isinstance(gen, Generation) and not gen.cached:
                self.tokens += (gen.prompt_tokens or 0) + (gen.completion_tokens or 0)
                self.cost_usd += gen.cost_usd or 0.0

    def fail(self, stage: str, error: BackendError | str, n: int = 1) -> None:
        self.failed[stage] += n
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{stage}: {error}")

    # -- backends --------------------------------------------------------------------------------
    @asynccontextmanager
    async def backend(self, target: str, stage: str) -> AsyncIterator["StageBackend"]:
        """A backend for one stage; its ledger rows carry job_id = the run id and this stage, and
        it is closed at the end so buffered cache and ledger rows are written."""
        handle = StageBackend(_open_backend(self, target, stage), self, stage, target)
        self.answered = 0
        handle.backend.on_result = self.call_answered
        try:
            yield handle
        finally:
            handle.backend.on_result = None
            await handle.aclose()


def _open_backend(ctx: RunContext, target: str, stage: str) -> LLMBackend:
    """The stage's backend, from the opener the app handed in; an endpoint's ledger rows carry the run
    id and the stage, and its concurrency is the run's when set."""
    if ctx.open_backend is None:
        raise TypeError("RunContext.open_backend is not set: pass pipelines.llm.targets.open_backend.")
    return ctx.open_backend(target, ctx.db, job_id=ctx.run_id, stage=stage, concurrency=ctx.config.concurrency)


class StageBackend:
    """A backend plus, for backends without their own ledger (local transformers), one kept here."""

    def __init__(self, backend: LLMBackend, ctx: RunContext, stage: str, target: str):
        self.backend, self.ctx, self.stage, self.target = backend, ctx, stage, target
        self.own_ledger = getattr(backend, "ledger", None) is None
        self.ledger = CallLedger(ctx.db, job_id=ctx.run_id, stage=stage) if self.own_ledger else None

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def kind(self) -> str:
        return self.backend.backend

    @property
    def endpoint_id(self) -> str | None:
        return getattr(self.backend, "endpoint_id", None)

    async def generate(self, batch: list, params) -> list[Generation | BackendError]:
        results = await self.backend.agenerate_batch(batch, params)
        if self.ledger is not None:
            for gen in results:
                self._record(gen)
        self.ctx.count(results)
        return results

    agenerate_batch = generate  # so an LLMJudge can use it as its backend

    def _record(self, gen: Generation | BackendError) -> None:
        ok = isinstance(gen, Generation)
        call_id = self.ledger.record(
            backend=self.kind, endpoint_id=None, model=self.model, cache_key=None, cached=False,
            prompt_tokens=gen.prompt_tokens if ok else None, completion_tokens=gen.completion_tokens if ok else None,
            latency_ms=gen.latency_s * 1000 if ok else None, cost_usd=gen.cost_usd if ok else 0.0,
            status="ok" if ok else "error", error=None if ok else str(gen))
        if ok:
            gen.call_id = call_id

    def flush(self) -> None:
        """Write buffered cache and ledger rows (before the rows that refer to them)."""
        if self.ledger is not None:
            self.ledger.flush()
        flush = getattr(self.backend, "flush", None)
        if flush is not None:
            flush()

    async def aclose(self) -> None:
        aclose = getattr(self.backend, "aclose", None)
        if aclose is not None:
            await aclose()
        if self.ledger is not None:
            self.ledger.close()
        if self.target.startswith("endpoint:"):  # local backends are shared per process (pipelines.llm.targets)
            self.backend.close()


async def drive(ctx: RunContext, stage: str, jobs: Sequence[Any], call: Callable[[Any], Awaitable[Any]],
                write: Callable[[Any, Any], int], total: int, unit: str) -> int:
    """Run ``call(job)`` for each job with up to IN_FLIGHT_BATCHES in flight; ``write(job, result)``
    (in a worker thread) persists one job's results in one transaction and returns items done."""
    done = 0
    ctx.report(stage, done, total, unit)
    pending: list[tuple[Any, asyncio.Task]] = []

    async def settle() -> None:
        nonlocal done
        job, task = pending.pop(0)
        result = await task
        done += await asyncio.to_thread(write, job, result)
        ctx.report(stage, done, total, unit)

    try:
        for job in jobs:
            if ctx.halted():
                break
            pending.append((job, asyncio.ensure_future(call(job))))
            if len(pending) >= IN_FLIGHT_BATCHES:
                await settle()
        while pending:
            await settle()
    finally:
        for _, task in pending:  # an error while settling: do not leave calls running
            task.cancel()
    return done


def give_up_if_all_failed(ctx: RunContext, stage: str, results: Sequence[Any], target: str) -> None:
    """Every call of a batch failed: the endpoint is down or refusing; stop the run (resumable)."""
    errors = [r for r in results if isinstance(r, BackendError)]
    if results and len(errors) == len(results) and ctx.aborted is None:
        ctx.aborted = (f"{target} failed every call of a {stage} batch ({len(errors)} of {len(results)}): "
                       f"{errors[0]}")


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
