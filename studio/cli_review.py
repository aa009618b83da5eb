"""``python -m studio review push|pull|status|reconcile``: the Review page's actions on the command line.

``studio.cli`` adds them with ``register(sub)``. Started by the page, push and pull run as background
jobs (``--job-id``) and report to the job row; from a terminal they show a progress bar.
"""

from __future__ import annotations

import json
import sys

from core.errors import BadInput
from core.inputs import (MAX_COUNT, MAX_MODEL_NAME_CHARS, MAX_SEED, bounded_float, bounded_int, name_arg, path_arg,
                         read_text)

GUIDELINES_BYTES = 64 * 1024   # Argilla takes 10,000 characters; a bigger file is surely the wrong one


def _run_reported(job_id: str | None, action, outcome=None):
    from studio.runner import Outcome, run_job

    return run_job(job_id, lambda reporter, stop: action(reporter.update), outcome or (lambda _: Outcome()))


def _guidelines(args) -> str | None:
    if args.guidelines:  # a regular UTF-8 file under the cap, or a one-line message
        return read_text(args.guidelines, "guidelines file", GUIDELINES_BYTES)
    return args.guidelines_text


def cmd_push(args) -> int:
    from studio.services import review

    request = review.PushRequest(
        kind=args.kind, dataset_name=args.dataset, workspace=args.workspace, run_id=args.run, model=args.model,
        min_confidence=args.min_confidence, max_confidence=args.max_confidence,
        swap_disagreement_only=args.swap_disagreement, limit=args.limit, order=args.order,
        min_submitted=args.min_submitted, guidelines=_guidelines(args), seed=args.seed, batch_size=args.batch_size)
    done = _run_reported(args.job_id, lambda progress: review.push_for_review(request, progress), _push_outcome)
    result = done.value
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.dataset_name}: sent {result.sent:,} records ({result.planned_new:,} new to the round, "
              f"{result.total_in_round:,} in it). Review at {result.dataset_url}")
        if done.outcome.error:
            print(f"warning: {done.outcome.error}", file=sys.stderr)
    return done.outcome.exit_code


def _push_outcome(result):
    """A push that matched nothing is said, with the reason, not reported as a plain success."""
    from studio.runner import Outcome

    if result.selected:
        return Outcome()
    return Outcome("succeeded", "Nothing was pushed: no records match the kind and filters of this push "
                   "(generate or compare first, or loosen the run, model and confidence filters).", 1)


def cmd_pull(args) -> int:
    from studio.services import review

    rule = (review.ReconcileRule(args.rule or "majority", args.tie_policy or "keep_llm")
            if args.rule or args.tie_policy else None)
    if rule is not None and args.round is None:
        raise BadInput("--rule and --tie-policy need --round.", hint="Give the round to reconcile with that rule.")
    result = _run_reported(args.job_id, lambda progress: review.pull_reviews(args.round, progress=progress,
                                                                           force=args.full)).value
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
    push.add_argument("--dataset", type=name_arg(), help="Argilla dataset name (default studio-<kind>)")
    push.add_argument("--workspace", type=name_arg(), default="default")
    push.add_argument("--run", type=name_arg(),
                      help="only records of this generation run (--kind comparison: of this comparison)")
    push.add_argument("--model", type=name_arg(MAX_MODEL_NAME_CHARS), help="only records with a response from this model")
    push.add_argument("--min-confidence", type=bounded_float(0, 1), help="judge confidence at least (0-1)")
    push.add_argument("--max-confidence", type=bounded_float(0, 1), help="judge confidence at most (0-1)")
    push.add_argument("--swap-disagreement", action="store_true", help="only pairs whose judge orders disagreed")
    push.add_argument("--limit", type=bounded_int(1, MAX_COUNT), default=500, help="at most this many records (default 500)")
    push.add_argument("--order", choices=("least_confident", "newest"), default="least_confident",
                      help="least_confident sends what the judge is least sure of first (active review)")
    push.add_argument("--min-submitted", type=bounded_int(1, 100), default=1, help="reviewers per record (default 1)")
    push.add_argument("--guidelines", type=path_arg, help="a text or Markdown file with the reviewers' guidelines")
    push.add_argument("--guidelines-text", help=argparse_suppress())
    push.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="seed of the random A/B order")
    push.add_argument("--batch-size", type=bounded_int(1, MAX_COUNT), default=256, help="records per request (1-500)")
    push.add_argument("--json", action="store_true")
    push.set_defaults(func=cmd_push)
    pull = r_sub.add_parser("pull", help="fetch reviewers' answers changed since the last pull, then reconcile")
    pull.add_argument("--round", type=name_arg(), help="only this round (default: every open round)")
    pull.add_argument("--full", action="store_true", help="read every record even if nothing changed")
    pull.add_argument("--rule", choices=("majority", "strict"), help="reconcile rule (with --round)")
    pull.add_argument("--tie-policy", choices=("keep_llm", "mark"), help="what a tie between reviewers gives")
    pull.add_argument("--json", action="store_true")
    pull.set_defaults(func=cmd_pull)
    status = r_sub.add_parser("status", help="connection, rounds with progress, and agreement numbers")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    rec = r_sub.add_parser("reconcile", help="re-apply a final-label rule to what was pulled")
    rec.add_argument("round", type=name_arg())
    rec.add_argument("--rule", choices=("majority", "strict"), default="majority")
    rec.add_argument("--tie-policy", choices=("keep_llm", "mark"), default="keep_llm")
    rec.set_defaults(func=cmd_reconcile)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
