"""Response cache and call ledger for LLM backends, both backed by DuckDB and written in batches.

Why: a generation run that stops half-way (crash, Ctrl-C, a 429 storm) must resume without
paying again for the calls it already made, so every answer is stored under a key derived from
(model, messages, sampling params). At 64 concurrent calls, opening the database per call would
be the bottleneck, so rows are buffered and a background thread writes them in batches (on
size, on an interval, and on ``flush``/``close``). Nothing buffered is lost on a normal close or
at interpreter exit; a failed write keeps its rows for the next attempt.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import threading
import time
import weakref
from datetime import datetime
from typing import Any, Callable, Iterable

from pipelines.llm.base import Generation, Messages, SamplingParams
from storage import llm_log
from storage.db import Database
from storage.ids import new_id

log = logging.getLogger(__name__)
CACHE_KEY_VERSION = 1


def cache_key(model: str, messages: Messages, params: SamplingParams) -> str:
    """sha256 over canonical JSON (sorted keys, no whitespace). Vary ``params.seed`` to get
    several distinct candidates for one prompt."""
    canonical = {
        "v": CACHE_KEY_VERSION,
        "model": model,
        "messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages],
        "params": params.to_dict(),
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class BufferedWriter:
    """Collects rows and hands them to ``write`` in batches from one daemon thread."""

    def __init__(self, write: Callable[[list], None], batch_size: int = 64, interval_s: float = 0.5):
        self._write = write
        self.batch_size = batch_size
        self.interval_s = interval_s
        self._rows: list = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        _open_writers.add(self)

    def add(self, row: Any) -> None:
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
            closed = self._closed
            if self._thread is None and not closed:
                self._thread = threading.Thread(target=self._run, name="llm-log-writer", daemon=True)
                self._thread.start()
        if closed:
            self.flush()  # late rows after close are written at once, never dropped
        elif full:
            self._wake.set()

    def pending(self) -> list:
        with self._lock:
            return list(self._rows)

    def flush(self) -> None:
        """Write everything buffered now; on failure the rows stay buffered and the error rises."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                self._write(rows)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows
                raise

    def _run(self) -> None:
        """Flush on wake-up or every interval; exit after a few idle rounds (``add`` restarts it),
        so an instance nobody closes does not pin a thread forever."""
        idle_rounds = 0
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            had_rows = bool(self.pending())
            try:
                self.flush()
            except Exception as exc:  # keep the rows; the next round (or close) tries again
                log.warning("could not write %d buffered LLM log rows yet: %s", len(self.pending()), exc)
            idle_rounds = 0 if had_rows else idle_rounds + 1
            with self._lock:
                if not self._rows and (self._closed or idle_rounds >= 3):
                    self._thread = None
                    return

    def close(self) -> None:
        """Stop the thread and write what is left (raises if that final write fails)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._wake.set()
            thread.join(timeout=30)
        self.flush()
        _open_writers.discard(self)


_open_writers: "weakref.WeakSet[BufferedWriter]" = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    for writer in list(_open_writers):
        try:
            writer.close()
        except Exception as exc:
            log.error("LLM log rows lost at exit: %s", exc)


class ResponseCache:
    """``get``/``put`` Generations by cache key; writes are buffered (see module docstring)."""

    def __init__(self, db: Database, batch_size: int = 64, flush_interval_s: float = 0.5):
        self.db = db
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_lock = threading.Lock()
        self._writer = BufferedWriter(self._write, batch_size, flush_interval_s)
        self.hits = 0
        self.misses = 0

    def _write(self, keys: list[str]) -> None:
        with self._pending_lock:
            entries = [self._pending[k] for k in keys if k in self._pending]
        llm_log.put_cached(self.db, entries)
        with self._pending_lock:
            for key in keys:
                self._pending.pop(key, None)

    @staticmethod
    def _generation(row: dict[str, Any], key: str) -> Generation:
        return Generation(
            text=row["response_text"], model=row["model"], backend="cache",
            prompt_tokens=row.get("prompt_tokens") or 0, completion_tokens=row.get("completion_tokens") or 0,
            finish_reason=row.get("finish_reason"), cached=True, cache_key=key,
        )

    def get(self, key: str) -> Generation | None:
        with self._pending_lock:
            row = self._pending.get(key)
        row = row or llm_log.get_cached(self.db, key)
        self.hits, self.misses = self.hits + bool(row), self.misses + (not row)
        return self._generation(row, key) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        """Hits among ``keys`` with one database query."""
        keys = set(keys)
        with self._pending_lock:
            rows = {k: self._pending[k] for k in keys if k in self._pending}
        rows.update(llm_log.get_cached_many(self.db, keys - rows.keys()))
        self.hits += len(rows)
        self.misses += len(keys) - len(rows)
        return {k: self._generation(row, k) for k, row in rows.items()}

    def put(self, key: str, generation: Generation, request: dict[str, Any]) -> None:
        entry = {
            "cache_key": key, "model": generation.model, "request": request, "response_text": generation.text,
            "finish_reason": generation.finish_reason, "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens, "created_at": datetime.now().astimezone(),
        }
        with self._pending_lock:
            if key in self._pending:
                return
            self._pending[key] = entry
        self._writer.add(key)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CallLedger:
    """One row per call (cached or not, ok or error) in ``llm_calls``, buffered like the cache.
    ``scoped`` gives a view with another job/stage that shares the same buffer."""

    def __init__(self, db: Database, job_id: str | None = None, stage: str | None = None,
                 batch_size: int = 256, flush_interval_s: float = 1.0, _writer: BufferedWriter | None = None):
        self.db = db
        self.job_id = job_id
        self.stage = stage
        self._writer = _writer or BufferedWriter(lambda rows: llm_log.record_calls(db, rows), batch_size,
                                                 flush_interval_s)

    def scoped(self, job_id: str | None = None, stage: str | None = None) -> "CallLedger":
        return CallLedger(self.db, job_id or self.job_id, stage or self.stage, _writer=self._writer)

    def record(self, **row: Any) -> str:
        """Buffer one call; returns its id (for lineage columns such as ``llm_call_id``)."""
        row.setdefault("id", new_id("call"))
        row.setdefault("job_id", self.job_id)
        row.setdefault("stage", self.stage)
        row.setdefault("created_at", datetime.now().astimezone())
        self._writer.add(row)
        return row["id"]

    def pending(self) -> list[dict[str, Any]]:
        return self._writer.pending()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "CallLedger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def monotonic_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - start) * 1000.0
