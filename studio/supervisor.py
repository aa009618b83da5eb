"""The supervisor loop: start services, restart crashed ones with backoff, stop all on a signal.

Why its own module: ``studio.lifecycle`` decides *what* runs; this decides how it is kept running.
One supervisor per STUDIO_HOME, recorded in ``services/supervisor.json`` (pid + process start
time, so a stale file from a dead or recycled pid is recognised and cleaned up). The file is
created with ``os.link`` of a complete temp file, which fails atomically if another supervisor
won the race.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from core import procs
from core.errors import ServiceError
from core.procs import ServiceHandle, update_state
from core.settings import Settings

POLL_S = 2.0
FAST_CRASH_S = 30.0     # a crash sooner than this after a start counts as a fast crash
MAX_FAST_CRASHES = 5    # give up (state 'failed') after this many fast crashes in a row
MAX_BACKOFF_S = 30.0


def supervisor_path(settings: Settings) -> Path:
    return settings.services_dir / "supervisor.json"


def running_supervisor(settings: Settings) -> dict | None:
    """The live supervisor's record, or None; a record left by a dead process is removed."""
    path = supervisor_path(settings)
    info = procs.read_json(path)
    if info is None:
        return None
    if procs.pid_alive(info.get("pid"), info.get("pid_start_time")):
        return info
    path.unlink(missing_ok=True)
    return None


def already_running_error(info: dict) -> ServiceError:
    """What a second ``up`` says: who runs, where, and how to stop it."""
    where = ""
    if info.get("app_url"):
        where = f", app at {info['app_url']}"
    elif info.get("argilla_url"):
        where = f", Argilla at {info['argilla_url']}"
    elif info.get("llm_url"):
        where = f", model server at {info['llm_url']}"
    return ServiceError(f"The studio is already running (PID {info['pid']}{where}).",
                        hint="`python -m studio down` stops it.")


def _claim(settings: Settings, info: dict) -> None:
    """Create the supervisor file or raise ServiceError naming the supervisor that holds it."""
    path = supervisor_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".supervisor-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle, indent=2)
    try:
        for _ in range(2):
            try:
                os.link(tmp, path)
                return
            except FileExistsError:
                other = running_supervisor(settings)  # removes a stale file, then we retry once
                if other:
                    raise already_running_error(other) from None
        raise ServiceError(f"Could not claim {path}.", hint="Remove it if no studio is running.")
    finally:
        os.unlink(tmp)


@dataclass
class Managed:
    """One supervised service and its crash bookkeeping."""

    name: str
    start: Callable[[Settings], ServiceHandle]
    handle: ServiceHandle | None = None
    restarts: int = 0
    fast_crashes: int = 0
    restart_at: float | None = None
    failed: bool = False


class Supervisor:
    """Keeps the given services running until SIGTERM/SIGINT (or ``stop()``)."""

    def __init__(self, settings: Settings, starters: dict[str, Callable[[Settings], ServiceHandle]],
                 progress: Callable[[str], None] = print,
                 after_restart: dict[str, Callable[[Settings], None]] | None = None):
        self.settings = settings
        self.services = [Managed(name, start) for name, start in starters.items()]
        self.progress = progress
        self.after_restart = after_restart or {}  # e.g. reindex after the in-memory search engine restarts
        self.stopping = threading.Event()

    def stop(self, *_args) -> None:
        self.stopping.set()

    def run(self) -> None:
        names = [m.name for m in self.services]
        info = {"pid": os.getpid(), "pid_start_time": procs.process_start_time(os.getpid()),
                "started_at": datetime.now().astimezone().isoformat(), "services": names,
                "app_url": self.settings.app_url if "app" in names else None,
                "llm_url": self.settings.llm_url if "llm" in names else None,
                "argilla_url": self.settings.embedded_argilla_url if "argilla" in names else None}
        _claim(self.settings, info)
        try:
            self._install_signals()
            for managed in self.services:
                update_state(self.settings, managed.name, status="starting", pid=None, restarts=0, last_error=None)
            self._start_all()
            self.progress("the studio is running; Ctrl-C or `python -m studio down` stops it")
            while not self.stopping.wait(POLL_S):
                for managed in self.services:
                    self._check(managed)
        finally:
            self._stop_all()
            supervisor_path(self.settings).unlink(missing_ok=True)

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)

    def _start_all(self) -> None:
        for managed in self.services:
            if self.stopping.is_set():
                return
            try:
                managed.handle = managed.start(self.settings)
            except ServiceError as exc:
                managed.failed = True
                update_state(self.settings, managed.name, status="failed", pid=None, last_error=str(exc))
                raise
            procs.record_running(self.settings, managed.handle, 0)
            where = f" at {managed.handle.url}" if managed.handle.url else ""
            self.progress(f"{managed.name} running{where} (PID {managed.handle.pid})")

    def _check(self, managed: Managed) -> None:
        """Notice a crash, schedule a restart with backoff, or restart when it is due."""
        if managed.failed:
            return
        handle = managed.handle
        if handle is not None:
            if handle.alive():
                if managed.fast_crashes and time.time() - handle.started_at > FAST_CRASH_S:
                    managed.fast_crashes = 0
                return
            reason = _exit_reason(handle)
            managed.handle = None
            self._crashed(managed, reason, time.time() - handle.started_at)
            return
        if managed.restart_at is not None and time.monotonic() >= managed.restart_at:
            managed.restart_at = None
            try:
                managed.handle = managed.start(self.settings)
            except ServiceError as exc:
                self._crashed(managed, str(exc), 0.0)
                return
            managed.restarts += 1
            procs.record_running(self.settings, managed.handle, managed.restarts)
            self.progress(f"{managed.name} restarted (restart {managed.restarts}) at {managed.handle.url}")
            self._run_after_restart(managed)

    def _run_after_restart(self, managed: Managed) -> None:
        """The hook for a restarted part (a failure is reported and recorded, never fatal)."""
        hook = self.after_restart.get(managed.name)
        if hook is None:
            return
        try:
            hook(self.settings)
        except ServiceError as exc:
            update_state(self.settings, managed.name, last_error=f"after restart: {exc}")
            self.progress(f"{managed.name}: after the restart: {exc}")
            return
        update_state(self.settings, managed.name, recovered_at=datetime.now().astimezone().isoformat())
        self.progress(f"{managed.name}: recovered after the restart")

    def _crashed(self, managed: Managed, reason: str, uptime_s: float) -> None:
        managed.fast_crashes = managed.fast_crashes + 1 if uptime_s < FAST_CRASH_S else 1
        if managed.fast_crashes >= MAX_FAST_CRASHES:
            managed.failed = True
            error = f"crashed {managed.fast_crashes} times in a row; gave up. Last: {reason}"
            update_state(self.settings, managed.name, status="failed", pid=None, last_error=error)
            self.progress(f"{managed.name} failed: {error}")
            return
        delay = min(2.0 ** (managed.fast_crashes - 1), MAX_BACKOFF_S)
        managed.restart_at = time.monotonic() + delay
        update_state(self.settings, managed.name, status="starting", pid=None, last_error=reason,
                     restarts=managed.restarts)
        self.progress(f"{managed.name} crashed ({reason}); restarting in {delay:.0f} s")

    def _stop_all(self) -> None:
        for managed in reversed(self.services):
            if managed.handle is not None:
                managed.handle.stop()
                managed.handle = None
            if not managed.failed:
                update_state(self.settings, managed.name, status="stopped", pid=None)


def _exit_reason(handle: ServiceHandle) -> str:
    code = handle.process.returncode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    lines = [ln.strip() for ln in handle.log_tail(10).splitlines() if ln.strip()]
    return f"exited with code {code}: {lines[-1] if lines else 'no output'}"
