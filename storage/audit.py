"""The audit log: who did what, when (team mode's attribution; written by studio/access.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Database
from storage.ids import new_id

INSERT = ("INSERT INTO audit_log (id, actor, role, via, call, action, target, details, error) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
SELECT = ("SELECT id, created_at, actor, role, via, call, action, target, details, error FROM audit_log "
          "WHERE (? IS NULL OR actor = ?) AND (? IS NULL OR target = ?) ORDER BY created_at DESC, id DESC LIMIT ?")


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str
    role: str
    via: str
    call: str
    action: str
    target: str | None
    details: dict
    error: str | None


def record(db: Database, actor: str, role: str, via: str, call: str, action: str, target: str | None,
           details: dict[str, Any], error: str | None) -> str:
    entry_id = new_id("aud")
    with db.session() as cur:
        cur.execute(INSERT, [entry_id, actor, role, via, call, action, target, json.dumps(details, default=str),
                             error])
    return entry_id


def entries(db: Database, actor: str | None = None, target: str | None = None, limit: int = 200) -> list[AuditEntry]:
    with db.session() as cur:
        rows = cur.execute(SELECT, [actor, actor, target, target, limit]).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else {}, r[9])
            for r in rows]
