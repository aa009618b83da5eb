"""Which Argilla the studio talks to, and with which key.

Why one function: the review services, the CLI, the Home page and the tests must agree on the
URL and the key. An external Argilla (``STUDIO_ARGILLA_URL`` + ``ARGILLA_API_KEY``) wins over the
embedded one, whose owner key ``python -m studio up`` writes to ``STUDIO_HOME/secrets.toml`` on
first start. The key is only ever returned, never logged or stored anywhere else; ``repr`` of a
connection masks it so it cannot leak into a traceback or a log line by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core import secrets, settings as settings_mod
from core.errors import ReviewError

OWNER_USERNAME = "owner"
OWNER_KEY_SECRET = "argilla_owner_api_key"
OWNER_PASSWORD_SECRET = "argilla_owner_password"
API_KEY_ENV = "ARGILLA_API_KEY"
URL_ENV = "STUDIO_ARGILLA_URL"


@dataclass(frozen=True)
class ArgillaConnection:
    """Where Argilla is and the key to use. ``embedded`` says whether the studio runs it."""

    url: str
    api_key: str = field(repr=False)
    embedded: bool
    username: str | None = None


def embedded_url(cfg: settings_mod.Settings | None = None) -> str:
    """The URL of the embedded Argilla as a client on this machine reaches it."""
    return (cfg or settings_mod.current()).embedded_argilla_url


def get_connection() -> ArgillaConnection:
    """The external Argilla when STUDIO_ARGILLA_URL is set, else the embedded one."""
    cfg = settings_mod.current()
    if cfg.argilla_url:
        if not cfg.argilla_url.startswith(("http://", "https://")):
            raise ReviewError(f"{URL_ENV}={cfg.argilla_url!r} is not an http(s) URL.",
                              hint=f"Set {URL_ENV} to e.g. https://argilla.example.org.")
        key = (os.environ.get(API_KEY_ENV) or "").strip()
        if not key:
            raise ReviewError(f"{URL_ENV} points at an external Argilla ({cfg.argilla_url}) but {API_KEY_ENV} is not set.",
                              hint=f"Set {API_KEY_ENV} to an API key of that server (Argilla UI → My settings), "
                              f"or unset {URL_ENV} to use the embedded Argilla.")
        return ArgillaConnection(url=cfg.argilla_url, api_key=key, embedded=False)
    key = secrets.read_secret(OWNER_KEY_SECRET)
    if not key:
        raise ReviewError("The embedded Argilla has no owner account yet (it is created on its first start).",
                          hint="Run `python -m studio up` (it starts Argilla), or set STUDIO_ARGILLA_URL and "
                          f"{API_KEY_ENV} to use an external Argilla.")
    return ArgillaConnection(url=embedded_url(cfg), api_key=key, embedded=True, username=OWNER_USERNAME)
