"""Generate: seeds -> LLM-written instructions -> candidate responses -> judged SFT and preference pairs.

Three tabs: Seeds (type, upload or point at a file; map columns; import), Configure & run (the
run's config as widgets or YAML; start, live progress, stop, resume) and Results (pairs, their
lineage, the cost ledger, export). A run works in a background job, so it survives a reload.
"""

from __future__ import annotations

import streamlit as st

from pages._generate_config import config_editor
from pages._generate_results import results_tab
from pages._generate_seeds import seeds_tab
from pages._ui import (attempt, flash, human_count, read_only_notice, render_tabs, show_error, show_flashes,
                       track_job, watch_jobs)
from pages._widgets import choice
from core.errors import StudioError
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc

JOB_KIND = "generation"
ACTIVE = ("queued", "running")
LIVE_REFRESH_S = 2.0
TIME_FORMAT = "%Y-%m-%d %H:%M"
STATUS_LABELS = {"warnings": "succeeded with warnings"}


def run_rows(runs: list) -> list[dict]:
    def pair(kept: int, total: int) -> str:  # "kept / made"
        return f"{kept:,} / {total:,}" if total else "0"

    def when(moment) -> str:
        return moment.strftime(TIME_FORMAT) if moment else "—"

    return [{"run": r.name, "status": STATUS_LABELS.get(r.status, r.status),
             "instructions": pair(r.counts.get("instructions_kept", 0), r.counts.get("instructions", 0)),
             "responses": pair(r.counts.get("responses_kept", 0), r.counts.get("responses", 0)),
             "judged": r.counts.get("judgments", 0), "unparsable": r.counts.get("judgments_failed", 0),
             "preference pairs": r.counts.get("preference_pairs", 0), "SFT pairs": r.counts.get("sft_pairs", 0),
             "tokens": human_count(r.tokens), "cost": f"${r.cost_usd:.4f}", "started": when(r.created_at),
             "finished": when(r.finished_at)} for r in runs]


def runs_table() -> None:
    """The runs with counts per stage; refreshed live (by the fragment) while one is active."""
    runs = gen_svc.list_runs()
    if not runs:
        st.caption("No runs yet.")
        return
    st.dataframe(run_rows(runs), hide_index=True, width="stretch")
    st.caption("A run's pairs appear in the **Results** tab as soon as it finishes; stopped, failed and "
               "interrupted runs resume where they left off.")
    # option labels never change with the run's state: a selectbox whose label changes keeps showing the old one
    picked = choice("Run", {r.run_id: f"{r.name} · {r.run_id}" for r in runs}, key="run_pick")
    run = next(r for r in runs if r.run_id == picked)
    note = f"**{STATUS_LABELS.get(run.status, run.status)}**" + (f" · {run.message}" if run.message else "")
    show = {"failed": st.error, "interrupted": st.error, "warnings": st.warning, "partial": st.warning}
    show.get(run.status, st.markdown)(note)
    stop_col, resume_col, _ = st.columns([1, 1, 4])
    if stop_col.button("Stop", disabled=run.status not in ACTIVE, width="stretch"):
        if attempt(gen_svc.stop_generation, run.run_id)[0]:
            flash(f"Asked run {run.run_id} to stop after its current batch.")
            st.rerun(scope="app")
    if resume_col.button("Resume", disabled=run.status in (*ACTIVE, "succeeded"), width="stretch"):
        ok, started = attempt(gen_svc.resume_generation, run.run_id)
        if ok:
            track_job(JOB_KIND, started.job_id)
            flash(f"Resumed run {run.run_id}.")
            st.rerun(scope="app")


def run_tab() -> None:
    targets = {t.key: t.label for t in models_svc.list_targets()}
    if not targets:
        st.info("No model or endpoint to generate with. Start the studio with `python -m studio up` (it adds the "
                "embedded endpoint), or add an OpenAI-compatible endpoint on the **Models** page.")
        return
    config = config_editor(targets, seeds_svc.list_seed_sets())
    if st.button("Start generation", type="primary", disabled=config is None):
        ok, started = attempt(gen_svc.start_generation, config)
        if ok:
            track_job(JOB_KIND, started.job_id)
            flash(f"Started run {started.run_id} in the background; its progress shows above.")
            st.rerun()
    st.subheader("Runs")
    live = bool(active_runs) or any(r.status in ACTIVE for r in gen_svc.list_runs())
    st.fragment(runs_table, run_every=LIVE_REFRESH_S if live else None)()


TABS = {"Seeds": seeds_tab, "Configure & run": run_tab, "Results": results_tab}
st.title("Generate")
st.caption("Turn a few seed tasks into LLM-written instructions, candidate answers and judged SFT and preference "
           "pairs, with full lineage.")
read_only_notice("adding seeds and generating")
show_flashes()
try:  # live progress on every tab; the page reruns when a run ends, so Results refresh too
    active_runs = watch_jobs(JOB_KIND, LIVE_REFRESH_S)
except StudioError as err:
    show_error(err)
    active_runs = []
render_tabs(TABS)
