"""API keys: read from the environment or from ``STUDIO_HOME/secrets.toml``, never from DuckDB.

Why a separate file: the database is copied, snapshotted and shared; a key in it would travel
with every copy. Endpoints store only *where* the key is (an environment variable name or an
entry name in this file). The file is written atomically (temp file + ``os.replace``) with mode
0600, and ``redact`` masks anything key-like before text reaches a log or an error message.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Iterable

from core import settings
from core.errors import BadInput, StorageError

SECTION = "keys"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KEY_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),                          # OpenAI style (sk-..., sk-proj-...)
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),                             # Hugging Face tokens
    re.compile(r"\b(?:gsk|xai|pk|rk)_[A-Za-z0-9]{16,}"),             # other common prefixes
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.=+/]{12,}"),           # Authorization: Bearer <token>
    re.compile(r"(?i)((?:api[_-]?key|token|secret)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-.+/]{12,}"),
)
MASK = "***"


def secrets_path() -> Path:
    return settings.current().secrets_path


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadInput(
            f"Secret name {name!r} is not allowed.",
            hint="Use 1-64 letters, digits, '_', '-' or '.', e.g. openai or together_key.",
        )


def _load(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StorageError(
            f"The secrets file {path} is not valid TOML ({exc}).",
            hint="Fix or delete it, then store the endpoints' keys again "
            "(Models page, or `python -m studio endpoints add … --ask-key`).",
        ) from None
    section = data.get(SECTION, {})
    return {str(k): str(v) for k, v in section.items() if isinstance(v, str)}


def _toml_string(value: str) -> str:
    """A TOML basic string. JSON string escapes are valid TOML escapes, except that TOML
    rejects surrogate ``\\u`` escapes (hence ``ensure_ascii=False``) and a raw DEL."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _write(path: Path, entries: dict[str, str]) -> None:
    lines = ["# API keys for the studio. Keep this file private (mode 0600); never commit it.", f"[{SECTION}]"]
    lines += [f"{_toml_string(name)} = {_toml_string(value)}" for name, value in sorted(entries.items())]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_secret(name: str, value: str) -> None:
    """Store (or replace) one key under ``name``."""
    _check_name(name)
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"The value for secret {name!r} is empty.", hint="Paste the whole key.")
    if any(ch in value for ch in "\r\n\x00"):
        raise BadInput(f"The value for secret {name!r} contains a line break or NUL.",
                       hint="Paste the key on one line.")
    path = secrets_path()
    entries = _load(path)
    entries[name] = value.strip()
    _write(path, entries)


def read_secret(name: str) -> str | None:
    _check_name(name)
    return _load(secrets_path()).get(name)


def delete_secret(name: str) -> bool:
    """Remove one entry; returns whether it existed."""
    _check_name(name)
    path = secrets_path()
    entries = _load(path)
    if name not in entries:
        return False
    del entries[name]
    _write(path, entries)
    return True


def list_secret_names() -> list[str]:
    """Names only: the values never leave this module except through ``resolve_api_key``."""
    return sorted(_load(secrets_path()))


def resolve_api_key(api_key_env: str | None, api_key_secret: str | None) -> str | None:
    """The key for an endpoint: the environment variable first, then the secrets file."""
    if api_key_env:
        value = os.environ.get(api_key_env)
        if value:
            return value
    if api_key_secret:
        return read_secret(api_key_secret)
    return None


def redact(text: str, known: Iterable[str | None] = ()) -> str:
    """Mask anything that looks like a key, plus the exact ``known`` values (keys in use)."""
    out = str(text)
    for value in known:
        if value and len(value) >= 4:
            out = out.replace(value, MASK)
    for pattern in _KEY_PATTERNS:
        out = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, out)
    return out
