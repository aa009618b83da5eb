"""Argilla administration: where it is, whether it is healthy, how to log in, and team users.

Why REST instead of the argilla SDK here: these are four small calls, and the SDK's client
contacts its default server when objects are built without one. Every call goes through
``call_api``, which turns a refused key, an unreachable server and an unexpected answer into
``ReviewError`` messages that say what to change. Keys never appear in a message.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import httpx

from core import secrets
from studio.argilla_conn import (API_KEY_ENV, OWNER_PASSWORD_SECRET, OWNER_USERNAME, URL_ENV, ArgillaConnection,
                                 get_connection)
from core.errors import BadInput, ReviewError, StudioError
from studio import access

ROLES = ("annotator", "admin", "owner")
DEFAULT_WORKSPACE = "default"
TIMEOUT_S = 15.0
_USERNAME = re.compile(r"^(?!-|_)[a-z0-9\-_]{1,100}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 100


@dataclass(frozen=True)
class ArgillaUser:
    username: str
    role: str
    id: str
    workspaces: list[str] = field(default_factory=list)
    api_key: str | None = field(default=None, repr=False)  # only when just created, for tests and scripts

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


@dataclass
class ArgillaInfo:
    """What Home, `status` and `argilla info` show."""

    url: str
    embedded: bool
    healthy: bool
    detail: str
    version: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    login_hint: str = ""
    vectors_supported: bool = True
    parts: list = field(default_factory=list)  # list[studio.lifecycle.ServiceHealth]

    def to_dict(self, with_password: bool = False) -> dict:
        out = asdict(self)
        out["parts"] = [asdict(p) for p in self.parts]
        if not with_password:
            out.pop("password")
        return out


# -- the one HTTP path ---------------------------------------------------------------------------------
def _key_hint(conn: ArgillaConnection) -> str:
    if conn.embedded:
        return ("The owner key in STUDIO_HOME/secrets.toml does not match the embedded Argilla: restart it "
                "(`python -m studio down` then `python -m studio up`), which resets the owner to that key.")
    return f"Check {API_KEY_ENV}: copy the API key from the Argilla UI at {conn.url} (My settings)."


def call_api(conn: ArgillaConnection, method: str, path: str, *, json: dict | None = None,
             timeout_s: float = TIMEOUT_S) -> dict | list:
    """One request to Argilla's REST API with the connection's key; errors as ReviewError."""
    url = f"{conn.url}{path}"
    try:
        resp = httpx.request(method, url, json=json, timeout=timeout_s,
                             headers={"X-Argilla-Api-Key": conn.api_key})
    except httpx.TimeoutException:
        raise ReviewError(f"Argilla at {conn.url} did not answer within {timeout_s:.0f} s.",
                          hint="It may be starting or overloaded; try again, or check `python -m studio argilla info`.") from None
    except httpx.HTTPError as exc:
        where = "start it with `python -m studio up`" if conn.embedded else f"check {URL_ENV}"
        raise ReviewError(f"Argilla at {conn.url} cannot be reached ({type(exc).__name__}).",
                          hint=f"Is it running? {where[0].upper()}{where[1:]}.") from None
    if resp.status_code in (401, 403):
        who = "the embedded owner key" if conn.embedded else API_KEY_ENV
        raise ReviewError(f"Argilla at {conn.url} refused {who} ({resp.status_code} {_detail(resp)}).",
                          hint=_key_hint(conn))
    if resp.status_code >= 400:
        raise ReviewError(f"Argilla answered {method} {path} with {resp.status_code}: {_detail(resp)}.",
                          hint="See the Argilla server's log (STUDIO_HOME/logs/argilla.log when embedded).")
    return resp.json() if resp.content else {}


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        return resp.text[:200]
    if isinstance(detail, dict):
        params = detail.get("params") or {}
        return str(params.get("detail") or params or detail.get("code"))
    return str(detail)[:300]


# -- info and health ---------------------------------------------------------------------------------
def get_argilla_info(with_password: bool = False) -> ArgillaInfo:
    """URL, health (and the health of each embedded part) and how to log in."""
    from core import settings as settings_mod
    from studio.argilla_embedded import PARTS, embedded_search
    from studio.lifecycle import service_health

    cfg = settings_mod.current()
    parts = [h for h in service_health() if h.name in PARTS] if not cfg.argilla_url else []
    try:
        conn = get_connection()
    except StudioError as err:
        from studio.argilla_conn import embedded_url

        embedded = not cfg.argilla_url
        return ArgillaInfo(url=cfg.argilla_url or embedded_url(cfg), embedded=embedded, healthy=False,
                           detail=str(err), parts=parts, vectors_supported=not embedded_search(cfg),
                           username=OWNER_USERNAME if embedded else None,
                           login_hint="Start it with `python -m studio up`; then log in as `owner`." if embedded else "")
    healthy, detail, version = _probe(conn)
    info = ArgillaInfo(url=conn.url, embedded=conn.embedded, healthy=healthy, detail=detail, version=version,
                       parts=parts, vectors_supported=not (conn.embedded and embedded_search(cfg)))
    if conn.embedded:
        info.username = OWNER_USERNAME
        info.login_hint = (f"Open {conn.url} and log in as `{OWNER_USERNAME}`; "
                           "`python -m studio argilla info` prints the password.")
        if with_password:
            info.password = secrets.read_secret(OWNER_PASSWORD_SECRET)
    else:
        info.login_hint = f"Open {conn.url} and log in with your account on that server."
    return info


def _probe(conn: ArgillaConnection) -> tuple[bool, str, str | None]:
    try:
        version = call_api(conn, "GET", "/api/v1/version", timeout_s=3.0).get("version")
        me = call_api(conn, "GET", "/api/v1/me", timeout_s=3.0)
    except ReviewError as err:
        return False, str(err), None
    return True, f"answering at {conn.url} (Argilla {version}, signed in as {me.get('username')})", version


# -- users ---------------------------------------------------------------------------------------------
def validate_user(username: str, password: str, role: str) -> None:
    if not _USERNAME.fullmatch(username or ""):
        raise BadInput(f"Username {username!r} is not allowed by Argilla.",
                       hint="Use lowercase letters, digits, '-' and '_' (not first), e.g. ana or reviewer-2.")
    if not PASSWORD_MIN <= len(password or "") <= PASSWORD_MAX:
        raise BadInput(f"The password for {username!r} has {len(password or '')} characters.",
                       hint=f"Use {PASSWORD_MIN} to {PASSWORD_MAX} characters.")
    if role not in ROLES:
        raise BadInput(f"Role {role!r} is not an Argilla role.", hint=f"Use one of: {', '.join(ROLES)}.")


def add_user(username: str, password: str, role: str = "annotator", workspace: str = DEFAULT_WORKSPACE,
             conn: ArgillaConnection | None = None) -> ArgillaUser:
    """Create a team member (with the owner's key) and add them to ``workspace``."""
    validate_user(username, password, role)
    conn = conn or get_connection()
    if any(u.username == username for u in list_users(conn)):
        raise BadInput(f"Argilla already has a user named {username!r}.",
                       hint="Pick another name, or log in with that user's existing password.")
    created = call_api(conn, "POST", "/api/v1/users",
                       json={"username": username, "password": password, "role": role, "first_name": username})
    space = _workspace_id(conn, workspace)
    call_api(conn, "POST", f"/api/v1/workspaces/{space}/users", json={"user_id": created["id"]})
    return ArgillaUser(username=username, role=created["role"], id=created["id"], workspaces=[workspace],
                       api_key=created.get("api_key"))


def list_users(conn: ArgillaConnection | None = None) -> list[ArgillaUser]:
    """Every user of the Argilla server, with their workspaces."""
    conn = conn or get_connection()
    users = call_api(conn, "GET", "/api/v1/users").get("items", [])
    out = []
    for user in users:
        spaces = call_api(conn, "GET", f"/api/v1/users/{user['id']}/workspaces").get("items", [])
        out.append(ArgillaUser(username=user["username"], role=user["role"], id=user["id"],
                               workspaces=[s["name"] for s in spaces]))
    return sorted(out, key=lambda u: (ROLES.index(u.role) if u.role in ROLES else 9, u.username))


def _workspace_id(conn: ArgillaConnection, name: str) -> str:
    spaces = call_api(conn, "GET", "/api/v1/me/workspaces").get("items", [])
    for space in spaces:
        if space["name"] == name:
            return space["id"]
    return call_api(conn, "POST", "/api/v1/workspaces", json={"name": name})["id"]


def reindex_search_engine() -> str:
    """Rebuild the embedded Argilla's search index from its database."""
    from core import settings as settings_mod
    from studio.argilla_embedded import reindex

    cfg = settings_mod.current()
    if cfg.argilla_url:
        raise BadInput(f"The studio uses the external Argilla at {cfg.argilla_url}; it cannot reindex that one.",
                       hint="Run `python -m argilla_server search-engine reindex` on that server.")
    reindex(cfg)
    return "reindexed the embedded Argilla's search engine from its database"


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "add_user": "add an Argilla user",
    "list_users": "list the Argilla accounts",
    "reindex_search_engine": "reindex Argilla's search engine",
}, internal=("validate_user", "call_api"))   # call_api: the plumbing of the guarded calls above and of status
