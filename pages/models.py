"""Models: what the studio can run locally, the endpoints it can call, and a prompt to try on either."""

from __future__ import annotations

import streamlit as st

from pages._ui import (attempt, flash, human_count, read_only_notice, show_error, show_flashes, track_job,
                       watch_jobs)
from studio import jobs
from core.errors import StudioError
from studio.services import models as svc

EMBEDDED = "smollm2-135m-instruct"


def model_rows(models: list) -> list[dict]:
    return [
        {"name": m.name, "kind": m.kind, "source": m.source, "parameters": human_count(m.parameters),
         "chat template": {True: "yes", False: "no"}.get(m.has_chat_template, "—"),
         "files": "  ·  ".join(p for p in (m.gguf_path, m.hf_path, m.adapter_path) if p)}
        for m in models
    ]


def endpoint_rows(endpoints: list) -> list[dict]:
    def key_source(e) -> str:
        return f"env ${e.api_key_env}" if e.api_key_env else ("saved secret" if e.api_key_secret else "none")

    return [
        {"name": e.name, "base URL": e.base_url, "model": e.model, "API key": key_source(e),
         "concurrency": e.concurrency, "timeout (s)": e.timeout_s, "retries": e.max_retries,
         "embedded": "yes" if e.embedded else "no"}
        for e in endpoints
    ]


def remove_form(what: str, names: list[str], remove, with_files: bool = False) -> None:
    """Pick one, confirm, remove; the page reruns so every list shows the change."""
    with st.expander(f"Remove {'an' if what[0] in 'aeiou' else 'a'} {what}"):
        if not names:
            st.caption(f"There is no {what} to remove.")
            return
        with st.form(f"remove_{what}"):
            name = st.selectbox(what.capitalize(), names, key=f"remove_{what}_name")
            delete_files = with_files and st.checkbox("Also delete its files under STUDIO_HOME")
            confirm = st.checkbox("Yes, remove it (this cannot be undone)", key=f"remove_{what}_confirm")
            submitted = st.form_submit_button("Remove")
        if submitted and not confirm:
            st.warning("Tick “Yes, remove it” to confirm.")
        elif submitted and attempt(remove, name, **({"delete_files": delete_files} if with_files else {}))[0]:
            flash(f"Removed {what} {name}.")
            st.rerun()


def model_card_section(names: list[str]) -> None:
    with st.expander("Model card"):
        name = st.selectbox("Model", names, key="card_model")
        ok, card = attempt(svc.model_card, name)
        if ok and card:
            st.markdown(card)
        elif ok:
            st.caption(f"{name} has no model card (cards are written for models the studio trains).")


def models_section() -> None:
    st.subheader("Registered models")
    models = svc.list_models()
    active_pulls = watch_jobs("pull")
    if models:
        st.dataframe(model_rows(models), hide_index=True, width="stretch")
        model_card_section([m.name for m in models])
    else:
        st.info("No model is registered yet. Pull SmolLM2-135M-Instruct (135 M parameters, about 90 MB; the "
                "embedded llama.cpp endpoint serves it), or add a folder, GGUF file or hub id below.")
        if st.button("Pull SmolLM2-135M-Instruct", type="primary", disabled=bool(active_pulls)):
            track_job("pull", jobs.start_job("pull", ["models", "pull", EMBEDDED], name=f"pull {EMBEDDED}"))
            st.rerun()
    add, remove = st.columns(2)
    with add, st.expander("Add a model"), st.form("add_model", clear_on_submit=True):
        source = st.text_input("Folder, .gguf file or hub id", placeholder="/data/my-model or HuggingFaceTB/SmolLM2-135M")
        name = st.text_input("Name (optional)", placeholder="taken from the folder or id")
        if st.form_submit_button("Add model"):
            ok, record = attempt(svc.add_model, source.strip(), name.strip() or None)
            if ok:
                flash(f"Added model {record.name}.")
                st.rerun()
    with remove:
        remove_form("model", [m.name for m in models], svc.remove_model, with_files=True)


def endpoints_section() -> None:
    st.subheader("Endpoints")
    endpoints = svc.list_endpoints()
    if endpoints:
        st.dataframe(endpoint_rows(endpoints), hide_index=True, width="stretch")
    else:
        st.info("No endpoint yet. `python -m studio up` adds the embedded llama.cpp one; add any "
                "OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama) below.")
    add, remove = st.columns(2)
    with add, st.expander("Add an endpoint"), st.form("add_endpoint"):
        name = st.text_input("Name", placeholder="openai")
        base_url = st.text_input("Base URL", placeholder="https://api.openai.com/v1")
        model = st.text_input("Model", placeholder="gpt-4o-mini")
        key_env = st.text_input("API key: environment variable name", placeholder="OPENAI_API_KEY")
        api_key = st.text_input("…or paste the key (saved to STUDIO_HOME/secrets.toml, never shown again)",
                                type="password")
        c1, c2, c3 = st.columns(3)
        concurrency = c1.number_input("Concurrency", 1, 256, 8)
        timeout_s = c2.number_input("Timeout (s)", 1.0, 600.0, 60.0, step=5.0, format="%.0f")
        retries = c3.number_input("Retries", 0, 20, 5)
        if st.form_submit_button("Add endpoint"):
            ok, record = attempt(svc.add_endpoint, name.strip(), base_url.strip(), model.strip(),
                                 api_key_env=key_env.strip() or None, api_key=api_key or None,
                                 concurrency=int(concurrency), timeout_s=float(timeout_s), max_retries=int(retries))
            if ok:
                flash(" ".join(filter(None, [f"Added endpoint {record.name}.", svc.credentials_notice(base_url)])))
                st.rerun()
    with remove:
        remove_form("endpoint", [e.name for e in endpoints if not e.embedded], svc.remove_endpoint)


def try_prompt_section() -> None:
    st.subheader("Try a prompt")
    targets = svc.list_targets()
    if not targets:
        st.info("Register a model or add an endpoint above, then try a prompt here.")
        return
    labels = {t.key: t.label for t in targets}
    ask, answer = st.columns(2, gap="large")
    with ask, st.form("try_prompt"):
        key = st.selectbox("Model or endpoint", list(labels), format_func=labels.get)
        system = st.text_area("System prompt (optional)", height=68)
        prompt = st.text_area("Prompt", placeholder="Explain what a preference pair is, in two sentences.")
        c1, c2 = st.columns(2)
        temperature = c1.slider("Temperature", 0.0, 2.0, 0.7, 0.05)
        max_tokens = c2.slider("Max new tokens", 16, 1024, 128, 16)
        run = st.form_submit_button("Run", type="primary")
    with answer:
        if not run:
            st.caption("The answer streams here when you press Run.")
            return
        st.caption(f"Answer from {labels[key]}")
        with st.container(border=True, key="try_output"):
            try:
                params = {"temperature": temperature, "max_tokens": max_tokens}
                st.write_stream(svc.try_prompt(key, prompt, system=system.strip() or None, params=params))
            except StudioError as err:
                show_error(err)

st.title("Models")
st.caption("Models the studio runs on this machine, OpenAI-compatible endpoints it calls, and a place to try them.")
read_only_notice("adding or removing models, endpoints and keys, and trying a prompt")
show_flashes()
try:  # listing calls can fail too (e.g. the database is busy): say so instead of a traceback
    models_section()
    endpoints_section()
    try_prompt_section()
except StudioError as err:
    show_error(err)
