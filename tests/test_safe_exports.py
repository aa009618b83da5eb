"""Nothing a user types destroys data: exports never write over what the studio did not write
(core/outputs.py, shared by the page, ``export`` and ``runs accelerate --out``), and a credential in
an endpoint URL goes to the secrets file, never into DuckDB or a listing (core/urls.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from core import outputs
from core.errors import BadInput
from core.secrets import read_secret
from core.urls import parse_endpoint_url, redact_url
from pipelines.generate import export as export_module
from pipelines.generate.export import export_pairs
from storage import audit
from storage import generation as store
from storage.db import get_database
from studio.cli import main
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from tests.test_export import _pairs


@pytest.fixture
def stored(db):
    store.write_batch(db, **_pairs(5, "gen_a", 0.5))
    return db


def _state(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its type, size and content (files) — what must not change."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = os.lstat(path)
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            out[str(path)] = (stat.S_IFMT(info.st_mode), content)
    return out


def _outside_the_database(home: Path) -> dict[str, tuple]:
    return {path: state for path, state in _state(home).items() if not path.endswith("studio.duckdb")}


def _data(home: Path) -> dict[str, list]:
    """Every table's rows but the audit log's (which records the refused attempts)."""
    get_database().close()
    with get_database().session() as cur:
        tables = [r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_name <> 'audit_log'").fetchall()]
        return {t: sorted(map(repr, cur.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}


def _database_opens(home: Path) -> int:
    get_database().close()
    with get_database().session() as cur:
        return cur.execute("SELECT count(*) FROM preference_pairs").fetchone()[0]


def _refused(capsys, out: str, *flags: str) -> str:
    code = main(["export", "--out", out, *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


# -- exports ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "datasets"])
def test_export_at_studio_home_or_its_database_is_refused(stored, studio_home, capsys, fmt):
    data = _data(studio_home)
    get_database().close()
    before = _outside_the_database(studio_home)
    targets = (studio_home, studio_home / "studio.duckdb", studio_home / "models", studio_home / "secrets.toml",
               studio_home / "models" / "new.jsonl", studio_home.parent)
    for target in targets:
        err = _refused(capsys, str(target), "--format", fmt, "--overwrite")
        assert "STUDIO_HOME" in err, err
    get_database().close()
    assert _outside_the_database(studio_home) == before
    assert _database_opens(studio_home) == 5 and _data(studio_home) == data
    attempts = audit.entries(get_database())    # each refused attempt is on record, with why
    assert len(attempts) == len(targets) and all("STUDIO_HOME" in e.error for e in attempts)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_export_at_a_fifo_a_link_or_a_folder_of_yours_is_refused(stored, tmp_path, capsys, fmt):
    yours = tmp_path / "yours"
    (yours / "sub").mkdir(parents=True)
    (yours / "thesis.txt").write_text("years of work\n")
    (yours / "sub" / "data.jsonl").write_text('{"mine": 1}\n')
    os.mkfifo(yours / "fifo")
    (yours / "link").symlink_to(yours / "thesis.txt")
    before = _state(yours)
    for target, message in ((yours, "studio did not write it"), (yours / "sub", "studio did not write it"),
                            (yours / "fifo", "is a FIFO"), (yours / "thesis.txt", "studio did not write it"),
                            (yours / "link", "is a link")):
        err = _refused(capsys, str(target), "--format", fmt, "--overwrite")
        assert message in err or "is a folder; the export writes a file" in err or "is a file; the export" in err, err
    assert _state(yours) == before
    assert stat.S_ISFIFO(os.lstat(yours / "fifo").st_mode)


def test_export_through_a_link_loop_or_a_file_is_refused(stored, tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert "Symlink loop" in _refused(capsys, str(tmp_path / "a" / "x.jsonl"))
    (tmp_path / "file.txt").write_text("x\n")
    _refused(capsys, str(tmp_path / "file.txt" / "x.jsonl"))
    assert (tmp_path / "file.txt").read_text() == "x\n"


@pytest.mark.parametrize("fmt", ["jsonl", "datasets"])
def test_export_at_root_or_your_home_is_refused(stored, tmp_path, monkeypatch, capsys, fmt):
    fake_home = tmp_path / "me"
    fake_home.mkdir()
    (fake_home / "notes.txt").write_text("keep\n")
    monkeypatch.setenv("HOME", str(fake_home))
    for target in ("/", str(fake_home), "~", str(tmp_path)):
        err = _refused(capsys, target, "--format", fmt, "--overwrite")
        assert "is the root folder" in err or "or a folder that holds it" in err, err
    assert (fake_home / "notes.txt").read_text() == "keep\n"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_an_export_is_overwritten_only_while_its_manifest_vouches_for_it(stored, tmp_path, fmt):
    target = tmp_path / ("pairs" if fmt == "datasets" else f"pairs.{fmt}")
    export_pairs("preference", fmt, target)
    assert outputs.written_by_studio(target, folder=fmt == "datasets")
    with pytest.raises(BadInput, match="already exists"):
        export_pairs("preference", fmt, target)
    assert export_pairs("sft", fmt, target, overwrite=True).rows == 5  # its own export: replaced
    changed = target / "extra.txt" if fmt == "datasets" else target
    with open(changed, "a", encoding="utf-8") as handle:
        handle.write("a line of the user's\n")
    with pytest.raises(BadInput, match="the studio did not write it"):
        export_pairs("preference", fmt, target, overwrite=True)
    assert "a line of the user's" in changed.read_text(encoding="utf-8", errors="replace")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".studio-export-")]
    assert not leftovers


def test_an_interrupted_export_leaves_the_old_one_whole(stored, tmp_path, monkeypatch):
    target = tmp_path / "out" / "pairs.jsonl"
    export_pairs("preference", "jsonl", target)
    before = target.read_bytes()

    def crash(batches, staged):  # a fault injected into the real writer: half a file, then an error
        staged.write_text('{"prompt": "half')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "_write_jsonl", crash)
    with pytest.raises(BadInput, match=r"could not be written .*No space left on device.*nothing there changed"):
        export_pairs("preference", "jsonl", target, overwrite=True)
    assert target.read_bytes() == before and outputs.written_by_studio(target, folder=False)
    assert sorted(p.name for p in target.parent.iterdir()) == [".pairs.jsonl.studio-export.json", "pairs.jsonl"]


def test_the_page_shares_the_rule(stored, studio_home):
    summary = gen_svc.export_pairs("preference", "jsonl", "mine.jsonl")  # confined to STUDIO_HOME/exports
    assert Path(summary.path) == (studio_home / "exports" / "mine.jsonl").resolve()
    assert gen_svc.export_pairs("preference", "jsonl", "mine.jsonl", overwrite=True).rows == 5
    with pytest.raises(BadInput, match="points outside"):
        gen_svc.export_pairs("preference", "jsonl", "../studio.duckdb", overwrite=True)
    (studio_home / "exports" / "notes.jsonl").write_text("the user's\n")
    with pytest.raises(BadInput, match="the studio did not write it"):
        gen_svc.export_pairs("preference", "jsonl", "notes.jsonl", overwrite=True)


def test_other_writers_follow_the_rule(tmp_path):
    """``runs accelerate --out`` writes its two files through core.outputs: the studio's own are
    replaced, a file of the user's with the same name is not."""
    mine = outputs.write_text(tmp_path / "accelerate.yaml", "a: 1\n", overwrite=True)
    assert outputs.write_text(mine, "a: 2\n", overwrite=True).read_text() == "a: 2\n"
    (tmp_path / "run.yaml").write_text("the user's own spec\n")
    with pytest.raises(BadInput, match="the studio did not write it"):
        outputs.write_text(tmp_path / "run.yaml", "x: 1\n", overwrite=True, what="run spec")
    assert (tmp_path / "run.yaml").read_text() == "the user's own spec\n"
    manifest = json.loads((tmp_path / ".accelerate.yaml.studio-export.json").read_text())
    assert manifest["written_by"] == "the studio" and manifest["size"] == 5


# -- credentials in endpoint URLs ---------------------------------------------------------------------
@pytest.mark.parametrize("url, clean, secret", [
    ("http://user:s3cret-pass-123@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", "s3cret-pass-123"),
    ("https://api.example.test/v1?api_key=sk-abc123456789&x=1", "https://api.example.test/v1?x=1", "sk-abc123456789"),
    ("https://api.example.test/v1?access_token=tok-98765", "https://api.example.test/v1", "tok-98765"),
    ("http://onlytoken@[::1]:8000/v1", "http://[::1]:8000/v1", "onlytoken"),
])
def test_a_credential_in_a_url_moves_to_the_secrets_file(db, studio_home, capsys, url, clean, secret):
    assert main(["endpoints", "add", "acme", url, "acme-large"]) == 0
    out = capsys.readouterr().out
    assert f"-> {clean} " in out and "moved to STUDIO_HOME/secrets.toml" in out and secret not in out
    record = models_svc.get_endpoint("acme")
    assert record.base_url == clean and record.api_key_secret == "endpoint-acme"
    assert read_secret("endpoint-acme") == secret
    assert main(["endpoints", "list", "--json"]) == 0
    assert secret not in capsys.readouterr().out
    get_database().close()
    assert secret.encode() not in (studio_home / "studio.duckdb").read_bytes()


def test_a_credential_stored_in_a_url_before_the_cleaning_moves_out_at_up(db, studio_home):
    from storage import registry
    from storage.registry import EndpointRecord
    from studio.lifecycle import _clean_stored_credentials

    # rows as an older studio wrote them: the URL verbatim, credential and all
    registry.insert_endpoint(db, EndpointRecord(name="old", base_url="http://u:old-pass-4321@127.0.0.1:9/v1",
                                                model="m"))
    registry.insert_endpoint(db, EndpointRecord(name="keyed", base_url="https://h.test/v1?api_key=sk-dup-777",
                                                model="m", api_key_env="ACME_KEY"))
    said = []
    _clean_stored_credentials(said.append)
    assert "old, keyed" in said[0] or "keyed, old" in said[0]
    old, keyed = models_svc.get_endpoint("old"), models_svc.get_endpoint("keyed")
    assert old.base_url == "http://127.0.0.1:9/v1" and read_secret(old.api_key_secret) == "old-pass-4321"
    assert keyed.base_url == "https://h.test/v1" and keyed.api_key_env == "ACME_KEY" and keyed.api_key_secret is None
    assert models_svc.move_url_credentials() == []     # once is enough
    with get_database().session() as cur:    # no row holds it (freed pages of the file may, until reused)
        rows = repr(cur.execute("SELECT * FROM endpoints").fetchall())
    assert "old-pass-4321" not in rows and "sk-dup-777" not in rows


def test_a_url_credential_and_a_key_together_are_refused(db):
    with pytest.raises(BadInput, match="The URL holds a credential and a key was given as well"):
        models_svc.add_endpoint("acme", "http://u:p@127.0.0.1:9/v1", "m", api_key="sk-other")
    with pytest.raises(BadInput, match="holds 2 different credentials"):
        parse_endpoint_url("http://u:p@127.0.0.1:9/v1?token=q")


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:99999/v1", r"Port out of range"), ("http://127.0.0.1:0/v1", "has port 0"),
    ("http://my host/v1", "contains a space"), ("http://[::1/v1", r"Invalid IPv6 URL"),
    ("http://[not-v6]:80/v1", "malformed|invalid IPv6"), ("ftp://h/v1", r"is not an http\(s\) URL"),
    ("http://:80/v1", "has no host"), ("http://" + "h" * 3000, "longer than 2048"),
])
def test_urls_are_validated(url, message):
    with pytest.raises(BadInput, match=message):
        parse_endpoint_url(url)


def test_a_url_stored_before_is_shown_masked():
    assert redact_url("http://u:p@h:1/v1?key=abc&x=1") == "http://***@h:1/v1?key=***&x=1"
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
