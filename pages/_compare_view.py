"""The Compare page's "Side by side" tab, and the comparison picker the other tabs share."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, track_job
from pages._widgets import choice, pager, short
from studio.services import compare as compare_svc


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def pick_comparison(key: str) -> compare_svc.ComparisonSummary | None:
    """A selectbox of comparisons (newest first) that remembers the pick across tabs."""
    found = compare_svc.list_comparisons()
    if not found:
        st.info("No comparisons yet: start one in the **New comparison** tab.")
        return None
    options = {c.comparison_id: f"{c.name} · {c.status} · {c.comparison_id}" for c in found}
    picked = choice("Comparison", options, default=st.session_state.get("cmp_pick"), key=key)
    st.session_state["cmp_pick"] = picked
    summary = next(c for c in found if c.comparison_id == picked)
    counts = summary.counts
    st.caption(f"{_n(counts['prompts'], 'prompt')} · {_n(counts['outputs'], 'answer')} ({counts['cut_off']} cut off "
               f"at the token limit, {counts['truncated']} with the prompt shortened to fit) · "
               f"{_n(counts['human_votes'], 'human vote')} · {_n(counts['judge_votes'], 'judge vote')}")
    for message in [*summary.report.get("messages", []), *summary.spec.get("warnings", [])]:
        st.warning(message)
    if summary.status in ("partial", "stopped", "failed") and st.button("Resume: generate what is missing"):
        ok, job_id = attempt(compare_svc.resume_comparison, summary.comparison_id)
        if ok:
            track_job(compare_svc.JOB_KIND, job_id)
            st.rerun()
    return summary


def _one_prompt(row, reference_model: str | None) -> None:
    st.markdown(f"**Prompt** · {', '.join(f'{k}: {v}' for k, v in row.metadata.items())}")
    st.text(row.prompt)
    if row.reference:
        st.caption(f"Reference: {row.reference}")
    first = next((a for a in row.answers if a.model == reference_model), row.answers[0] if row.answers else None)
    for column, answer in zip(st.columns(max(1, len(row.answers))), row.answers):
        with column:
            st.markdown(f"**{answer.model}**")
            score = f" · reward {answer.reward_score:.3f}" if answer.reward_score is not None else ""
            cut = (" · :orange[prompt truncated]" if answer.truncated else "") + \
                (" · :orange[cut off at the token limit]" if answer.cut_off else "")
            st.caption(f"{answer.words} words{score}{cut}")
            if first is None or answer is first:
                st.text(answer.text)
            else:
                st.html(compare_svc.answer_diff(first.text, answer.text)[1])
    with st.expander("Lineage"):
        st.json({"prompt_id": row.prompt_id, "source_record_id": row.metadata.get("source"),
                 "outputs": {a.model: a.output_id for a in row.answers}}, expanded=False)


def view_tab() -> None:
    summary = pick_comparison("cmp_view_pick")
    if summary is None:
        return
    cols = st.columns([3, 1, 1, 2])
    search = cols[0].text_input("Search prompts and answers", key="cmp_search")
    truncated = cols[1].toggle("Truncated only", key="cmp_truncated")
    table = cols[2].toggle("Table view", key="cmp_table")
    base = cols[3].selectbox("Highlight differences from", summary.models, key="cmp_diff_base")
    total = compare_svc.get_side_by_side(summary.comparison_id, page_size=1, search=search,
                                         truncated_only=truncated).total
    size, offset = pager(total, key="cmp_page") if table else (1, _prompt_index(total))
    page = compare_svc.get_side_by_side(summary.comparison_id, page=offset // size, page_size=size, search=search,
                                        truncated_only=truncated)
    if not page.rows:
        st.caption("No prompts match.")
        return
    if table:
        st.dataframe([{"prompt": short(r.prompt, 60), **{a.model: short(a.text, 60) for a in r.answers},
                       **{f"{a.model} words": a.words for a in r.answers}} for r in page.rows],
                     hide_index=True, width="stretch")
    else:
        _one_prompt(page.rows[0], base)


def _prompt_index(total: int) -> int:
    cols = st.columns([1, 2, 1], vertical_alignment="bottom")
    index = min(int(st.session_state.get("cmp_prompt", 0)), max(0, total - 1))
    if cols[0].button("Previous prompt", disabled=index == 0, width="stretch"):
        index -= 1
    if cols[2].button("Next prompt", disabled=index >= total - 1, width="stretch"):
        index += 1
    st.session_state["cmp_prompt"] = index
    cols[1].markdown(f"Prompt **{index + 1}** of **{total}**")
    return index
