"""Prepare the embedded Argilla's database; runs with .venv-argilla's Python, not the studio's.

Why one script instead of three ``python -m argilla_server ...`` calls: each of those pays
argilla_server's import (5-7 s on 2 cores). This migrates the database, makes sure the owner
account has exactly the password and API key the studio keeps in ``secrets.toml`` (so a lost or
rotated secret is repaired on the next start), and optionally reindexes the search engine from
the database. The credentials arrive through the environment, never on the command line (where
``ps`` shows them), and are never printed. Only argilla_server and the standard library are
imported here: the studio's packages are not installed in that environment.

    python studio/argilla_bootstrap.py prepare [--reindex]
    python studio/argilla_bootstrap.py reindex
"""

from __future__ import annotations

import sys

# Run by path, Python puts studio/ first on sys.path, where studio/secrets.py would shadow the
# standard library's ``secrets`` (which starlette imports). Callers also pass -P; this is the guard.
sys.path[:] = [p for p in sys.path if p not in ("", __file__.rsplit("/", 1)[0])]

import asyncio  # noqa: E402
import os  # noqa: E402

OWNER = "owner"
WORKSPACE = "default"


def migrate() -> None:
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


async def _ensure_owner(password: str, api_key: str) -> str:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole
    from argilla_server.cli.database.users.utils import get_or_new_workspace

    async with AsyncSessionLocal() as session:
        user = await accounts.get_user_by_username(session, OWNER)
        if user is None:
            workspace = await get_or_new_workspace(session, WORKSPACE)
            await User.create(session, first_name="Owner", username=OWNER, role=UserRole.owner,
                              password_hash=accounts.hash_password(password), api_key=api_key,
                              workspaces=[workspace])
            return "created the owner account"
        if user.api_key == api_key and accounts.verify_password(password, user.password_hash):
            return "the owner account is up to date"
        user.api_key = api_key
        user.password_hash = accounts.hash_password(password)
        await session.commit()
        return "reset the owner account's password and API key to the ones in secrets.toml"


async def _reindex() -> None:
    from argilla_server.cli.search_engine.reindex import _reindex as reindex_all

    await reindex_all()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("prepare", "reindex"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "prepare":
        migrate()
        password = os.environ.pop("STUDIO_ARGILLA_OWNER_PASSWORD", "")
        api_key = os.environ.pop("STUDIO_ARGILLA_OWNER_KEY", "")
        if len(password) < 8 or len(api_key) < 8:
            print("error: the owner password and API key must be given (8+ characters each)", file=sys.stderr)
            return 2
        print(asyncio.run(_ensure_owner(password, api_key)), flush=True)
    if argv[0] == "reindex" or "--reindex" in argv:
        asyncio.run(_reindex())
        print("reindexed the search engine from the database", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
