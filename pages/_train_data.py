"""The Train page's Data tab: snapshot filters, the pre-training checks, create, and the list."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, flash
from pages._widgets import choice
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import snapshots as snap_svc

KINDS = {"preference": "preference pairs (DPO, reward, ORPO, CPO)", "sft": "SFT pairs",
         "kto": "KTO (unpaired good/bad labels, from pairs and reviews)", "prompts": "prompts only (PPO, GRPO, RLOO)"}
SEVERITY = {"blocking": st.error, "warning": st.warning, "info": st.caption}


def _spec_from_form() -> tuple[snap_svc.SnapshotSpec, str | None]:
    help_of = {f: snap_svc.SnapshotSpec.__dataclass_fields__[f].metadata["help"]
               for f in snap_svc.SnapshotSpec.__dataclass_fields__}
    left, right = st.columns(2)
    kind = left.selectbox("Record kind", list(KINDS), format_func=KINDS.get, help=help_of["record_kind"])
    name = left.text_input("Snapshot name", help=help_of["name"])
    runs = {r.run_id: f"{r.name} · {r.run_id}" for r in gen_svc.list_runs()}
    picked = left.multiselect("Generation runs (empty: all)", list(runs), format_func=runs.get,
                              help=help_of["generation_run_ids"])
    human = left.checkbox("Only human-reviewed", help=help_of["only_human_reviewed"])
    rule = left.selectbox("Final label", ["prefer_human", "judge_only"], help=help_of["label_rule"])
    min_conf = right.slider("Minimum judge confidence", 0.0, 1.0, 0.0, 0.05, help=help_of["min_judge_confidence"])
    min_agree = right.slider("Minimum reviewer agreement", 0.0, 1.0, 0.0, 0.05, help=help_of["min_reviewer_agreement"])
    flagged = right.checkbox("Exclude flagged", True, help=help_of["exclude_flagged"])
    max_len = right.number_input("Max length (0: no limit)", 0, 1_000_000, 0, help=help_of["max_length"])
    unit = right.selectbox("Max length unit", ["chars", "tokens"], help=help_of["max_length_unit"])
    eval_fraction = right.number_input("Eval fraction", 0.0, 0.9, 0.1, 0.05, help=help_of["eval_fraction"])
    seed = right.number_input("Split seed", 0, 2**31 - 1, 42, help=help_of["split_seed"])
    models = {m.name: m.name for m in models_svc.list_models() if m.hf_path or m.adapter_path}
    tokenizer = choice("Count tokens with", {"": "(estimate: 4 characters a token)", **models}, key="snap_tok")
    spec = snap_svc.SnapshotSpec(
        record_kind=kind, name=name or None, generation_run_ids=tuple(picked), only_human_reviewed=human,
        label_rule=rule, min_judge_confidence=min_conf or None, min_reviewer_agreement=min_agree or None,
        exclude_flagged=flagged, max_length=int(max_len) or None, max_length_unit=unit,
        eval_fraction=float(eval_fraction), split_seed=int(seed))
    return spec, tokenizer or None


def show_checks(summary) -> None:
    st.dataframe(summary.counts, hide_index=True, width="stretch")
    for check in summary.checks:
        SEVERITY.get(check["severity"], st.caption)(f"**{check['name']}** · {check['message']}")


def data_tab() -> None:
    spec, tokenizer = _spec_from_form()
    check_col, create_col, _ = st.columns([1, 1, 3])
    if check_col.button("Check data"):
        ok, summary = attempt(snap_svc.preview_checks, spec, tokenizer)
        if ok:
            st.markdown(f"**{summary.n_train}** to train, **{summary.n_eval}** to evaluate (not stored yet)")
            show_checks(summary)
    if create_col.button("Create snapshot", type="primary"):
        ok, summary = attempt(snap_svc.create_snapshot, spec, tokenizer)
        if ok:
            flash(f"Snapshot {summary.id} " + ("created." if summary.created else "already existed (same content)."))
            st.rerun()
    st.subheader("Snapshots")
    snapshots = snap_svc.list_snapshots()
    if not snapshots:
        st.caption("No snapshots yet: generate pairs, then create one above.")
        return
    st.dataframe([{"id": s.id, "name": s.name, "kind": s.record_kind, "train": s.n_train, "eval": s.n_eval,
                   "warnings": sum(c["severity"] == "warning" for c in s.checks), "created": s.created_at}
                  for s in snapshots], hide_index=True, width="stretch")
    picked = choice("Snapshot", {s.id: f"{s.name or 'unnamed'} · {s.id}" for s in snapshots}, key="snap_pick")
    detail = snap_svc.get_snapshot(picked)
    show_checks(detail.summary)
    with st.expander("First training rows and lineage"):
        st.json(detail.sample, expanded=False)
        st.dataframe(detail.lineage.get("by_generation_run", []), hide_index=True)
