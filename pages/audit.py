"""Audit log: who did what in this studio (admins and the owner)."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt
from studio.services import accounts

st.title("Audit log")
st.caption("Every change made through the studio, under the name of who made it: votes, reviews pulled back, "
           "runs started, cancelled or deleted, exports and settings. Also `python -m studio audit`.")
left, right = st.columns(2)
who = left.text_input("Person", key="audit_actor", placeholder="everyone").strip()
target = right.text_input("Run, comparison or snapshot id", key="audit_target", placeholder="anything").strip()
ok, entries = attempt(accounts.audit_log, actor=who or None, target=target or None, limit=500)
if ok and not entries:
    st.info("Nothing recorded yet.")
elif ok:
    st.dataframe([{"when": e.at, "who": e.actor, "role": e.role, "via": e.via, "did": e.action, "target": e.target,
                   "details": e.details, "error": e.error} for e in entries], hide_index=True, width="stretch")
