"""Run a training run: every stage of its recipe in order, each one's output handed to the next.

``run_training(run_id)`` is what the training job calls (``python -m studio train --run RUN_ID``, the
one entry point, through the app's job runner, which turns SIGTERM into ``should_stop``). It needs
only the database and the filesystem under STUDIO_HOME, so the same call runs under a local process,
``accelerate launch``, Ray or Slurm. Calling it again on an unfinished run resumes: finished stages
are skipped, and the current one continues from its newest complete checkpoint. ``should_stop()``
stops at the next step with a checkpoint kept.

With several processes (``ranks``), every rank trains and only the main one records: statuses, child
rows, merged models, the output, its card and registration; what the others need from that (finished
stages, the checkpoint to resume from, each stage's output) rank 0 shares with them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.train.algorithms import StageInput, StageOutput
from pipelines.train import speed
from pipelines.train.distributed import SINGLE, Ranks
from pipelines.train.outputs import CardInfo, merge_adapter, output_name, register_output, write_card
from pipelines.train.spec import ONLINE_STAGES, RunSpec, check_device, cuda_available, resolve_precision
from pipelines.train.stages import resume_point, run_stage, stage_rows
from storage import registry
from storage import training as store
from storage.db import Database, get_database
from storage.registry import ModelRecord
from core import settings as settings_mod
from core.errors import ModelLoadError, NotFound, StudioError, TrainingCancelled, TrainingError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    status: str
    output_model: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Start:
    """The model the next stage starts from."""

    path: Path
    record: ModelRecord | None


def _resolve_model(db: Database, ref: str, what: str, scratch: Path) -> _Start:
    """A registry name or a folder → a transformers folder (an adapter entry is merged into its base)."""
    record = registry.get_model(db, ref)
    if record is None:
        folder = Path(ref).expanduser()
        if folder.is_dir() and (folder / "config.json").is_file():
            return _Start(folder.resolve(), None)
        names = ", ".join(m.name for m in registry.list_models(db)) or "none yet"
        raise NotFound(f"The {what} {ref!r} is neither a registered model nor a model folder.",
                       hint=f"Registered models: {names}.")
    if record.hf_path:
        return _Start(Path(record.hf_path), record)
    if record.adapter_path:
        base = registry.base_of(db, record)
        base_path = base.hf_path if base else record.details.get("base_model_name_or_path")
        if not base_path:
            raise ModelLoadError(f"The {what} {ref!r} is an adapter without a base model folder.",
                                 hint="Register its base model first.")
        merged = scratch / f"merged-{record.name}"
        if not (merged / "config.json").is_file():
            kind = "reward" if record.details.get("task") == "reward" else "causal_lm"
            merge_adapter(Path(record.adapter_path), Path(base_path), merged, kind)
        return _Start(merged, record)
    raise ModelLoadError(f"The {what} {ref!r} has no transformers weights (only {record.gguf_path}).",
                         hint="Pick a model with a transformers folder; GGUF files are for serving.")


def _check_reward_model(start: _Start, ref: str) -> None:
    import json

    archs = json.loads((start.path / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise TrainingError(f"The reward model {ref!r} is not a reward model (its architecture is {archs or 'unknown'}).",
                            hint="Pick the output of a reward stage (a sequence classifier with one label).")


def _stage_runs(db: Database, run: store.TrainingRunRow, spec: RunSpec, ranks: Ranks) -> list[store.TrainingRunRow]:
    """The run itself for one stage; otherwise one child row per stage (created once by the main process,
    reused on resume)."""
    if len(spec.stages) == 1:
        return [run]
    children = {c.stage_index: c for c in store.child_runs(db, run.id)}
    for index, stage in enumerate(spec.stages):
        if index not in children and ranks.is_main:
            store.insert_run(db, name=f"{run.name or spec.name}:{stage}", recipe=spec.recipe, stage=stage,
                             spec=run.spec, snapshot_id=_snapshot_for(spec, stage), parent_run_id=run.id,
                             stage_index=index)
    ranks.barrier()
    return store.child_runs(db, run.id)


def _snapshot_for(spec: RunSpec, stage: str) -> str:
    if stage == "sft" and spec.sft_snapshot_id:
        return spec.sft_snapshot_id
    if stage in ONLINE_STAGES and spec.prompt_snapshot_id:
        return spec.prompt_snapshot_id
    return spec.snapshot_id


def _snapshot(db: Database, snapshot_id: str) -> tuple[dict, list[dict], list[dict]]:
    from storage.snapshots import get_snapshot, read_snapshot_rows

    info = get_snapshot(db, snapshot_id)
    meta = {"id": info.id, "content_hash": info.content_hash, "record_kind": info.record_kind,
            "n_train": info.n_train, "n_eval": info.n_eval}
    return meta, read_snapshot_rows(db, snapshot_id, "train"), read_snapshot_rows(db, snapshot_id, "eval")


def run_training(run_id: str, reporter: Any = None, should_stop: Callable[[], bool] | None = None,
                 db: Database | None = None, ranks: Ranks = SINGLE) -> RunResult:
    """Run (or resume) every unfinished stage of ``run_id``; the run's row ends succeeded, failed or cancelled.
    ``ranks``: this process's place in a multi-process launch (already started, see ``Ranks.start``)."""
    db = db or get_database()
    run = store.get_run(db, run_id)
    if run is None:
        raise NotFound(f"There is no training run {run_id!r}.", hint="`python -m studio runs list` lists them.")
    cuda = cuda_available()
    if ranks.is_main:
        store.set_status(db, run_id, "running", device=_device_name(cuda, ranks))
    result = RunResult(run_id, "running")
    try:
        spec = RunSpec.from_stored(run.spec)
        check_device(spec, cuda)
        stop = should_stop or (lambda: False)
        for _row, out_record in _run_stages(db, run, spec, cuda, stop, reporter, result, ranks):
            result.output_model = out_record.name
        if ranks.is_main:
            store.set_status(db, run_id, "succeeded", final_metrics=result.final_metrics)
        result.status = "succeeded"
        return result
    except TrainingCancelled as exc:
        _finish(db, run_id, "cancelled", str(exc), ranks)
        result.status = "cancelled"
        return result
    except StudioError as exc:
        _finish(db, run_id, "failed", str(exc), ranks)
        raise
    except BaseException as exc:
        _finish(db, run_id, "failed", f"{type(exc).__name__}: {exc}"[:2000], ranks)
        raise


def _finish(db: Database, run_id: str, status: str, error: str, ranks: Ranks) -> None:
    """End the run and the stage that was running (finished stages keep their status); main process only."""
    if not ranks.is_main:
        return
    for child in store.child_runs(db, run_id):
        if child.status == "running":
            store.set_status(db, child.id, status, error=error)
    store.set_status(db, run_id, status, error=error)


def _device_name(cuda: bool, ranks: Ranks = SINGLE) -> str:
    """cpu, or cuda:<GPU name>; `` x N`` when N processes train together."""
    name = "cpu"
    if cuda:
        import torch

        name = f"cuda:{torch.cuda.get_device_name(0)}"
    return f"{name} x{ranks.world_size}" if ranks.several else name


def _run_stages(db: Database, run: store.TrainingRunRow, spec: RunSpec, cuda: bool, stop: Callable[[], bool], reporter: Any,
                result: RunResult, ranks: Ranks):
    """Yield (stage row, registered output) as each stage finishes or is found finished."""
    run_dir = settings_mod.current().runs_dir / run.id
    with ranks.main_first():  # an adapter base is merged once, by the main process
        start = _resolve_model(db, spec.base_model, "base model", run_dir)
        reward = None
        if spec.reward_model:
            reward = _resolve_model(db, spec.reward_model, "reward model", run_dir)
            _check_reward_model(reward, spec.reward_model)
    rows = _stage_runs(db, run, spec, ranks)
    lineage: list[dict] = []
    final_name = output_name(db, spec.output_name or spec.name, run.id)
    for index, row in enumerate(rows):
        last = index == len(rows) - 1
        done = ranks.share(_finished_output(db, row) if ranks.is_main else None)
        if done is None:
            done = _train_stage(db, run, row, spec, start, reward, cuda, stop, reporter, result, lineage,
                                final_name if last else f"{final_name}-{row.stage}", last, index, len(rows), ranks)
        lineage.append({"stage": row.stage, "run_id": row.id, "output": done.name})
        result.stages.append({"stage": row.stage, "run_id": row.id, "output_model": done.name})
        if row.stage == "reward":
            reward = _Start(Path(done.hf_path), done)
        elif not last:
            start = _Start(Path(done.hf_path), done)
        if last and row.id != run.id and ranks.is_main:
            store.set_output_model(db, run.id, done.id)
        yield row, done


def _finished_output(db: Database, row: store.TrainingRunRow) -> ModelRecord | None:
    """A stage that already succeeded, with its output still on disk, is not trained again."""
    if row.status != "succeeded" or not row.output_model_id:
        return None
    record = next((m for m in registry.list_models(db) if m.id == row.output_model_id), None)
    path = record and (record.hf_path or record.adapter_path)
    return record if path and Path(path).is_dir() else None


def _train_stage(db, run, row, spec: RunSpec, start: _Start, reward: _Start | None, cuda: bool, stop: Callable[[], bool],
                 reporter, result: RunResult, lineage: list[dict], name: str, last: bool, index: int, total: int,
                 ranks: Ranks) -> ModelRecord:
    hyper = spec.hyper_for(row.stage)
    snapshot_id = _snapshot_for(spec, row.stage)
    meta, train_rows, eval_rows = _snapshot(db, snapshot_id)
    kind = meta["record_kind"]
    stage_dir = settings_mod.current().runs_dir / row.id
    inp = StageInput(
        stage=row.stage, model_path=start.path, output_dir=stage_dir / "checkpoints", final_dir=stage_dir / "final",
        hyper=hyper, peft=spec.peft, precision=resolve_precision(hyper.precision, cuda), cuda=cuda,
        train_rows=stage_rows(row.stage, kind, train_rows, hyper, snapshot_id),
        eval_rows=_eval_rows(row.stage, kind, eval_rows),
        reward_model_path=reward.path if reward else None, reward_funcs=list(spec.reward_funcs),
        report_to=list(spec.report_to),
    )
    inp.switches = speed.resolve(row.stage, hyper, spec.peft, cuda)
    inp.warnings.extend(inp.switches.warnings)
    log.info("speed switches of %s: %s", row.stage, "; ".join(f"{k} {v}" for k, v in inp.switches.reasons.items()))
    if row.stage == "ppo" and inp.reward_model_path is None:
        raise TrainingError("PPO needs a trained reward model, and this run has none.",
                            hint="Set reward_model in the spec, or use the 'rlhf' recipe, which trains one first.")
    if row.stage != "ppo":  # every rank resumes from the checkpoint the main process picked
        inp.resume_from = ranks.share(resume_point(db, row.id) if ranks.is_main else None)
    if ranks.is_main:
        store.set_status(db, row.id, "running", device=_device_name(cuda, ranks))
        if row.id != run.id:
            store.set_base_model(db, row.id, start.record.id if start.record else None)
    output = run_stage(db, row.id, inp, reporter=reporter, label=f"{row.stage} ({index + 1}/{total})",
                       should_stop=stop, ranks=ranks)
    result.warnings.extend(w for w in inp.warnings if w not in result.warnings)
    result.final_metrics = output.metrics
    if not ranks.is_main:
        return ranks.share(None)
    record = _publish(db, run, row, spec, inp, output, start, meta, lineage, name, last)
    store.set_output_model(db, row.id, record.id)
    store.set_status(db, row.id, "succeeded", final_metrics=output.metrics)
    return ranks.share(record)


def _eval_rows(stage: str, kind: str, rows: list[dict]) -> list[dict]:
    from pipelines.train.data import rows_for_stage

    return rows_for_stage(stage, kind, rows) if rows else []


def _publish(db, run, row, spec: RunSpec, inp: StageInput, output: StageOutput, start: _Start, meta: dict,
             lineage: list[dict], name: str, last: bool) -> ModelRecord:
    """Merge where the output is handed on, write the model card, register the output."""
    folder, is_adapter, base_record = output.final_dir, output.is_adapter, start.record
    if is_adapter and (not last or output.model_kind == "reward"):
        folder, is_adapter = merge_adapter(output.final_dir, inp.model_path, output.final_dir.parent / "merged",
                                           output.model_kind), False
    info = CardInfo(name=name, run_id=row.id, stage=row.stage, recipe=spec.recipe,
                    base_model=start.record.name if start.record else str(start.path), snapshot=meta,
                    hyperparameters=inp.hyper.to_dict(), peft=spec.peft.to_dict(), final_metrics=output.metrics,
                    lineage=[*lineage, {"stage": row.stage, "run_id": row.id, "output": name}], warnings=inp.warnings)
    write_card(folder, info)
    card = {"recipe": spec.recipe, "stage": row.stage, "snapshot": meta, "base_model": info.base_model,
            "hyperparameters": info.hyperparameters, "peft": info.peft, "final_metrics": output.metrics,
            "lineage": info.lineage, "warnings": inp.warnings}
    record = register_output(db, name=name, run_id=row.id, folder=folder, is_adapter=is_adapter,
                             base_record=base_record, model_kind=output.model_kind, card=card)
    if last and spec.merge_adapter and is_adapter:
        merged = merge_adapter(output.final_dir, inp.model_path, output.final_dir.parent / "merged", output.model_kind)
        write_card(merged, info)
        register_output(db, name=f"{name}-merged", run_id=row.id, folder=merged, is_adapter=False,
                        base_record=base_record, model_kind=output.model_kind, card=card)
    return record
