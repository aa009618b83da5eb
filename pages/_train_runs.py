"""The Train page's Runs tab: the queue with status, and one run's live curves, config, lineage,
logs, memory, and cancel / resume."""

from __future__ import annotations

import streamlit as st

from pages._ui import attempt, flash, format_duration
from pages._widgets import choice
from studio.services import compare as compare_svc
from studio.services import accounts
from studio.services import training as train_svc

LIVE_S = 2.0
ACTIVE = ("queued", "running")
CHART_GROUPS = {"loss": ("loss", "eval_loss"), "learning rate": ("learning_rate",), "grad norm": ("grad_norm",)}


def _runs_table() -> None:
    runs = train_svc.list_runs()
    st.dataframe([{"run": r.name, "id": r.id, "recipe": r.recipe, "stages": " → ".join(r.stages),
                   "status": r.status, "queue": r.queue_position, "progress": _progress(r.progress, r.status),
                   "device": r.device, "output model": r.output_model, "started": r.started_at}
                  for r in runs], hide_index=True, width="stretch")


def _progress(p: dict, status: str) -> str:
    """The live progress of an active run; an ended run's last event ('waiting for cpu', an ETA) is
    history, so only its final step and loss show."""
    if not p or (status not in ACTIVE and p.get("stage") == "queued"):
        return ""
    if status not in ACTIVE:
        p = {k: v for k, v in p.items() if k != "eta_s"}
    text = f"{p.get('done')}/{p.get('total')}" if p.get("total") else str(p.get("message") or "")
    if p.get("loss") is not None:
        text += f" · loss {p['loss']:.4g}"
    if p.get("eta_s") is not None:
        text += f" · ETA {format_duration(p['eta_s'])}"
    return text


def _charts(run_id: str, was_active: bool = False) -> None:
    detail = train_svc.get_run_detail(run_id, log_lines=30)
    s = detail.summary
    if was_active and s.status not in ACTIVE:  # ended: refresh buttons, table and evaluation; stop polling
        st.rerun(scope="app")
    (st.error if s.status in ("failed", "interrupted") else st.markdown)(
        f"**{s.status}** · {_progress(s.progress, s.status)}" + (f"\n\n{s.error}" if s.error else ""))
    if s.hint:
        st.info(s.hint)
    starter = accounts.started_by(run_id)
    if starter:
        st.caption(f"Started by {starter}")
    if detail.memory:
        st.caption(" · ".join(f"{k.removesuffix('_mb')}: {v:,.0f} MB" for k, v in detail.memory.items()))
    series: dict[str, dict[int, float]] = {}
    for point in detail.metrics:
        if point["value"] is not None:
            series.setdefault(f"{point['stage']}/{point['name']}", {})[point["step"]] = point["value"]
    if not series:
        st.caption("No metrics yet.")
    for title, names in CHART_GROUPS.items():
        picked = {k: v for k, v in series.items() if k.split("/", 1)[1] in names}
        if picked:
            st.markdown(f"**{title}**")
            st.line_chart(picked)
    others = sorted(k for k in series if k.split("/", 1)[1] not in sum(CHART_GROUPS.values(), ()))
    # the key changes once metrics exist, so the default applies then (a keyed widget keeps its first value)
    chosen = st.multiselect("Algorithm metrics", others, default=_telling(others),
                            key=f"metrics_{run_id}_{bool(others)}")
    if chosen:
        st.line_chart({k: series[k] for k in chosen})
    with st.expander("Log (last lines)"):
        st.code("\n".join(detail.log_tail) or "(no log yet)")


# what an algorithm's own metrics say first (DPO's margins and accuracies, a reward model's accuracy, KTO's
# and GRPO's rewards); bookkeeping such as epoch or token counts only when picked
FIRST = ("rewards/margins", "rewards/accuracies", "accuracy", "reward", "rewards/chosen", "rewards/rejected", "kl")
BOOKKEEPING = ("epoch", "num_tokens", "total_flos", "step")


def _telling(names: list[str]) -> list[str]:
    """Up to four metrics to chart by default: the telling ones first, never bookkeeping."""
    ranked = sorted((n for n in names if n.split("/", 1)[1] not in BOOKKEEPING),
                    key=lambda n: FIRST.index(n.split("/", 1)[1]) if n.split("/", 1)[1] in FIRST else len(FIRST))
    return ranked[:4]


def _detail(run) -> None:
    cancel_col, resume_col, _ = st.columns([1, 1, 4])
    if cancel_col.button("Cancel", disabled=run.status not in ACTIVE):
        if attempt(train_svc.cancel_run, run.id, 5.0)[0]:
            flash(f"Asked run {run.id} to stop; its last checkpoint is kept.")
            st.rerun()
    if resume_col.button("Resume", disabled=run.status not in train_svc.RESUMABLE):
        if attempt(train_svc.resume_run, run.id)[0]:
            flash(f"Resumed run {run.id} from its last checkpoint.")
            st.rerun()
    st.fragment(_charts, run_every=LIVE_S if run.status in ACTIVE else None)(run.id, run.status in ACTIVE)
    detail = train_svc.get_run_detail(run.id, log_lines=0)
    with st.expander("Config, stages and checkpoints"):
        st.code(detail.spec_yaml, language="yaml")
        st.dataframe(detail.stages, hide_index=True)
        st.dataframe(detail.checkpoints, hide_index=True)
    _evaluation(run.id)
    with st.expander("Lineage: snapshot → records → generation runs"):
        for key, lineage in detail.lineage.items():
            snap = lineage["snapshot"]
            ids = lineage.get("record_ids", {})
            st.markdown(f"`{key}` **{snap['id']}** · {snap.get('record_kind', '?')} · "
                        f"{len(ids.get('train', []))} train / {len(ids.get('eval', []))} eval records")
            st.dataframe(lineage.get("by_generation_run", []), hide_index=True)


def _evaluation(run_id: str) -> None:
    """The closed loop: the run's model against its base on held-out prompts (Compare has the details)."""
    found = compare_svc.run_evaluation(run_id)
    if found is None:
        return
    summary, board = found
    st.markdown(f"**Evaluation against the base** · comparison `{summary.comparison_id}` · {summary.status} · "
                f"{board.votes} judged prompts")
    rows = [{"model": w.model, "vs": w.opponent, "win rate": round(w.win_rate, 3),
             "95% CI": f"{w.ci_low:.2f}–{w.ci_high:.2f}", "wins": w.wins, "losses": w.losses,
             "ties": w.ties + w.both_bad} for w in board.win_rates]
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("No judged votes yet: vote in the Compare page's arena, or judge the comparison there.")
    prompts = summary.counts.get("prompts", 0)
    if prompts < train_svc.MEANINGFUL_EVAL_PROMPTS:
        st.warning(f"Only {prompts} held-out prompt(s): too few for a win rate worth reading. Hold out more "
                   f"when you make the snapshot (**Data** tab, eval fraction), at least "
                   f"{train_svc.MEANINGFUL_EVAL_PROMPTS} prompts, or generate more pairs.", icon=":material/warning:")


def runs_tab() -> None:
    runs = train_svc.list_runs()
    if not runs:
        st.caption("No runs yet: start one in the **New run** tab or with `python -m studio train RUN.yaml`.")
        return
    live = any(r.status in ACTIVE for r in runs)
    st.fragment(_runs_table, run_every=LIVE_S if live else None)()
    picked = choice("Run", {r.id: f"{r.name} · {r.id}" for r in runs}, key="train_run_pick")
    _detail(next(r for r in runs if r.id == picked))
