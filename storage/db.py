"""The one place that opens the DuckDB file.

DuckDB lets one process hold a database file at a time. The studio runs several processes at
once (the Streamlit server with many sessions, background jobs, training processes, the CLI), so
no process keeps the file open while it is idle:

* A process shares one connection among its threads (each unit of work gets its own cursor), so a
  page render or a batch of writes pays the 30-50 ms open once.
* When the last user in the process finishes, the connection lingers for ``LINGER_S`` (to absorb
  bursts) and is then closed, which releases the file lock for the other processes.
* A process that finds the file locked retries with jittered backoff (at most 50 ms apart) until
  ``busy_timeout`` and only then raises ``DatabaseBusy``, naming the process that holds it. While it
  waits it leaves its PID in ``<db>.waiting``.
* Turns are fair: a process that has held the file for ``MAX_HOLD_S`` and sees another process
  waiting closes at its next idle moment (no linger) and stays away for ``YIELD_S``, so a busy
  writer cannot starve the app or the CLI.

Every unit of work is ``with db.session() as cur:`` (a transaction with ``transaction=True``).
Long writers (bulk ingest, generation) should write in batches so others get their turn.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from core.errors import DatabaseBusy, StorageError

log = logging.getLogger(__name__)

LINGER_S = 0.05        # keep the file this long after the last unit of work (bursts share one open)
MAX_HOLD_S = 0.5       # after holding this long, hand the file over when someone waits
YIELD_S = 0.15         # how long a process that handed over stays away
MAX_BACKOFF_S = 0.05   # waiters poll at least this often, so they catch a hand-over
WAITER_FRESH_S = 1.0   # a .waiting note older than this is stale
_instances: "weakref.WeakSet[Database]" = weakref.WeakSet()
_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_HOLDER = re.compile(r"held in (?P<exe>\S+) \(PID (?P<pid>\d+)\)")


def _is_lock_error(exc: Exception) -> bool:
    return isinstance(exc, duckdb.IOException) and any(m in str(exc) for m in _LOCK_MARKERS)


class Database:
    """A DuckDB file shared by threads of this process and, in turns, by other processes."""

    def __init__(self, path: Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._mutex = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._generation = 0
        self._migrated = False
        self._last_release = 0.0
        self._opened_at = 0.0
        self._away_until = 0.0
        self._wait_note = self.path.with_name(self.path.name + ".waiting")
        self.opens = 0  # how many times this process opened the file (each costs 30-50 ms)
        self.lock_waits = 0  # how many times this process had to wait for another one
        _instances.add(self)

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        away = self._away_until - time.monotonic()
        if away > 0:  # we just handed the file over: let the waiter have its turn
            time.sleep(away)
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise _storage_error(self.path, exc) from None
                self.lock_waits += 1
                self._note_waiting()
                if time.monotonic() >= deadline:
                    holder = _HOLDER.search(str(exc))
                    who = f" by PID {holder['pid']}" if holder else ""
                    raise DatabaseBusy(
                        f"The database {self.path} stayed locked{who} for {self.busy_timeout_s:.0f} s.",
                        hint="Wait for that process to finish, or stop it; raise STUDIO_DB_BUSY_TIMEOUT to wait longer.",
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _note_waiting(self) -> None:
        try:
            self._wait_note.write_text(str(os.getpid()))
        except OSError:  # a read-only folder: turns are still taken, only less fairly
            pass

    def _others_waiting(self) -> bool:
        try:
            fresh = time.time() - self._wait_note.stat().st_mtime < WAITER_FRESH_S
            return fresh and self._wait_note.read_text().strip() != str(os.getpid())
        except (OSError, ValueError):
            return False

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        with self._mutex:
            if self._conn is None:
                self._conn = self._open()
                self._opened_at = time.monotonic()
                self.opens += 1
                self._generation += 1
            self._users += 1
            conn = self._conn
        if not self._migrated:
            self._migrate_once(conn)
        return conn

    def _release(self) -> None:
        with self._mutex:
            self._users -= 1
            self._last_release = time.monotonic()
            if self._users > 0:
                return
            generation = self._generation
            if time.monotonic() - self._opened_at > MAX_HOLD_S and self._others_waiting():
                self._conn.close()
                self._conn = None
                self._generation += 1
                self._away_until = time.monotonic() + YIELD_S
                return
        if LINGER_S <= 0:
            self._close_if_idle(generation)
        else:
            self._schedule_close(generation, LINGER_S)

    def _schedule_close(self, generation: int, delay: float) -> None:
        timer = threading.Timer(delay, self._close_if_idle, args=(generation,))
        timer.daemon = True
        timer.start()

    def _close_if_idle(self, generation: int) -> None:
        """Close once nobody used the connection for LINGER_S (a burst of work shares one open)."""
        with self._mutex:
            if self._users or self._conn is None or self._generation != generation:
                return
            idle = time.monotonic() - self._last_release
            if idle < LINGER_S:
                remaining = LINGER_S - idle
            else:
                self._conn.close()
                self._conn = None
                return
        self._schedule_close(generation, remaining)

    def _migrate_once(self, conn: duckdb.DuckDBPyConnection) -> None:
        from storage.migrate import apply_migrations

        with self._mutex:
            if self._migrated:
                return
            cur = conn.cursor()
            try:
                apply_migrations(cur)
            finally:
                cur.close()
            self._migrated = True

    # -- units of work ---------------------------------------------------------------------
    @contextmanager
    def session(self, transaction: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one unit of work; with ``transaction=True`` it commits or rolls back."""
        conn = self._acquire()
        cur = conn.cursor()
        try:
            if transaction:
                cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                if transaction:
                    _rollback_quietly(cur)
                raise
            if transaction:
                cur.execute("COMMIT")
        except duckdb.Error as exc:
            if not _is_io_error(exc):
                raise
            raise _storage_error(self.path, exc) from None
        finally:
            cur.close()
            self._release()

    def close(self) -> None:
        """Close now if nobody in this process is using it (releases the file for others)."""
        with self._mutex:
            if self._conn is not None and self._users == 0:
                self._conn.close()
                self._conn = None
                self._generation += 1  # a pending linger timer must not close a newer connection


def _is_io_error(exc: Exception) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.IOException) or "Could not write file" in text or "No space left" in text


def _rollback_quietly(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:  # the transaction may already be aborted (e.g. a failed commit)
        pass


def _storage_error(path: Path, exc: Exception) -> StorageError:
    text = str(exc)
    if "No space left" in text or "disk is full" in text.lower():
        return StorageError(f"The disk under {path.parent} is full.", hint="Free some space, then retry.")
    if "Read-only" in text or "read-only" in text or "Permission denied" in text:
        return StorageError(
            f"The database {path} cannot be written ({text.splitlines()[0]}).",
            hint="Point STUDIO_HOME at a writable folder.",
        )
    return StorageError(f"The database {path} could not be used: {text.splitlines()[0]}")


def scratch_connection(temp_dir: Path, memory_limit: str = "1GB", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB for bulk work that must not hold the studio's file (a seed import
    parses and hashes its file here, then writes the finished rows in batches). Past
    ``memory_limit`` it spills to ``temp_dir``, so a 1 GB file does not need 1 GB of memory."""
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit, "temp_directory": str(temp_dir), "preserve_insertion_order": True}
    if threads:
        config["threads"] = threads
    return duckdb.connect(":memory:", config=config)


_databases: dict[Path, Database] = {}
_registry_lock = threading.Lock()


def get_database(path: Path | None = None, busy_timeout_s: float | None = None) -> Database:
    """The process-wide Database for a file (STUDIO_HOME's by default)."""
    from core import settings as settings_mod

    if path is None:
        cfg = settings_mod.current()
        cfg.ensure_home()
        path, busy_timeout_s = cfg.db_path, busy_timeout_s or cfg.db_busy_timeout_s
    path = Path(path).resolve()
    with _registry_lock:
        db = _databases.get(path)
        if db is None:
            db = _databases[path] = Database(path, busy_timeout_s or 60.0)
        return db


@atexit.register
def _close_all() -> None:
    """Release every file before the interpreter tears DuckDB down."""
    for database in list(_instances):
        database.close()
