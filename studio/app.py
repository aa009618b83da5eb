"""The studio's Streamlit entry file and its only router.

``streamlit run studio/app.py`` (or ``python -m studio up``) runs this file on every rerun: it sets
the page config and hands over to the selected page with one ``st.navigation``. Adding a page is
one line in ``SECTIONS``: (file under ``pages/``, title, Material icon).

Team mode (``STUDIO_AUTH=argilla``): nobody gets past the sign-in page without an Argilla account, and
the page runs as the signed-in person (``access.act_as``), so every service call checks their role.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `streamlit run` puts studio/ on sys.path, not the repo root
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

PAGES_DIR = REPO_ROOT / "pages"
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Studio": [
        ("home.py", "Home", ":material/home:"),
        ("models.py", "Models", ":material/neurology:"),
        ("generate.py", "Generate", ":material/auto_awesome:"),
        ("review.py", "Review", ":material/rate_review:"),
        ("train.py", "Train", ":material/model_training:"),
        ("compare.py", "Compare", ":material/compare:"),
    ],
}
ADMIN_SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Team": [("audit.py", "Audit log", ":material/policy:")],
}


def build_pages(admin: bool = True) -> dict[str, list[st.Page]]:
    """The navigation: one ``st.Page`` per entry of ``SECTIONS`` (and ``ADMIN_SECTIONS`` for an admin);
    the first page is the default."""
    first = True
    pages: dict[str, list[st.Page]] = {}
    for section, entries in {**SECTIONS, **(ADMIN_SECTIONS if admin else {})}.items():
        pages[section] = []
        for file_name, title, icon in entries:
            pages[section].append(st.Page(PAGES_DIR / file_name, title=title, icon=icon, default=first))
            first = False
    return pages


st.set_page_config(page_title="the studio", page_icon=":material/science:", layout="wide")

from studio import access  # noqa: E402
from studio.services import accounts  # noqa: E402


# -- team mode: the browser keeps a random session token in a cookie (set by a line of JavaScript, since
# Streamlit only reads cookies); this process keeps its hash (studio/services/accounts.py). A reload reads
# the cookie again, so the person stays signed in until they sign out or the session idles out.
def _set_cookie(value: str, max_age_s: int) -> None:
    st.html(f"<script>document.cookie = {json.dumps(f'{accounts.COOKIE}={value}')} + "
            f"'; path=/; max-age={max_age_s}; SameSite=Strict';</script>", unsafe_allow_javascript=True)


def signed_in() -> access.Actor | None:
    """Who this browser session belongs to (from this session, or the cookie after a reload)."""
    key = accounts.SESSION_STATE_KEY
    token = st.session_state.get(key) or st.context.cookies.get(accounts.COOKIE)
    actor = accounts.resume(token)
    if actor is None:
        st.session_state.pop(key, None)
        return None
    st.session_state[key] = token
    if st.context.cookies.get(accounts.COOKIE) != token:   # keep the cookie for the next reload
        _set_cookie(token, 60 * 60 * 24 * 30)
    return actor


def account_box(actor: access.Actor) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{actor.name}** · {actor.role}")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            accounts.sign_out(st.session_state.pop(accounts.SESSION_STATE_KEY, None))
            _set_cookie("", 0)
            st.session_state["signed_out"] = True
            st.rerun()


if access.team_mode():
    actor = signed_in()
    if actor is None:
        st.navigation([st.Page(PAGES_DIR / "signin.py", title="Sign in", icon=":material/login:")]).run()
    else:
        account_box(actor)
        with access.act_as(actor):
            st.navigation(build_pages(admin=actor.can("admin"))).run()
else:
    st.navigation(build_pages()).run()
