"""Team mode's sign-in page (studio/app.py shows it to a browser that is not signed in).

The app process keeps only a hash of the session token (studio/services/accounts.py); after a
successful sign-in the app sets the browser's cookie, so a reload stays signed in.
"""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt
from studio.services import accounts

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
        st.session_state[accounts.SESSION_STATE_KEY] = token
        st.rerun()
