"""The embedded Argilla: Redis, a search engine, argilla-server and its rq worker, as four parts.

Why four supervised parts instead of one: each can fail on its own (a port taken, an external
search engine down, a crash), and the user must be told which one and what to change. They run
from ``.venv-argilla`` (argilla-server's pins clash with the studio's), keep their state under
``STUDIO_HOME/services/argilla`` (SQLite: the source of truth) and ``services/redis``, and bind
Redis and the embedded search engine to loopback only. The embedded search engine (osmem-server)
keeps its index in memory, so the server's start and every restart of the search engine rebuild
the index from the database (``reindex``).
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from core import procs, secrets
from studio.argilla_conn import OWNER_KEY_SECRET, OWNER_PASSWORD_SECRET, embedded_url
from core.errors import ServiceError
from core.procs import ServiceHandle
from core.settings import Settings
from studio.service_process import start_service_process

REPO_ROOT = Path(__file__).resolve().parent.parent
ARGILLA_VENV = REPO_ROOT / ".venv-argilla"
ARGILLA_PYTHON = ARGILLA_VENV / "bin" / "python"
BOOTSTRAP = REPO_ROOT / "studio" / "argilla_bootstrap.py"
SERVE = REPO_ROOT / "studio" / "argilla_serve.py"  # argilla_server's CLI + the osmem compatibility patch
PARTS = ("redis", "search", "argilla", "argilla_worker")
LABELS = {"redis": "Redis", "search": "The search engine (osmem-server)", "argilla": "The Argilla server",
          "argilla_worker": "The Argilla worker"}
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0
BOOTSTRAP_TIMEOUT_S = 180.0
SETUP_HINT = "Run `bash scripts/setup.sh` (it installs redis-server and builds .venv-argilla)."


# -- where things are ----------------------------------------------------------------------------
def data_dir(settings: Settings) -> Path:
    return settings.services_dir / "argilla"


def redis_url(settings: Settings) -> str:
    return f"redis://{LOOPBACK}:{settings.redis_port}/0"


def search_url(settings: Settings) -> str:
    """The external search engine when STUDIO_SEARCH_URL is set, else the embedded osmem-server."""
    return settings.search_url or f"http://{LOOPBACK}:{settings.search_port}"


def embedded_search(settings: Settings) -> bool:
    return not settings.search_url


def parts_to_run(settings: Settings) -> list[str]:
    """What ``up`` starts: nothing for an external Argilla, no search engine for an external one."""
    if settings.argilla_url:
        return []
    return [p for p in PARTS if p != "search" or embedded_search(settings)]


def default_urls(name: str, settings: Settings) -> tuple[str | None, str | None]:
    """(URL shown, health URL) of a part that has no state file yet."""
    if name == "redis":
        return redis_url(settings), redis_url(settings)
    if name == "search":
        return search_url(settings), search_url(settings)
    if name == "argilla":
        return embedded_url(settings), f"{embedded_url(settings)}/api/v1/version"
    return None, None


def not_used_reason(name: str, settings: Settings) -> str | None:
    """Why ``up`` does not start this part with the current settings (None: it does)."""
    if name not in PARTS:
        return None
    if settings.argilla_url:
        return f"not used: the studio uses the external Argilla at {settings.argilla_url}"
    if name == "search" and not embedded_search(settings):
        return f"not used: Argilla uses the search engine at {settings.search_url}"
    return None


def osmem_binary() -> Path:
    found = sorted(ARGILLA_VENV.glob("lib/python3*/site-packages/osmem_server/bin/osmem-server"))
    if not found:
        raise ServiceError("The embedded search engine (osmem-server) is not installed in .venv-argilla.",
                           hint=SETUP_HINT + " Or set STUDIO_SEARCH_URL to an Elasticsearch 8 / OpenSearch 2 URL.")
    return found[-1]


def _require_argilla_venv() -> None:
    if not ARGILLA_PYTHON.is_file():
        raise ServiceError(f"The Argilla server's environment {ARGILLA_VENV} is missing.", hint=SETUP_HINT)


def argilla_env(settings: Settings, engine: str = "opensearch") -> dict[str, str]:
    """The environment of every argilla_server process: its data, Redis and search engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "PYTHON", "VIRTUAL_ENV"))}
    folder = data_dir(settings)
    env.update({
        "STUDIO_HOME": str(settings.home), "ARGILLA_HOME_PATH": str(folder),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'argilla.db'}",
        "ARGILLA_SEARCH_ENGINE": engine, "ARGILLA_ELASTICSEARCH": search_url(settings),
        "ARGILLA_REDIS_URL": redis_url(settings), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if embedded_search(settings):
        env["STUDIO_OSMEM_COMPAT"] = "1"  # see studio/argilla_serve.py: osmem has no update scripts
    return env


# -- the owner account -----------------------------------------------------------------------------
def owner_credentials() -> tuple[str, str]:
    """(password, API key) of the owner, generated on first start and kept in secrets.toml (0600)."""
    password = secrets.read_secret(OWNER_PASSWORD_SECRET)
    key = secrets.read_secret(OWNER_KEY_SECRET)
    if not password:
        password = pysecrets.token_urlsafe(12)
        secrets.save_secret(OWNER_PASSWORD_SECRET, password)
    if not key:
        key = "argilla.apikey." + pysecrets.token_urlsafe(32)
        secrets.save_secret(OWNER_KEY_SECRET, key)
    return password, key


# -- health of Redis and the search engine -----------------------------------------------------------
def search_engine_kind(url: str, timeout_s: float = 3.0) -> str:
    """'opensearch' or 'elasticsearch' from the engine's root document; a clear error otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            info = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ServiceError(f"The search engine at {url} does not answer ({reason}).",
                           hint="Start it, fix STUDIO_SEARCH_URL, or unset STUDIO_SEARCH_URL to use the "
                           "embedded osmem-server.") from None
    version = info.get("version", {}) if isinstance(info, dict) else {}
    number = str(version.get("number", "0"))
    if version.get("distribution") == "opensearch":
        return "opensearch"
    if not number.split(".")[0].isdigit() or int(number.split(".")[0]) < 8:
        raise ServiceError(f"The search engine at {url} is Elasticsearch {number}; Argilla needs 8.5 or newer.",
                           hint="Point STUDIO_SEARCH_URL at Elasticsearch 8 or OpenSearch 2, or unset it.")
    return "elasticsearch"


def require_redis(settings: Settings) -> None:
    if not procs.redis_ping(LOOPBACK, settings.redis_port, 2.0):
        raise ServiceError(f"Redis at {redis_url(settings)} does not answer, so the Argilla server cannot start.",
                           hint="Start the studio with `python -m studio up` (it starts Redis), or set "
                           "STUDIO_REDIS_PORT to the port of a running Redis.")


# -- the four parts ----------------------------------------------------------------------------------
def explain_failure(log_tail: str, code: int | None, port: int | None = None, port_env: str = "") -> str:
    """Why a part exited, in one sentence, from the tail of its log."""
    lower = log_tail.lower()
    if "address already in use" in lower or "errno 98" in lower:
        return f"port {port} is in use: set {port_env} to a free port."
    if "redis" in lower and ("connectionerror" in lower or "connection refused" in lower):
        return "it cannot reach Redis: check that Redis runs (`python -m studio status`)."
    if "connectionerror" in lower and ("elasticsearch" in lower or "opensearch" in lower):
        return "it cannot reach the search engine: check STUDIO_SEARCH_URL or that osmem-server runs."
    last = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    return f"it exited with code {code}: {last[-1] if last else 'no output'}"


def start_redis(settings: Settings) -> ServiceHandle:
    """Debian's redis-server on a private loopback port; its dump lives in services/redis."""
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceError("Redis did not start: redis-server is not installed.", hint=SETUP_HINT)
    folder = settings.services_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = settings.redis_port
    cmd = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", str(folder), "--daemonize", "no",
           "--save", "60 1", "--appendonly", "no", "--protected-mode", "yes"]
    return start_service_process("redis", cmd, settings, port, "STUDIO_REDIS_PORT", redis_url(settings),
                          redis_url(settings), lambda tail, code: explain_failure(tail, code, port, "STUDIO_REDIS_PORT"),
                          START_TIMEOUT_S, label="Redis", cwd=folder, bind_host=LOOPBACK)


def start_search(settings: Settings) -> ServiceHandle:
    """osmem-server, the in-memory OpenSearch-compatible engine, on a private loopback port."""
    port = settings.search_port
    cmd = [str(osmem_binary()), "-addr", f"{LOOPBACK}:{port}", "-no-stdin-watch", "-no-ja"]
    url = search_url(settings)
    return start_service_process("search", cmd, settings, port, "STUDIO_SEARCH_PORT", url, url,
                          lambda tail, code: explain_failure(tail, code, port, "STUDIO_SEARCH_PORT"),
                          START_TIMEOUT_S, label=LABELS["search"], bind_host=LOOPBACK)


def prepare_database(settings: Settings, reindex_search: bool, engine: str = "opensearch") -> None:
    """Migrate Argilla's SQLite database, sync the owner account and (optionally) reindex."""
    _require_argilla_venv()
    folder = data_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    password, key = owner_credentials()
    env = argilla_env(settings, engine) | {"STUDIO_ARGILLA_OWNER_PASSWORD": password, "STUDIO_ARGILLA_OWNER_KEY": key}
    cmd = [str(ARGILLA_PYTHON), "-P", str(BOOTSTRAP), "prepare"] + (["--reindex"] if reindex_search else [])
    _run_bootstrap(settings, cmd, env, "prepare its database", secrets_in_use=(password, key))


def reindex(settings: Settings) -> None:
    """Rebuild the search index from Argilla's database (after the in-memory engine restarted)."""
    _require_argilla_venv()
    if not data_dir(settings).is_dir():
        raise ServiceError(f"The embedded Argilla has never run with STUDIO_HOME {settings.home}: there is no "
                           "database to reindex from.", hint="Start it first with `python -m studio up`.")
    engine = "opensearch" if embedded_search(settings) else search_engine_kind(search_url(settings))
    cmd = [str(ARGILLA_PYTHON), "-P", str(BOOTSTRAP), "reindex"]
    _run_bootstrap(settings, cmd, argilla_env(settings, engine), "reindex the search engine")


def _run_bootstrap(settings: Settings, cmd: list[str], env: dict[str, str], what: str,
                   secrets_in_use: tuple[str, ...] = ()) -> None:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / "argilla-setup.log"
    try:
        done = subprocess.run(cmd, env=env, cwd=data_dir(settings), capture_output=True, text=True,
                              timeout=BOOTSTRAP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ServiceError(f"The Argilla server could not {what} within {BOOTSTRAP_TIMEOUT_S:.0f} s.",
                           hint=f"See {log_path}; a busy machine may need another try.") from None
    output = secrets.redact(done.stdout + done.stderr, secrets_in_use)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {' '.join(cmd)}\n{output}\n")
    if done.returncode != 0:
        reason = explain_failure(procs.tail(log_path, 40), done.returncode, None, "")
        raise ServiceError(f"The Argilla server could not {what}: {reason}", hint=f"The full log is {log_path}.")


def start_argilla_server(settings: Settings) -> ServiceHandle:
    """Check Redis and the search engine, prepare the database, then serve Argilla on STUDIO_HOST."""
    _require_argilla_venv()
    require_redis(settings)
    engine = search_engine_kind(search_url(settings))
    prepare_database(settings, reindex_search=embedded_search(settings), engine=engine)
    port = settings.argilla_port
    url = embedded_url(settings)
    cmd = [str(ARGILLA_PYTHON), "-P", str(SERVE), "start", "--host", settings.host, "--port", str(port),
           "--no-access-log"]
    return start_service_process("argilla", cmd, settings, port, "STUDIO_ARGILLA_PORT", url, f"{url}/api/v1/version",
                          lambda tail, code: explain_failure(tail, code, port, "STUDIO_ARGILLA_PORT"),
                          START_TIMEOUT_S, label=LABELS["argilla"], cwd=data_dir(settings),
                          env=argilla_env(settings, engine))


def start_argilla_worker(settings: Settings) -> ServiceHandle:
    """The rq worker that runs Argilla's background jobs (settings and distribution changes)."""
    _require_argilla_venv()
    require_redis(settings)
    engine = "opensearch" if embedded_search(settings) else search_engine_kind(search_url(settings))
    cmd = [str(ARGILLA_PYTHON), "-P", str(SERVE), "worker", "--num-workers", "1"]
    return start_service_process("argilla_worker", cmd, settings, None, "", "", "",
                          lambda tail, code: explain_failure(tail, code), START_TIMEOUT_S,
                          label=LABELS["argilla_worker"], ready=lambda h: "Listening on" in h.log_tail(200),
                          cwd=data_dir(settings), env=argilla_env(settings, engine))


STARTERS = {"redis": start_redis, "search": start_search, "argilla": start_argilla_server,
            "argilla_worker": start_argilla_worker}
AFTER_RESTART = {"search": reindex}  # the in-memory index is empty after a restart
