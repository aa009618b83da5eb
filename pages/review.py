"""Review: send LLM-labeled records to Argilla, pull the reviewers' answers, see how far people agree.

Sections: the Argilla connection (with a link that opens it), datasets under review with their
progress, push and pull (background jobs that survive a reload), an automatic pull on a timer,
agreement dashboards and the records where people and the judge disagree.
"""

from __future__ import annotations

import streamlit as st

from pages._review_parts import agreement_view, disagreements_table, push_form, rounds_table
from pages._ui import attempt, flash, show_error, show_flashes, track_job, watch_jobs
from pages._widgets import choice
from core.errors import StudioError
from studio.services import review as review_svc

AUTO_PULL_S = 30.0
LIVE_REFRESH_S = 2.0


def connection_section() -> review_svc.ArgillaHealth:
    health = review_svc.check_connection()
    if health.ok:
        where = "embedded" if health.embedded else "external"
        st.markdown(f":green[:material/check_circle: Argilla ({where})] at [{health.url}]({health.url}) · "
                    f"signed in as **{health.username}** ({health.role}). Reviewers log in there with the "
                    f"user name and password you created for them (`python -m studio argilla users add`).")
    else:
        st.error(health.error or "Argilla is not reachable.", icon=":material/error:")
    return health


def auto_pull() -> None:
    """Pull every open round on a timer; a pull with nothing new costs one small request."""
    if not st.session_state.get("auto_pull"):
        return
    try:
        result = review_svc.pull_reviews()
    except StudioError as err:
        show_error(err)
        return
    if result.changed:
        st.rerun(scope="app")
    st.caption("Automatic pull: up to date.")


st.title("Review")
st.caption("The LLM does the first pass, people the second: reviewers answer in Argilla with the judge's labels "
           "pre-filled, and the studio pulls their answers back and reconciles a final label per record.")
show_flashes()
try:
    watch_jobs(review_svc.PUSH_JOB, LIVE_REFRESH_S)
    pulling = watch_jobs(review_svc.PULL_JOB, LIVE_REFRESH_S)
    health = connection_section()
    status = review_svc.review_status()
except StudioError as err:
    show_error(err)
    st.stop()

st.subheader("Datasets under review")
rounds_table(status.rounds)
pull_col, auto_col = st.columns([1, 3], vertical_alignment="center")
if pull_col.button("Pull reviews now", disabled=not health.ok or bool(pulling) or not status.rounds):
    ok, job_id = attempt(review_svc.start_pull)
    if ok:
        track_job(review_svc.PULL_JOB, job_id)
        flash("Pulling reviews in the background.")
        st.rerun()
auto_col.toggle(f"Pull automatically every {AUTO_PULL_S:.0f} s", key="auto_pull", disabled=not health.ok)
st.fragment(auto_pull, run_every=AUTO_PULL_S if st.session_state.get("auto_pull") else None)()

st.subheader("Push for review")
request = push_form()
if request is not None:
    ok, job_id = attempt(review_svc.start_push, request)
    if ok:
        track_job(review_svc.PUSH_JOB, job_id)
        flash(f"Pushing to {request.name} in the background; its progress shows above.")
        st.rerun()

if status.rounds:
    st.subheader("Agreement")
    picked = choice("Dataset", {r.round_id: f"{r.name} ({r.kind})" for r in status.rounds}, key="review_round")
    current = next(r for r in status.rounds if r.round_id == picked)
    agreement_view(current)
    st.subheader("People vs the judge: disagreements")
    ok, rows = attempt(review_svc.list_disagreements, picked)
    if ok:
        disagreements_table(rows)
