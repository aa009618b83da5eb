"""The embedded Argilla as real processes: start, health, crash and reindex, users, bad settings."""

from __future__ import annotations

import json
import os
import signal
import socket

import httpx
import pytest

from core import procs
from studio import argilla_embedded, lifecycle
from studio.argilla_conn import get_connection
from studio.cli import main as cli_main
from core.errors import BadInput, ReviewError, ServiceError, StorageError
from studio.services import argilla_admin
from core.settings import current
from tests.fixtures.core import free_port, wait_for


def _wait(predicate, timeout_s: float, what: str):
    return wait_for(predicate, what, timeout_s, 0.3)


def _parts() -> dict:
    return {h.name: h for h in lifecycle.service_health() if h.name in argilla_embedded.PARTS}


# -- settings and connection rules (no server needed) --------------------------------------------------
def test_external_argilla_needs_its_api_key(studio_home, monkeypatch):
    monkeypatch.setenv("STUDIO_ARGILLA_URL", "http://argilla.example:6900/")
    with pytest.raises(ReviewError, match=r"ARGILLA_API_KEY is not set.*Set ARGILLA_API_KEY"):
        get_connection()
    monkeypatch.setenv("ARGILLA_API_KEY", "k" * 20)
    conn = get_connection()
    assert (conn.url, conn.embedded) == ("http://argilla.example:6900", False)
    assert "k" * 20 not in repr(conn)
    monkeypatch.setenv("STUDIO_ARGILLA_URL", "argilla.example:6900")
    with pytest.raises(ReviewError, match=r"is not an http\(s\) URL"):
        get_connection()


def test_embedded_argilla_before_first_start_says_run_up(studio_home):
    with pytest.raises(ReviewError, match=r"no owner account yet.*Run `python -m studio up`"):
        get_connection()


def test_port_settings_must_be_numbers(studio_home, monkeypatch):
    monkeypatch.setenv("STUDIO_REDIS_PORT", "six")
    with pytest.raises(StorageError, match=r"STUDIO_REDIS_PORT='six' is not a whole number"):
        current()


@pytest.mark.parametrize("username, password, role, message", [
    ("Ana", "password1", "annotator", r"Username 'Ana' is not allowed.*lowercase"),
    ("_ana", "password1", "annotator", r"Username '_ana' is not allowed"),
    ("ana", "short", "annotator", r"has 5 characters.*8 to 100"),
    ("ana", "password1", "boss", r"Role 'boss' is not an Argilla role.*annotator, admin, owner"),
])
def test_user_rules(username, password, role, message):
    with pytest.raises(BadInput, match=message):
        argilla_admin.validate_user(username, password, role)


# -- a part that cannot start says which one and what to change ---------------------------------------
def test_redis_port_taken_is_named_with_the_setting_to_change(studio_home):
    settings = current()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", settings.redis_port))
        blocker.listen()
        with pytest.raises(ServiceError, match=rf"redis: Redis did not start: port {settings.redis_port} "
                                               r"on 127.0.0.1 is in use.*STUDIO_REDIS_PORT"):
            lifecycle.up(detach=True, with_llm=False, with_app=False, progress=lambda _m: None)


def test_search_engine_down_at_start_is_named(studio_home, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STUDIO_SEARCH_URL", dead)
    with pytest.raises(ServiceError, match=rf"argilla: The search engine at {dead} does not answer.*STUDIO_SEARCH_URL"):
        lifecycle.up(detach=True, with_llm=False, with_app=False, progress=lambda _m: None)
    settings = current()
    assert not procs.port_in_use("127.0.0.1", settings.redis_port)  # the supervisor stopped Redis again
    assert _parts()["search"].state == "not used"


def test_redis_down_when_the_server_starts_is_named(studio_home):
    with pytest.raises(ServiceError, match=r"Redis at redis://127.0.0.1:\d+/0 does not answer.*STUDIO_REDIS_PORT"):
        argilla_embedded.start_argilla_server(current())


def test_down_stops_the_parts_and_frees_their_ports(studio_home):
    settings = current()
    settings.ensure_home()
    lifecycle._start_detached(settings, ["redis", "search"], lambda _m: None)
    parts = _parts()
    assert parts["redis"].state == parts["search"].state == "running"
    pids = [parts["redis"].pid, parts["search"].pid]
    lines = lifecycle.down()
    assert any("stopped the supervisor" in line for line in lines)
    assert not any(procs.pid_alive(pid) for pid in pids)
    assert not procs.port_in_use("127.0.0.1", settings.redis_port)
    assert not procs.port_in_use("127.0.0.1", settings.search_port)
    assert {h.state for h in _parts().values() if h.name in ("redis", "search")} == {"stopped"}


# -- the session's real embedded Argilla ---------------------------------------------------------------
def test_up_reports_each_part_healthy_and_how_to_log_in(argilla_server, capsys):
    with argilla_server.as_home():
        parts = _parts()
        assert {name: h.state for name, h in parts.items()} == dict.fromkeys(argilla_embedded.PARTS, "running")
        info = argilla_admin.get_argilla_info()
        assert info.healthy and info.embedded and info.version == "2.8.0"
        assert info.url == argilla_server.url and info.username == "owner" and info.vectors_supported is False
        assert "`python -m studio argilla info` prints the password" in info.login_hint
        assert cli_main(["argilla", "info", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["healthy"] is True and len(printed["password"]) >= 8
        login = httpx.post(f"{argilla_server.url}/api/v1/token",
                           data={"username": "owner", "password": printed["password"]})
        assert login.status_code == 201, login.text
        for log in (argilla_server.home / "logs").glob("*.log"):  # the key never reaches a log
            assert argilla_server.api_key not in log.read_text(errors="replace")


def test_wrong_api_key_says_which_key_to_fix(argilla_env, monkeypatch):
    monkeypatch.setenv("ARGILLA_API_KEY", "not-the-right-key-" + "x" * 8)
    with pytest.raises(ReviewError, match=r"refused ARGILLA_API_KEY \(401 Could not validate credentials\).*"
                                          r"Check ARGILLA_API_KEY"):
        argilla_admin.list_users()
    info = argilla_admin.get_argilla_info()
    assert not info.healthy and "refused ARGILLA_API_KEY" in info.detail
    assert "not-the-right-key" not in info.detail


def test_unreachable_argilla_is_a_clear_error(studio_home, monkeypatch):
    monkeypatch.setenv("STUDIO_ARGILLA_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ARGILLA_API_KEY", "some-key-123456")
    with pytest.raises(ReviewError, match=r"cannot be reached.*Check STUDIO_ARGILLA_URL"):
        argilla_admin.list_users()


def test_users_add_and_list(argilla_env, capsys):
    name = f"ann-{os.getpid()}"
    assert cli_main(["argilla", "users", "add", name, "--password", "reviewer-pass-1"]) == 0
    assert f"added annotator {name} to the workspace default" in capsys.readouterr().out
    assert cli_main(["argilla", "users", "list", "--json"]) == 0
    users = {u["username"]: u for u in json.loads(capsys.readouterr().out)}
    assert users[name]["role"] == "annotator" and users[name]["workspaces"] == ["default"]
    assert users["owner"]["role"] == "owner"
    assert cli_main(["argilla", "users", "add", name, "--password", "reviewer-pass-1"]) == 2
    assert f"already has a user named '{name}'" in capsys.readouterr().err
    key = argilla_env.create_user(f"{name}-b", "reviewer-pass-2")
    me = httpx.get(f"{argilla_env.url}/api/v1/me", headers={"X-Argilla-Api-Key": key}).json()
    assert (me["username"], me["role"]) == (f"{name}-b", "annotator")


def _dataset_with_records(server, name: str, texts: list[str]) -> str:
    """A published dataset with one text field, made through Argilla's REST API; returns its id."""
    conn = server.connection
    space = argilla_admin.call_api(conn, "GET", "/api/v1/me/workspaces")["items"][0]["id"]
    ds = argilla_admin.call_api(conn, "POST", "/api/v1/datasets", json={"name": name, "workspace_id": space})["id"]
    argilla_admin.call_api(conn, "POST", f"/api/v1/datasets/{ds}/fields",
                           json={"name": "text", "title": "Text", "settings": {"type": "text"}})
    argilla_admin.call_api(conn, "POST", f"/api/v1/datasets/{ds}/questions", json={
        "name": "good", "title": "Good?", "required": True, "settings": {"type": "label_selection", "options": [
            {"value": "yes", "text": "yes"}, {"value": "no", "text": "no"}]}})
    argilla_admin.call_api(conn, "PUT", f"/api/v1/datasets/{ds}/publish")
    argilla_admin.call_api(conn, "POST", f"/api/v1/datasets/{ds}/records/bulk",
                           json={"items": [{"fields": {"text": t}} for t in texts]})
    return ds


def _found(server, dataset_id: str, text: str) -> int | None:
    """How many records a text search finds (None while the search engine cannot answer)."""
    try:
        found = argilla_admin.call_api(server.connection, "POST", f"/api/v1/datasets/{dataset_id}/records/search",
                                       json={"query": {"text": {"q": text}}})
    except ReviewError:
        return None
    return found["total"]


def test_killed_search_engine_is_restarted_and_reindexed(argilla_server):
    dataset = _dataset_with_records(argilla_server, f"reindex-{os.getpid()}",
                                    ["a ripe banana", "a green apple", "banana bread"])
    assert _wait(lambda: _found(argilla_server, dataset, "banana") == 2, 10, "the records to be indexed")
    with argilla_server.as_home():
        before = _parts()["search"]
        os.kill(before.pid, signal.SIGKILL)
        restarted = _wait(lambda: (h := _parts()["search"]).state == "running" and h.restarts >= 1 and h,
                          60, "the supervisor to restart the search engine")
        assert restarted.pid != before.pid
        _wait(lambda: procs.read_state(current(), "search").get("recovered_at"), 90, "the reindex after the restart")
    assert _wait(lambda: _found(argilla_server, dataset, "banana") == 2, 30, "the records to be searchable again")


# -- Home shows where Argilla is and how to log in ------------------------------------------------------
def test_home_shows_argilla_health_and_login(argilla_env):
    from streamlit.testing.v1 import AppTest
    from tests.apptest_helpers import texts
    from tests.fixtures.core import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "pages" / "home.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert "Human review in Argilla" in page and argilla_env.url in page and "(external)" in page
    assert "signed in as owner" in page and "log in with your account on that server" in page
    assert argilla_env.api_key not in page


def test_home_says_how_to_start_argilla_before_its_first_start(studio_home):
    from streamlit.testing.v1 import AppTest
    from tests.apptest_helpers import texts
    from tests.fixtures.core import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "pages" / "home.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no owner account yet" in w.value for w in at.warning)
    assert "Start it with `python -m studio up`; then log in as `owner`." in texts(at)
