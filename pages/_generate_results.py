"""Generate page, Results: the paged pair table with filters, one pair's lineage, a run's cost ledger
and preprocessing report, and export.

Why the lineage is shown in full: a preference label is only as good as the judge's reading of the
candidates, so a user checking a pair sees the seed, every instruction step, every candidate with
its model and sampling, and each judgment with its scores, rationale and the judge's raw reply.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import streamlit as st

from pages._ui import attempt, human_count
from pages._widgets import choice, pager, reasons_text, short
from core import settings
from studio.services import generate as gen_svc

KINDS = {"preference": "Preference pairs", "sft": "SFT pairs"}
FORMATS = {"jsonl": "JSON Lines", "parquet": "Parquet", "datasets": "datasets folder (save_to_disk)"}
SWAP = {True: "both judge orders agreed", False: "the two judge orders disagreed",
        None: "no position-swap check (pointwise judge, or a listwise call clear enough to need none)"}
EXTENSIONS = {"jsonl": ".jsonl", "parquet": ".parquet", "datasets": ""}


def filters_form(kind: str, runs: list) -> dict:
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    with c1:
        run_id = choice("Run", {None: "All runs", **{r.run_id: f"{r.name} · {r.run_id}" for r in runs}}, key="res_run")
    model = c2.text_input("Model", key="res_model", placeholder="any model (exact name)").strip()
    low, high = c3.slider("Judge confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="res_conf")
    max_length = c4.number_input("Max length (0 = any)", 0, 10_000_000, 0, key="res_len")
    swap = kind == "preference" and st.checkbox("Only pairs where the two judge orders disagreed", key="res_swap")
    return {"run_id": run_id, "model": model or None, "min_confidence": low if low > 0 else None,
            "max_confidence": high if high < 1 else None, "swap_disagreement": True if swap else None,
            "max_length": int(max_length) or None}


def pair_rows(kind: str, rows: list[dict]) -> list[dict]:
    if kind == "sft":
        return [{"prompt": short(r["prompt"]), "completion": short(r["completion"]), "model": r["model"],
                 "score": r["score"], "confidence": r["confidence"], "length": r["completion_length"],
                 "run": r["run_id"], "id": r["id"]} for r in rows]
    return [{"prompt": short(r["prompt"]), "chosen": short(r["chosen"]), "rejected": short(r["rejected"]),
             "chosen model": r["chosen_model"], "rejected model": r["rejected_model"], "judge": r["judge_model"],
             "confidence": r["confidence"], "score gap": r["score_gap"], "swap agreed": r["swap_agreement"],
             "run": r["run_id"], "id": r["id"]} for r in rows]


def judgment_view(j: dict) -> None:
    scores = " · ".join(f"{k} {v}" for k, v in (j.get("aspect_scores") or {}).items())
    head = [f"**{j['mode']}** judgment by `{j.get('judge_model') or j['judge_kind']}`", f"parse: {j['parse_status']}"]
    if j.get("overall_score") is not None:
        head.append(f"overall {j['overall_score']:.2f}")
    if j.get("preferred"):
        head.append(f"preferred {j['preferred'].upper()}" + (" (order swapped)" if j.get("order_swapped") else ""))
    st.markdown(" · ".join(head) + (f"  \n{scores}" if scores else ""))
    if j.get("rationale"):
        st.caption(f"Rationale: {j['rationale']}")
    st.caption("Raw judge output" + (" (first reply, then the repair reply)" if j["parse_status"] != "ok" else ""))
    st.code(j.get("raw_output") or "(no raw output)", language=None, wrap_lines=True)


def candidate_view(c: dict, role: str | None) -> None:
    params = c.get("sampling_params") or {}
    with st.container(border=True):
        facts = [f"`{c['model']}` ({c['backend']})", f"candidate {c['candidate_index']}",
                 f"temperature {params.get('temperature', '—')}", f"max tokens {params.get('max_tokens', '—')}",
                 f"{c.get('prompt_tokens') or 0} + {c.get('completion_tokens') or 0} tokens",
                 f"${c.get('cost_usd') or 0:.5f}",
                 c["status"] + (f" ({c['removed_reason']})" if c.get("removed_reason") else "")]
        st.markdown((f"**{role}** · " if role else "") + " · ".join(facts))
        st.text(c["text"])
        for j in c.get("judgments", []):
            if j["mode"] in ("pointwise", "listwise"):
                judgment_view(j)


def lineage_view(kind: str, pair_id: str) -> None:
    ok, lineage = attempt(gen_svc.get_lineage, kind, pair_id)
    if not ok:
        return
    pair, seed = lineage["pair"], lineage["seed"]
    facts = ([f"score {pair['score']}", f"model `{pair['model']}`"] if kind == "sft" else
             [f"score gap {pair['score_gap']}", f"chosen `{pair['chosen_model']}`", f"rejected `{pair['rejected_model']}`",
              f"judge `{pair['judge_model']}`", SWAP[pair["swap_agreement"]]])
    confidence = "—" if pair.get("confidence") is None else f"{pair['confidence']:.2f}"
    st.markdown(f"**Confidence {confidence}** · " + " · ".join(facts) + f" · run {pair['run_id']}")
    st.markdown(f"**Seed** ({seed['id']})" if seed else "**Seed**: not recorded")
    if seed:
        st.text(seed["text"])
    for step in lineage["instructions"]:
        st.markdown(f"**Instruction** · {step['method']}" + (f" · `{step['model']}`" if step.get("model") else ""))
        st.text(step["text"])
    roles = ({pair["response_id"]: "SFT completion"} if kind == "sft" else
             {pair["chosen_response_id"]: "chosen", pair["rejected_response_id"]: "rejected"})
    st.markdown(f"**Candidates** ({len(lineage['candidates'])})")
    for candidate in lineage["candidates"]:
        candidate_view(candidate, roles.get(candidate["id"]))
    pairwise = [j for j in lineage["judgments"] if j["mode"] == "pairwise"]
    if pairwise:
        st.markdown("**Pairwise verdicts** (both orders)")
        for j in pairwise:
            judgment_view(j)


def run_report(run_id: str) -> None:
    ok, detail = attempt(gen_svc.get_run, run_id)
    if not ok:
        return
    ledger, per_pair = detail.ledger, detail.ledger.get("per_kept_pair") or {}
    cells = st.columns(5)
    total = ledger.get("total") or {}
    cells[0].metric("Calls", f"{total.get('calls') or 0:,}", f"{total.get('cached_calls') or 0:,} cached",
                    delta_color="off")
    cells[1].metric("Tokens", human_count((total.get("prompt_tokens") or 0) + (total.get("completion_tokens") or 0)))
    cells[2].metric("Cost", f"${total.get('cost_usd') or 0:.4f}")
    for cell, kind in zip(cells[3:], KINDS):
        kept = per_pair.get(kind)
        cell.metric(f"Cost per {KINDS[kind][:-1].lower()}", f"${kept['cost_usd']:.5f}" if kept else "—")
    st.markdown("**Cost ledger by stage and model**")
    st.dataframe(ledger.get("by_stage_model") or [], hide_index=True, width="stretch")
    st.markdown("**Preprocessing: what each step removed and why**")
    steps = [{"on": table, "step": s["step"], "in": s["input_count"], "removed": s["removed"], "changed": s["changed"],
              "reasons": reasons_text(s.get("reasons"))} for table, found in detail.report.items() for s in found]
    if steps:
        st.dataframe(steps, hide_index=True, width="stretch")
    else:
        st.caption("No preprocessing has run yet.")


def export_form(kind: str, filters: dict) -> None:
    with st.form("export_pairs"):
        c1, c2 = st.columns([1, 3])
        with c1:
            fmt = choice("Format", FORMATS, "jsonl", key="export_fmt")
        stamp = st.session_state.setdefault("export_stamp", datetime.now().strftime("%Y%m%d-%H%M%S"))
        default = settings.current().home / "exports" / f"{kind}-{filters['run_id'] or 'all'}-{stamp}"
        path = c2.text_input("Path (the extension follows the format)", str(default), key="export_path")
        overwrite = st.checkbox("Overwrite if it is an earlier export (never anything else)", key="export_overwrite")
        if st.form_submit_button(f"Export {KINDS[kind].lower()}"):
            target = path.strip() + (EXTENSIONS[fmt] if not path.strip().endswith(EXTENSIONS[fmt] or "/") else "")
            ok, summary = attempt(gen_svc.export_pairs, kind, fmt, target, filters, overwrite=overwrite)
            if ok:
                st.session_state["export_done"] = summary
    done = st.session_state.get("export_done")
    if done is not None:   # outside the form: a download button cannot live in one
        st.success(f"Exported {done.rows:,} {KINDS[done.kind].lower()} to `{done.path}` ({done.fmt}).",
                   icon=":material/check_circle:")
        ok, download = attempt(gen_svc.export_download, done.path)
        if ok:
            st.download_button(f"Download {download.file_name}", download.data, download.file_name, download.mime,
                               icon=":material/download:", key="export_download")


def follow_selection(rows: list[dict], selected: list[int]) -> None:
    """A row clicked in the table opens that pair (the picker below follows the last click)."""
    ids = [r["id"] for r in rows]
    if st.session_state.get("res_open") not in ids:
        st.session_state.pop("res_open", None)
    if selected and selected[0] < len(rows) and st.session_state.get("res_clicked") != ids[selected[0]]:
        st.session_state["res_clicked"] = st.session_state["res_open"] = ids[selected[0]]


def results_tab() -> None:
    runs = gen_svc.list_runs()
    kind = st.radio("Show", list(KINDS), format_func=KINDS.get, horizontal=True, key="res_kind")
    filters = filters_form(kind, runs)
    ok, total = attempt(gen_svc.count_pairs, kind, filters)
    if not ok:
        return
    if not total:
        st.info(f"No {KINDS[kind].lower()} match yet. Start a run in **Configure & run**; pairs appear here as "
                "soon as its judge stage finishes." if runs else "No runs yet: add seeds, then start a run.")
    else:
        limit, offset = pager(total, "res_page_" + hashlib.sha1(repr((kind, filters)).encode()).hexdigest()[:10])
        rows = gen_svc.list_pairs(kind, filters, limit, offset)
        event = st.dataframe(pair_rows(kind, rows), hide_index=True, width="stretch", key="res_table",
                             on_select="rerun", selection_mode="single-row")
        follow_selection(rows, event.selection.rows)
        with st.expander("Lineage of one pair", expanded=True):
            pair_id = choice("Open a pair (or click a row above)", {r["id"]: short(r["prompt"], 100) for r in rows},
                             key="res_open")
            lineage_view(kind, pair_id)
    if filters["run_id"]:
        with st.expander("Cost ledger and preprocessing report of this run", expanded=False):
            run_report(filters["run_id"])
    if total:
        with st.expander("Export"):
            export_form(kind, filters)
