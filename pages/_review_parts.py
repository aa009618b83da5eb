"""Review page parts: the push form, the rounds table, agreement charts and the disagreement table.

Why separate: the page stays a short script of sections; each part reads inputs or renders one
service result and never touches SQL or HTTP.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._widgets import short
from core.errors import StudioError
from studio.services import review as review_svc

KINDS = {"preference": "Preference pairs", "sft": "SFT pairs", "instruction": "Instructions",
         "comparison": "Model comparison pairs (blind votes)"}


def push_form() -> review_svc.PushRequest | None:
    """The push options as a PushRequest (None while the inputs are not valid)."""
    with st.form("push_form"):
        c1, c2, c3 = st.columns(3)
        kind = c1.selectbox("What to review", list(KINDS), format_func=KINDS.get)
        dataset = c2.text_input("Argilla dataset", placeholder="studio-<kind>")
        limit = c3.number_input("At most this many records", 1, 100_000, 200)
        c4, c5, c6 = st.columns(3)
        run_id = c4.text_input("Only generation run (id)", placeholder="all runs",
                               help="For model comparison pairs: the comparison's id (Compare page).")
        low, high = c5.slider("Judge confidence", 0.0, 1.0, (0.0, 1.0), 0.05)
        reviewers = c6.number_input("Reviewers per record", 1, 10, 1)
        swap = st.checkbox("Only pairs where the judge's two orders disagreed")
        active = st.checkbox("Least confident first (active review)", value=True)
        guidelines = st.text_area("Guidelines for reviewers (optional)", height=80)
        if not st.form_submit_button("Push for review", type="primary"):
            return None
    try:
        return review_svc.PushRequest(
            kind=kind, dataset_name=dataset.strip() or None, run_id=run_id.strip() or None,
            min_confidence=low if low > 0 else None, max_confidence=high if high < 1 else None,
            swap_disagreement_only=swap, limit=int(limit), order="least_confident" if active else "newest",
            min_submitted=int(reviewers), guidelines=guidelines.strip() or None)
    except StudioError as err:  # validation: shown, nothing started
        st.error(str(err), icon=":material/error:")
        return None


def rounds_table(rounds: list) -> None:
    if not rounds:
        st.caption("Nothing under review yet: push some records below.")
        return
    st.dataframe([{"dataset": r.name, "kind": r.kind, "status": r.status, "pushed": r.pushed,
                   "completed": r.completed, "pending": r.pending, "answers": r.submitted, "discarded": r.discarded,
                   "human-reviewed": r.reviewed, "last pull": r.last_pulled_at, "open in Argilla": r.url}
                  for r in rounds], hide_index=True, width="stretch",
                 column_config={"open in Argilla": st.column_config.LinkColumn(display_text="open")})


def agreement_view(round_status) -> None:
    a = round_status.agreement or {}
    overall = a.get("overall") or {}
    c1, c2, c3 = st.columns(3)
    c1.metric("Human vs judge agreement", "—" if overall.get("rate") is None else f"{overall['rate']:.0%}",
              help=f"{overall.get('agree', 0)} of {overall.get('n', 0)} records with a human majority")
    c2.metric("Krippendorff's alpha (reviewers)", "—" if a.get("alpha") is None else f"{a['alpha']:.2f}",
              help=f"over {a.get('alpha_units', 0)} records with two or more answers")
    c3.metric("Human-reviewed records", round_status.reviewed)
    if a.get("calibration"):
        st.markdown("**Calibration**: agreement with people per judge-confidence bucket")
        frame = pd.DataFrame(a["calibration"]).set_index("bucket")
        st.bar_chart(frame[["rate", "mean_confidence"]], stack=False)
    left, right = st.columns(2)
    _rate_table(left, "Per rubric aspect", "aspect", a.get("per_aspect"))
    _rate_table(right, "Per generator model", "model", a.get("per_model"))
    if a.get("reviewers"):
        st.markdown("**Reviewers**")
        st.dataframe(a["reviewers"], hide_index=True, width="stretch")


def _rate_table(where, title: str, key: str, rates: dict | None) -> None:
    """Agreement per group as a table with its counts (a bar of one or two groups says little)."""
    if not rates:
        return
    where.markdown(f"**{title}**")
    rows = [{key: name, "records": r.get("n", 0), "agree": r.get("agree", 0), "rate": r.get("rate") or 0.0}
            for name, r in rates.items()]
    where.dataframe(rows, hide_index=True, width="stretch", column_config={
        "rate": st.column_config.ProgressColumn("agreement", min_value=0.0, max_value=1.0, format="percent")})


def disagreements_table(rows: list) -> None:
    if not rows:
        st.caption("No record where the reviewers' majority differs from the judge.")
        return
    st.dataframe([{"prompt": short(d.prompt), "judge": d.judge_label, "people": d.human_label,
                   "votes": ", ".join(f"{k}: {v}" for k, v in d.votes.items()), "confidence": d.confidence,
                   "judge model": d.judge_model, "why": " | ".join(d.rationales), "record": d.record_id}
                  for d in rows], hide_index=True, width="stretch")
