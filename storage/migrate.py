"""Ordered, tracked schema migrations.

Each file ``storage/migrations/NNNN_name.sql`` is applied once, in order, inside a transaction,
and recorded in ``schema_migrations`` with its checksum. A recorded migration whose file changed
afterwards is an error: migrations are append-only; write a new one instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from core.errors import StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StorageError(f"Migration file {path.name} is not named NNNN_name.sql.")
        found.append(Migration(int(match["version"]), match["name"], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StorageError("Two migration files share a version number.")
    return found


def apply_migrations(cur: duckdb.DuckDBPyConnection, folder: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    cur.execute(CREATE_TRACKING)
    applied = {row[0]: row for row in cur.execute(SELECT_APPLIED).fetchall()}
    done = []
    for migration in discover(folder):
        if migration.version in applied:
            if applied[migration.version][2] != migration.checksum:
                raise StorageError(
                    f"Migration {migration.version:04d}_{migration.name} changed after it was applied.",
                    hint="Migrations are append-only: restore the file and add a new migration.",
                )
            continue
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute(migration.sql)
            cur.execute(INSERT_APPLIED, [migration.version, migration.name, migration.checksum])
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        done.append(migration.version)
    return done


def applied_versions(cur: duckdb.DuckDBPyConnection) -> list[int]:
    return [row[0] for row in cur.execute(SELECT_APPLIED).fetchall()]
