"""One progress format for every long piece of work, shown the same way everywhere.

An event is a dict: ``stage``, ``done``, ``total``, ``unit``, ``message``, ``fraction``, ``eta_s``,
``rate`` and any extra counters (``tokens``, ``cost_usd``, losses). ``ProgressReporter`` sends it to
a tqdm bar on the terminal and, when given a sink, to that sink (at most once a second, plus the final
state). The app layer's sink writes the job's row (``studio.jobs.reporter``); core knows no storage.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from tqdm import tqdm

DB_INTERVAL_S = 1.0


class ProgressSink(Protocol):
    """Where a reporter's events go besides the terminal (a job's row, for one)."""

    job_id: str | None

    def started(self) -> None: ...

    def update(self, event: dict[str, Any]) -> None: ...

    def finished(self, status: str, error: str | None) -> None: ...


class ProgressReporter:
    def __init__(self, sink: ProgressSink | None = None, show_bar: bool | None = None):
        self.sink = sink
        self.job_id = sink.job_id if sink is not None else None
        self.show_bar = sys.stderr.isatty() if show_bar is None else show_bar
        self.event: dict[str, Any] = {}
        self._bar: tqdm | None = None
        self._stage_started = time.monotonic()
        self._last_db = 0.0
        self._printed: str | None = None
        if sink is not None:
            sink.started()

    def update(self, stage: str | None = None, done: float | None = None, total: float | None = None,
               message: str | None = None, unit: str | None = None, **extra: Any) -> None:
        new_stage = stage is not None and stage != self.event.get("stage")
        if new_stage:
            self._new_stage(stage, total, unit)
        for key, value in (("done", done), ("total", total), ("message", message), ("unit", unit)):
            if value is not None:
                self.event[key] = value
        self.event.update(extra)
        self._derive()
        self._show()
        # a new stage is written at once: a page must never show the last stage's "8/8" while a
        # slow next stage (a judge, say) works for minutes
        if self.sink is not None and (new_stage or time.monotonic() - self._last_db >= DB_INTERVAL_S):
            self._flush()

    def __call__(self, message: str, fraction: float | None = None) -> None:
        """The simple (message, fraction) callback form used by pulls and checks."""
        if fraction is None:
            self.update(message=message)
        else:
            self.update(stage=message, done=round(fraction * 100, 1), total=100, unit="%", message=message)

    def _new_stage(self, stage: str, total: float | None, unit: str | None) -> None:
        self.event = {"stage": stage, "done": 0, "stage_started_at": round(time.time(), 1)}
        self._stage_started = time.monotonic()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.show_bar:
            self._bar = tqdm(total=total, desc=stage, unit=unit or "it", file=sys.stderr, dynamic_ncols=True)

    def _derive(self) -> None:
        done, total = self.event.get("done"), self.event.get("total")
        elapsed = time.monotonic() - self._stage_started
        if done and elapsed > 0:
            self.event["rate"] = round(done / elapsed, 3)
        if done is not None and total:
            self.event["fraction"] = round(min(1.0, done / total), 4)
            rate = self.event.get("rate")
            self.event["eta_s"] = round((total - done) / rate, 1) if rate else None

    def _show(self) -> None:
        if self._bar is not None:
            if self.event.get("total") and self._bar.total != self.event["total"]:
                self._bar.total = self.event["total"]
            self._bar.n = self.event.get("done") or 0
            if self.event.get("message"):
                self._bar.set_postfix_str(str(self.event["message"])[:60], refresh=False)
            self._bar.refresh()
        elif self.sink is None and self.event.get("message") and self.event["message"] != self._printed:
            self._printed = self.event["message"]  # no terminal: one line per new message, not per update
            print(self._printed, file=sys.stderr)

    def _flush(self) -> None:
        self._last_db = time.monotonic()
        self.sink.update(self.event)

    def finish(self, status: str = "succeeded", error: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.sink is not None:
            self._flush()
            self.sink.finished(status, error)
