"""API keys live in the environment or STUDIO_HOME/secrets.toml (0600), and redact() masks them."""

from __future__ import annotations

import os
import stat
import tomllib

import pytest

from core import secrets
from core.errors import BadInput, StorageError


def test_save_read_delete_round_trip(studio_home):
    assert secrets.read_secret("openai") is None
    secrets.save_secret("openai", "sk-abc123")
    secrets.save_secret("together_key", "tk-xyz")
    assert secrets.read_secret("openai") == "sk-abc123"
    assert secrets.list_secret_names() == ["openai", "together_key"]
    secrets.save_secret("openai", "sk-replaced")
    assert secrets.read_secret("openai") == "sk-replaced"
    assert secrets.delete_secret("openai") is True
    assert secrets.delete_secret("openai") is False
    assert secrets.read_secret("openai") is None and secrets.read_secret("together_key") == "tk-xyz"


def test_file_is_private_valid_toml_and_written_atomically(studio_home):
    tricky = 'a"b\\c\tü€😀\x7f\x01end'
    secrets.save_secret("tricky", tricky)
    path = secrets.secrets_path()
    assert path == studio_home / "secrets.toml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tomllib.loads(path.read_text(encoding="utf-8"))["keys"]["tricky"] == tricky
    assert secrets.read_secret("tricky") == tricky
    assert [p.name for p in studio_home.iterdir() if p.name.startswith(".secrets-")] == []   # no temp left


def test_rewrite_restores_0600_even_if_someone_loosened_it(studio_home):
    secrets.save_secret("a", "one")
    os.chmod(secrets.secrets_path(), 0o644)
    secrets.save_secret("b", "two")
    assert stat.S_IMODE(os.stat(secrets.secrets_path()).st_mode) == 0o600


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon", "new\nline"])
def test_bad_names_are_refused(studio_home, name):
    with pytest.raises(BadInput, match=r"Secret name .* is not allowed.*Use 1-64 letters"):
        secrets.save_secret(name, "value")


def test_empty_or_multiline_values_are_refused(studio_home):
    with pytest.raises(BadInput, match="is empty.*Paste the whole key"):
        secrets.save_secret("k", "   ")
    with pytest.raises(BadInput, match="line break or NUL.*on one line"):
        secrets.save_secret("k", "abc\ndef")


def test_corrupt_file_names_the_fix(studio_home):
    studio_home.mkdir(parents=True, exist_ok=True)
    (studio_home / "secrets.toml").write_text("[keys\nbroken = ")
    with pytest.raises(StorageError, match=r"secrets file .* is not valid TOML.*Fix or delete it"):
        secrets.read_secret("x")


def test_resolve_prefers_the_environment_then_the_file(studio_home, monkeypatch):
    secrets.save_secret("remote", "from-file")
    monkeypatch.setenv("REMOTE_KEY", "from-env")
    assert secrets.resolve_api_key("REMOTE_KEY", "remote") == "from-env"
    monkeypatch.delenv("REMOTE_KEY")
    assert secrets.resolve_api_key("REMOTE_KEY", "remote") == "from-file"
    assert secrets.resolve_api_key(None, None) is None
    assert secrets.resolve_api_key("REMOTE_KEY", "absent") is None


@pytest.mark.parametrize("text, leaked", [
    ("Incorrect API key provided: sk-proj-AbCdEf0123456789xyz.", "sk-proj-AbCdEf0123456789xyz"),
    ("token hf_AbCdEfGhIjKlMnOp rejected", "hf_AbCdEfGhIjKlMnOp"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz"),
    ('{"api_key": "Zx9Zx9Zx9Zx9Zx9Zx9"}', "Zx9Zx9Zx9Zx9Zx9Zx9"),
])
def test_redact_masks_key_shapes(text, leaked):
    out = secrets.redact(text)
    assert leaked not in out and secrets.MASK in out


def test_redact_masks_known_values_and_keeps_ordinary_text():
    assert secrets.redact("key was plain-word-key!", known=["plain-word-key"]) == "key was ***!"
    assert secrets.redact("HTTP 429: slow down, retry in 2 s") == "HTTP 429: slow down, retry in 2 s"
