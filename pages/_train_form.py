"""The Train page's New run tab: snapshot, base model, recipe, preset and the hyperparameter form
(built from the spec's fields and their help text), the estimate, launch and the accelerate export."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, flash, format_duration
from pages._widgets import choice
from studio.services import models as models_svc
from studio.services import snapshots as snap_svc
from studio.services import training as train_svc
from studio.services import training_form as form_svc

PRESET_LABELS = {"cpu_smoke_test": "CPU smoke test", "lora_one_gpu": "LoRA on one GPU",
                 "full_finetune_multi_gpu": "full fine-tune, several GPUs"}


def _field_input(section: str, info, value, key: str):
    label = info.name.replace("_", " ")
    if info.choices:
        return st.selectbox(label, info.choices, index=list(info.choices).index(value), help=info.help, key=key)
    if info.kind == "bool":
        return st.checkbox(label, bool(value), help=info.help, key=key)
    if info.kind == "int":
        return int(st.number_input(label, value=int(value), step=1, help=info.help, key=key))
    if info.kind == "float":
        return float(st.number_input(label, value=float(value), format="%g", help=info.help, key=key))
    if info.kind == "list":
        text = st.text_input(label, ", ".join(str(v) for v in value), help=info.help, key=key)
        parts = [part.strip() for part in text.split(",") if part.strip()]
        # numbers for a list of numbers; anything else is left for the spec's own message
        return [int(p) if info.item == "int" and p.lstrip("-").isdigit() else p for p in parts]
    return st.text_input(label, str(value), help=info.help, key=key)


def _section(section: str, values: dict, preset: str, recipe: str, method: str | None = None,
             include_sft: bool = False) -> dict:
    """The section's fields; for hyper, only the recipe's own (a DPO form has beta, no kl_coef); for peft,
    only ``method``'s (a ReFT form has layers and positions)."""
    out = {}
    columns = st.columns(3)
    for i, info in enumerate(form_svc.form_fields(section, recipe, method, include_sft)):
        with columns[i % 3]:
            out[info.name] = _field_input(section, info, values.get(info.name, info.default),
                                          key=f"{section}_{preset}_{info.name}")
    return out


def _monitoring() -> list[str]:
    loggers = form_svc.monitoring()
    chosen = st.multiselect("Monitoring", loggers.installed, key="run_report_to",
                            help="Also log the run's curves to these, under the run's folder "
                                 "(STUDIO_HOME/runs/<run>/); the README says how to point each at a team server.")
    if loggers.missing:
        st.caption(f"Not installed: {', '.join(loggers.missing)} (`{loggers.install_hint}`).")
    return chosen


def _choose_data_and_model() -> dict | None:
    listed = snap_svc.list_snapshots()
    snapshots = {s.id: f"{s.name or 'unnamed'} · {s.record_kind} · {s.n_train} train" for s in listed}
    models = {m.name: f"{m.name} ({m.kind})" for m in models_svc.list_models() if m.hf_path or m.adapter_path}
    if not snapshots or not models:
        st.info("A run needs a snapshot (the **Data** tab) and a base model with a transformers folder "
                "(the **Models** page: `python -m studio models pull`).")
        return None
    left, right = st.columns(2)
    data = {"name": left.text_input("Run name", "my-run"),
            "snapshot_id": choice("Snapshot", snapshots, key="run_snapshot"),
            "base_model": choice("Base model", models, key="run_base")}
    kind = next(s.record_kind for s in listed if s.id == data["snapshot_id"])
    recipes = form_svc.recipes_for(kind)   # only what this data can train, the usual choice first
    data["recipe"] = right.selectbox("Recipe", list(recipes), key=f"run_recipe_{kind}",
                                     format_func=lambda r: f"{r}: {' → '.join(recipes[r])}",
                                     help=f"The recipes that learn from a {kind} snapshot.")
    data["processes"] = int(right.number_input(
        "Processes", min_value=1, max_value=64, value=1, step=1, key="run_processes",
        help="Training processes on this machine (data parallel: one per GPU). Above 1 the run starts them with "
             "`accelerate launch`; the run shows and cancels like any other."))
    if data["recipe"] in form_svc.SFT_PREFIXABLE:
        data["include_sft"] = right.checkbox("Run SFT first", help="An SFT stage first; later stages start from it.")
    if data["recipe"] in form_svc.ONLINE_STAGES:
        data["reward_model"] = choice("Reward model", {"": "(none)", **models}, key="run_reward") or None
    if data["recipe"] in ("grpo", "rloo"):
        data["reward_funcs"] = right.multiselect("Rewards", [form_svc.REWARD_MODEL_FUNC, *form_svc.rubric_names()])
    return data


def new_run_tab() -> None:
    data = _choose_data_and_model()
    if data is None:
        return
    presets = form_svc.presets()
    preset = choice("Preset", PRESET_LABELS, key="run_preset")
    with st.expander("PEFT", expanded=True):
        values = presets[preset]["peft"]
        method_field = next(f for f in form_svc.form_fields("peft") if f.name == "method")
        method = _field_input("peft", method_field, values["method"], key=f"peft_{preset}_method")
        data["peft"] = {"method": method, **_section("peft", values, preset, data["recipe"], method)}
    with st.expander(f"Hyperparameters ({data['recipe']})", expanded=True):
        data["hyper"] = _section("hyper", presets[preset]["hyper"], preset, data["recipe"],
                                 include_sft=data.get("include_sft", False))
    data["report_to"] = _monitoring()
    ok, spec = attempt(form_svc.build_spec, data)
    if not ok:
        return
    snapshot = snap_svc.get_snapshot(spec.snapshot_id, sample=0).summary
    est = form_svc.estimate(spec, snapshot.n_train)
    batch_col, steps_col, time_col = st.columns(3)
    batch_col.metric("Effective batch", est.effective_batch, help="batch size × gradient accumulation × devices")
    steps_col.metric("Optimizer steps", est.steps)
    time_col.metric("Time (rough)", format_duration(est.seconds), help=est.basis)
    if st.button("Start training", type="primary"):
        ok, run = attempt(train_svc.start_run, spec)
        if ok:
            flash(f"Started run {run.id} ({run.status}); follow it in the **Runs** tab.")
            st.rerun()
    with st.expander("Run spec (YAML) and scale-out"):
        st.code(spec.to_yaml(), language="yaml")
        st.caption("`python -m studio train RUN.yaml` does what the button does.")
        backend = st.selectbox("Scale-out backend", ["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
        ok, export = attempt(train_svc.export_accelerate, spec, backend)
        if ok:
            st.code(export.command, language="bash")
            st.code(export.config_yaml, language="yaml")
