"""Who is acting, what their role allows, and the record of what they did.

Team mode (``STUDIO_AUTH=argilla``): each person signs in on the app with their Argilla account
(``studio/services/accounts.py``); their Argilla role is their studio role. Single-user mode (the default, for a
laptop on loopback): everyone who reaches the app is the local owner.

The check lives here, in the services, not in the pages: every public function of a service module is
wrapped by ``guard_module`` at the end of that module, with the role it needs. A crafted request or a
stale page that calls a service still meets the check. Work that changes something is written to the
audit log (``storage/audit.py``) under the acting person's name.

Who acts:
- a page run: the person signed in to that browser session (``act_as`` around the page, in app.py);
- the CLI on this machine: the owner (shell access is already full access), named after the OS user;
- a background job: the person who started it (``STUDIO_ACTOR`` in the job's environment).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import getpass
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from core import settings as settings_mod
from core.errors import NotAllowed
from core.secrets import redact
from core.urls import redact_url

log = logging.getLogger(__name__)

ROLES = ("annotator", "admin", "owner")          # Argilla's roles, least to most
RANK = {role: i for i, role in enumerate(ROLES)}
READ, REVIEW, MANAGE = "annotator", "annotator", "admin"   # what a guard names
ACTOR_ENV = "STUDIO_ACTOR"                       # "name:role" of whoever started a background job
WHAT = {"annotator": "review, vote in the arena and read results",
        "admin": "also generate, train, compare, export and manage models, endpoints and keys",
        "owner": "everything an admin can"}


@dataclass(frozen=True)
class Actor:
    name: str
    role: str
    via: str = "app"          # app (signed in), local (single-user mode), cli, job

    def can(self, role: str) -> bool:
        return RANK.get(self.role, -1) >= RANK[role]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role})"


_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("studio_actor", default=None)
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("studio_guard_depth", default=0)


def team_mode() -> bool:
    return settings_mod.current().auth != "off"


def local_owner(via: str = "local") -> Actor:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return Actor(name, "owner", via)


def from_environment() -> Actor:
    """The CLI's actor: the person who started this job (STUDIO_ACTOR), else this machine's owner."""
    raw = os.environ.get(ACTOR_ENV, "")
    name, _, role = raw.rpartition(":")
    if name and role in ROLES:
        return Actor(name, role, "job")
    return local_owner("cli")


def current() -> Actor:
    """Who acts now. In team mode a page run with nobody signed in has no actor and is refused."""
    actor = _current.get()
    if actor is not None:
        return actor
    if team_mode():
        raise NotAllowed("Nobody is signed in.", hint="Sign in with your Argilla account on the studio's start page.")
    return local_owner()


@contextlib.contextmanager
def act_as(actor: Actor | None) -> Iterator[None]:
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)


def require(role: str, what: str) -> Actor:
    actor = current()
    if not actor.can(role):
        raise NotAllowed(f"{actor.name} is an {actor.role} and may not {what}.",
                         hint=f"An {actor.role} can {WHAT[actor.role]}; ask an admin or the owner of this "
                              f"studio to do it, or to give you the {role} role in Argilla.")
    return actor


def job_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a background job: it acts as (and is attributed to) whoever starts it."""
    actor = current()
    return {**env, ACTOR_ENV: f"{actor.name}:{actor.role}"}


# -- the guard on every service function -----------------------------------------------------------------
SECRET_WORDS = ("key", "password", "secret", "token")


def _summary(fn: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's simple arguments (ids, names, counts), never anything that looks like a secret."""
    import inspect

    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except TypeError:
        return {}
    out = {}
    for name, value in bound.items():
        if any(word in name.lower() for word in SECRET_WORDS):
            continue
        if isinstance(value, (str, int, float, bool)):
            out[name] = _clean(value)[:200] if isinstance(value, str) else value
        elif hasattr(value, "name") and isinstance(getattr(value, "name"), str):
            out[name] = _clean(value.name)[:200]
    return out


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _clean(text: str) -> str:
    """``text`` with credentials in any URL masked and anything shaped like a key masked."""
    return redact(_URL.sub(lambda m: redact_url(m.group(0)), text))


def _target(result: Any) -> str | None:
    for attr in ("id", "run_id", "comparison_id", "round_id", "job_id", "snapshot_id", "name"):
        value = getattr(result, attr, None)
        if isinstance(value, str):
            return value
    return result if isinstance(result, str) and len(result) < 120 else None


def guarded(role: str, action: str | None, fn: Callable) -> Callable:
    """``fn`` behind a role check; ``action`` (a verb phrase) marks a change, written to the audit log."""
    what = action or f"read {fn.__module__.rsplit('.', 1)[-1]} ({fn.__name__})"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        actor = require(role, what)
        depth = _depth.get()
        token = _depth.set(depth + 1)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if action and depth == 0 and actor.via != "job":
                _audit(actor, fn, action, args, kwargs, None, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            _depth.reset(token)
        if action and depth == 0 and actor.via != "job":
            _audit(actor, fn, action, args, kwargs, _target(result), None)
        return result

    wrapper.__guard__ = (role, action)
    return wrapper


def _audit(actor: Actor, fn: Callable, action: str, args, kwargs, target: str | None, error: str | None) -> None:
    from storage import audit
    from storage.db import get_database

    try:
        audit.record(get_database(), actor.name, actor.role, actor.via, f"{fn.__module__.rsplit('.', 1)[-1]}."
                     f"{fn.__name__}", action, target, _summary(fn, args, kwargs),
                     _clean(error)[:500] if error else None)
    except Exception:  # the audit log must not turn a finished action into a failure
        log.exception("could not write the audit log entry for %s", action)


def guard_module(namespace: dict, *, manage: dict[str, str | None] = None, review: dict[str, str] = None,
                 internal: Iterable[str] = ()) -> None:
    """Wrap every public function defined in the module ``namespace``: those in ``manage`` need an admin,
    those in ``review`` an annotator (and are changes, audited; a ``None`` verb phrase in ``manage`` is an
    admin-only read, not audited), ``internal`` ones are plumbing the
    services call among themselves and jobs run (not wrapped), and everything else reads (any signed-in
    person). A public function left out of every list is a read: the test suite lists every function with
    its role, so a new one is decided on, not forgotten."""
    manage, review = manage or {}, review or {}
    module = namespace["__name__"]
    listed = set(manage) | set(review) | set(internal)
    defined = {name for name, value in namespace.items() if callable(value) and not name.startswith("_")
               and getattr(value, "__module__", None) == module and not isinstance(value, type)}
    unknown = listed - defined
    if unknown:
        raise RuntimeError(f"{module}: guard names functions it does not define: {sorted(unknown)}")
    namespace["__guard_internal__"] = frozenset(internal)
    for name in sorted(defined - set(internal)):
        fn = namespace[name]
        if hasattr(fn, "__guard__"):
            continue
        if name in manage:
            namespace[name] = guarded(MANAGE, manage[name], fn)
        elif name in review:
            namespace[name] = guarded(REVIEW, review[name], fn)
        else:
            namespace[name] = guarded(READ, None, fn)


__all__ = ["Actor", "ROLES", "act_as", "current", "from_environment", "guard_module", "guarded", "job_env",
           "local_owner", "require", "team_mode"]
