"""Training runs: start, queue, watch, cancel and resume. What the Train page and ``python -m studio
train`` / ``runs`` call.

A run is a ``RunSpec`` stored in ``training_runs``; it trains in its own process (``python -m studio
--job-id J train --run RUN``), which waits in the device queue (``training_queue``) and then calls the
pipeline's ``run_training``. Status always reflects reality: a run whose process is gone is shown
``interrupted`` with a resume hint, never ``running`` forever.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pipelines.train.spec import RunSpec
from storage import jobs as job_store
from storage import registry
from storage import snapshots as snapshot_store
from storage import training as run_store
from storage.db import get_database
from storage.ids import new_id
from core.errors import BadInput, NotFound, StudioError, TrainingError
from core.procs import pid_alive
from studio import jobs
from studio.services import training_launch as launch
from studio.services import training_queue as queue
from studio import access

JOB_KIND = "training"
RESUMABLE = ("failed", "cancelled", "interrupted")
HINTS = (  # (substring of the error, what to change)
    (("out of memory", "outofmemory", "memoryerror", "can't allocate memory", "defaultcpuallocator"),
     "Out of memory: use a smaller per_device_train_batch_size (raise gradient_accumulation_steps to keep the "
     "effective batch), turn on gradient_checkpointing, lower max_length, or use LoRA instead of full fine-tuning."),
    (("no space left", "disk is full", "disk full"),
     "The disk is full: free space under STUDIO_HOME (old checkpoints in runs/), then resume the run."),
)
INTERRUPTED_HINT = ("Its process was killed or the studio stopped mid-run; resume it to continue from its last "
                    "checkpoint (`python -m studio runs resume {id}`).")
DEFAULT_HINT = "Fix the cause above, then resume the run from its last checkpoint (`python -m studio runs resume {id}`)."



@dataclass
class RunSummary:
    id: str
    name: str | None
    recipe: str
    stages: list[str]
    status: str
    snapshot_id: str | None
    base_model: str
    device: str | None = None
    job_id: str | None = None
    output_model: str | None = None
    error: str | None = None
    hint: str | None = None
    progress: dict = field(default_factory=dict)    # the job's progress event: stage, done, total, eta_s, loss ...
    queue_position: int | None = None               # 0 = next; None when not queued
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in run_store.ACTIVE

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass
class RunDetail:
    summary: RunSummary
    spec: dict
    spec_yaml: str
    stages: list[dict]                       # one row per stage run: id, stage, status, output model
    metrics: list[dict]                      # {run_id, stage, step, epoch, name, value}
    checkpoints: list[dict]
    lineage: dict                            # snapshot -> record ids -> pairs -> generation runs
    log_tail: list[str]
    memory: dict

    def to_dict(self) -> dict:
        return {"summary": self.summary.to_dict(), "spec": self.spec, "stages": self.stages, "metrics": self.metrics,
                "checkpoints": self.checkpoints, "lineage": self.lineage, "log_tail": self.log_tail,
                "memory": self.memory}


def _hint(row: run_store.TrainingRunRow) -> str | None:
    if row.status == "interrupted":
        return INTERRUPTED_HINT.format(id=row.id)
    return hint_for(row.error, row.id) if row.status == "failed" else None


def hint_for(error: str | None, run_id: str) -> str | None:
    if not error:
        return None
    low = error.lower()
    for needles, hint in HINTS:
        if any(n in low for n in needles):
            return hint
    return DEFAULT_HINT.format(id=run_id)


# -- validation -------------------------------------------------------------------------------
def _model_record(name: str) -> registry.ModelRecord | None:
    return registry.get_model(get_database(), name)


def check_spec(spec: RunSpec) -> snapshot_store.SnapshotSummary:
    """Everything that can be refused before a process starts: device options, snapshot, base model."""
    from pathlib import Path

    from pipelines.train.spec import STAGE_DATA, check_device

    check_device(spec)
    db = get_database()
    snapshot = snapshot_store.get_snapshot(db, spec.snapshot_id)
    stage = spec.stages[-1]
    if snapshot.record_kind not in STAGE_DATA[stage]:
        raise TrainingError(f"The {stage} stage cannot learn from a {snapshot.record_kind} snapshot "
                            f"({spec.snapshot_id}).", hint=f"Pick a snapshot of kind {' or '.join(STAGE_DATA[stage])}.")
    if _model_record(spec.base_model) is None and not Path(spec.base_model).expanduser().is_dir():
        names = ", ".join(m.name for m in registry.list_models(db)) or "none yet"
        raise NotFound(f"The base model {spec.base_model!r} is neither a registered model nor a folder.",
                       hint=f"Registered models: {names}.")
    return snapshot


# -- start / execute -------------------------------------------------------------------------
def start_run(spec: RunSpec, detach: bool = True) -> RunSummary:
    """Validate, store the run as queued and start its process (``detach``) or register this process
    as its job (the foreground CLI, which then calls ``execute_run``)."""
    check_spec(spec)
    db = get_database()
    base = _model_record(spec.base_model)
    with jobs.start_lock("training"):  # a double click starts one run: the second gets the first
        wanted = spec.to_dict()
        for run in run_store.list_runs(db, limit=20):
            if run.active and run.spec == wanted and jobs.just_started(run.created_at):
                return get_run(run.id)
        run_id = run_store.insert_run(db, name=spec.name, recipe=spec.recipe, stage="+".join(spec.stages),
                                      spec=wanted, snapshot_id=spec.snapshot_id,
                                      base_model_id=base.id if base else None, status="queued")
        run_store.set_status(db, run_id, "queued", device=queue.device_name())
        _start_process(run_id, spec.name, detach)
    return get_run(run_id)


def _start_process(run_id: str, name: str | None, detach: bool) -> str:
    db = get_database()
    argv = ["train", "--run", run_id]
    if detach:
        job_id = jobs.start_job(JOB_KIND, argv, name or run_id)
    else:
        job_id = new_id("job")
        job_store.insert_job(db, job_id, JOB_KIND, name or run_id, {"argv": argv, "foreground": True})
        job_store.set_pid(db, job_id, os.getpid(), socket.gethostname())
    run_store.set_job(db, run_id, job_id)
    return job_id


JOB_STATUS = {"succeeded": "succeeded", "cancelled": "cancelled"}
MEANINGFUL_EVAL_PROMPTS = 10   # fewer held-out prompts than this cannot show a win rate worth reading


def execute_run(run_id: str, job_id: str | None = None, show_bar: bool | None = None) -> RunSummary:
    """Wait for the device, then train (in this process), through the one job runner: SIGTERM (how a
    job is cancelled), Ctrl-C or the run's cancel marker stop it at its next step, checkpoint kept.
    The job process and the foreground CLI run this (``python -m studio train --run RUN``), and so does
    each rank of a multi-process launch (``training_launch``). The stop check each step is a flag and one
    ``stat`` of the cancel marker, never the database."""
    from pipelines.train.distributed import Ranks
    from studio.runner import Outcome, StopSignal, run_job

    if Ranks.from_env().several:  # one rank of `accelerate launch`: it joins the others
        launch.execute_rank(run_id, lambda: _start_process(run_id, _get_row(run_id).name, detach=False))
        return get_run(run_id)
    db = get_database()
    device = queue.device_name()
    marker = queue.cancel_marker(run_id)

    def on_wait(ahead: int) -> None:
        message = f"waiting for {device}: {ahead} run(s) ahead"
        print(message, flush=True)
        if job_id:
            job_store.update_progress(db, job_id, {"stage": "queued", "message": message, "ahead": ahead})

    with StopSignal(marker.exists) as stop:
        fd = queue.wait_for_turn(run_id, device, on_wait, stop)
    if fd is None:
        if job_id:
            job_store.mark_finished(db, job_id, "cancelled", "Cancelled while waiting in the queue.")
        return get_run(run_id)

    def train(reporter, should_stop) -> str | None:
        try:
            _train_run(run_id, job_id, reporter, should_stop)
        except BaseException as exc:
            _finish_if_active(run_id, "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed",
                              str(exc) or type(exc).__name__)
            raise
        finally:
            queue.release(fd)
        note = _evaluate_against_base(run_id, reporter) if _get_row(run_id).status == "succeeded" else None
        reporter.update(stage="done", message=note or f"run {_get_row(run_id).status}")
        return note

    def outcome(_note) -> Outcome:
        final = _get_row(run_id)
        return Outcome(JOB_STATUS.get(final.status, "failed"), final.error)

    run_job(job_id, train, outcome, stoppable=True, show_bar=show_bar, also_stop=marker.exists)
    return get_run(run_id)


def _train_run(run_id: str, job_id: str | None, reporter, should_stop) -> None:
    """Train in this process, or (``processes`` > 1) in the ranks of an ``accelerate launch`` that this
    process starts and waits for, holding their device turn; the ranks record the run."""
    from pipelines.train.runner import run_training

    processes = RunSpec.from_stored(_get_row(run_id).spec).processes
    if processes > 1:
        code = launch.launch_processes(run_id, processes, job_id, should_stop)
        _finish_if_active(run_id, "failed", launch.exit_message(code))
    else:
        run_training(run_id, reporter=reporter, should_stop=should_stop)


def _evaluate_against_base(run_id: str, reporter) -> str | None:
    """The closed loop: compare the new model with its base on the snapshot's held-out prompts (the
    run's ``evaluation`` settings). A failed evaluation is reported on the run, never fails it."""
    from pipelines.train.spec import RunSpec
    from studio.services import compare

    settings_ = RunSpec.from_stored(_get_row(run_id).spec).evaluation
    if not settings_["enabled"]:
        return None
    reporter.update(stage="evaluate", message="comparing the new model with its base on held-out prompts")
    try:
        created = compare.evaluate_run_against_base(
            run_id, judge=settings_["judge"], background=False, limit=settings_["limit"],
            sampling={"temperature": 0.0, "max_tokens": settings_["max_tokens"], "seed": 0})
    except StudioError as exc:
        note = f"run succeeded; the evaluation against the base did not run: {exc.message} {exc.hint or ''}"
    else:
        note = f"run succeeded; evaluated against the base in comparison {created.comparison_id}"
        if created.prompts < MEANINGFUL_EVAL_PROMPTS:
            note += (f" on only {created.prompts} held-out prompt(s): too few for a clear win rate. Hold out more "
                     f"when you make the snapshot (eval_fraction), at least {MEANINGFUL_EVAL_PROMPTS} prompts.")
    print(note, flush=True)
    return note


def _finish_if_active(run_id: str, status: str, error: str) -> None:
    db = get_database()
    for row in [_get_row(run_id), *run_store.child_runs(db, run_id)]:
        if row.active:
            run_store.set_status(db, row.id, status, error=error)


# -- cancel / resume -------------------------------------------------------------------------
def cancel_run(run_id: str, wait_s: float = 10.0) -> RunSummary:
    """Stop a queued or running run. A running one stops at its next step and keeps its checkpoint."""
    queue.reconcile()
    db = get_database()
    run = _get_row(run_id)
    if not run.active:
        raise BadInput(f"The run {run_id} is already {run.status}.",
                       hint="Only queued or running runs can be cancelled.")
    queue.cancel_marker(run_id).touch()
    if run.status == "queued":
        run_store.set_status(db, run_id, "cancelled", error="Cancelled by the user.")
    job = job_store.get_job(db, run.job_id) if run.job_id else None
    pid = job.pid if job and job.pid != os.getpid() else None
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pid and pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not (pid and pid_alive(pid)):
        _finish_if_active(run_id, "cancelled", "Cancelled by the user.")
        if job:
            job_store.mark_finished(db, job.id, "cancelled", "Cancelled by the user.")
    return get_run(run_id)


def resume_run(run_id: str, detach: bool = True) -> RunSummary:
    """Queue a failed, cancelled or interrupted run again; it continues from its latest checkpoint."""
    queue.reconcile()
    db = get_database()
    run = _get_row(run_id)
    if run.status not in RESUMABLE:
        raise BadInput(f"The run {run_id} is {run.status}; only a failed, cancelled or interrupted run resumes.",
                       hint="Wait for it to finish, or cancel it first." if run.active else
                       "Start a new run to train again.")
    queue.cancel_marker(run_id).unlink(missing_ok=True)
    run_store.set_status(db, run_id, "queued", device=queue.device_name())
    _start_process(run_id, run.name, detach)
    return get_run(run_id)


def reconcile_runs() -> list[str]:
    """Runs whose process is gone -> interrupted (call on studio start; listing does it too)."""
    return queue.reconcile()


# -- reading ---------------------------------------------------------------------------------
def _get_row(run_id: str) -> run_store.TrainingRunRow:
    row = run_store.get_run(get_database(), run_id)
    if row is None:
        raise NotFound(f"There is no training run {run_id!r}.", hint="`python -m studio runs list` lists them.")
    return row


def _summary(row: run_store.TrainingRunRow, model_names: dict[str, str], positions: dict[str, int]) -> RunSummary:
    job = job_store.get_job(get_database(), row.job_id) if row.job_id else None
    spec = row.spec or {}
    stages = row.stage.split("+") if row.stage else []
    return RunSummary(
        id=row.id, name=row.name, recipe=row.recipe, stages=stages, status=row.status, snapshot_id=row.snapshot_id,
        base_model=spec.get("base_model", ""), device=row.device, job_id=row.job_id,
        output_model=model_names.get(row.output_model_id or "", row.output_model_id),
        error=row.error, hint=_hint(row),
        progress=(job.progress if job else {}) or {}, queue_position=positions.get(row.id),
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at)


def _positions() -> dict[str, int]:
    out: dict[str, int] = {}
    devices = {r.device or "cpu" for r in run_store.list_runs(get_database(), status="queued")}
    for device in devices:
        out.update({r.id: i for i, r in enumerate(queue.queued_runs(device))})
    return out


def _model_names() -> dict[str, str]:
    return {m.id: m.name for m in registry.list_models(get_database())}


def list_runs(status: str | None = None) -> list[RunSummary]:
    """Runs newest first (stages fold into their run); dead processes are reconciled first."""
    queue.reconcile()
    names, positions = _model_names(), _positions()
    return [_summary(r, names, positions) for r in run_store.list_runs(get_database(), status=status)]


def get_run(run_id: str) -> RunSummary:
    row = _get_row(run_id)
    if row.active and queue.reconcile([row, *run_store.child_runs(get_database(), run_id)]):
        row = _get_row(run_id)
    return _summary(row, _model_names(), _positions())


def get_run_detail(run_id: str, log_lines: int = 40) -> RunDetail:
    """Spec, stages, metrics, checkpoints, lineage back to the generation runs, log tail and memory."""
    queue.reconcile()
    db = get_database()
    row = _get_row(run_id)
    names = _model_names()
    stage_rows = [row, *run_store.child_runs(db, run_id)]
    metrics, checkpoints = [], []
    for stage_row in stage_rows:
        metrics += [{"run_id": stage_row.id, "stage": stage_row.stage, **asdict(m)}
                    for m in run_store.list_metrics(db, stage_row.id)]
        checkpoints += [{"run_id": stage_row.id, "stage": stage_row.stage, "step": c.step, "path": c.path,
                         "created_at": c.created_at} for c in run_store.list_checkpoints(db, stage_row.id)]
    summary = _summary(row, names, _positions())
    stages = [{"run_id": s.id, "stage": s.stage, "status": s.status, "error": s.error,
               "output_model": names.get(s.output_model_id or "", s.output_model_id),
               "final_metrics": s.final_metrics} for s in stage_rows[1:]]
    import yaml

    return RunDetail(summary=summary, spec=row.spec, spec_yaml=yaml.safe_dump(row.spec, sort_keys=False),
                     stages=stages, metrics=metrics, checkpoints=checkpoints, lineage=_lineage(row.spec),
                     log_tail=queue.log_tail(row.job_id, log_lines),
                     memory={k: v for k, v in summary.progress.items() if k.endswith("_mb")})


def _lineage(spec: dict) -> dict:
    """Every snapshot the run reads -> its record ids -> pairs -> generation runs."""
    db = get_database()
    out = {}
    for key in ("snapshot_id", "sft_snapshot_id", "prompt_snapshot_id"):
        snapshot_id = spec.get(key)
        if not snapshot_id or snapshot_id in {v["snapshot"]["id"] for v in out.values()}:
            continue
        try:
            snapshot = snapshot_store.get_snapshot(db, snapshot_id)
        except NotFound:
            out[key] = {"snapshot": {"id": snapshot_id, "missing": True}, "by_generation_run": [], "record_ids": {}}
            continue
        out[key] = {"snapshot": snapshot.to_dict(), **snapshot_store.snapshot_lineage(db, snapshot_id)}
    return out


def metrics_since(run_id: str, since_step: int | None = None) -> list[dict]:
    """New metric points of a run and its stages (what the live chart polls)."""
    db = get_database()
    out = []
    for stage_row in [_get_row(run_id), *run_store.child_runs(db, run_id)]:
        out += [{"run_id": stage_row.id, "stage": stage_row.stage, **asdict(m)}
                for m in run_store.list_metrics(db, stage_row.id, since_step)]
    return out


# -- scale-out -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccelerateExport:
    backend: str
    command: str
    config_yaml: str


def export_accelerate(spec: RunSpec, backend: str = "deepspeed_zero2", num_processes: int = 8, num_machines: int = 1,
                      run_id: str = "RUN_ID") -> AccelerateExport:
    """The ``accelerate launch`` command and its config (DeepSpeed ZeRO or FSDP) for several GPUs or nodes."""
    from pipelines.train.scaleout import accelerate_command

    command, config = accelerate_command(spec, backend, num_processes=num_processes, num_machines=num_machines,
                                         run_id=run_id)
    return AccelerateExport(backend, command, config)


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "start_run": "start a training run",
    "execute_run": "run a training run",
    "cancel_run": "cancel a training run",
    "resume_run": "resume a training run",
    "export_accelerate": None,   # admin only (it shows how to launch), but it changes nothing: not audited
}, internal=("hint_for", "reconcile_runs",))
