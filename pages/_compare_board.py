"""The Compare page's "Leaderboard" tab: ratings with intervals, the win-rate matrix, slices, judge checks."""

from __future__ import annotations

import altair as alt
import streamlit as st

from pages._ui import attempt
from studio.services import compare as compare_svc

VOTERS = {None: "Everyone", "human": "People", "llm": "LLM judges", "rubric": "Rubrics"}


def _ratings_chart(ratings) -> alt.LayerChart:
    data = [{"model": r.model, "rating": r.rating, "low": r.ci_low, "high": r.ci_high} for r in ratings]
    base = alt.Chart(alt.Data(values=data)).encode(y=alt.Y("model:N", sort="-x", title=None))
    return base.mark_rule().encode(x=alt.X("low:Q", title="rating (95% CI)", scale=alt.Scale(zero=False)),
                                   x2="high:Q") + base.mark_point(filled=True, size=80).encode(x="rating:Q")


def _matrix_chart(rows) -> alt.LayerChart:
    data = [{"model": r.model, "opponent": r.opponent, "win_rate": round(r.win_rate, 3)} for r in rows]
    base = alt.Chart(alt.Data(values=data)).encode(x=alt.X("opponent:N", title="against"), y=alt.Y("model:N"))
    heat = base.mark_rect().encode(color=alt.Color("win_rate:Q", scale=alt.Scale(domain=[0, 1], scheme="redblue")))
    return heat + base.mark_text().encode(text="win_rate:Q")


def board_tab() -> None:
    found = compare_svc.list_comparisons()
    scopes = {None: "All comparisons", **{c.comparison_id: f"{c.name} · {c.comparison_id}" for c in found}}
    cols = st.columns(4)
    scope = cols[0].selectbox("Scope", list(scopes), format_func=scopes.get, key="cmp_board_scope")
    voter_kind = cols[1].selectbox("Votes of", list(VOTERS), format_func=VOTERS.get, key="cmp_board_voters")
    slice_key = cols[2].text_input("Slice by metadata field", key="cmp_board_slice").strip() or None
    length = cols[3].toggle("Length-controlled win rates", key="cmp_board_lc")
    board = compare_svc.leaderboard(comparison_id=scope, voter_kind=voter_kind, slice_key=slice_key,
                                    length_controlled=length)
    if scope:
        _metrics(scope)
    if not board.votes:
        st.info(board.message)
        return
    for warning in board.warnings:
        st.warning(warning, icon=":material/warning:")
    st.markdown(f"**{board.votes:,} votes** · {board.ties:,} ties · {board.both_bad:,} both bad")
    st.dataframe([{"rank": r.rank, "model": r.model, "rating": round(r.rating), "95% CI":
                   f"{r.ci_low:.0f} – {r.ci_high:.0f}", "games": r.games, "wins (ties ½)": r.wins}
                  for r in board.ratings], hide_index=True, width="stretch", key="cmp_board_table")
    left, right = st.columns(2)
    left.altair_chart(_ratings_chart(board.ratings), width="stretch")
    right.altair_chart(_matrix_chart(board.win_rates), width="stretch")
    st.subheader("Win rates")
    lc = {(x.model, x.opponent): x.lc_win_rate for x in board.length_controlled}
    st.dataframe([{"model": w.model, "against": w.opponent, "win rate": round(w.win_rate, 3),
                   "95% CI": f"{w.ci_low:.3f} – {w.ci_high:.3f}", "wins": w.wins, "losses": w.losses, "ties": w.ties,
                   "both bad": w.both_bad, **({"length-controlled": round(lc[(w.model, w.opponent)], 3)}
                                              if (w.model, w.opponent) in lc else {})}
                  for w in board.win_rates if w.model < w.opponent], hide_index=True, width="stretch")
    for value, ratings in board.slices.items():
        st.caption(f"{board.slice_key} = {value}: " + " · ".join(f"{r.model} {r.rating:.0f}" for r in ratings))
    if board.agreement:
        a = board.agreement
        kappa = f", Cohen's κ {a.kappa:.2f}" if a.kappa is not None else ""
        st.caption(f"People and judges agree on {a.agree} of {a.n} shared comparisons ({a.rate:.0%}{kappa}).")


def _metrics(comparison_id: str) -> None:
    """Reference metrics of one comparison: stored once computed (perplexity loads every model)."""
    stored = compare_svc.stored_metrics(comparison_id)
    with st.expander("Reference metrics: BLEU, ROUGE-L, held-out perplexity, reward-model accuracy",
                     expanded=bool(stored)):
        if st.button("Compute metrics" if not stored else "Recompute metrics", key="cmp_metrics_go"):
            with st.spinner("Scoring the answers against the references and loading each model for perplexity..."):
                ok, stored = attempt(compare_svc.compute_metrics, comparison_id)
        if stored:
            st.dataframe([{**m, "notes": "; ".join(m["notes"])} for m in stored["models"]], hide_index=True,
                         width="stretch")
            if stored.get("reward_accuracy"):
                r = stored["reward_accuracy"]
                st.caption(f"Reward model {r['reward_model']}: accuracy {r['accuracy']:.1%} on {r['pairs']} held-out pairs.")
