"""Team mode against the real embedded Argilla: people sign in with their Argilla accounts, in the
services and in two real browser sessions with different roles; the annotator cannot do what an admin
does; reload keeps a session and sign-out ends it; no password or session token reaches DuckDB or logs."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from core import settings as settings_mod
from core.errors import NotAllowed
from storage.db import get_database
from studio import access
from studio.services import accounts
from tests.fixtures.browser import wait_until_idle

PASSWORD = "Team-pass-" + uuid.uuid4().hex[:10]


@pytest.fixture
def team(studio_home, argilla_env, monkeypatch):
    """Team mode against the session's Argilla, with one admin and one annotator of its own."""
    monkeypatch.setenv("STUDIO_AUTH", "argilla")
    tag = uuid.uuid4().hex[:6]
    names = {"admin": f"ada{tag}", "annotator": f"ann{tag}"}
    with access.act_as(access.local_owner("cli")):   # the owner at the shell adds the team
        for role, name in names.items():
            argilla_env.create_user(name, PASSWORD, role)
    return names


def _all_bytes_under(*folders) -> bytes:
    out = b""
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                out += path.read_bytes()
    return out


def test_sign_in_checks_argilla_and_keeps_no_secret(team, studio_home):
    token, actor = accounts.sign_in(team["admin"], PASSWORD)
    assert (actor.name, actor.role) == (team["admin"], "admin") and accounts.resume(token) == actor
    _, annotator = accounts.sign_in(team["annotator"], PASSWORD)
    assert annotator.role == "annotator"
    with pytest.raises(NotAllowed, match="do not match an Argilla account"):
        accounts.sign_in(team["admin"], PASSWORD + "x")
    with pytest.raises(NotAllowed, match="do not match an Argilla account"):
        accounts.sign_in("nobody" + uuid.uuid4().hex[:6], PASSWORD)
    with access.act_as(actor):   # an attributed change, so the audit log has rows to look through
        from studio.services import prices

        prices.set_price("gpt-team", 1.0, 2.0)
    get_database().close()
    stored = _all_bytes_under(studio_home)
    assert PASSWORD.encode() not in stored and token.encode() not in stored
    assert team["admin"].encode() in stored    # the audit log names the person


def _sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _add_seeds(page, url: str) -> None:
    page.goto(f"{url}/generate")
    page.get_by_role("heading", name="Generate", exact=True).wait_for()
    page.get_by_label("Seed tasks").fill("Write a haiku about rain.\nName three rivers.")
    page.get_by_role("button", name="Add seeds").click()


def test_two_people_two_roles_in_the_browser(team, streamlit_app, chromium, screenshots, studio_home, argilla_env):
    app = streamlit_app({"STUDIO_AUTH": "argilla"})
    admin_ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    ann_ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        admin, ann = admin_ctx.new_page(), ann_ctx.new_page()
        for page in (admin, ann):
            page.set_default_timeout(30_000)

        # a wrong password is refused with what to do; nothing but the sign-in page is reachable
        _sign_in(ann, app.url, team["annotator"], "wrong-password")
        ann.get_by_text("do not match an Argilla account").wait_for()
        ann.goto(f"{app.url}/train")
        ann.get_by_role("heading", name="Sign in").wait_for()
        assert not ann.get_by_role("heading", name="Train").count()
        screenshots.take(ann, "signin-refused")

        _sign_in(ann, app.url, team["annotator"], PASSWORD)
        ann.get_by_text(f"Signed in as {team['annotator']}").wait_for()
        assert not ann.get_by_text("Audit log").count()               # an annotator has no audit page
        ann.get_by_role("heading", name="Services").wait_for()        # Home (with Argilla's health) reads fine
        assert not ann.get_by_text(re.compile("may not")).count()
        _add_seeds(ann, app.url)                                      # the page says so, the service refuses
        ann.get_by_text("You are signed in as an annotator: you can read everything here").wait_for()
        ann.get_by_text(re.compile(f"{team['annotator']} is an annotator and may not add seeds")).wait_for()
        wait_until_idle(ann)
        screenshots.take(ann, "annotator-refused")
        ann.reload()                                                  # a reload keeps the session
        ann.get_by_text(f"Signed in as {team['annotator']}").wait_for()

        _sign_in(admin, app.url, team["admin"], PASSWORD)
        admin.get_by_text(f"Signed in as {team['admin']}").wait_for()
        _add_seeds(admin, app.url)
        admin.get_by_text(re.compile(r"Imported 2 seeds")).first.wait_for()
        admin.goto(f"{app.url}/audit")
        admin.get_by_role("heading", name="Audit log").wait_for()
        admin.get_by_test_id("stDataFrame").first.wait_for()          # its rows are checked below
        wait_until_idle(admin)
        screenshots.take(admin, "admin-audit-log")
        assert ann.get_by_text(f"Signed in as {team['annotator']}").count()   # two sessions side by side

        ann.get_by_role("button", name="Sign out").click()
        ann.get_by_role("heading", name="Sign in").wait_for()
        ann.reload()                                                  # signed out stays signed out
        ann.get_by_role("heading", name="Sign in").wait_for()
        screenshots.take(ann, "signed-out")
    finally:
        admin_ctx.close()
        ann_ctx.close()

    with access.act_as(access.local_owner("cli")):
        entries = accounts.audit_log()
    assert {(e.actor, e.action, bool(e.error)) for e in entries} >= {
        (team["admin"], "add seeds", False)}
    assert not any(e.actor == team["annotator"] and not e.error for e in entries)
    logs = _all_bytes_under(studio_home) + app.log().encode()
    assert PASSWORD.encode() not in logs
    assert os.environ.get("STUDIO_AUTH") == "argilla" and settings_mod.current().auth == "argilla"
