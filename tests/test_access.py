"""Team mode in the services: every public service function names the role it needs, an annotator is
refused every change an admin may make (before any work is done), nobody signed in is refused
everything, votes are the signed-in person's, and every change lands in the audit log under its author."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import studio.services
from core.errors import NotAllowed
from storage import audit
from storage.db import get_database
from studio import access
from studio.services import accounts, prices
from studio.services import compare as compare_svc
from studio.services import seeds as seeds_svc
from tests.test_compare_service import _ready, setup, tiny_b_dir  # noqa: F401  (fixtures)

ANN = access.Actor("ann", "annotator", "app")
ADA = access.Actor("ada", "admin", "app")
OWNER = access.Actor("root", "owner", "cli")
UNGUARDED_MODULES = {"training_queue", "training_launch"}   # plumbing that jobs run; no page calls them


def service_functions():
    """(module, name, function) for every public function of every service module."""
    for info in pkgutil.iter_modules(studio.services.__path__):
        module = importlib.import_module(f"studio.services.{info.name}")
        for name, fn in vars(module).items():
            if callable(fn) and not name.startswith("_") and not isinstance(fn, type) and \
                    getattr(fn, "__module__", None) == module.__name__:
                yield info.name, name, fn


def guarded(role: str | None = None, change: bool | None = None):
    found = []
    for module, name, fn in service_functions():
        guard = getattr(fn, "__guard__", None)
        if guard and (role is None or guard[0] == role) and (change is None or bool(guard[1]) == change):
            found.append(pytest.param(fn, id=f"{module}.{name}"))
    return found


@pytest.fixture
def team(studio_home, monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH", "argilla")
    return studio_home


def test_every_service_function_names_its_role_or_is_declared_plumbing():
    undecided = []
    for module, name, fn in service_functions():
        if module in UNGUARDED_MODULES:
            continue
        internal = vars(importlib.import_module(f"studio.services.{module}")).get("__guard_internal__")
        if internal is None:
            undecided.append(f"{module} (no guard_module call)")
        elif not hasattr(fn, "__guard__") and name not in internal:
            undecided.append(f"{module}.{name}")
    assert not undecided, undecided
    assert len(guarded("admin")) >= 40 and len(guarded(change=True)) >= 40


@pytest.mark.parametrize("fn", guarded("admin"))
def test_an_annotator_is_refused_every_change_before_it_starts(team, fn):
    with access.act_as(ANN), pytest.raises(NotAllowed, match=r"^ann is an annotator and may not .*ask an admin"):
        fn("x", "y")     # arguments are never looked at: the role check comes first
    assert audit.entries(get_database()) == []    # a refused call changed nothing, so it is not a change


@pytest.mark.parametrize("fn", guarded())
def test_nobody_signed_in_is_refused_everything(team, fn):
    with pytest.raises(NotAllowed, match="Nobody is signed in"):
        fn()


def test_an_annotator_reads_results_and_an_admin_changes_with_attribution(team):
    with access.act_as(ANN):
        assert prices.list_prices() is not None and compare_svc.list_comparisons() == []
        with pytest.raises(NotAllowed, match="ann is an annotator and may not set a model's price"):
            prices.set_price("gpt-x", 1.0, 2.0)
    with access.act_as(ADA):
        prices.set_price("gpt-x", 1.0, 2.0)
        added = seeds_svc.add_typed_seeds("Write a haiku about rain.\nName three rivers.", name="team seeds")
        with pytest.raises(Exception):
            seeds_svc.import_seeds(str(team / "missing.jsonl"))
    with access.act_as(OWNER):
        entries = accounts.audit_log()   # the CLI's (owner) view, newest first
    assert [(e.actor, e.role, e.action, bool(e.error)) for e in entries][::-1] == [
        ("ada", "admin", "set a model's price", False), ("ada", "admin", "add seeds", False),
        ("ada", "admin", "import seeds", True)]
    assert entries[2].details["model"] == "gpt-x" and entries[1].target == getattr(added, "id", entries[1].target)
    with access.act_as(ANN), pytest.raises(NotAllowed, match="may not read the audit log"):
        accounts.audit_log()


def test_the_arena_vote_is_the_signed_in_persons_once_per_pair(setup, team):  # noqa: F811
    with access.act_as(ADA):
        comparison_id = _ready(setup)
    with access.act_as(ANN):
        pair = compare_svc.next_arena_pair(comparison_id, None)
        with pytest.raises(NotAllowed, match="ann cannot vote as 'bob'"):
            compare_svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_b_id, "a", "bob")
        compare_svc.cast_vote(comparison_id, pair.prompt_id, pair.output_a_id, pair.output_b_id, "a", None)
        with pytest.raises(Exception, match="ann has already voted on this pair"):
            compare_svc.cast_vote(comparison_id, pair.prompt_id, pair.output_b_id, pair.output_a_id, "b", "ann")
    with access.act_as(OWNER):
        board = compare_svc.leaderboard(comparison_id=comparison_id, voter_kind="human")
        votes = [e for e in accounts.audit_log() if e.action == "vote in the arena"]
    assert board.votes == 1
    assert [(v.actor, v.role, bool(v.error)) for v in votes] == [("ann", "annotator", True), ("ann", "annotator", False),
                                                                 ("ann", "annotator", True)][::-1]


def test_a_job_acts_as_whoever_started_it(team):
    with access.act_as(ADA):
        env = access.job_env({})
    assert env[access.ACTOR_ENV] == "ada:admin"
    os.environ[access.ACTOR_ENV] = env[access.ACTOR_ENV]
    try:
        assert access.from_environment() == access.Actor("ada", "admin", "job")
    finally:
        del os.environ[access.ACTOR_ENV]
    assert access.from_environment().role == "owner" and access.from_environment().via == "cli"


def test_sessions_resume_expire_and_end_on_sign_out(team, monkeypatch):
    monkeypatch.setenv("STUDIO_SESSION_IDLE_MINUTES", "1")
    token = "t-" + os.urandom(8).hex()
    with accounts._lock:
        accounts._sessions[accounts._digest(token)] = accounts.Session(ANN, 1000.0)
    assert accounts.resume(token, now=1030.0) == ANN           # active: counts as activity
    assert accounts.resume(token, now=1089.0) == ANN           # 59 s after the last activity
    assert accounts.resume(token, now=1150.0) is None          # 61 s idle: gone for good
    assert accounts.resume(token, now=1151.0) is None
    with accounts._lock:
        accounts._sessions[accounts._digest(token)] = accounts.Session(ANN, 2000.0)
    accounts.sign_out(token)
    assert accounts.resume(token, now=2001.0) is None
    assert token not in repr(accounts._sessions)               # only the hash is kept


def test_repeated_failed_sign_ins_are_slowed_down(team):
    name = "mallory-" + os.urandom(4).hex()
    for _ in range(accounts.FREE_FAILURES):
        assert accounts.wait_before_next_try(name) == 0
        accounts._failed(name)
    waits = []
    for _ in range(3):
        waits.append(round(accounts.wait_before_next_try(name, now=accounts._failures[name][1])))
        accounts._failed(name)
    assert waits == [2, 4, 8]
    with pytest.raises(NotAllowed, match=f"Too many failed sign-ins for {name}.*Try again in"):
        accounts.sign_in(name, "whatever", url="http://127.0.0.1:9")   # refused before any request


def test_up_refuses_to_open_beyond_loopback_without_sign_in(studio_home):
    env = {**os.environ, "STUDIO_HOST": "0.0.0.0", "STUDIO_AUTH": "off"}
    done = subprocess.run([sys.executable, "-m", "studio", "up", "--no-llm", "--no-argilla", "--detach"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode != 0
    assert "STUDIO_HOST=0.0.0.0 would open the studio beyond this machine with sign-in off" in done.stderr
    assert "STUDIO_AUTH=argilla" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "studio", "status"], env={**env, "STUDIO_AUTH": "ldap"},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "STUDIO_AUTH='ldap' is not a sign-in mode" in bad.stderr + bad.stdout


def test_the_cli_is_the_owner_and_reads_the_audit_log(team):
    with access.act_as(ADA):
        prices.set_price("gpt-y", 1.0, 2.0)
    env = {**os.environ, "STUDIO_AUTH": "argilla"}
    done = subprocess.run([sys.executable, "-m", "studio", "audit", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert (entry["actor"], entry["role"], entry["action"]) == ("ada", "admin", "set a model's price")
    done = subprocess.run([sys.executable, "-m", "studio", "prices", "set", "gpt-z", "1", "2"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with access.act_as(OWNER):
        latest = accounts.audit_log(limit=1)[0]
    assert latest.via == "cli" and latest.role == "owner"
