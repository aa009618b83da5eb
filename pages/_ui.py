"""Rendering helpers every page shares: errors, numbers, durations and live job progress.

Why one place: every page shows a ``StudioError`` the same way and every long job (pulls now;
generation, sync, training later) the same progress line, so a user learns to read them once.
Helpers here render and call ``studio`` services only; they never touch SQL, HTTP or models.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from studio import access, jobs
from core.errors import NotFound, StudioError

JOB_POLL_S = 2.0
# Material icons come with Streamlit's web font, so they render even where no emoji font is installed.
_STATE_STYLES = {
    "running": ("green", "check_circle"), "starting": ("orange", "pending"),
    "stopped": ("gray", "radio_button_unchecked"), "failed": ("red", "error"),
}


def read_only_notice(work: str) -> None:
    """In team mode, tell someone who may not do this page's ``work`` (an annotator) before they try: they
    can read everything here, and the services refuse the rest (studio/access.py)."""
    actor = access.current() if access.team_mode() else None
    if actor is not None and not actor.can("admin"):
        st.info(f"You are signed in as an {actor.role}: you can read everything here; {work} needs an admin or "
                "the owner, so those buttons will tell you so.", icon=":material/visibility:")


def show_error(err: StudioError) -> None:
    """A domain error, as its message says it: what went wrong and what to change."""
    st.error(str(err), icon=":material/error:")


def attempt(action, *args, **kwargs) -> tuple[bool, object]:
    """Run one service call for a user action: (True, result), or show its StudioError and
    return (False, None). Any other exception is a bug and propagates with its traceback."""
    try:
        return True, action(*args, **kwargs)
    except StudioError as err:
        show_error(err)
        return False, None


PAGES_DIR = Path(__file__).resolve().parent


def page_link(page: str, label: str) -> None:
    """A link to ``pages/<page>.py`` (the app's navigation); plain text where the page is rendered on
    its own, outside the app (a single-page AppTest)."""
    try:
        st.page_link(PAGES_DIR / f"{page}.py", label=label, icon=":material/arrow_forward:")
    except StreamlitPageNotFoundError:
        st.markdown(f"→ {label}")


def flash(message: str) -> None:
    """Say something after the next rerun (used when an action reruns the page to refresh lists)."""
    st.session_state["_flash"] = [*st.session_state.get("_flash", []), message]


def show_flashes() -> None:
    for message in st.session_state.pop("_flash", []):
        if message.startswith("Warning:"):
            st.warning(message.removeprefix("Warning:").strip(), icon=":material/warning:")
        else:
            st.success(message, icon=":material/check_circle:")


def state_label(state: str) -> str:
    """A service state as coloured Markdown with an icon, e.g. ':green[:material/check_circle: running]'."""
    color, icon = _STATE_STYLES.get(state, ("gray", "help"))
    return f":{color}[:material/{icon}: {state}]"


def human_count(value: float | int | None) -> str:
    """1234567 -> '1.2 M'; None -> '—'. For parameter counts and token totals."""
    if value is None:
        return "—"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f} {suffix}"
    return f"{value:g}"


def human_bytes(value: float) -> str:
    for size, suffix in ((2**30, "GB"), (2**20, "MB"), (2**10, "kB")):
        if value >= size:
            return f"{value / size:.1f} {suffix}"
    return f"{value:.0f} B"


def format_duration(seconds: float | None) -> str:
    """45 -> '45 s', 200 -> '3 min 20 s', 4000 -> '1 h 6 min'."""
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def progress_text(job: jobs.JobInfo) -> tuple[float, str]:
    """The fraction done and one line of text for a job's progress event."""
    p = job.progress or {}
    done, total, unit = p.get("done"), p.get("total"), p.get("unit") or ""
    fraction = p.get("fraction")
    if fraction is None and done is not None and total:
        fraction = done / total
    parts = [job.name or job.kind]
    if job.status == "queued":
        parts.append("queued")
    if p.get("stage"):
        parts.append(str(p["stage"]))
    if done is not None and total:
        if unit == "%":
            parts.append(f"{done:.0f}%")
        elif unit.lower() in ("b", "bytes"):
            parts.append(f"{human_bytes(done)} / {human_bytes(total)}")
        else:
            parts.append(f"{done:,.0f} / {total:,.0f} {unit}".rstrip())
    if p.get("answered") and (done or 0) < (total or 0):   # calls finished inside batches not yet written
        parts.append(f"{p['answered']:,} calls answered")
    started = p.get("stage_started_at")
    if job.status == "running" and started:
        parts.append(f"running {format_duration(max(0.0, time.time() - float(started)))}")
    if p.get("eta_s") is not None and (done or 0) < (total or 0):
        parts.append(f"ETA {format_duration(p['eta_s'])}")
    elif job.status == "running" and total and not done:
        parts.append("ETA after the first batch")
    if p.get("tokens"):
        parts.append(f"{human_count(p['tokens'])} tokens")
    if p.get("cost_usd"):
        parts.append(f"${p['cost_usd']:.4f}")
    if p.get("message") and p.get("message") != p.get("stage"):
        parts.append(str(p["message"]))
    return min(max(float(fraction or 0.0), 0.0), 1.0), " · ".join(parts)


def show_job_progress(job: jobs.JobInfo) -> None:
    fraction, text = progress_text(job)
    st.progress(fraction, text=text)


# -- live view of a kind of job --------------------------------------------------------------------
def _seen_key(kind: str) -> str:
    return f"_jobs_seen_{kind}"


def track_job(kind: str, job_id: str) -> None:
    """Remember a job this session started, so its end is announced even if it ends at once."""
    st.session_state.setdefault(_seen_key(kind), [])
    st.session_state[_seen_key(kind)] = [*st.session_state[_seen_key(kind)], job_id]


def _poll(kind: str) -> tuple[list[jobs.JobInfo], list[jobs.JobInfo]]:
    """(active jobs, jobs this session saw active that have ended since)."""
    active = jobs.list_jobs(kind=kind, active_only=True)
    seen = st.session_state.get(_seen_key(kind), [])
    active_ids = {j.id for j in active}
    ended = _known_jobs(job_id for job_id in seen if job_id not in active_ids)
    st.session_state[_seen_key(kind)] = sorted(active_ids)
    return active, ended


def _known_jobs(job_ids) -> list[jobs.JobInfo]:
    found = []
    for job_id in job_ids:
        try:
            found.append(jobs.get_job(job_id))
        except NotFound:  # e.g. STUDIO_HOME was switched under a live session
            continue
    return found


def _announce(ended: list[jobs.JobInfo]) -> None:
    for job in ended:
        label = job.name or job.kind
        if job.status == "succeeded" and job.error:
            st.warning(f"{label} finished with warnings: {job.error}", icon=":material/warning:")
        elif job.status == "succeeded":
            st.success(f"{label} finished.", icon=":material/check_circle:")
        elif job.status == "cancelled":
            st.warning(f"{label} was cancelled.")
        else:
            st.error(f"{label} failed: {job.error or 'no reason was recorded'}", icon=":material/error:")


def _live_jobs(kind: str) -> None:
    active, ended = _poll(kind)
    if ended:  # let the whole page refresh its lists (e.g. the new model) and announce the end
        st.session_state[f"_jobs_ended_{kind}"] = [j.id for j in ended]
        st.rerun(scope="app")
    for job in active:
        show_job_progress(job)


def watch_jobs(kind: str, every_s: float = JOB_POLL_S) -> list[jobs.JobInfo]:
    """Show this kind's running jobs live (polling only while one runs) and announce ended ones.

    Returns the active jobs, so a page can disable its "start" button while one runs.
    """
    active, ended = _poll(kind)
    ended_ids = st.session_state.pop(f"_jobs_ended_{kind}", [])
    _announce([*_known_jobs(ended_ids), *ended])
    if active:
        st.fragment(_live_jobs, run_every=every_s)(kind)
    return active


def render_tabs(tabs: dict) -> None:
    """Stateful tabs bound to the URL (?tab=Results): the open tab survives reruns and reloads, and
    only its content runs. A StudioError inside a tab (e.g. the database is busy) is shown, not a
    traceback."""
    areas = st.tabs(list(tabs), key="tab", on_change="rerun", bind="query-params")
    for area, render in zip(areas, tabs.values()):
        if area.open:
            with area:
                try:
                    render()
                except StudioError as err:
                    show_error(err)
