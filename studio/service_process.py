"""Starting one embedded service: spawn it with its log, wait until it answers, explain a failure.

Why its own module: the lifecycle (llama.cpp server, app) and the embedded Argilla's parts both start
processes this way, and neither should import the other for it.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from core import procs
from core.errors import ServiceError
from core.procs import ServiceHandle
from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["STUDIO_HOME"] = str(settings.home)
    env["STUDIO_CACHE"] = str(settings.cache_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_service_process(name: str, cmd: list[str], settings: Settings, port: int | None, port_env: str,
                   url: str, health_url: str, explain: Callable[[str, int], str],
                   timeout_s: float = START_TIMEOUT_S, *, label: str | None = None,
                   ready: Callable[[ServiceHandle], bool] | None = None, cwd: Path | None = None,
                   env: dict[str, str] | None = None, bind_host: str | None = None) -> ServiceHandle:
    """Spawn ``cmd`` with its output in ``logs/<name>.log`` and wait until it is ready
    (``ready(handle)``, by default ``health_url`` answering; see ``procs.probe``)."""
    host = bind_host or settings.host
    if port is not None and procs.port_in_use(host, port):
        if label:
            raise ServiceError(f"{label} did not start: port {port} on {host} is in use.",
                               hint=f"Stop the program using it or set {port_env} to a free port.")
        raise ServiceError(f"Port {port} on {host} is in use, so the {name} server cannot start.",
                           hint=f"Stop the program using it or set {port_env} to a free port.")
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"=== {datetime.now().isoformat()} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd or REPO_ROOT,
            env=env or child_env(settings), start_new_session=True, preexec_fn=procs.die_with_parent,
        )
    handle = ServiceHandle(name, process, url, health_url, port or 0, log_path, offset)
    is_ready = ready or (lambda h: procs.probe(h.health_url, 1.0))
    what = label or f"The {name} server"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not handle.alive():
            raise ServiceError(f"{what} did not start: {explain(handle.log_tail(60), process.returncode)}",
                               hint=f"The full log is {log_path}.")
        if is_ready(handle):
            return handle
        time.sleep(0.25)
    handle.stop()
    target = f" {health_url}" if health_url else ""
    raise ServiceError(f"{what} did not become ready{target} within {timeout_s:.0f} s.",
                       hint=f"See {log_path}; a slow disk or a busy machine may need another try.")
