"""Who is signed in, for a page (the sign-in page itself is pages/signin.py; the session is kept by
studio/app.py)."""

from __future__ import annotations

from studio import access


def signed_in_name() -> str | None:
    """The signed-in person's name in team mode (the arena votes under it); None in single-user mode."""
    return access.current().name if access.team_mode() else None
