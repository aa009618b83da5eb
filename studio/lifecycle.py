"""Start, supervise and stop the studio's embedded services: the llama.cpp server and the app.

Why a supervisor: the studio runs on one machine for days; a crashed model server should come
back on its own, with backoff, and say why it died, instead of leaving pages with connection
errors. ``up`` runs the supervisor in the foreground (Ctrl-C stops everything) or detached;
``down`` stops it from any process. What each service is doing is kept in
``STUDIO_HOME/services/<name>.json`` so ``service_health`` answers even if the supervisor died.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import procs
from studio import argilla_embedded
from core.procs import ServiceHandle, read_state, update_state
from core.errors import NotFound, ServiceError
from core.settings import EMBEDDED_MODEL, Settings, current
from studio.service_process import START_TIMEOUT_S, REPO_ROOT, child_env, start_service_process
from studio.supervisor import Supervisor, already_running_error, running_supervisor, supervisor_path

APP_SCRIPT = REPO_ROOT / "studio" / "app.py"
SERVICES = (*argilla_embedded.PARTS, "llm", "app")  # in start order
_DETACHED: list[subprocess.Popen] = []  # detached supervisors this process started (reaped in down)


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    state: str              # 'running' | 'stopped' | 'failed' | 'starting'
    url: str | None
    pid: int | None
    detail: str
    restarts: int = 0


_LLAMA_ERROR = re.compile(r"(gguf_init\w*|llama_model_load\w*|llama_model_loader|error loading model|"
                          r"invalid magic|failed to read|not within the file bounds|unknown model architecture)")


def explain_llm_failure(log_tail: str, code: int | None, port: int | None = None) -> str:
    """Why llama.cpp's server exited, in one sentence, from the tail of its log."""
    if "address already in use" in log_tail.lower():
        return f"port {port} is in use: set STUDIO_LLM_PORT to a free port."
    reasons = [ln.strip() for ln in log_tail.splitlines() if _LLAMA_ERROR.search(ln) and "File " not in ln]
    if reasons or "Failed to load model" in log_tail:
        detail = "; ".join(dict.fromkeys(reasons[:3])) or "llama.cpp could not read it"
        return f"the GGUF failed to load: {detail}."
    last = [ln for ln in log_tail.splitlines() if ln.strip()]
    return f"it exited with code {code}: {last[-1].strip() if last else 'no output'}."


def explain_app_failure(log_tail: str, code: int | None, port: int | None = None) -> str:
    if "already in use" in log_tail.lower():
        return f"port {port} is in use: set STUDIO_APP_PORT to a free port."
    last = [ln for ln in log_tail.splitlines() if ln.strip()]
    return f"it exited with code {code}: {last[-1].strip() if last else 'no output'}."


def llm_url(settings: Settings) -> str:
    return settings.llm_url


def app_url(settings: Settings) -> str:
    return settings.app_url


def _embedded_gguf() -> Path:
    from studio.services.models import get_model  # lazy: the registry opens the database

    try:
        record = get_model(EMBEDDED_MODEL)
    except NotFound:
        record = None
    if record is None or not record.gguf_path or not Path(record.gguf_path).is_file():
        raise ServiceError(f"The embedded model {EMBEDDED_MODEL} is not pulled yet.",
                           hint="Run `python -m studio models pull` (or `python -m studio up`, which pulls it).")
    return Path(record.gguf_path)


def start_llm_server(settings: Settings, gguf_path: Path | None = None,
                     timeout_s: float = START_TIMEOUT_S) -> ServiceHandle:
    """The embedded OpenAI-compatible llama.cpp server (``studio.llm_serve``: llama.cpp's own server
    with ``settings.llm_parallel`` slots decoded together), serving the GGUF as ``smollm2-135m-instruct``."""
    gguf = Path(gguf_path) if gguf_path else _embedded_gguf()
    if not gguf.is_file():
        raise ServiceError(f"The GGUF {gguf} does not exist.", hint="Pull the model again: `python -m studio models pull`.")
    port = settings.llm_port
    cmd = [sys.executable, "-m", "studio.llm_serve", "--model", str(gguf.resolve()), "--host", settings.host,
           "--port", str(port), "--alias", EMBEDDED_MODEL, "--parallel", str(settings.llm_parallel),
           "--threads", str(settings.llm_threads), "--threads-batch", str(settings.llm_batch_threads), "--server", settings.llm_server]
    url = llm_url(settings)
    return start_service_process("llm", cmd, settings, port, "STUDIO_LLM_PORT", url, f"{url}/models",
                          lambda tail, code: explain_llm_failure(tail, code, port), timeout_s)


def start_app(settings: Settings, timeout_s: float = START_TIMEOUT_S) -> ServiceHandle:
    """The Streamlit app (``studio/app.py``), headless, bound to ``settings.host``."""
    if not APP_SCRIPT.is_file():
        raise ServiceError(f"The app entry {APP_SCRIPT} is missing.", hint="Restore studio/app.py from the repository.")
    port = settings.app_port
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.address", settings.host,
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    url = app_url(settings)
    return start_service_process("app", cmd, settings, port, "STUDIO_APP_PORT", url, f"{url}/_stcore/health",
                          lambda tail, code: explain_app_failure(tail, code, port), timeout_s)


# -- the supervisor ----------------------------------------------------------------------------
def _starter(name: str) -> Callable[[Settings], ServiceHandle]:
    if name in argilla_embedded.STARTERS:
        return argilla_embedded.STARTERS[name]
    return start_llm_server if name == "llm" else start_app


def _supervisor(settings: Settings, names: list[str], progress: Callable[[str], None]) -> Supervisor:
    hooks = {n: argilla_embedded.AFTER_RESTART[n] for n in names if n in argilla_embedded.AFTER_RESTART}
    return Supervisor(settings, {n: _starter(n) for n in names}, progress, after_restart=hooks)


def _ensure_embedded_model(progress: Callable[[str], None]) -> None:
    from studio.services.models import ensure_embedded_endpoint, pull_model

    def report(message: str, fraction: float | None) -> None:
        progress(f"{message} ({fraction:.0%})" if fraction is not None else message)

    try:
        _embedded_gguf()
        ensure_embedded_endpoint()
    except ServiceError:
        progress(f"pulling the embedded model {EMBEDDED_MODEL} (first start only)")
        pull_model(EMBEDDED_MODEL, progress=report)


def _refuse_if_running(settings: Settings) -> None:
    info = running_supervisor(settings)
    if info:
        raise already_running_error(info)


def refuse_open_without_sign_in(settings) -> None:
    """Servers reachable beyond this machine only with team mode on: otherwise anyone who reaches the
    port could train, delete models and read keys."""
    if settings.binds_beyond_loopback and settings.auth == "off":
        raise ServiceError(f"STUDIO_HOST={settings.host} would open the studio beyond this machine with sign-in off.",
                           hint="Turn team mode on (STUDIO_AUTH=argilla: each person signs in with their Argilla "
                                "account), or keep STUDIO_HOST=127.0.0.1 for a single-user studio.")


def up(detach: bool = False, with_llm: bool = True, progress: Callable[[str], None] = print,
       with_app: bool = True, with_argilla: bool = True) -> None:
    """Start the embedded services and supervise them (foreground), or hand that to a detached
    supervisor and return once they are healthy."""
    settings = current()
    refuse_open_without_sign_in(settings)
    settings.ensure_home()
    _refuse_if_running(settings)
    _clean_stored_credentials(progress)
    _reconcile_interrupted_work(progress)
    if with_app and not APP_SCRIPT.is_file():
        raise ServiceError(f"The app entry {APP_SCRIPT} is missing.", hint="Restore studio/app.py from the repository.")
    if with_llm:
        _ensure_embedded_model(progress)
    wanted = argilla_embedded.parts_to_run(settings) if with_argilla else []
    wanted += [n for n, on in (("llm", with_llm), ("app", with_app)) if on]
    if not detach:
        _supervisor(settings, wanted, progress).run()
        return
    _start_detached(settings, wanted, progress)


def _clean_stored_credentials(progress: Callable[[str], None]) -> None:
    """Endpoints an older studio stored with a credential in the URL: it moves to the secrets file."""
    from studio.services.models import move_url_credentials

    cleaned = move_url_credentials()
    if cleaned:
        progress(f"A credential in the stored URL of {', '.join(cleaned)} moved to {current().home}/secrets.toml "
                 "as the endpoint's key; the endpoint's row no longer holds it.")


def _reconcile_interrupted_work(progress: Callable[[str], None]) -> None:
    """Work whose process died with the last session (a kill, a reboot) is never shown running."""
    from studio.services.training import reconcile_runs

    interrupted = reconcile_runs()
    if interrupted:
        progress(f"Training runs whose process had ended are now marked interrupted: {', '.join(interrupted)}. "
                 "Resume them with `python -m studio runs resume RUN` or on the Train page.")


def run_supervisor(names: list[str]) -> None:
    """Entry of the detached supervisor process."""
    settings = current()
    try:
        _supervisor(settings, names, lambda m: print(m, flush=True)).run()
    except ServiceError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)


def _start_detached(settings: Settings, wanted: list[str], progress: Callable[[str], None]) -> None:
    for name in wanted:
        update_state(settings, name, status="starting", pid=None, last_error=None, restarts=0)
    code = f"from studio.lifecycle import run_supervisor; run_supervisor({wanted!r})"
    log_path = settings.logs_dir / "supervisor.log"
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=child_env(settings),
                                start_new_session=True)
    _DETACHED.append(proc)
    deadline = time.monotonic() + START_TIMEOUT_S * len(wanted) + argilla_embedded.BOOTSTRAP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            failed = [f"{n}: {s.get('last_error')}" for n in wanted if (s := read_state(settings, n)).get("last_error")]
            reason = "; ".join(failed) or procs.tail(log_path, 5, offset) or f"exit code {proc.returncode}"
            raise ServiceError(f"The studio did not start ({reason})", hint=f"See the logs in {settings.logs_dir}.")
        states = [read_state(settings, n) for n in wanted]
        if all(s.get("status") == "running" and procs.pid_alive(s.get("pid")) for s in states):
            for s in states:
                progress(f"{s['name']} running at {s['url']}")
            progress(f"the studio runs in the background (PID {proc.pid}); `python -m studio down` stops it")
            return
        time.sleep(0.3)
    down()
    raise ServiceError("The studio did not become healthy in time.", hint=f"See the logs in {settings.logs_dir}.")


def down() -> list[str]:
    """Stop the supervisor and any service process it left behind; safe to call repeatedly."""
    settings = current()
    done: list[str] = []
    info = running_supervisor(settings)
    if info and procs.terminate(info["pid"], info.get("pid_start_time"), timeout_s=30):
        done.append(f"stopped the supervisor (PID {info['pid']})")
    for proc in list(_DETACHED):
        if proc.poll() is not None:
            _DETACHED.remove(proc)
    supervisor_path(settings).unlink(missing_ok=True)
    for name in reversed(SERVICES):
        state = read_state(settings, name)
        if not state:
            continue
        if procs.terminate(state.get("pid") or 0, state.get("pid_start_time")):
            done.append(f"stopped {name} (PID {state['pid']})")
        if state.get("status") in ("running", "starting") or state.get("pid"):
            update_state(settings, name, status="stopped", pid=None)
    return done or ["nothing running"]


def service_health() -> list[ServiceHealth]:
    """What each service is doing now: state files plus a quick probe of each URL."""
    settings = current()
    supervised = running_supervisor(settings) is not None
    return [_health(name, read_state(settings, name), supervised, settings) for name in SERVICES]


def _default_urls(name: str, settings: Settings) -> tuple[str | None, str | None]:
    if name in argilla_embedded.PARTS:
        return argilla_embedded.default_urls(name, settings)
    if name == "llm":
        return llm_url(settings), llm_url(settings) + "/models"
    return app_url(settings), app_url(settings) + "/_stcore/health"


def _health(name: str, state: dict, supervised: bool, settings: Settings) -> ServiceHealth:
    unused = argilla_embedded.not_used_reason(name, settings)
    if unused and not procs.pid_alive(state.get("pid"), state.get("pid_start_time")):
        return ServiceHealth(name, "not used", None, None, unused)
    if not state:
        url, health_url = _default_urls(name, settings)
        if health_url and procs.probe(health_url, 0.3):  # e.g. `streamlit run studio/app.py` started by hand
            return ServiceHealth(name, "running", url, None, f"answering at {url} (not started by `python -m studio up`)")
        return ServiceHealth(name, "stopped", None, None, "never started; `python -m studio up` starts it")
    url, pid, restarts = state.get("url"), state.get("pid"), int(state.get("restarts") or 0)
    alive = procs.pid_alive(pid, state.get("pid_start_time"))
    status, error = state.get("status"), state.get("last_error")
    if status == "failed":
        return ServiceHealth(name, "failed", url, None, error or "failed", restarts)
    if alive and procs.probe(state.get("health_url"), 0.5):
        return ServiceHealth(name, "running", url, pid, f"answering at {url}" if url else "running", restarts)
    if alive:
        return ServiceHealth(name, "starting", url, pid, "the process is up but not answering yet", restarts)
    if supervised and status in ("starting", "running"):  # crashed; the supervisor restarts it
        return ServiceHealth(name, "starting", url, None, f"restarting after: {error}" if error else "starting", restarts)
    detail = "the process is gone; `python -m studio up` starts it" if status == "running" else "stopped"
    return ServiceHealth(name, "stopped", url, None, detail, restarts)
