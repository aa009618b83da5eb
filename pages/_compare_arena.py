"""The Compare page's "Arena" tab: two anonymous answers, one vote, then the names."""

from __future__ import annotations

import streamlit as st

from pages._compare_view import pick_comparison
from pages._signin import signed_in_name
from pages._ui import attempt, track_job, watch_jobs
from studio.services import compare as compare_svc
from studio.services import review as review_svc

LIVE_REFRESH_S = 2.0
CHOICES = (("a", "A is better", "a"), ("b", "B is better", "b"), ("tie", "Tie", "t"), ("both_bad", "Both bad", "x"))


def arena_tab() -> None:
    summary = pick_comparison("cmp_arena_pick")
    if summary is None:
        return
    argilla_section(summary.comparison_id)
    signed_in = signed_in_name()
    if signed_in:   # team mode: the vote is the signed-in person's
        voter = signed_in
        st.caption(f"Voting as **{voter}**: one vote per pair.")
    else:
        voter = st.text_input("Your name", value=st.session_state.get("cmp_voter") or "", key="cmp_voter_input",
                              placeholder="who is voting", help="Each person votes once per pair, under their own name.")
    st.session_state["cmp_voter"] = voter = voter.strip()
    if not voter:
        st.info("Type your name above to start voting: votes are counted per person, once per pair.")
        return
    reveal = st.session_state.pop("cmp_reveal", None)
    if reveal:
        st.success(reveal, icon=":material/visibility:")
    key = ("cmp_pair", summary.comparison_id, voter)
    pair = st.session_state.get("cmp_pair")
    if pair is None or (pair.comparison_id, st.session_state.get("cmp_pair_voter")) != key[1:]:
        ok, pair = attempt(compare_svc.next_arena_pair, summary.comparison_id, voter)
        if not ok:
            return
        st.session_state["cmp_pair"], st.session_state["cmp_pair_voter"] = pair, voter
    if pair is None:
        st.info("You have voted on every pair of this comparison. Thank you! The **Leaderboard** tab has the results.")
        return
    st.markdown("**Prompt**")
    st.text(pair.prompt)
    left, right = st.columns(2)
    left.markdown("**Answer A**")
    left.text(pair.text_a)
    right.markdown("**Answer B**")
    right.text(pair.text_b)
    st.caption("Shortcuts: **A**, **B**, **T** (tie), **X** (both bad). The models are named after your vote.")
    for column, (winner, label, shortcut) in zip(st.columns(4), CHOICES):
        if column.button(label, key=f"cmp_vote_{winner}", shortcut=shortcut, width="stretch"):
            ok, result = attempt(compare_svc.cast_vote, pair.comparison_id, pair.prompt_id, pair.output_a_id,
                                 pair.output_b_id, winner, voter)
            if ok:
                st.session_state["cmp_reveal"] = f"A was **{result.model_a}**, B was **{result.model_b}**."
                st.session_state["cmp_pair"] = None
                st.rerun()


def argilla_section(comparison_id: str) -> None:
    """More voters: the comparison's pairs as a blind review dataset in Argilla; its answers come back
    as human votes (Review page's pull, or the button here) into this leaderboard."""
    # a push or pull started here shows its progress here, and the page refreshes when it ends (new votes)
    watch_jobs(review_svc.PUSH_JOB, LIVE_REFRESH_S)
    watch_jobs(review_svc.PULL_JOB, LIVE_REFRESH_S)
    with st.expander("Collect votes from reviewers in Argilla"):
        st.caption("Sends every pair of models on every prompt, in a random order with the model names hidden. "
                   "What each reviewer submits there becomes their vote here after a pull.")
        push_col, pull_col = st.columns(2)
        request = review_svc.PushRequest(kind="comparison", run_id=comparison_id, dataset_name=f"compare-{comparison_id}",
                                         limit=100_000)
        if push_col.button("Send to Argilla", key="cmp_argilla_push", width="stretch"):
            ok, job_id = attempt(review_svc.start_push, request)
            if ok:
                track_job(review_svc.PUSH_JOB, job_id)
                st.success(f"Pushing to the Argilla dataset {request.name} in the background; the Review page shows "
                           "its progress and the link for reviewers.")
        if pull_col.button("Pull votes from Argilla", key="cmp_argilla_pull", width="stretch"):
            ok, job_id = attempt(review_svc.start_pull)
            if ok:
                track_job(review_svc.PULL_JOB, job_id)
                st.success("Pulling in the background; the votes join the leaderboard when it finishes.")
