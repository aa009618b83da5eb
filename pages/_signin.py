"""Team mode in the app: the sign-in page, who is signed in, and signing out.

The browser keeps a random session token in a cookie (set by a line of JavaScript, since Streamlit
only reads cookies); the app process keeps its hash (studio/services/accounts.py). A reload reads the
cookie again, so the person stays signed in until they sign out or the session idles out.
"""

from __future__ import annotations

import json

import streamlit as st

from pages._ui import attempt
from studio import access
from studio.services import accounts

TOKEN_KEY = "studio_session_token"


def _set_cookie(value: str, max_age_s: int) -> None:
    st.html(f"<script>document.cookie = {json.dumps(f'{accounts.COOKIE}={value}')} + "
            f"'; path=/; max-age={max_age_s}; SameSite=Strict';</script>", unsafe_allow_javascript=True)


def signed_in() -> access.Actor | None:
    """Who this browser session belongs to (from this session, or the cookie after a reload)."""
    token = st.session_state.get(TOKEN_KEY) or st.context.cookies.get(accounts.COOKIE)
    actor = accounts.resume(token)
    if actor is None:
        st.session_state.pop(TOKEN_KEY, None)
        return None
    st.session_state[TOKEN_KEY] = token
    if st.context.cookies.get(accounts.COOKIE) != token:   # keep the cookie for the next reload
        _set_cookie(token, 60 * 60 * 24 * 30)
    return actor


def signed_in_name() -> str | None:
    """The signed-in person's name in team mode (the arena votes under it); None in single-user mode."""
    return access.current().name if access.team_mode() else None


def sign_in_page() -> None:
    st.title("Sign in")
    st.caption("This studio is shared: sign in with your Argilla account (the one you review with). "
               "Your Argilla role decides what you can do here.")
    if st.session_state.pop("signed_out", False):
        st.success("Signed out.", icon=":material/logout:")
    with st.form("sign_in"):
        name = st.text_input("User name", key="signin_name")
        password = st.text_input("Password", type="password", key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        ok, result = attempt(accounts.sign_in, name, password)
        if ok:
            token, _actor = result
            st.session_state[TOKEN_KEY] = token
            st.rerun()


def account_box(actor: access.Actor) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{actor.name}** · {actor.role}")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            accounts.sign_out(st.session_state.pop(TOKEN_KEY, None))
            _set_cookie("", 0)
            st.session_state["signed_out"] = True
            st.rerun()
