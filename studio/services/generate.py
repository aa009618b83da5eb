"""Generation runs: configure, start, resume, stop, list, inspect, browse pairs, lineage, export.

This service owns a run's lifecycle, as the training service owns a training run's: the config is
validated once (a ``GenerationConfig``) and stored once (the run's row); the run is claimed by one
process at a time; its seeds and model targets are resolved here and handed to the pipeline
(``pipelines.generate.run.run_stages``); its row is finished here. The Generate page and the CLI both
go through it. A run started from the page works in the background: a job runs
``python -m studio generate --run-id <id>``, which executes the stored config, so it survives page
reloads and its progress arrives in the one job format. A run's status is reconciled with its process
on every read: a job that was killed shows 'interrupted' with a resume hint, never 'running' forever.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core import settings as settings_mod
from core.errors import BadInput, NotFound, StudioError
from core.procs import local_pid_alive
from core.specs import load_spec
from pipelines.generate import run as pipeline
from pipelines.generate.config import GenerationConfig
from pipelines.generate.context import RunContext
from pipelines.generate.export import ExportSummary
from pipelines.generate.run import RunSummary, resume_hint, summary_from
from pipelines.llm import targets
from storage import generation as store
from storage import registry
from storage import generation_queries as queries
from storage import seeds as seed_store
from storage.db import Database, get_database
from storage.ids import new_id
from storage.pairs import PairFilter
from studio import jobs
from studio import access

ACTIVE = ("queued", "running")
MAX_PAGE = 1000
EXAMPLE_SEEDS = ["Explain what a hash map is and when to use one.",
                 "Write a short, polite email declining a meeting invitation.",
                 "A train travels 120 km in 1.5 hours. What is its average speed?"]


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    job_id: str


@dataclass
class RunDetail:
    summary: RunSummary
    config: GenerationConfig | None
    config_yaml: str
    job: jobs.JobInfo | None
    progress: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)   # preprocessing: what each step removed and why
    ledger: dict[str, Any] = field(default_factory=dict)   # total, by_stage, by_model, by_stage_model, per_kept_pair
    resumable: bool = False
    hint: str | None = None


# -- configs ------------------------------------------------------------------------------------------
def default_config() -> GenerationConfig:
    """A working start with what is running: example seeds, Self-Instruct and two candidates on the
    embedded endpoint, judged by an LLM endpoint the user added (the first one) or, with only the
    embedded model (too small to judge), by the ``answer_quality`` rubric, which labels any prose."""
    return GenerationConfig.from_dict({"name": "generation", "seeds": {"texts": list(EXAMPLE_SEEDS)},
                                       "judge": default_judge()})


def default_judge() -> dict[str, Any]:
    capable = [e for e in registry.list_endpoints(get_database()) if not e.embedded]
    if capable:
        return {"kind": "llm", "target": f"endpoint:{capable[0].name}"}
    return {"kind": "rubric", "rubric": {"name": "answer_quality", "params": {}}}


def config_from_yaml(text: str) -> GenerationConfig:
    return GenerationConfig.from_yaml(text)


def config_to_yaml(config: GenerationConfig) -> str:
    return config.to_yaml()


def check_targets(config: GenerationConfig) -> None:
    """Every endpoint and local model the config names exists (before anything starts)."""
    targets.check_targets(config.targets())


# -- start / resume / stop ---------------------------------------------------------------------------------
def _launch(run_id: str, name: str) -> RunStarted:
    job_id = jobs.start_job("generation", ["generate", "--run-id", run_id], f"generate {name}")
    store.set_run_job(get_database(), run_id, job_id)
    return RunStarted(run_id, job_id)


def start_generation(config: GenerationConfig) -> RunStarted:
    """Create the run and start it in the background; returns at once."""
    check_targets(config)
    with jobs.start_lock("generation"):  # a double click starts one run: the second gets the first
        wanted = config.to_dict()
        for run in store.list_runs(get_database(), 20):
            if run["status"] in ACTIVE and run["config"] == wanted and jobs.just_started(run.get("created_at")):
                return RunStarted(run["id"], run["job_id"])
        run_id = new_id("gen")
        store.create_run(get_database(), run_id, config.name, wanted, status="queued")
        return _launch(run_id, config.name)


def resume_generation(run_id: str) -> RunStarted:
    """Start a stopped, failed, partial or interrupted run again; it skips what is stored."""
    run = _get_run_row(run_id)
    if run["status"] in ACTIVE:
        raise BadInput(f"The run {run_id} is still {run['status']}.", hint="Wait for it, or stop it first.")
    config = GenerationConfig.from_dict(run["config"])
    check_targets(config)
    store.set_run_status(get_database(), run_id, "queued", finished=False)
    return _launch(run_id, config.name)


def stored_config(run_id: str) -> GenerationConfig:
    """The config a run was created with (what its job executes, and what a resume runs again)."""
    return GenerationConfig.from_dict(_get_run_row(run_id)["config"])


def run_generation(config: GenerationConfig | None = None, run_id: str | None = None, job_id: str | None = None,
                   progress: Any = None, should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Run (or resume, with the id of an existing run) a whole generation in this process.

    ``config`` None runs the stored config of ``run_id`` (a job started by ``start_generation``)."""
    db = get_database()
    if config is None:
        if not run_id:
            raise BadInput("Neither a config nor a run id was given.", hint="Give a YAML config, or --run-id RUN.")
        config = stored_config(run_id)
    run_id = run_id or new_id("gen")
    check_targets(config)
    run = _claim_run(db, config, run_id, job_id)
    ctx = RunContext(db=db, run_id=run_id, config=config, open_backend=targets.open_backend, progress=progress,
                     should_stop=should_stop)
    started = datetime.now().astimezone().isoformat()
    try:
        seeds = pipeline.load_seeds(db, _resolve_seed_set(db, config, run_id, run), config.seeds.limit)
        pipeline.run_stages(ctx, seeds)
    except StudioError as exc:
        _finish(ctx, "failed", f"{exc} {resume_hint(run_id)}", started)
        raise
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        _finish(ctx, status, f"{type(exc).__name__}: {exc}. {resume_hint(run_id)}", started)
        raise
    status, message = pipeline.outcome(ctx)
    return _finish(ctx, status, message, started)


def _process_alive(process: dict | None) -> bool:
    """Whether the process a run's report names (pid on this host) still lives."""
    return bool(process) and bool(local_pid_alive(process.get("pid"), process.get("host") or "?"))


def _claim_run(db: Database, config: GenerationConfig, run_id: str, job_id: str | None) -> dict:
    """Create the run, or take over an existing one with the same config whose process is gone."""
    wanted = config.to_dict()
    created = store.create_run(db, run_id, config.name, wanted, status="running", job_id=job_id)
    run = store.get_run(db, run_id)
    if not created:
        if json.dumps(run["config"], sort_keys=True) != json.dumps(wanted, sort_keys=True):
            hint = resume_hint(run_id)
            raise BadInput(f"The run {run_id} was started with a different config.",
                           hint=f"Use a new run id for the new config, or {hint[0].lower()}{hint[1:]}")
        process = run["report"].get("process")
        if _process_alive(process) and process.get("pid") != os.getpid():
            raise BadInput(f"The run {run_id} is already running (process {process['pid']}).",
                           hint="Wait for it to finish, or stop it first: `python -m studio generations stop "
                                f"{run_id}`.")
        store.set_run_status(db, run_id, "running", finished=False)
        if job_id:
            store.set_run_job(db, run_id, job_id)
    store.update_report(db, run_id, {"process": {"pid": os.getpid(), "host": socket.gethostname(),
                                                 "job_id": job_id}})
    return store.get_run(db, run_id)


def _finish(ctx: RunContext, status: str, message: str, started: str) -> RunSummary:
    report = store.get_run(ctx.db, ctx.run_id)["report"]
    attempts = (report.get("attempts") or [])[-19:] + [{
        "started_at": started, "finished_at": datetime.now().astimezone().isoformat(), "status": status,
        "failed": dict(ctx.failed), "pid": os.getpid()}]
    store.update_report(ctx.db, ctx.run_id, {"message": message, "failed": dict(ctx.failed), "errors": ctx.errors,
                                             "attempts": attempts, "process": None})
    store.set_run_status(ctx.db, ctx.run_id, status, finished=True)
    if ctx.progress is not None:
        ctx.progress.update(stage="done", message=message, run_id=ctx.run_id, status=status)
    return pipeline.summarize(ctx.db, ctx.run_id)


def _resolve_seed_set(db: Database, config: GenerationConfig, run_id: str, run: dict) -> str:
    """The run's seed set: fixed at the first attempt, so a resume sees the very same seeds."""
    if run.get("seed_set_id"):
        return run["seed_set_id"]
    from studio.services.seeds import add_typed_seeds, import_seeds

    seeds, name = config.seeds, f"{config.name} ({run_id})"
    if seeds.seed_set:
        found = seed_store.get_seed_set(db, seeds.seed_set) or seed_store.find_seed_set(db, seeds.seed_set)
        if found is None:
            raise NotFound(f"There is no seed set {seeds.seed_set!r}.",
                           hint="`python -m studio seeds list` shows the seed sets (by id and name).")
        seed_set_id = found["id"]
    elif seeds.texts:
        seed_set_id = add_typed_seeds(list(seeds.texts), name=name).seed_set_id
    else:
        from pipelines.generate.seeds_io import ColumnMapping

        mapping = ColumnMapping(seeds.mapping.text, seeds.mapping.reference, tuple(seeds.mapping.metadata))
        seed_set_id = import_seeds(seeds.file, mapping, name=name).seed_set_id
    if not seed_set_id:
        raise BadInput("The seeds gave no usable seed.", hint="Check the seed texts or the file's text column.")
    store.set_run_seed_set(db, run_id, seed_set_id)
    return seed_set_id


def stop_generation(run_id: str) -> RunSummary:
    """Ask the run's process to stop after its current batch (the run becomes 'stopped', resumable)."""
    run = _get_run_row(run_id)
    if run["status"] not in ACTIVE:
        return _summary(run)
    job = _job(run)
    process = (run.get("report") or {}).get("process") or {}
    if job is not None and job.active:
        jobs.cancel_job(job.id)             # SIGTERM: the generate command stops between batches
    elif _process_alive(process):
        os.kill(int(process["pid"]), signal.SIGTERM)
    else:
        store.set_run_status(get_database(), run_id, "stopped", finished=True)
    return _summary(_get_run_row(run_id))


# -- reading ------------------------------------------------------------------------------------------------
def _get_run_row(run_id: str) -> dict:
    run = store.get_run(get_database(), run_id)
    if run is None:
        raise NotFound(f"There is no generation run {run_id!r}.", hint="`python -m studio generations list` lists them.")
    return _reconcile(run)


def _job(run: dict) -> jobs.JobInfo | None:
    if not run.get("job_id"):
        return None
    try:
        return jobs.get_job(run["job_id"])
    except NotFound:
        return None


def _reconcile(run: dict) -> dict:
    """A run whose process is gone while the row says queued/running becomes 'interrupted' (or
    'stopped' when its job was cancelled), with a resume hint."""
    if run["status"] not in ACTIVE:
        return run
    job = _job(run)
    process = (run.get("report") or {}).get("process") or {}
    # The runner clears ``process`` when it finishes; while its pid lives it is still writing (a
    # cancelled job's process finishes its batch first).
    alive = (job is not None and job.active) or _process_alive(process)
    if alive:
        return run
    status = "stopped" if job is not None and job.status == "cancelled" else "interrupted"
    why = (job.error if job is not None and job.error else "its process ended without finishing (killed or crashed)")
    message = f"The run was {status}: {why}. Nothing stored is lost. {resume_hint(run['id'])}"
    db = get_database()
    if store.set_run_status_if(db, run["id"], status, run["status"]):
        store.update_report(db, run["id"], {"message": message, "process": None})
    return store.get_run(db, run["id"])


def _summary(run: dict, counts: dict | None = None) -> RunSummary:
    if counts is None:
        counts = queries.run_counts(get_database(), run["id"]).get(run["id"], {})
    return summary_from(run, counts)


def list_runs(limit: int = 200) -> list[RunSummary]:
    db = get_database()
    counts = queries.run_counts(db)
    return [_summary(_reconcile(run), counts.get(run["id"], {})) for run in store.list_runs(db, limit)]


def get_run(run_id: str) -> RunDetail:
    run = _get_run_row(run_id)
    summary = _summary(run)
    job = _job(run)
    try:
        config = GenerationConfig.from_dict(run["config"])
        config_yaml = config.to_yaml()
    except BadInput:  # a config stored by an older version: shown as stored
        import yaml

        config, config_yaml = None, yaml.safe_dump(run["config"], sort_keys=False)
    resumable = run["status"] not in (*ACTIVE, "succeeded", "warnings")
    return RunDetail(summary=summary, config=config, config_yaml=config_yaml, job=job,
                     progress=job.progress if job else {}, report=(run.get("report") or {}).get("preprocess", {}),
                     ledger=queries.run_ledger(get_database(), run_id), resumable=resumable,
                     hint=resume_hint(run_id) if resumable else None)


# -- pairs ---------------------------------------------------------------------------------------------------
def _filters(filters: PairFilter | dict | None) -> PairFilter:
    """The listing's filters from a form's values (an empty text box is no filter)."""
    if filters is None or isinstance(filters, PairFilter):
        filters = {} if filters is None else filters.__dict__
    if isinstance(filters, dict):
        filters = {k: v for k, v in filters.items() if v is not None and v != ""}
    return load_spec(PairFilter, filters, label="the pair filters")


def list_pairs(kind: str, filters: PairFilter | dict | None = None, limit: int = 50, offset: int = 0,
               order: str = "newest") -> list[dict]:
    if not 1 <= int(limit) <= MAX_PAGE or int(offset) < 0:
        raise BadInput(f"limit={limit}, offset={offset} is not a valid page.",
                       hint=f"Ask for 1 to {MAX_PAGE} pairs per page from an offset of 0 or more.")
    return queries.list_pairs(get_database(), kind, _filters(filters), limit, offset, order)


def count_pairs(kind: str, filters: PairFilter | dict | None = None) -> int:
    return queries.count_pairs(get_database(), kind, _filters(filters))


def get_lineage(kind: str, pair_id: str) -> dict:
    lineage = queries.pair_lineage(get_database(), kind, pair_id)
    if lineage is None:
        raise NotFound(f"There is no {kind} pair {pair_id!r}.", hint="Pick a pair from the listing.")
    return lineage


def export_pairs(kind: str, fmt: str, path: str | Path, filters: PairFilter | dict | None = None,
                 overwrite: bool = False, confine: bool = True) -> ExportSummary:
    """Export pairs in TRL's format. A path typed in the browser (``confine``, the default) must lie
    under STUDIO_HOME/exports: a relative one is placed there, anything leading out is refused. The
    CLI passes ``confine=False``: whoever runs it already has the shell's rights over its paths. Both then
    follow the one rule of ``core.outputs``: ``overwrite`` replaces only an export the studio wrote."""
    from pipelines.generate.export import export_pairs as export
    from core.paths import safe_child

    if confine:
        path = safe_child(settings_mod.current().home / "exports", path, what="export path")
    return export(kind, fmt, path, _filters(filters), overwrite=overwrite)


MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024   # a browser download is held in memory once; bigger exports stay on disk


@dataclass(frozen=True)
class ExportDownload:
    file_name: str
    data: bytes
    mime: str


def export_download(path: str | Path) -> ExportDownload:
    """An export under STUDIO_HOME/exports as a browser download: the file itself, or a datasets folder
    as one zip (unzipped, ``load_from_disk`` and ``load_dataset`` read it)."""
    import io
    import zipfile

    from core.paths import safe_child

    target = safe_child(settings_mod.current().home / "exports", path, what="export path")
    if not target.exists():
        raise NotFound(f"There is no export at {target}.", hint="Export the pairs first.")
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    size = sum(p.stat().st_size for p in files)
    if size > MAX_DOWNLOAD_BYTES:
        raise BadInput(f"The export {target.name} is {size / 1e6:,.0f} MB, too big to download through the browser.",
                       hint=f"Copy it from {target} on the studio's machine.")
    if not target.is_dir():
        mime = "application/jsonl" if target.suffix == ".jsonl" else "application/octet-stream"
        return ExportDownload(target.name, target.read_bytes(), mime)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, f"{target.name}/{file.relative_to(target)}")
    return ExportDownload(f"{target.name}.zip", buffer.getvalue(), "application/zip")


SMALL_JUDGE_WARNING = (
    "SmolLM2-135M, the embedded model, almost never writes a verdict the studio can parse (1 in 36 replies "
    "in our tests), so most candidates would go unjudged and few pairs come out. Pick a bigger endpoint as "
    "the judge, or use a programmatic rubric."
)


def judge_warning(target: str | None) -> str | None:
    """A warning to show when the chosen LLM judge is known to be too small to judge."""
    return SMALL_JUDGE_WARNING if target == "endpoint:embedded" else None


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "start_generation": "start a generation run",
    "resume_generation": "resume a generation run",
    "run_generation": "run a generation run",
    "stop_generation": "stop a generation run",
    "export_pairs": "export pairs",
    "export_download": "download an export",
})
