"""Small process helpers for the lifecycle of embedded services.

Why separate: ``studio.lifecycle`` reads as the story (start, supervise, stop); the mechanics of
ports, pids, HTTP probes, state files and log tails live here and are reused by ``status``.
A pid alone is not an identity (the kernel reuses them), so state files record the process's
start time too and every check compares both.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from core.settings import Settings

PR_SET_PDEATHSIG = 1


def port_in_use(host: str, port: int) -> bool:
    """True when a server could not bind ``host:port`` (bound like servers do, SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    from core.settings import Settings

    return Settings(home=Path("."), cache_dir=Path("."), host=host).client_host


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def pid_alive(pid: int | None, start_time: float | None = None) -> bool:
    """The one liveness check: the process exists, is not a zombie and (when given) started at
    ``start_time``. A process that exists but belongs to someone else counts as alive."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if start_time is not None and abs(proc.create_time() - start_time) > 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, ValueError, OverflowError):
        return False
    except psutil.AccessDenied:
        return True


def local_pid_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether a process recorded as (pid, host) lives: None when it cannot be told from here
    (no pid recorded, or it runs on another host)."""
    if not pid or (host and host != socket.gethostname()):
        return None
    return pid_alive(pid)


def terminate(pid: int, start_time: float | None = None, timeout_s: float = 10.0) -> bool:
    """SIGTERM, wait, then SIGKILL; returns whether a live process was stopped."""
    if not pid_alive(pid, start_time):
        return False
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    except psutil.NoSuchProcess:
        pass
    return True


def die_with_parent() -> None:
    """``preexec_fn`` for children: the kernel sends SIGTERM when the parent dies (Linux), so a
    supervisor killed with SIGKILL leaves no orphaned servers behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def http_ok(url: str, timeout_s: float = 0.5) -> bool:
    """GET ``url`` answers 2xx within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Redis answers PING with +PONG (the inline protocol; no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def probe(url: str | None, timeout_s: float = 0.5) -> bool:
    """Health of a service by its health URL: http(s) GET, ``redis://host:port`` PING, or no URL
    at all (a worker without a port), which counts as healthy while its process lives."""
    if not url:
        return True
    if url.startswith("redis://"):
        host, _, port = url[len("redis://"):].split("/", 1)[0].rpartition(":")
        return redis_ping(host.strip("[]"), int(port or 6379), timeout_s)
    return http_ok(url, timeout_s)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    """Atomic write (temp file + rename) so readers never see half a state file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tail(path: Path, lines: int = 20, start: int = 0) -> str:
    """The last ``lines`` lines of a log, reading only what was written after byte ``start``."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


@dataclass
class ServiceHandle:
    """One running service process that answered its health check."""

    name: str
    process: subprocess.Popen
    url: str
    health_url: str
    port: int
    log_path: Path
    log_offset: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines, self.log_offset)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# -- service state files: STUDIO_HOME/services/<name>.json --------------------------------------
def state_path(settings: Settings, name: str) -> Path:
    return settings.services_dir / f"{name}.json"


def read_state(settings: Settings, name: str) -> dict:
    return read_json(state_path(settings, name)) or {}


def update_state(settings: Settings, name: str, **fields) -> dict:
    state = read_state(settings, name) | {"name": name} | fields
    write_json(state_path(settings, name), state)
    return state


def record_running(settings: Settings, handle: ServiceHandle, restarts: int) -> None:
    update_state(
        settings, handle.name, pid=handle.pid, pid_start_time=process_start_time(handle.pid),
        port=handle.port, url=handle.url, health_url=handle.health_url, log=str(handle.log_path),
        started_at=datetime.now().astimezone().isoformat(), restarts=restarts, status="running",
    )
