"""The embedded services as real processes: llama.cpp server, Streamlit app, supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest

from pipelines.llm.base import SamplingParams
from core import procs
from studio import lifecycle, supervisor
from core.errors import ServiceError, StorageError
from studio.services import models as svc
from tests.fixtures.core import REPO_ROOT, free_port, wait_for
from tests.fixtures.models import llm_settings

MODEL = lifecycle.EMBEDDED_MODEL
WITH_APP = lifecycle.APP_SCRIPT.is_file()


def _wait(predicate, timeout_s: float, what: str):
    return wait_for(predicate, what, timeout_s, 0.25)


def _health(name: str) -> lifecycle.ServiceHealth:
    return next(h for h in lifecycle.service_health() if h.name == name)


def _chat(base_url: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello in three words."}], max_tokens=16, temperature=0,
    )
    return reply.choices[0].message.content


# -- one server -------------------------------------------------------------------------------
def test_llama_server_answers_chat_completions(llama_server):
    client = openai.OpenAI(base_url=llama_server.url, api_key="not-needed")
    assert [m.id for m in client.models.list()] == [MODEL]
    assert _chat(llama_server.url).strip()


def test_try_prompt_streams_through_an_endpoint(db, llama_server):
    svc.add_endpoint("local-llama", llama_server.url, MODEL, concurrency=1)
    pieces = list(svc.try_prompt("endpoint:local-llama", "Name a colour.", system="Answer in one word.",
                                 params=SamplingParams(temperature=0, max_tokens=8)))
    assert len(pieces) >= 1 and "".join(pieces).strip()


@pytest.mark.parametrize("content, reason", [
    (b"\x00\x01not a model at all" * 100, r"the GGUF failed to load: .*invalid magic"),
    ("truncated", r"the GGUF failed to load: .*(gguf_init|llama_model_load)"),
])
def test_gguf_that_fails_to_load_says_why(tmp_path, smollm2_gguf, content, reason):
    bad = tmp_path / "bad.gguf"
    if content == "truncated":
        with open(smollm2_gguf, "rb") as src:
            bad.write_bytes(src.read(20_000_000))
    else:
        bad.write_bytes(content)
    settings = llm_settings(tmp_path / "home")
    with pytest.raises(ServiceError, match=r"The llm server did not start: " + reason):
        lifecycle.start_llm_server(settings, gguf_path=bad)
    assert not procs.port_in_use(settings.host, settings.llm_port)


def test_busy_port_is_reported_before_starting(tmp_path, smollm2_gguf):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        settings = llm_settings(tmp_path / "home", llm_port=sock.getsockname()[1])
        with pytest.raises(ServiceError, match=rf"Port {settings.llm_port} on 127.0.0.1 is in use.*STUDIO_LLM_PORT"):
            lifecycle.start_llm_server(settings, gguf_path=smollm2_gguf)


def test_missing_embedded_model_is_explained(db, tmp_path):
    settings = llm_settings(tmp_path / "home")
    with pytest.raises(ServiceError, match=r"smollm2-135m-instruct is not pulled yet.*models pull"):
        lifecycle.start_llm_server(settings)


def test_read_only_home_is_a_storage_error(tmp_path, monkeypatch):
    if os.geteuid() == 0:  # root ignores file modes; sysfs refuses new folders even to root
        home = Path("/sys/studio-home-test")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        home = parent / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    with pytest.raises(StorageError, match=r"STUDIO_HOME .* is not writable.*Point STUDIO_HOME at a folder"):
        lifecycle.up(detach=True, with_app=False)


# -- the supervisor ---------------------------------------------------------------------------
@pytest.fixture
def studio_ports(studio_home, monkeypatch, smollm2_gguf):
    """A private STUDIO_HOME with free ports and the embedded GGUF registered; `down` at the end."""
    monkeypatch.setenv("STUDIO_LLM_PORT", str(free_port()))
    monkeypatch.setenv("STUDIO_APP_PORT", str(free_port()))
    svc.add_model(str(smollm2_gguf), name=MODEL)
    yield studio_home
    lifecycle.down()


def test_detached_up_restarts_a_killed_server_and_down_stops_everything(studio_ports):
    lifecycle.up(detach=True, with_app=WITH_APP, with_argilla=False, progress=lambda _msg: None)
    sup = supervisor.running_supervisor(lifecycle.current())
    llm = _health("llm")
    assert sup and llm.state == "running" and llm.restarts == 0
    assert svc.get_endpoint("embedded").base_url == llm.url
    if WITH_APP:
        assert _health("app").state == "running"

    with pytest.raises(ServiceError, match=rf"already running \(PID {sup['pid']}, .* at http.*python -m studio down"):
        lifecycle.up(detach=True, with_app=WITH_APP, with_argilla=False)

    os.kill(llm.pid, signal.SIGKILL)
    restarted = _wait(lambda: (h := _health("llm")).state == "running" and h.restarts == 1 and h, 40, "a restart")
    assert restarted.pid != llm.pid
    assert "killed by SIGKILL" in lifecycle.read_state(lifecycle.current(), "llm")["last_error"]
    assert _chat(restarted.url).strip()

    pids = [sup["pid"], restarted.pid] + ([_health("app").pid] if WITH_APP else [])
    said = lifecycle.down()
    assert said[0] == f"stopped the supervisor (PID {sup['pid']})"
    assert not any(procs.pid_alive(pid) for pid in pids)
    assert {h.state for h in lifecycle.service_health()} == {"stopped"}
    assert lifecycle.down() == ["nothing running"]
    assert not (studio_ports / "services" / "supervisor.json").exists()


def test_stale_supervisor_file_is_cleaned_up(studio_home):
    settings = lifecycle.current()
    settings.ensure_home()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    procs.write_json(supervisor.supervisor_path(settings), {"pid": dead.pid, "pid_start_time": 1.0})
    assert supervisor.running_supervisor(settings) is None
    assert not supervisor.supervisor_path(settings).exists()
    assert lifecycle.down() == ["nothing running"]


def test_foreground_up_stops_its_children_on_sigterm(studio_ports):
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    code = "from studio.lifecycle import up; up(with_app=False, with_argilla=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        llm = _wait(lambda: (h := _health("llm")).state == "running" and h, 60, "the foreground up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert f"llm running at {llm.url}" in output
    assert not procs.pid_alive(llm.pid)
    assert _health("llm").state == "stopped"
    assert supervisor.running_supervisor(lifecycle.current()) is None


def test_supervisor_gives_up_after_repeated_fast_crashes(studio_home, monkeypatch):
    """Fault injection: a 'service' that exits with code 3 right after it started."""
    settings = lifecycle.current()
    settings.ensure_home()
    monkeypatch.setattr(supervisor, "POLL_S", 0.05)
    monkeypatch.setattr(supervisor, "MAX_BACKOFF_S", 0.05)
    log = settings.logs_dir / "flaky.log"

    def start_flaky(_settings) -> procs.ServiceHandle:
        with open(log, "ab") as out:
            offset = out.tell()
            process = subprocess.Popen([sys.executable, "-c", "print('boom: config is bad'); raise SystemExit(3)"],
                                       stdout=out, stderr=subprocess.STDOUT)
        return procs.ServiceHandle("llm", process, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/models",
                                   9, log, offset)

    messages: list[str] = []
    sup = supervisor.Supervisor(settings, {"llm": start_flaky}, messages.append)
    runner = threading.Thread(target=sup.run, daemon=True)
    runner.start()
    try:
        _wait(lambda: lifecycle.read_state(settings, "llm").get("status") == "failed", 30, "the supervisor to give up")
    finally:
        sup.stop()
        runner.join(10)
    state = lifecycle.read_state(settings, "llm")
    assert f"crashed {supervisor.MAX_FAST_CRASHES} times in a row" in state["last_error"]
    assert "exited with code 3: boom: config is bad" in state["last_error"]
    assert state["restarts"] == supervisor.MAX_FAST_CRASHES - 1
    health = _health("llm")
    assert health.state == "failed" and "gave up" in health.detail
    assert not runner.is_alive() and supervisor.running_supervisor(settings) is None


def test_supervisor_kill_takes_its_children_down(studio_ports):
    """A supervisor killed with SIGKILL leaves no orphaned server behind (PR_SET_PDEATHSIG)."""
    lifecycle.up(detach=True, with_app=False, with_argilla=False, progress=lambda _msg: None)
    sup = supervisor.running_supervisor(lifecycle.current())
    llm_pid = _health("llm").pid
    os.kill(sup["pid"], signal.SIGKILL)
    _wait(lambda: not procs.pid_alive(llm_pid), 15, "the orphaned server to exit")
    assert _health("llm").state == "stopped"
    assert lifecycle.down() == ["nothing running"]
