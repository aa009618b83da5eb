"""``python -m studio review push|pull|status|reconcile``: the Review page's actions on the command line.

``studio.cli`` adds them with ``register(sub)``. Started by the page, push and pull run as background
jobs (``--job-id``) and report to the job row; from a terminal they show a progress bar.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import BadInput


def _run_reported(job_id: str | None, action):
    from studio.runner import run_job

    return run_job(job_id, lambda reporter, stop: action(reporter.update)).value


def _guidelines(args) -> str | None:
    if args.guidelines:
        path = Path(args.guidelines)
        if not path.is_file():
            raise BadInput(f"The guidelines file {path} does not exist.", hint="Give a text or Markdown file.")
        return path.read_text(encoding="utf-8")
    return args.guidelines_text


def cmd_push(args) -> int:
    from studio.services import review

    request = review.PushRequest(
        kind=args.kind, dataset_name=args.dataset, workspace=args.workspace, run_id=args.run, model=args.model,
        min_confidence=args.min_confidence, max_confidence=args.max_confidence,
        swap_disagreement_only=args.swap_disagreement, limit=args.limit, order=args.order,
        min_submitted=args.min_submitted, guidelines=_guidelines(args), seed=args.seed, batch_size=args.batch_size)
    result = _run_reported(args.job_id, lambda progress: review.push_for_review(request, progress))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.dataset_name}: sent {result.sent:,} records ({result.planned_new:,} new to the round, "
              f"{result.total_in_round:,} in it). Review at {result.dataset_url}")
    return 0


def cmd_pull(args) -> int:
    from studio.services import review

    rule = (review.ReconcileRule(args.rule or "majority", args.tie_policy or "keep_llm")
            if args.rule or args.tie_policy else None)
    if rule is not None and args.round is None:
        raise BadInput("--rule and --tie-policy need --round.", hint="Give the round to reconcile with that rule.")
    result = _run_reported(args.job_id, lambda progress: review.pull_reviews(args.round, progress=progress,
                                                                           force=args.full))
    if rule is not None:
        review.reconcile_reviews(args.round, rule)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    for r in result.rounds:
        if not r.changed:
            print(f"{r.dataset_name}: nothing changed since the last pull")
            continue
        print(f"{r.dataset_name}: {r.new} new, {r.updated} updated, {r.deleted} deleted responses; "
              f"{r.reviewed} records human-reviewed" + (f"; {r.votes} human votes in the leaderboard" if r.votes else "")
              + (f"; {r.unknown_records} records with answers the studio did not push were skipped"
                 if r.unknown_records else ""))
    for error in result.errors:
        print(f"warning: {error}")
    return 0


def cmd_status(args) -> int:
    from studio.services import review

    status = review.review_status(with_agreement=True)
    if args.json:
        print(json.dumps(status.to_dict(), indent=2, default=str))
        return 0
    c = status.connection
    print(f"Argilla {c.url or '(not configured)'}: " + (f"ok, as {c.username} ({c.role})" if c.ok else f"{c.error}"))
    from studio.cli import _table

    _table([{"round": r.round_id, "dataset": r.name, "kind": r.kind, "status": r.status, "pushed": r.pushed,
             "completed": r.completed, "pending": r.pending, "submitted": r.submitted, "reviewed": r.reviewed,
             "judge agreement": (r.agreement or {}).get("overall", {}).get("rate"),
             "alpha": (r.agreement or {}).get("alpha")} for r in status.rounds],
           ["round", "dataset", "kind", "status", "pushed", "completed", "pending", "submitted", "reviewed",
            "judge agreement", "alpha"])
    return 0


def cmd_reconcile(args) -> int:
    from studio.services import review

    reviewed = review.reconcile_reviews(args.round, review.ReconcileRule(args.rule, args.tie_policy))
    print(f"{args.round}: {reviewed} records human-reviewed under {args.rule}/{args.tie_policy}")
    return 0


def register(sub) -> None:
    """Add ``review`` to ``python -m studio``'s subparsers."""
    from studio.cli import _Parser

    review = sub.add_parser("review", help="human review in Argilla: push, pull, status, reconcile")
    r_sub = review.add_subparsers(dest="action", required=True, parser_class=_Parser)
    push = r_sub.add_parser("push", help="send LLM-labeled records to Argilla (idempotent; resumes)")
    push.add_argument("--kind", choices=("preference", "sft", "instruction", "comparison"), default="preference",
                      help="comparison: a comparison's model pairs, blind, for human votes (with --run <comparison id>)")
    push.add_argument("--dataset", help="Argilla dataset name (default studio-<kind>)")
    push.add_argument("--workspace", default="default")
    push.add_argument("--run", help="only records of this generation run (--kind comparison: of this comparison)")
    push.add_argument("--model", help="only records with a response from this model")
    push.add_argument("--min-confidence", type=float, help="judge confidence at least (0-1)")
    push.add_argument("--max-confidence", type=float, help="judge confidence at most (0-1)")
    push.add_argument("--swap-disagreement", action="store_true", help="only pairs whose judge orders disagreed")
    push.add_argument("--limit", type=int, default=500, help="at most this many records (default 500)")
    push.add_argument("--order", choices=("least_confident", "newest"), default="least_confident",
                      help="least_confident sends what the judge is least sure of first (active review)")
    push.add_argument("--min-submitted", type=int, default=1, help="reviewers per record (default 1)")
    push.add_argument("--guidelines", help="a text or Markdown file with the reviewers' guidelines")
    push.add_argument("--guidelines-text", help=argparse_suppress())
    push.add_argument("--seed", type=int, default=0, help="seed of the random A/B order")
    push.add_argument("--batch-size", type=int, default=256, help="records per request (1-500)")
    push.add_argument("--json", action="store_true")
    push.set_defaults(func=cmd_push)
    pull = r_sub.add_parser("pull", help="fetch reviewers' answers changed since the last pull, then reconcile")
    pull.add_argument("--round", help="only this round (default: every open round)")
    pull.add_argument("--full", action="store_true", help="read every record even if nothing changed")
    pull.add_argument("--rule", choices=("majority", "strict"), help="reconcile rule (with --round)")
    pull.add_argument("--tie-policy", choices=("keep_llm", "mark"), help="what a tie between reviewers gives")
    pull.add_argument("--json", action="store_true")
    pull.set_defaults(func=cmd_pull)
    status = r_sub.add_parser("status", help="connection, rounds with progress, and agreement numbers")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    rec = r_sub.add_parser("reconcile", help="re-apply a final-label rule to what was pulled")
    rec.add_argument("round")
    rec.add_argument("--rule", choices=("majority", "strict"), default="majority")
    rec.add_argument("--tie-policy", choices=("keep_llm", "mark"), default="keep_llm")
    rec.set_defaults(func=cmd_reconcile)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
