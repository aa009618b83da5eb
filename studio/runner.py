"""The one job runner: every long piece of work (generation, training, comparison, review, seeds,
model pulls, the demo) runs through :func:`run_job`, in the foreground or as a background job.

It owns what each command used to write for itself: the progress reporter (a terminal bar, plus the
job's row when the process runs as a job), the stop signal (the first Ctrl-C or SIGTERM, which is
how a job is cancelled, asks the work to stop at its next safe point; a second Ctrl-C aborts), the
job's final status and the command's exit code.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from core.progress import ProgressReporter
from studio import jobs

T = TypeVar("T")


class StopSignal:
    """``should_stop`` for long work: true after the first SIGINT/SIGTERM, or when ``also()`` says so
    (a cancel marker, say). Installs its handlers only on the main thread; elsewhere it relies on
    ``also``."""

    def __init__(self, also: Callable[[], bool] | None = None, notice: str | None = None):
        self.requested = False
        self.also = also
        self.notice = notice
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.requested or bool(self.also and self.also())

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.notice:
            print(f"\n{self.notice} (Ctrl-C again to abort now)...", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


@dataclass(frozen=True)
class Outcome:
    """How finished work ends: the job's status (succeeded, failed, cancelled), its message, the exit code."""

    status: str = "succeeded"
    error: str | None = None
    exit_code: int = 0


@dataclass(frozen=True)
class JobResult(Generic[T]):
    value: T
    outcome: Outcome


def run_job(job_id: str | None, work: Callable[[ProgressReporter, StopSignal], T],
            outcome: Callable[[T], Outcome] = lambda _: Outcome(), *, stoppable: bool = False,
            show_bar: bool | None = None, also_stop: Callable[[], bool] | None = None,
            stop_notice: str | None = None) -> JobResult[T]:
    """Run ``work(reporter, should_stop)`` and finish the job by what ``outcome(result)`` says.

    ``stoppable`` work checks ``should_stop`` at safe points, so SIGTERM and the first Ctrl-C only ask
    it to stop; other work keeps the default signal handling (a cancel ends the process at once).
    An exception finishes the job as failed (cancelled for Ctrl-C) with its message, then propagates:
    the CLI prints a StudioError as one line, anything else is a bug with its traceback in the log."""
    reporter = jobs.reporter(job_id, show_bar)
    stop = StopSignal(also_stop, stop_notice)
    with stop if stoppable else _NoSignals():
        try:
            value = work(reporter, stop)
        except BaseException as exc:
            reporter.finish("cancelled" if isinstance(exc, KeyboardInterrupt) else "failed",
                            str(exc) or type(exc).__name__)
            raise
    result = outcome(value)
    reporter.finish(result.status, result.error)
    return JobResult(value, result)
