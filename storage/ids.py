"""Row ids: time-ordered random ids, and content hashes where re-running must be idempotent."""

from __future__ import annotations

import hashlib
import json
import os
import time


def new_id(prefix: str) -> str:
    """``prefix_`` + 12 hex digits of milliseconds + 8 random hex digits (sorts by creation time)."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(4).hex()}"


def content_hash(*parts: object) -> str:
    """A stable sha256 over JSON-encoded parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def stable_id(prefix: str, *parts: object) -> str:
    return f"{prefix}_{content_hash(*parts)[:24]}"
