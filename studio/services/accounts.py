"""Team mode's sign-in: the Argilla account is the studio account.

``sign_in`` checks a name and password with the Argilla the studio uses (embedded or external), through
Argilla's own API: ``POST /api/v1/token`` (its password check) and ``GET /api/v1/me`` (the role). The
password and Argilla's token are used for those two calls and dropped; the studio stores neither, and
``/me``'s API key is not kept either.

A signed-in browser holds a random session token (a cookie); this process keeps only its SHA-256 with the
person's name, role and last activity, in memory. A session ends after ``STUDIO_SESSION_IDLE_MINUTES``
without activity, on sign-out, or when the app restarts. Failed sign-ins for a name are slowed down:
after 3 in a row each further try must wait twice as long as the one before (2 s, 4 s, ... up to 5 min).
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
import threading
import time
from dataclasses import dataclass

import httpx

from core import settings as settings_mod
from core.errors import BadInput, NotAllowed, ServiceError
from studio import access, argilla_conn

COOKIE = "studio_session"
SESSION_STATE_KEY = "studio_session_token"   # where the app keeps the token in a browser session
FREE_FAILURES = 3
MAX_WAIT_S = 300.0
TIMEOUT_S = 15.0


@dataclass
class Session:
    actor: access.Actor
    last_seen: float


_sessions: dict[str, Session] = {}
_failures: dict[str, tuple[int, float]] = {}   # name -> (failures in a row, time of the last)
_lock = threading.Lock()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def argilla_url() -> str:
    cfg = settings_mod.current()
    return cfg.argilla_url or argilla_conn.embedded_url(cfg)


def wait_before_next_try(name: str, now: float | None = None) -> float:
    """Seconds ``name`` must still wait before another sign-in try (0 when it may try now)."""
    now = time.time() if now is None else now
    with _lock:
        failures, last = _failures.get(name.lower(), (0, 0.0))
    if failures < FREE_FAILURES:
        return 0.0
    wait = min(MAX_WAIT_S, 2.0 ** (failures - FREE_FAILURES + 1))
    return max(0.0, last + wait - now)


def _failed(name: str) -> None:
    with _lock:
        failures, _ = _failures.get(name.lower(), (0, 0.0))
        _failures[name.lower()] = (failures + 1, time.time())


def sign_in(name: str, password: str, url: str | None = None) -> tuple[str, access.Actor]:
    """(session token for the browser, who signed in), or a clear refusal."""
    name = (name or "").strip()
    if not name or not password:
        raise BadInput("Type your Argilla user name and password.", hint="The same account you review with in Argilla.")
    wait = wait_before_next_try(name)
    if wait > 0:
        raise NotAllowed(f"Too many failed sign-ins for {name}.", hint=f"Try again in {wait:.0f} s.")
    url = url or argilla_url()
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
            got = client.post("/api/v1/token", data={"username": name, "password": password})
            if got.status_code in (401, 403, 422):
                _failed(name)
                raise NotAllowed("That user name and password do not match an Argilla account.",
                                 hint="Check both (they are case-sensitive), or ask the owner to add you "
                                      "(`python -m studio argilla users add`).")
            got.raise_for_status()
            bearer = got.json()["access_token"]
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"})
            me.raise_for_status()
            user = me.json()
    except httpx.HTTPError as exc:
        raise ServiceError(f"Argilla at {url} did not answer the sign-in ({type(exc).__name__}).",
                           hint="Start it with `python -m studio up` (or check STUDIO_ARGILLA_URL), then sign in again.")
    role = user.get("role")
    if role not in access.ROLES:
        raise NotAllowed(f"Argilla gave {name} the role {role!r}, which the studio does not know.",
                         hint=f"Give the account one of the roles {', '.join(access.ROLES)} in Argilla.")
    with _lock:
        _failures.pop(name.lower(), None)
    actor = access.Actor(str(user.get("username") or name), role, "app")
    token = pysecrets.token_urlsafe(32)
    with _lock:
        _sessions[_digest(token)] = Session(actor, time.time())
    return token, actor


def resume(token: str | None, now: float | None = None) -> access.Actor | None:
    """Who holds ``token``, if the session is alive (and it counts as activity); None otherwise."""
    if not token:
        return None
    now = time.time() if now is None else now
    idle = settings_mod.current().session_idle_minutes * 60
    key = _digest(token)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            return None
        if now - session.last_seen > idle:
            del _sessions[key]
            return None
        session.last_seen = now
        return session.actor


def sign_out(token: str | None) -> None:
    if token:
        with _lock:
            _sessions.pop(_digest(token), None)


def active_sessions() -> list[access.Actor]:
    with _lock:
        return [s.actor for s in _sessions.values()]


def audit_log(actor: str | None = None, target: str | None = None, limit: int = 200):
    """The audit log, newest first (admins and the owner)."""
    from storage import audit
    from storage.db import get_database

    access.require(access.MANAGE, "read the audit log")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise BadInput(f"limit={limit!r} is out of range.", hint="Use a whole number from 1 to 10000.")
    return audit.entries(get_database(), actor=actor or None, target=target or None, limit=limit)


def started_by(target: str) -> str | None:
    """Who started or made ``target`` (a run, comparison or snapshot id), from the audit log."""
    from storage import audit
    from storage.db import get_database

    access.require(access.READ, "read who started a run")
    found = [e for e in audit.entries(get_database(), target=target, limit=50) if not e.error]
    return found[-1].actor if found else None


# Sign-in works before anyone is signed in; the audit log checks its own role (reading it is not a change).
access.guard_module(globals(), internal=("argilla_url", "wait_before_next_try", "sign_in", "resume", "sign_out",
                                         "active_sessions", "audit_log", "started_by"))
