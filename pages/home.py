"""Home: is everything running, how far along is the data, and what to do next."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, page_link, show_error, state_label, watch_jobs
from core.errors import StudioError
from studio.services import demo as demo_service
from studio.services import status as status_service

STAGE_LABELS = {
    "seeds": "Seeds", "instructions": "Instructions", "responses": "Responses", "judgments": "Judgments",
    "sft_pairs": "SFT pairs", "preference_pairs": "Preference pairs", "reviewed": "Reviewed",
    "snapshots": "Snapshots", "training_runs": "Training runs", "models": "Models",
    "comparisons": "Comparisons", "votes": "Votes",
}
METRICS_PER_ROW = 6
SERVICES_PER_ROW = 3

st.title("the studio")
st.caption("Generate data with an LLM, review it with people, train on it, and compare the results.")

try:
    status = status_service.get_status()
except StudioError as err:
    show_error(err)
    st.stop()

NEXT_STEPS_REFRESH_S = 10.0


def next_steps() -> None:
    """Re-read every few seconds (a fragment rerun), so the advice follows work that finishes in the
    background; a full page run uses the status read above."""
    steps = status_service.get_status().next_steps if st.session_state.get("_home_steps_shown") else status.next_steps
    st.session_state["_home_steps_shown"] = True
    for step in steps:
        if step.page:
            page_link(step.page, step.text)
        else:
            st.markdown(f"→ {step.text}")
        if step.command:
            st.code(step.command, language="bash")


st.subheader("What to do next")
st.session_state["_home_steps_shown"] = False
st.fragment(next_steps, run_every=NEXT_STEPS_REFRESH_S)()

st.subheader("Services")
if not status.services:
    st.info("No services are known yet. Start them with `python -m studio up`.")
for start in range(0, len(status.services), SERVICES_PER_ROW):
    for column, service in zip(st.columns(SERVICES_PER_ROW), status.services[start:start + SERVICES_PER_ROW]):
        with column.container(border=True):
            st.markdown(f"**{service.name}** &nbsp; {state_label(service.state)}")
            st.markdown(f"[{service.url}]({service.url})" if service.url else "no address yet")
            extra = [f"PID {service.pid}"] if service.pid else []
            extra += [f"{service.restarts} restarts"] if service.restarts else []
            st.caption(" · ".join([service.detail, *extra]) if service.detail else " · ".join(extra) or " ")

st.subheader("Human review in Argilla")
argilla = status.argilla
if argilla is not None:
    where = "embedded" if argilla.embedded else "external"
    st.markdown(f"**[{argilla.url}]({argilla.url})** ({where}) &nbsp; {state_label('running' if argilla.healthy else 'failed')}")
    (st.caption if argilla.healthy else st.warning)(argilla.detail)
    if argilla.login_hint:
        st.markdown(argilla.login_hint)

st.subheader("Your data, stage by stage")
stages = list(status.counts.items())
for start in range(0, len(stages), METRICS_PER_ROW):
    columns = st.columns(METRICS_PER_ROW)
    for column, (stage, count) in zip(columns, stages[start:start + METRICS_PER_ROW]):
        column.metric(STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize()), f"{count:,}")

st.subheader("The alignment demo")
st.caption("Teaches the base model a stated rule (answer in at most 10 words) with LoRA DPO on the CPU, then "
           "compares it with its base on held-out prompts. Needs `python -m studio up` (the embedded endpoint writes "
           "the data); `python -m studio demo` runs the same chain. Details: docs/demo.md.")
running = watch_jobs(demo_service.JOB_KIND)
quick = st.checkbox("Quick (fewer prompts and steps: checks the wiring, noisier figures)", key="demo_quick")
if st.button("Run the demo", icon=":material/play_arrow:", disabled=bool(running), key="demo_start"):
    started, job_id = attempt(demo_service.start_demo_job, quick=quick)
    if started:
        st.success(f"The demo is running as job {job_id}.")
last = demo_service.latest_demo()
if last is not None and last.status == "succeeded" and last.progress.get("result"):
    st.success(f"Last demo: {last.progress.get('message')}")

st.divider()
st.caption(f"STUDIO_HOME: `{status.home}`  \nDatabase: `{status.database}` (schema version {status.schema_version})")
