"""Security: typed names stay inside STUDIO_HOME, servers bind to loopback, API keys land nowhere,
and model folders never run their own code.

Real components throughout: a temp STUDIO_HOME with its DuckDB file, the loopback OpenAI server
(which echoes a rejected bearer token in its 401 body, as some servers do), background job
processes, and the real servers (Streamlit, llama.cpp, Redis) whose listening sockets are read
from the OS.
"""

from __future__ import annotations

import ast
import json
import shutil
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from studio.services.generate import run_generation
from studio import jobs
from core.errors import BadInput, NotFound, StudioError
from core.paths import plain_name, safe_child
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc
from tests.fixtures.core import wait_for
from tests.generate_script import make_config, scripted_reply

ROOT = Path(__file__).resolve().parents[1]
ESCAPES = ["../outside.jsonl", "a/../../outside.jsonl", "exports/../../../outside.jsonl", "/etc/passwd",
           "/tmp/outside.jsonl", "~/outside.jsonl"]


def files_outside(tmp_path: Path, home: Path) -> set[Path]:
    """Every file under the test's tmp dir that is not inside the home (what an escape would create)."""
    return {p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(home)}


# -- (a) names typed by users --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pairs.jsonl", "run 1/pairs.parquet", "a/b/c", "..hidden-but-inside", "x~"])
def test_safe_child_keeps_names_inside(tmp_path, name):
    base = tmp_path / "home" / "exports"
    base.mkdir(parents=True)
    path = safe_child(base, name, what="export path")
    assert path.is_relative_to(base.resolve()) and path != base.resolve()
    assert safe_child(base, str(path)) == path  # the page prefills an absolute path inside: accepted


@pytest.mark.parametrize("name", ESCAPES + [".", "a/..", "/"])
def test_safe_child_refuses_escapes(tmp_path, name):
    base = tmp_path / "home" / "exports"
    base.mkdir(parents=True)
    with pytest.raises(BadInput, match=r"The export path .* points outside .*exports"):
        safe_child(base, name, what="export path")


def test_safe_child_refuses_nul_empty_long_and_non_text(tmp_path):
    with pytest.raises(BadInput, match="contains a NUL byte"):
        safe_child(tmp_path, "a\x00.jsonl")
    with pytest.raises(BadInput, match="No run name was given"):
        safe_child(tmp_path, "  ", what="run name")
    with pytest.raises(BadInput, match="has a part of 300 bytes"):
        safe_child(tmp_path, "x" * 300)
    with pytest.raises(BadInput, match="is not text"):
        safe_child(tmp_path, 42)  # type: ignore[arg-type]


def test_safe_child_follows_symlinks_that_lead_out(tmp_path):
    base, outside = tmp_path / "home", tmp_path / "elsewhere"
    base.mkdir()
    outside.mkdir()
    (base / "link").symlink_to(outside, target_is_directory=True)
    (base / "inside").mkdir()
    (base / "ok").symlink_to(base / "inside", target_is_directory=True)
    with pytest.raises(BadInput, match="points outside"):
        safe_child(base, "link/pairs.jsonl")
    assert safe_child(base, "ok/pairs.jsonl") == (base / "inside" / "pairs.jsonl").resolve()


@pytest.mark.parametrize("name", ["run-1", "My snapshot 2", "v1.2_final"])
def test_plain_name_accepts(name):
    assert plain_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".hidden", "..", "", "x\x00", "-flag", "x" * 129])
def test_plain_name_refuses(name):
    with pytest.raises(BadInput, match=r"is not allowed|NUL byte|No run id was given"):
        plain_name(name, what="run id")


@pytest.mark.parametrize("filename", ["../../escape.csv", "/etc/passwd", "..\\..\\win.csv", "a\x00b.csv", "..",
                                      "../", ".bashrc"])
def test_uploads_stay_in_the_uploads_folder(studio_home, tmp_path, filename):
    path = seeds_svc.save_upload(filename, b"text\nhello\n")
    assert path.resolve().is_relative_to((studio_home / "uploads").resolve())
    assert not path.name.startswith(".") and "\x00" not in str(path)
    assert files_outside(tmp_path, studio_home) == set()


def test_seed_set_names_are_names_not_paths(db, studio_home, tmp_path):
    for name in ("../../escape", "/etc/passwd", "a\x00b"):
        summary = seeds_svc.add_typed_seeds(["Explain DNS."], name=name)
        assert summary.name == name  # stored as given, used only as a label in the database
    assert files_outside(tmp_path, studio_home) == set()


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "..", "x\x00"])
def test_model_and_endpoint_names_cannot_be_paths(db, tiny_model_dir, name):
    with pytest.raises(BadInput, match="name .* is not allowed"):
        models_svc.add_model(str(tiny_model_dir), name=name)
    with pytest.raises(BadInput, match="name .* is not allowed"):
        models_svc.add_endpoint(name, "http://127.0.0.1:9/v1", "m")
    with pytest.raises(BadInput, match="no pullable model"):
        models_svc.pull_model(name)


@pytest.fixture
def stored_pairs(db):
    from storage import generation as store

    store.write_batch(db, preference_pairs=[{
        "id": "pp_1", "run_id": "gen_a", "instruction_id": "ins_1", "prompt": "What is 2 + 2?", "chosen": "4.",
        "rejected": "5.", "chosen_model": "m", "rejected_model": "m", "judge_model": "j", "chosen_score": 4.0,
        "rejected_score": 2.0, "score_gap": 2.0, "confidence": 0.5, "label_source": "llm", "flagged": False,
        "chosen_length": 2, "rejected_length": 2}])
    return db


def test_export_inside_home_works(stored_pairs, studio_home):
    summary = gen_svc.export_pairs("preference", "jsonl", studio_home / "exports" / "pairs.jsonl")
    assert summary.rows == 1 and Path(summary.path).is_relative_to(studio_home)


@pytest.mark.parametrize("name", ["../../outside.jsonl", "OUTSIDE"])
def test_export_paths_cannot_escape_home(stored_pairs, studio_home, tmp_path, monkeypatch, name):
    (tmp_path / "cwd" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "deep")  # so an escape lands in tmp_path, where the test looks
    target = str(tmp_path / "outside.jsonl") if name == "OUTSIDE" else name
    with pytest.raises(BadInput, match="points outside"):
        gen_svc.export_pairs("preference", "jsonl", target)
    assert files_outside(tmp_path, studio_home) == set()


def test_run_ids_never_become_file_names(db, studio_home, tmp_path):
    """A run's config lives in its row, not in a file named after a typed id."""
    with pytest.raises(NotFound):
        gen_svc.get_run("../../../../outside")
    assert files_outside(tmp_path, studio_home) == set()


# -- (b) servers bind to loopback ----------------------------------------------------------------------
def listening(pid: int) -> set[str]:
    """The addresses a process (and its children) listens on, as the OS reports them."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {c.laddr.ip for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_default_host_is_loopback(monkeypatch, tmp_path):
    from core.settings import Settings

    monkeypatch.delenv("STUDIO_HOST", raising=False)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    assert Settings.from_env().host == "127.0.0.1"
    assert Settings(home=tmp_path, cache_dir=tmp_path).host == "127.0.0.1"


def test_the_app_and_redis_listen_on_loopback_only(studio_home, monkeypatch):
    from studio import argilla_embedded
    from studio.lifecycle import start_app
    from core.settings import Settings
    from tests.fixtures.core import free_port

    monkeypatch.delenv("STUDIO_HOST", raising=False)
    monkeypatch.setenv("STUDIO_REDIS_PORT", str(free_port()))
    settings = Settings.from_env()
    settings.ensure_home()
    handles = [start_app(settings)]
    try:
        if shutil.which("redis-server"):
            handles.append(argilla_embedded.start_redis(settings))
        for handle in handles:
            assert listening(handle.pid) == {"127.0.0.1"}, handle.name
    finally:
        for handle in handles:
            handle.stop()


def test_the_embedded_llm_server_listens_on_loopback_only(llama_server):
    assert listening(llama_server.pid) == {"127.0.0.1"}


@pytest.mark.parametrize("origin, allowed", [("https://evil.example", False), ("http://localhost:8501", True)])
def test_the_embedded_llm_server_answers_no_other_sites_pages(llama_server, origin, allowed):
    """llama.cpp's default would let any web page open in the user's browser use the endpoint."""
    reply = httpx.options(f"{llama_server.url}/chat/completions", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    granted = reply.headers.get("access-control-allow-origin")
    assert (granted in (origin, "*")) is allowed, dict(reply.headers)
    assert reply.headers.get("access-control-allow-credentials") != "true"


# -- (c) API keys land nowhere -------------------------------------------------------------------------
def _wait_for_job(job_id: str, timeout_s: float = 180) -> jobs.JobInfo:
    return wait_for(lambda: (job := jobs.get_job(job_id)).active is False and job, f"job {job_id} to finish",
                    timeout_s, 0.5)


def _database_texts(db) -> str:
    """Every row of every table, as text (DuckDB compresses strings, so raw bytes alone prove little)."""
    with db.session() as cur:
        tables = [r[0] for r in cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
        chunks = []
        for table in tables:
            rows = cur.execute(f'SELECT * FROM "{table}"').fetchall()  # names from the catalogue itself
            chunks.append(f"{table}: {rows!r}")
        cur.execute("CHECKPOINT")
    return "\n".join(chunks)


def test_api_keys_appear_nowhere(db, studio_home, fake_openai, monkeypatch):
    good = f"sk-h7-{uuid.uuid4().hex}"        # built at run time: never a real key
    wrong = f"sk-h7-wrong-{uuid.uuid4().hex}"
    fake_openai.configure(reply=scripted_reply, required_key=good)
    models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", api_key=good, concurrency=4,
                            max_retries=0, timeout_s=10)
    monkeypatch.setenv("H7_WRONG_KEY", wrong)
    models_svc.add_endpoint("wrong", fake_openai.base_url, "fake-model", api_key_env="H7_WRONG_KEY",
                            max_retries=0, timeout_s=10)

    started = gen_svc.start_generation(make_config())      # a background job: its own process and log
    job = _wait_for_job(started.job_id)
    assert job.status == "succeeded", jobs.job_log_path(job.id).read_text(errors="replace")[-3000:]
    assert fake_openai.stats.served > 0                     # the good key really went over the wire
    refused = run_generation(make_config(seeds={"texts": ["A seed only the wrong key sees."]},
                                         instructions={"generator": "endpoint:wrong"}))
    assert fake_openai.stats.by_status.get(401), fake_openai.stats   # the server refused (and echoed) it
    assert refused.status != "succeeded", refused
    export = gen_svc.export_pairs("preference", "jsonl", studio_home / "exports" / "pairs.jsonl")
    assert export.rows > 0

    texts = _database_texts(db)
    db.close()
    assert "sk-h7-" not in texts
    found = []
    for path in studio_home.rglob("*"):
        if path.is_file() and path.name != "secrets.toml":
            data = path.read_bytes()
            found += [f"{path} holds the {which} key" for which, key in (("good", good), ("wrong", wrong))
                      if key.encode() in data]
    assert found == []
    assert good in (studio_home / "secrets.toml").read_text()   # it is stored, in the one place for it
    assert oct((studio_home / "secrets.toml").stat().st_mode & 0o777) == "0o600"
    assert list((studio_home / "logs").rglob("*.log"))          # there were logs to search


# -- (d) model folders never run their own code -----------------------------------------------------------
EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("the model folder's code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "evilnet"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


def _with_remote_code(src: Path, dest: Path, marker: Path, model_type: str | None) -> Path:
    shutil.copytree(src, dest)
    (dest / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((dest / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel",
                          "AutoTokenizer": ["evil.EvilTokenizer", None]}
    if model_type:
        config["model_type"] = model_type
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def _load_both(tiny_model_dir: Path, tmp_path: Path, marker: Path) -> None:
    from pipelines.llm.base import SamplingParams
    from pipelines.llm.transformers_local import TransformersBackend
    from core.errors import ModelLoadError

    known = _with_remote_code(tiny_model_dir, tmp_path / "known", marker, None)
    backend = TransformersBackend(known, name="known")
    assert backend.generate([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=2, temperature=0)).text \
        is not None  # the native Llama class loads; the folder's classes are ignored
    unknown = _with_remote_code(tiny_model_dir, tmp_path / "unknown", marker, "evilnet")
    with pytest.raises(ModelLoadError, match="Could not load"):
        TransformersBackend(unknown, name="unknown").load()
    try:
        models_svc.add_model(str(unknown), name="evil")   # registering inspects the folder only
    except StudioError:
        pass
    assert not marker.exists(), "the model folder's own code ran"


def test_a_model_folder_with_custom_code_never_runs_it(db, tiny_model_dir, tmp_path, monkeypatch):
    def no_terminal(*args, **kwargs):
        raise EOFError  # the app and jobs have no one at a prompt

    monkeypatch.setattr("builtins.input", no_terminal)
    _load_both(tiny_model_dir, tmp_path, tmp_path / "PWNED")


def test_custom_code_stays_off_even_if_someone_answers_yes_at_the_terminal(db, tiny_model_dir, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a, **k: "y")
    _load_both(tiny_model_dir, tmp_path, tmp_path / "PWNED")


def test_no_code_path_turns_trust_remote_code_on():
    """Every ``trust_remote_code=`` in the studio's code is the constant False or a per-model setting
    (a name or attribute called trust_remote_code); never True, never anything else."""
    offenders = []
    for folder in ("pipelines", "studio", "storage"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                    value = node.value
                    ok = (isinstance(value, ast.Constant) and value.value is False) or \
                        (isinstance(value, ast.Name) and value.id == "trust_remote_code") or \
                        (isinstance(value, ast.Attribute) and value.attr == "trust_remote_code")
                    if not ok:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert offenders == []
