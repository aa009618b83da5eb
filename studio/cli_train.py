"""CLI commands for training: ``train``, ``runs list|show|cancel|resume|accelerate`` and
``snapshots create|list|show``. ``studio.cli`` adds them with ``register(sub)``.

``train RUN.yaml`` is what the Train page's button does: without ``--detach`` it trains in this
process with a progress bar (loss in the bar's postfix); with it, it returns once the run's own
process is started. The job process itself runs ``train --run RUN``.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.inputs import MAX_COUNT, MAX_SEED, bounded_float, bounded_int, name_arg, path_arg

EXIT = {"succeeded": 0, "cancelled": 130, "interrupted": 130}


def _json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_run(run) -> None:
    print(f"run {run.id} ({run.name}): {run.status}  recipe {run.recipe} [{' -> '.join(run.stages)}]  "
          f"device {run.device}")
    if run.output_model:
        print(f"  output model  {run.output_model}")
    if run.error:
        print(f"  error         {run.error}")
    if run.hint:
        print(f"  hint          {run.hint}")


def cmd_train(args) -> int:
    from studio.services import training

    if args.run:
        run = training.execute_run(args.run, args.job_id)
    else:
        if not args.spec:
            from core.errors import BadInput

            raise BadInput("No run spec given.", hint="Use `python -m studio train RUN.yaml` (see examples/train.yaml).")
        from pipelines.train.spec import RunSpec

        run = training.start_run(RunSpec.from_yaml(Path(args.spec)), detach=args.detach)
        if args.detach:
            print(f"started run {run.id} ({run.status}, job {run.job_id}); "
                  f"watch it with `python -m studio runs show {run.id}`")
            return 0
        run = training.execute_run(run.id, run.job_id)
    _print_run(run)
    return EXIT.get(run.status, 1)


def cmd_runs(args) -> int:
    from studio.cli import _table
    from studio.services import training

    if args.action == "list":
        runs = training.list_runs(status=args.status)
        if args.json:
            _json([r.to_dict() for r in runs])
            return 0
        _table([{**r.to_dict(), "stages": "->".join(r.stages), "queue": r.queue_position,
                 "progress": _progress_text(r.progress)} for r in runs],
               ["id", "name", "recipe", "stages", "status", "queue", "progress", "device", "output_model",
                "created_at"])
    elif args.action == "show":
        detail = training.get_run_detail(args.run)
        if args.json:
            _json(detail.to_dict())
            return 0
        _show(detail)
    elif args.action == "cancel":
        _print_run(training.cancel_run(args.run))
    elif args.action == "resume":
        run = training.resume_run(args.run, detach=not args.foreground)
        if args.foreground:
            run = training.execute_run(run.id, run.job_id)
        _print_run(run)
    elif args.action == "accelerate":
        return _accelerate(args)
    return 0


def _progress_text(progress: dict) -> str:
    if not progress:
        return ""
    done, total = progress.get("done"), progress.get("total")
    text = f"{done}/{total}" if total else str(progress.get("message") or "")
    if progress.get("loss") is not None:
        text += f" loss {progress['loss']:.4g}"
    return text


def _show(detail) -> None:
    from studio.cli import _table

    _print_run(detail.summary)
    if detail.summary.progress:
        print(f"  progress      {_progress_text(detail.summary.progress)}  eta {detail.summary.progress.get('eta_s')} s")
    if detail.stages:
        print("\nstages")
        _table(detail.stages, ["stage", "status", "output_model", "run_id"])
    last: dict[tuple, dict] = {}
    for point in detail.metrics:
        last[(point["stage"], point["name"])] = point
    print("\nlatest metrics")
    _table([{"stage": s, "name": n, "step": p["step"], "value": p["value"]} for (s, n), p in sorted(last.items())],
           ["stage", "name", "step", "value"])
    print("\ncheckpoints")
    _table(detail.checkpoints, ["stage", "step", "path"])
    for key, lineage in detail.lineage.items():
        print(f"\nlineage ({key} {lineage['snapshot']['id']})")
        _table(lineage.get("by_generation_run", []), ["run_id", "run_name", "pair_kind", "split", "pairs"])
    if detail.log_tail:
        print("\nlog (last lines)")
        print("\n".join(detail.log_tail))


def _accelerate(args) -> int:
    from pipelines.train.spec import RunSpec
    from studio.services import training

    spec = RunSpec.from_stored(training.get_run_detail(args.run).spec)
    export = training.export_accelerate(spec, args.backend, args.processes, args.machines, args.run)
    if args.out:  # each file replaces only a file the studio wrote there before (core.outputs)
        from core import outputs

        config = outputs.write_text(Path(args.out) / "accelerate.yaml", export.config_yaml, overwrite=True,
                                    what="accelerate config")
        run = outputs.write_text(Path(args.out) / "run.yaml", spec.to_yaml(), overwrite=True, what="run spec")
        print(f"wrote {config} and {run}")
    else:
        print(export.config_yaml)
    print(export.command)
    return 0


def cmd_snapshots(args) -> int:
    from studio.services import snapshots

    if args.action == "create":
        spec = _snapshot_spec(args)
        summary = (snapshots.preview_checks if args.preview else snapshots.create_snapshot)(spec, args.tokenizer)
        if args.json:
            _json(summary.to_dict())
        else:
            _print_snapshot(summary, preview=args.preview)
    elif args.action == "list":
        rows = snapshots.list_snapshots()
        if args.json:
            _json([s.to_dict() for s in rows])
            return 0
        from studio.cli import _table

        _table([{**s.to_dict(), "warnings": sum(c["severity"] == "warning" for c in s.checks)} for s in rows],
               ["id", "name", "record_kind", "n_train", "n_eval", "warnings", "created_at"])
    elif args.action == "show":
        detail = snapshots.get_snapshot(args.snapshot)
        if args.json:
            _json(detail.to_dict())
            return 0
        _print_snapshot(detail.summary)
        print("\nfrom generation runs")
        from studio.cli import _table

        _table(detail.lineage.get("by_generation_run", []), ["run_id", "run_name", "pair_kind", "split", "pairs"])
    return 0


def _snapshot_spec(args):
    from studio.services.snapshots import SnapshotSpec

    return SnapshotSpec(
        record_kind=args.kind, name=args.name, generation_run_ids=tuple(args.run or ()),
        only_human_reviewed=args.only_human_reviewed, label_rule=args.label_rule,
        min_judge_confidence=args.min_confidence, min_reviewer_agreement=args.min_agreement,
        exclude_flagged=not args.include_flagged, drop_identical=not args.keep_identical,
        drop_duplicates=not args.keep_duplicates, max_length=args.max_length, max_length_unit=args.max_length_unit,
        eval_fraction=args.eval_fraction, split_seed=args.seed, check_max_length=args.check_max_length)


def _print_snapshot(summary, preview: bool = False) -> None:
    from studio.cli import _table

    state = "preview (not stored)" if preview else ("created" if summary.created else "stored")
    print(f"snapshot {summary.id} ({summary.name or 'unnamed'}, {summary.record_kind}): {state}; "
          f"{summary.n_train} train, {summary.n_eval} eval")
    print("\nafter each filter")
    _table(summary.counts, ["step", "remaining", "removed"])
    print("\nchecks")
    _table(summary.checks, ["severity", "name", "message"])


def register(sub) -> None:
    """Add the training commands to ``python -m studio``'s subparsers."""
    from storage.snapshots import LABEL_RULES, LENGTH_UNITS, RECORD_KINDS
    from studio.cli import _Parser

    train = sub.add_parser("train", help="train a run spec (YAML): what the Train page's button does")
    train.add_argument("spec", nargs="?", type=path_arg, help="a YAML run spec (see examples/train.yaml)")
    train.add_argument("--detach", action="store_true", help="start the run's own process and return")
    train.add_argument("--run", type=name_arg(),
                       help="run (or continue) an existing run by id, waiting for its turn on the device")
    train.set_defaults(func=cmd_train)

    runs = sub.add_parser("runs", help="training runs: list, show, cancel, resume, accelerate")
    runs.set_defaults(func=cmd_runs)
    r_sub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    r_list = r_sub.add_parser("list", help="runs with status, queue position and progress")
    r_list.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled", "interrupted"))
    r_list.add_argument("--json", action="store_true")
    r_show = r_sub.add_parser("show", help="one run: stages, latest metrics, checkpoints, lineage, log")
    r_show.add_argument("run", type=name_arg())
    r_show.add_argument("--json", action="store_true")
    r_sub.add_parser("cancel", help="stop a queued or running run (its checkpoint is kept)").add_argument(
        "run", type=name_arg())
    r_resume = r_sub.add_parser("resume", help="continue a failed, cancelled or interrupted run from its checkpoint")
    r_resume.add_argument("run", type=name_arg())
    r_resume.add_argument("--foreground", action="store_true", help="train in this process with a progress bar")
    r_acc = r_sub.add_parser("accelerate", help="the equivalent `accelerate launch` command and config for "
                                                "several GPUs or nodes")
    r_acc.add_argument("run", type=name_arg())
    r_acc.add_argument("--backend", default="deepspeed_zero2", choices=("deepspeed_zero2", "deepspeed_zero3", "fsdp"))
    r_acc.add_argument("--processes", type=bounded_int(1, 65536), default=8, help="GPU processes in all")
    r_acc.add_argument("--machines", type=bounded_int(1, 65536), default=1, help="nodes")
    r_acc.add_argument("--out", type=path_arg, help="write accelerate.yaml and run.yaml into this folder (files the "
                                                    "studio did not write there are never replaced)")

    snaps = sub.add_parser("snapshots", help="training data snapshots: create (with checks), list, show")
    snaps.set_defaults(func=cmd_snapshots)
    s_sub = snaps.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s_create = s_sub.add_parser("create", help="filter, split and freeze pairs for training (same data: same id)")
    s_create.add_argument("--kind", choices=RECORD_KINDS, default="preference")
    s_create.add_argument("--name", type=name_arg())
    s_create.add_argument("--run", action="append", type=name_arg(), help="only pairs of this generation run (repeatable)")
    s_create.add_argument("--only-human-reviewed", action="store_true", help="keep only records a person reviewed")
    s_create.add_argument("--label-rule", choices=LABEL_RULES, default="prefer_human",
                          help="prefer_human: reviewed records use the human label; judge_only: ignore reviews")
    s_create.add_argument("--min-confidence", type=bounded_float(0, 1), help="minimum judge confidence (0-1)")
    s_create.add_argument("--min-agreement", type=bounded_float(0, 1),
                          help="minimum reviewer agreement of reviewed records (0-1)")
    s_create.add_argument("--include-flagged", action="store_true", help="keep flagged pairs")
    s_create.add_argument("--keep-identical", action="store_true", help="keep pairs whose chosen == rejected")
    s_create.add_argument("--keep-duplicates", action="store_true", help="keep exact duplicate rows")
    s_create.add_argument("--max-length", type=bounded_int(1, MAX_COUNT),
                          help="drop rows longer than this (prompt + longest response)")
    s_create.add_argument("--max-length-unit", choices=LENGTH_UNITS, default="chars")
    s_create.add_argument("--eval-fraction", type=bounded_float(0, 1), default=0.1, help="share held out for evaluation")
    s_create.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=42, help="seed of the train/eval split")
    s_create.add_argument("--check-max-length", type=bounded_int(1, MAX_COUNT), default=1024,
                          help="training max length in tokens: the checks count rows that will be truncated")
    s_create.add_argument("--tokenizer", type=path_arg, help="a registered model (or folder) to count tokens with")
    s_create.add_argument("--preview", action="store_true", help="show counts and checks without storing")
    s_create.add_argument("--json", action="store_true")
    s_list = s_sub.add_parser("list")
    s_list.add_argument("--json", action="store_true")
    s_show = s_sub.add_parser("show")
    s_show.add_argument("snapshot", type=name_arg())
    s_show.add_argument("--json", action="store_true")
