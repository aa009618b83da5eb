"""Where the studio keeps its state and which ports it uses.

Everything lives under ``STUDIO_HOME`` (default ``./.studio``): the DuckDB file, models, runs,
service data and logs. Settings come from environment variables so tests, the CLI and the app
agree without a config file; ``describe()`` lists them for the README and ``status``.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StorageError

MIN_FREE_BYTES = 200 * 1024 * 1024
EMBEDDED_MODEL = "smollm2-135m-instruct"   # what the embedded endpoint serves (registry name and model alias)
EMBEDDED_ENDPOINT = "embedded"             # its name in the endpoint registry

ENV_HELP = {
    "STUDIO_HOME": "folder that holds all state (database, models, runs, services, logs); default ./.studio",
    "STUDIO_CACHE": "download cache shared by every STUDIO_HOME on this machine; default ~/.cache/studio",
    "STUDIO_HOST": "address the studio's servers bind to; default 127.0.0.1",
    "STUDIO_APP_PORT": "port of the Streamlit app; default 8501",
    "STUDIO_LLM_PORT": "port of the embedded OpenAI-compatible llama.cpp server; default 8765",
    "STUDIO_LLM_PARALLEL": "requests the embedded server decodes at once (continuous batching); default 8",
    "STUDIO_LLM_THREADS": "CPU threads of the embedded server for one request's token; default half the cores (at least 1)",
    "STUDIO_LLM_BATCH_THREADS": "CPU threads of the embedded server for a batch of requests; default every core",
    "STUDIO_LLM_SERVER": "auto (llama.cpp's server built for this CPU when setup could compile it) or xllamacpp (the prebuilt wheel)",
    "STUDIO_DB_BUSY_TIMEOUT": "seconds to wait for another process to release the database; default 60",
    "STUDIO_ARGILLA_PORT": "port of the embedded Argilla server (review UI and API); default 6900",
    "STUDIO_REDIS_PORT": "port of the Redis the studio starts for Argilla's queue; default 6379",
    "STUDIO_SEARCH_PORT": "port of the embedded search engine (osmem-server) for Argilla; default 9200",
    "STUDIO_SEARCH_URL": "an external Elasticsearch 8 / OpenSearch 2 URL for the embedded Argilla, instead of osmem",
    "STUDIO_ARGILLA_URL": "an external Argilla server to use instead of the embedded one (with ARGILLA_API_KEY)",
    "ARGILLA_API_KEY": "the API key for STUDIO_ARGILLA_URL (read from the environment only, never stored)",
    "STUDIO_AUTH": "team mode: 'argilla' makes the app ask each person to sign in with their Argilla account and "
                   "enforces their role; default 'off' (one user on this machine)",
    "STUDIO_SESSION_IDLE_MINUTES": "team mode: a signed-in session ends after this many idle minutes; default 60",
}
AUTH_MODES = ("off", "argilla")
LLM_SERVERS = ("auto", "xllamacpp")


def _env_int(name: str, default: int, low: int = 0, high: int = 10**9) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise StorageError(f"{name}={raw[:40]!r} is not a whole number from {low} to {high}.",
                           hint=f"Set {name} to e.g. {default}.") from None
    return value


def _env_port(name: str, default: int) -> int:
    return _env_int(name, default, 1, 65535)


def _env_choice(name: str, choices: tuple[str, ...], what: str, hint: str) -> str:
    value = (os.environ.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise StorageError(f"{name}={value!r} is not {what}.", hint=hint)
    return value


def _auth_mode() -> str:
    return _env_choice("STUDIO_AUTH", AUTH_MODES, "a sign-in mode",
                       "Use STUDIO_AUTH=argilla (each person signs in with their Argilla account) or off.")


def _llm_server() -> str:
    return _env_choice("STUDIO_LLM_SERVER", LLM_SERVERS, "a server the studio knows",
                       "Use auto (llama.cpp's server built for this CPU, when setup built it) or xllamacpp.")


@dataclass(frozen=True)
class Settings:
    home: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    app_port: int = 8501
    llm_port: int = 8765
    llm_parallel: int = 8              # slots of the embedded server: the embedded endpoint's concurrency
    llm_threads: int = 0               # 0: half the cores, at least 1
    llm_batch_threads: int = 0         # 0: every core
    llm_server: str = "auto"           # or "xllamacpp": the prebuilt wheel even where a native build exists
    db_busy_timeout_s: float = 60.0
    argilla_port: int = 6900
    redis_port: int = 6379
    search_port: int = 9200
    search_url: str | None = None      # external Elasticsearch / OpenSearch for the embedded Argilla
    argilla_url: str | None = None     # external Argilla instead of the embedded one
    auth: str = "off"                  # "argilla": team mode, sign in with Argilla accounts
    session_idle_minutes: int = 60
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("STUDIO_HOME") or ".studio").expanduser().resolve()
        cache = Path(os.environ.get("STUDIO_CACHE") or Path.home() / ".cache" / "studio").expanduser()
        return cls(
            home=home,
            cache_dir=cache.resolve(),
            host=os.environ.get("STUDIO_HOST") or "127.0.0.1",
            app_port=_env_port("STUDIO_APP_PORT", 8501),
            llm_port=_env_port("STUDIO_LLM_PORT", 8765),
            llm_parallel=_env_int("STUDIO_LLM_PARALLEL", 8, 1, 64),
            llm_threads=_env_int("STUDIO_LLM_THREADS", 0, 0, 256),
            llm_batch_threads=_env_int("STUDIO_LLM_BATCH_THREADS", 0, 0, 256),
            llm_server=_llm_server(),
            db_busy_timeout_s=float(_env_int("STUDIO_DB_BUSY_TIMEOUT", 60)),
            argilla_port=_env_port("STUDIO_ARGILLA_PORT", 6900),
            redis_port=_env_port("STUDIO_REDIS_PORT", 6379),
            search_port=_env_port("STUDIO_SEARCH_PORT", 9200),
            search_url=(os.environ.get("STUDIO_SEARCH_URL") or "").strip().rstrip("/") or None,
            argilla_url=(os.environ.get("STUDIO_ARGILLA_URL") or "").strip().rstrip("/") or None,
            auth=_auth_mode(),
            session_idle_minutes=_env_int("STUDIO_SESSION_IDLE_MINUTES", 60, 1, 60 * 24 * 30),
        )

    @property
    def binds_beyond_loopback(self) -> bool:
        return self.host not in ("127.0.0.1", "localhost", "::1") and not self.host.startswith("127.")

    embedded_model: str = EMBEDDED_MODEL

    # -- where the services are, as a client on this machine reaches them -------------------------
    @property
    def client_host(self) -> str:
        """The address a client here uses for a server bound to ``host`` (0.0.0.0 -> 127.0.0.1)."""
        host = self.host
        if host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @property
    def llm_url(self) -> str:
        return f"http://{self.client_host}:{self.llm_port}/v1"

    @property
    def app_url(self) -> str:
        return f"http://{self.client_host}:{self.app_port}"

    @property
    def embedded_argilla_url(self) -> str:
        return f"http://{self.client_host}:{self.argilla_port}"

    @property
    def db_path(self) -> Path:
        return self.home / "studio.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def services_dir(self) -> Path:
        return self.home / "services"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secrets_path(self) -> Path:
        return self.home / "secrets.toml"

    def ensure_home(self) -> None:
        """Create the folders; fail with a clear message on a read-only or full disk.

        Checked once per process and home (it is on every ``get_database()`` path). The probe file
        is named per process and thread: several processes check the same home at once."""
        if self.home in _verified_homes:
            return
        try:
            for folder in (self.home, self.models_dir, self.runs_dir, self.services_dir, self.logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.home / f".write-probe-{os.getpid()}-{threading.get_ident()}"
            probe.write_text("ok")
            probe.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(
                f"STUDIO_HOME {self.home} is not writable ({exc.strerror or exc}).",
                hint="Point STUDIO_HOME at a folder you can write to, e.g. STUDIO_HOME=~/studio-home.",
            ) from None
        free = shutil.disk_usage(self.home).free
        if free < MIN_FREE_BYTES:
            raise StorageError(
                f"The disk under STUDIO_HOME {self.home} has only {free // (1024 * 1024)} MB free.",
                hint="Free some space or point STUDIO_HOME at a larger disk (the studio needs at least 200 MB).",
            )
        _verified_homes.add(self.home)


_verified_homes: set[Path] = set()


def current() -> Settings:
    """Settings as the environment says now (cheap; re-read so tests can change STUDIO_HOME)."""
    return Settings.from_env()
