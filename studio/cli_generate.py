"""CLI commands for generation: ``generate``, ``generations list|show|resume|stop`` and ``export``.

``studio.cli`` adds them with ``register(sub)``. ``generate`` runs in the foreground with a progress
bar (or, started by the Generate page, as a background job that reports to its job row). The first
Ctrl-C (or SIGTERM, which is how a job is cancelled) stops cleanly after the current batch and says
how to resume; a second Ctrl-C aborts at once, and a resume still loses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import StudioError
from core.inputs import MAX_MODEL_NAME_CHARS, bounded_float, name_arg, one_line, path_arg

EXIT = {"succeeded": 0, "warnings": 1, "partial": 1, "failed": 1, "stopped": 130, "interrupted": 130}
JOB_STATUS = {"succeeded": "succeeded", "warnings": "succeeded", "stopped": "cancelled"}


def _print_summary(summary) -> None:
    c = summary.counts
    status = "succeeded with warnings" if summary.status == "warnings" else summary.status
    print(f"run {summary.run_id} ({summary.name}): {status}")
    print(f"  instructions {c.get('instructions', 0)} (kept {c.get('instructions_kept', 0)}, removed "
          f"{c.get('instructions_removed', 0)}, unparsable {c.get('instructions_failed', 0)})")
    print(f"  responses    {c.get('responses', 0)} (kept {c.get('responses_kept', 0)}, removed "
          f"{c.get('responses_removed', 0)})")
    print(f"  judgments    {c.get('judgments', 0)} (unparsable {c.get('judgments_failed', 0)}, repaired "
          f"{c.get('judgments_repaired', 0)})")
    print(f"  pairs        {c.get('preference_pairs', 0)} preference, {c.get('sft_pairs', 0)} SFT")
    print(f"  calls        {c.get('calls', 0)} ({c.get('cached_calls', 0)} from the cache), "
          f"{summary.tokens:,} tokens, ${summary.cost_usd:.4f}")
    if summary.failed:
        print("  failed       " + ", ".join(f"{n} {stage}" for stage, n in summary.failed.items()))
    if summary.message:
        print(summary.message)


def cmd_generate(args) -> int:
    from pipelines.generate.config import GenerationConfig

    if not args.config and not args.run_id:
        from core.errors import BadInput

        raise BadInput("No generation config given.", hint="Give a YAML config (see examples/generate.yaml), or "
                       "--run-id RUN to run a stored run again.")
    config = GenerationConfig.from_yaml(Path(args.config)) if args.config else None
    return _run(config, args.run_id, args.job_id)


def _run(config, run_id: str | None, job_id: str | None) -> int:
    from studio.runner import Outcome, run_job
    from studio.services import generate as service

    def outcome(summary) -> Outcome:
        status = JOB_STATUS.get(summary.status, "failed")
        # a job that succeeded with warnings keeps them as its message: the page shows them
        message = None if summary.status == "succeeded" else summary.message
        return Outcome(status, message, EXIT.get(summary.status, 1))

    done = run_job(job_id, lambda reporter, stop: service.run_generation(
        config, run_id=run_id, job_id=job_id, progress=reporter, should_stop=stop), outcome,
        stoppable=True, stop_notice="Stopping after the current batch")
    _print_summary(done.value)
    return done.outcome.exit_code


def cmd_generations(args) -> int:
    from studio.services import generate as service

    if args.action == "list":
        runs = service.list_runs()
        if args.json:
            print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
            return 0
        from studio.cli import _table

        _table([{"id": r.run_id, "name": r.name, "status": r.status, "instructions": r.counts.get("instructions_kept"),
                 "responses": r.counts.get("responses_kept"), "preference": r.counts.get("preference_pairs"),
                 "sft": r.counts.get("sft_pairs"), "tokens": r.tokens, "cost_usd": f"{r.cost_usd:.4f}",
                 "created_at": r.created_at} for r in runs],
               ["id", "name", "status", "instructions", "responses", "preference", "sft", "tokens", "cost_usd",
                "created_at"])
    elif args.action == "show":
        _show(service.get_run(args.run), args.json)
    elif args.action == "resume":
        if args.background:
            started = service.resume_generation(args.run)
            print(f"resuming {started.run_id} in the background (job {started.job_id})")
            return 0
        detail = service.get_run(args.run)
        if detail.summary.status in ("queued", "running"):
            from core.errors import BadInput

            raise BadInput(f"The run {args.run} is still {detail.summary.status}.", hint="Wait for it, or stop it first.")
        return _run(None, args.run, args.job_id)
    elif args.action == "stop":
        summary = service.stop_generation(args.run)
        print(f"{summary.run_id}: stop requested ({summary.status})")
    return 0


def _show(detail, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": detail.summary.to_dict(), "config": detail.config_yaml, "progress": detail.progress,
                          "preprocess": detail.report, "ledger": detail.ledger, "hint": detail.hint},
                         indent=2, default=str))
        return
    _print_summary(detail.summary)
    from studio.cli import _table

    print("\ncost ledger by stage and model")
    _table(detail.ledger.get("by_stage_model", []),
           ["stage", "model", "calls", "cached_calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd"])
    for kind, per in (detail.ledger.get("per_kept_pair") or {}).items():
        if per:
            print(f"per kept {kind} pair: {per['tokens']:.0f} tokens, ${per['cost_usd']:.6f}")
    for table, steps in detail.report.items():
        print(f"\npreprocessing of {table}")
        _table([{**s, "reasons": ", ".join(f"{k}: {v}" for k, v in s.get("reasons", {}).items())} for s in steps],
               ["step", "input_count", "removed", "changed", "reasons"])
    if detail.hint:
        print(f"\n{detail.hint}")


def cmd_export(args) -> int:
    from studio.services import generate as service

    filters = {"run_id": args.run, "model": args.model, "min_confidence": args.min_confidence,
               "max_confidence": args.max_confidence}
    summary = service.export_pairs(args.kind, args.format, args.out, filters, overwrite=args.overwrite,
                                     confine=False)
    print(f"wrote {summary.rows} {summary.kind} pairs to {summary.path} ({summary.fmt})")
    return 0


def register(sub) -> None:
    """Add the generation commands to ``python -m studio``'s subparsers."""
    from studio.cli import _Parser

    gen = sub.add_parser("generate", help="run a generation config: seeds -> instructions -> responses -> "
                                          "judge -> pairs (same --run-id resumes)")
    gen.add_argument("config", nargs="?", type=path_arg, help="a YAML config (see examples/generate.yaml); without it, "
                     "--run-id runs that run's stored config")
    gen.add_argument("--run-id", type=name_arg(), help="the run to create, or to resume when it exists")
    gen.set_defaults(func=cmd_generate)

    runs = sub.add_parser("generations", help="generation runs: list, show, resume, stop")
    runs.set_defaults(func=cmd_generations)
    r_sub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    r_list = r_sub.add_parser("list", help="every run with its counts, tokens and cost")
    r_list.add_argument("--json", action="store_true")
    r_show = r_sub.add_parser("show", help="one run: counts, ledger by stage and model, preprocessing report")
    r_show.add_argument("run", type=name_arg())
    r_show.add_argument("--json", action="store_true")
    r_resume = r_sub.add_parser("resume", help="continue a stopped, failed, partial or interrupted run")
    r_resume.add_argument("run", type=name_arg())
    r_resume.add_argument("--background", action="store_true", help="run it as a background job")
    r_sub.add_parser("stop", help="stop a running run after its current batch").add_argument("run", type=name_arg())

    exp = sub.add_parser("export", help="export preference or SFT pairs in TRL's conversational format")
    exp.add_argument("--kind", choices=("preference", "sft"), default="preference")
    exp.add_argument("--format", choices=("jsonl", "parquet", "datasets"), default="jsonl")
    exp.add_argument("--out", required=True, type=path_arg, help="a file (jsonl, parquet) or a folder (datasets)")
    exp.add_argument("--run", type=name_arg(), help="only this generation run")
    exp.add_argument("--model", type=name_arg(MAX_MODEL_NAME_CHARS), help="only pairs with a response from this model")
    exp.add_argument("--min-confidence", type=bounded_float(0, 1),
                     help="only pairs the judge is at least this sure of (0-1)")
    exp.add_argument("--max-confidence", type=bounded_float(0, 1), help="only pairs with at most this confidence (0-1)")
    exp.add_argument("--overwrite", action="store_true",
                     help="replace PATH if it is an earlier export of the studio's (never anything else)")
    exp.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these commands (plus the hidden --job-id), for running this module alone."""
    from studio.cli import _Parser

    parser = _Parser(prog="studio", description="The studio's generation commands.")
    parser.add_argument("--job-id", help=argparse.SUPPRESS)
    register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.cli_generate ...``: the same commands as ``python -m studio ...``."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except StudioError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing stored is lost. Resume with `python -m studio generations resume RUN`.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
