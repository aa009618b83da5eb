"""The Compare page's "New comparison" tab: models, prompt set, sampling, judge; start in the background."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, flash, track_job
from pages._widgets import params_form
from studio.services import compare as compare_svc
from studio.services.generate_form import rubric_form
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc

SOURCES = {"upload": "Upload a JSONL / CSV file", "snapshot_eval": "Held-out split of a snapshot",
           "generation_run": "Instructions of a generation run"}


def _prompt_source() -> tuple[str, str | None, dict]:
    source = st.radio("Prompt set", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="cmp_source")
    if source == "snapshot_eval":
        return source, st.text_input("Snapshot id", key="cmp_snapshot").strip() or None, {}
    if source == "generation_run":
        runs = {r.run_id: f"{r.name} · {r.run_id}" for r in gen_svc.list_runs()}
        if not runs:
            st.caption("No generation runs yet.")
            return source, None, {}
        return source, st.selectbox("Generation run", list(runs), format_func=runs.get, key="cmp_run"), {}
    uploaded = st.file_uploader("Prompt file", type=["jsonl", "json", "csv"], key="cmp_upload")
    cols = st.columns(3)
    extra = {"text_column": cols[0].text_input("Prompt column", "prompt", key="cmp_text_col"),
             "reference_column": cols[1].text_input("Reference column (optional)", key="cmp_ref_col") or None,
             "metadata_columns": tuple(c.strip() for c in cols[2].text_input(
                 "Metadata columns for slices (comma-separated)", key="cmp_meta_cols").split(",") if c.strip())}
    path = None
    if uploaded is not None:
        ok, saved = attempt(seeds_svc.save_upload, uploaded.name, uploaded)
        path = str(saved) if ok else None
    return source, path, extra


def _judge(targets: dict[str, str]) -> dict | None:
    kind = st.radio("Judge", ["none", "llm", "rubric"], horizontal=True, key="cmp_judge",
                    format_func={"none": "People only", "llm": "LLM judge (both orders)", "rubric": "Rubric"}.get)
    if kind == "llm":
        target = st.selectbox("Judge model", list(targets), format_func=targets.get, key="cmp_judge_target")
        return {"kind": "llm", "target": target}
    if kind == "rubric":
        names = [r.name for r in compare_svc.list_rubrics()]
        name = st.selectbox("Rubric", names, index=names.index("answer_quality") if "answer_quality" in names else 0,
                            key="cmp_rubric")
        form = rubric_form(name)
        st.caption(form.description)
        return {"kind": "rubric", "rubric": name, "params": params_form(form, form.start, key=f"cmp_rubric_{name}")}
    return None


def new_tab() -> None:
    targets = {t.key: t.label for t in models_svc.list_targets()}
    if len(targets) < 2:
        st.info("A comparison needs at least two models: add models or endpoints on the **Models** page.")
        return
    name = st.text_input("Name (optional)", key="cmp_name")
    models = st.multiselect("Models (two or more)", list(targets), format_func=targets.get, key="cmp_models")
    source, source_id, extra = _prompt_source()
    cols = st.columns(3)
    sampling = {"temperature": cols[0].number_input("Temperature", 0.0, 2.0, 0.0, 0.1, key="cmp_temp"),
                "max_tokens": int(cols[1].number_input("Max new tokens", 1, 4096, 256, key="cmp_max_tokens")),
                "seed": 0}
    limit = int(cols[2].number_input("Prompts (0 = all)", 0, 100_000, 0, key="cmp_limit")) or None
    judge = _judge(targets)
    if st.button("Start comparison", type="primary", disabled=len(models) < 2 or not source_id):
        ok, spec = attempt(compare_svc.build_spec, models=models, prompt_source=source, prompt_source_id=source_id,
                           name=name or None, sampling=sampling, judge=judge, limit=limit, **extra)
        if ok:
            ok, created = attempt(compare_svc.create_comparison, spec)
        if ok:
            track_job(compare_svc.JOB_KIND, created.job_id)
            for warning in created.warnings:
                flash(f"Warning: {warning}")
            if created.problems:  # rows of an uploaded file that were skipped: said, never dropped silently
                shown = "; ".join(created.problems[:5]) + (" ..." if len(created.problems) > 5 else "")
                flash(f"Warning: {len(created.problems)} rows of the prompt file were skipped: {shown}")
            flash(f"Started comparison {created.comparison_id} on {created.prompts} prompts in the background.")
            st.session_state["cmp_pick"] = created.comparison_id
            st.rerun()
    if len(models) < 2:
        st.caption("Pick at least two models to compare.")
