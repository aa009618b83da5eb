"""The training writer: one background thread per stage that takes everything the studio records about
training (metrics, checkpoint rows, progress events) off the training thread and into DuckDB.

Why a thread: every write opens the shared database file (no process keeps it open while idle), may
wait for another process's lock, and costs milliseconds to seconds. On a GPU a step takes
milliseconds, so any write on the training thread is a stall: on an H200 the blocking writes cost
2.4-2.7 s of a 30-step run. The callbacks only put items on a queue (microseconds); this thread drains
it in batches through the storage layer, every ``interval_s`` (a drain opens the database once for
everything queued since the last one), and at once after a checkpoint is saved or when someone waits
for it (``flush``, ``close``).

The one ordering rule that makes a kill -9 safe: a checkpoint is catalogued only after every metric
queued before it is stored, in the same drain. Resume starts from catalogued checkpoints only
(``stages.resume_point``), so a resumed run never skips a step whose metrics were not stored; steps
after the last catalogued checkpoint are retrained and logged again (the metrics upsert). After the
catalogue row is committed the writer drops a ``CATALOGUED`` marker file into the checkpoint folder,
which lets a process that must not open the database (a test freezing the trainer) see it. The
writer also rotates checkpoints (the newest ``KEEP_CHECKPOINTS`` catalogued ones stay): were the trainer
to delete old folders itself, it could delete the last catalogued one while the newer ones still wait
for their drain, and resume would start from scratch.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from storage import training as store
from storage.db import Database

CATALOGUED = "studio-catalogued"
# Seconds between drains: the live curves and the progress lag by at most this. A drain opens the database
# file (~20-40 ms of CPU, a part of it holding the GIL), so on a CPU-bound loop it costs under 1% at 5 s.
INTERVAL_S = 5.0
KEEP_CHECKPOINTS = 2
_STOP = object()


def memory_usage() -> dict[str, float]:
    """This process's resident memory and, on a GPU, the CUDA memory allocated (MB)."""
    import psutil
    import torch

    out = {"rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)}
    if torch.cuda.is_available():
        out["cuda_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class TrainingWriter:
    """``metrics``/``checkpoint``/``progress`` enqueue and return at once; ``close`` drains and stops.

    A write that fails (the database unreachable past its busy timeout) is kept in ``error``: nothing
    later is written (so no checkpoint is catalogued past lost metrics), and the training thread raises
    it at its next ``check`` (a step end), failing the run with the storage error."""

    def __init__(self, db: Database, run_id: str, reporter: Any = None, interval_s: float = INTERVAL_S):
        self.db, self.run_id, self.reporter, self.interval_s = db, run_id, reporter, interval_s
        self.error: BaseException | None = None
        self.written = {"metrics": 0, "checkpoints": 0, "progress": 0, "drains": 0, "busy_s": 0.0}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"training-writer-{run_id}", daemon=True)

    # -- the training thread's side: never blocks ----------------------------------------------------
    def start(self) -> "TrainingWriter":
        self._thread.start()
        return self

    def metrics(self, step: int, epoch: float | None, values: dict[str, Any]) -> None:
        self._queue.put(("metrics", (step, epoch, values)))

    def checkpoint(self, step: int, path: str, metrics: dict[str, float]) -> None:
        """Queue a checkpoint row and wake the writer: a checkpoint on disk is resumable once catalogued."""
        self._queue.put(("checkpoint", (step, path, metrics)))
        self._wake.set()

    def progress(self, event: dict[str, Any]) -> None:
        self._queue.put(("progress", event))

    def check(self) -> None:
        """Raise the writer's error on the training thread (an attribute read when all is well)."""
        if self.error is not None:
            raise self.error

    # -- waiting: only at the end of a stage, or in tests -----------------------------------------------
    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything queued so far is written; raise the writer's error if a write failed."""
        done = threading.Event()
        self._queue.put(("barrier", done))
        self._wake.set()
        if not done.wait(timeout_s):
            raise TimeoutError(f"the training writer did not drain in {timeout_s} s")
        self.check()

    def close(self) -> BaseException | None:
        """Write what is queued, stop the thread, and return the error of a failed write (or None)."""
        if self._thread.is_alive():
            self._queue.put(("stop", _STOP))
            self._wake.set()
            self._thread.join()
        return self.error

    # -- the writer thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        """Sleep ``interval_s`` (or until someone waits), then write everything queued. The thread never
        blocks on the queue itself, so a ``put`` on the training thread never wakes it."""
        while True:
            self._wake.wait(max(self.interval_s, 0.01))
            self._wake.clear()
            items = self._take_all()
            if items:
                self._write(items)
            if any(kind == "stop" for kind, _ in items):
                return

    def _take_all(self) -> list[tuple[str, Any]]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write(self, items: list[tuple[str, Any]]) -> None:
        if self.error is None:
            started = time.perf_counter()
            try:
                self._store(items)
            except BaseException as exc:  # kept for the training thread; later items are dropped
                self.error = exc
            self.written["busy_s"] += time.perf_counter() - started
        for kind, payload in items:
            if kind == "barrier":
                payload.set()

    def _store(self, items: list[tuple[str, Any]]) -> None:
        """Metrics first (one statement), then checkpoint rows, then progress: the order that keeps a
        catalogued checkpoint's metrics durable."""
        events = [payload for kind, payload in items if kind == "metrics"]
        if events:
            store.insert_metrics_batch(self.db, self.run_id, events)
            self.written["metrics"] += len(events)
        checkpoints = [payload for kind, payload in items if kind == "checkpoint"]
        for step, path, metrics in checkpoints:
            if Path(path).is_dir():
                store.insert_checkpoint(self.db, self.run_id, step, path, metrics)
                _mark_catalogued(Path(path))
                self.written["checkpoints"] += 1
        if checkpoints:
            self._rotate()
        progress = [payload for kind, payload in items if kind == "progress"]
        if progress and self.reporter is not None:
            self._report(progress)
        self.written["drains"] += 1

    def _report(self, events: list[dict[str, Any]]) -> None:
        """The stage's first event (where it starts: step 0, or the step it resumed at) and each drain's
        newest one go to the reporter; the ones between are already out of date."""
        shown = events[-1:] if self.written["progress"] else [events[0], *events[1:][-1:]]
        shown[-1] = {**shown[-1], **memory_usage()}
        for event in shown:
            self.reporter.update(**event)
        self.written["progress"] += len(shown)

    def _rotate(self) -> None:
        """Delete the folders of catalogued checkpoints older than the newest ``KEEP_CHECKPOINTS`` (the trainer
        deletes none). Only catalogued ones: an uncatalogued folder may be newer than what resume knows."""
        on_disk = [Path(c.path) for c in store.list_checkpoints(self.db, self.run_id) if Path(c.path).is_dir()]
        for folder in on_disk[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(folder, ignore_errors=True)


def _mark_catalogued(folder: Path) -> None:
    try:
        (folder / CATALOGUED).touch()
    except FileNotFoundError:  # deleted meanwhile (by hand): resume skips a missing folder
        pass
