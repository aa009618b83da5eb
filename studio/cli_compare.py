"""CLI commands for comparisons: ``compare``, ``comparisons list|show|judge|resume`` and ``leaderboard``.

``studio.cli`` adds them with ``register(sub)``. ``compare CONFIG.yaml`` creates a comparison and runs
it in the foreground with a progress bar; the Compare page starts the same work as a background job
(``compare --comparison-id ID``), which is also how a comparison resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import BadInput
from core.inputs import MAX_BOOTSTRAP, bounded_int, load_mapping, name_arg, path_arg

EXIT = {"ready": 0, "partial": 1, "failed": 1, "stopped": 130}
JOB_STATUS = {"ready": "succeeded", "stopped": "cancelled"}


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _run(comparison_id: str, job_id: str | None) -> int:
    from studio.runner import Outcome, run_job
    from studio.services import compare as service

    def outcome(result) -> Outcome:
        status = JOB_STATUS.get(result.status, "failed")
        return Outcome(status, None if status == "succeeded" else " ".join(result.messages) or result.status,
                       EXIT.get(result.status, 1))

    result = run_job(job_id, lambda reporter, stop: service.run_comparison(
        comparison_id, progress=reporter.update, should_stop=stop), outcome, stoppable=True).value
    o = result.outputs
    print(f"comparison {comparison_id}: {result.status}")
    print(f"  outputs  {o.generated} generated, {o.reused} reused from earlier comparisons, {o.already} already "
          f"stored, {o.truncated} truncated to fit a context")
    if result.judge:
        print(f"  judge    {result.judge.votes} votes, {result.judge.skipped} already judged, "
              f"{result.judge.failed} without a readable verdict")
    for message in result.messages:
        print(f"  ! {message}")
    if result.status in ("partial", "stopped"):
        print(f"Resume with: python -m studio comparisons resume {comparison_id}")
    return EXIT.get(result.status, 1)


def cmd_compare(args) -> int:
    from pipelines.compare.spec import ComparisonSpec
    from studio.services import compare as service

    if args.comparison_id:
        return _run(args.comparison_id, args.job_id)
    if not args.config:
        raise BadInput("No comparison config given.",
                       hint="python -m studio compare CONFIG.yaml; the YAML keys are in pipelines/compare/spec.py.")
    created = service.create_comparison(ComparisonSpec.from_yaml(Path(args.config)), background=False)
    print(f"created comparison {created.comparison_id} with {created.prompts} prompts")
    for line in [*created.warnings, *created.problems[:5]]:
        print(f"  ! {line}")
    return _run(created.comparison_id, args.job_id)


def cmd_comparisons(args) -> int:
    from studio.cli import _table
    from studio.services import compare as service

    if args.action == "list":
        rows = service.list_comparisons()
        if args.json:
            _print_json([r.__dict__ for r in rows])
            return 0
        _table([{"id": r.comparison_id, "name": r.name, "status": r.status, "models": ", ".join(r.models),
                 "prompts": r.counts["prompts"], "outputs": r.counts["outputs"], "human votes": r.counts["human_votes"],
                 "judge votes": r.counts["judge_votes"]} for r in rows],
               ["id", "name", "status", "models", "prompts", "outputs", "human votes", "judge votes"])
    elif args.action == "show":
        summary = service.get_comparison(args.comparison)
        if args.json:
            _print_json(summary.__dict__)
            return 0
        print(f"{summary.comparison_id} ({summary.name}): {summary.status}")
        print(f"  models   {', '.join(summary.models)}")
        print(f"  prompts  {summary.counts['prompts']} from {summary.prompt_source} {summary.prompt_source_id or ''}")
        print(f"  outputs  {summary.counts['outputs']} ({summary.counts['truncated']} truncated)")
        print(f"  votes    {summary.counts['human_votes']} human, {summary.counts['judge_votes']} judge")
        for message in summary.report.get("messages", []):
            print(f"  ! {message}")
    elif args.action == "judge":
        params = load_mapping(args.params or "", "--params JSON", fmt="json") if args.rubric else {}
        judge = ({"kind": "rubric", "rubric": args.rubric, "params": params} if args.rubric
                 else {"kind": "llm", "target": args.target})
        if not args.rubric and not args.target:
            raise BadInput("No judge given.", hint="Use --target endpoint:NAME or --rubric NAME.")
        report = service.judge_comparison(args.comparison, judge)
        print(f"{report.votes} votes, {report.skipped} already judged, {report.failed} without a readable verdict")
    elif args.action == "resume":
        return _run(args.comparison, args.job_id)
    elif args.action == "metrics":
        _print_metrics(service.compute_metrics(args.comparison, with_perplexity=not args.no_perplexity), args.json)
    return 0


def _print_metrics(report: dict, as_json: bool) -> None:
    from studio.cli import _table

    if as_json:
        _print_json(report)
        return
    _table([{**m, "notes": "; ".join(m["notes"])} for m in report["models"]],
           ["model", "answers", "with_reference", "bleu", "rouge_l", "perplexity", "notes"])
    if report.get("reward_accuracy"):
        r = report["reward_accuracy"]
        print(f"reward model {r['reward_model']}: accuracy {r['accuracy']:.1%} on {r['pairs']} held-out pairs")


def cmd_leaderboard(args) -> int:
    from studio.cli import _table
    from studio.services import compare as service

    board = service.leaderboard(comparison_id=args.comparison, voter_kind=args.voter_kind, slice_key=args.slice,
                                n_boot=args.boot, length_controlled=args.length_controlled)
    if args.json:
        _print_json(board.to_dict())
        return 0
    if not board.votes:
        print(board.message)
        return 0
    print(f"{board.votes} votes ({board.ties} ties, {board.both_bad} both bad)")
    _table([{"rank": r.rank, "model": r.model, "rating": f"{r.rating:.0f}", "95% CI": f"{r.ci_low:.0f} – {r.ci_high:.0f}",
             "games": r.games, "wins": f"{r.wins:g}"} for r in board.ratings],
           ["rank", "model", "rating", "95% CI", "games", "wins"])
    print("\nwin rates (ties count half)")
    _table([{"model": w.model, "vs": w.opponent, "win rate": f"{w.win_rate:.3f}",
             "95% CI": f"{w.ci_low:.3f} – {w.ci_high:.3f}", "W/L/T/bad": f"{w.wins}/{w.losses}/{w.ties}/{w.both_bad}"}
            for w in board.win_rates if w.model < w.opponent], ["model", "vs", "win rate", "95% CI", "W/L/T/bad"])
    for value, ratings in board.slices.items():
        print(f"\n{board.slice_key} = {value}: " + ", ".join(f"{r.model} {r.rating:.0f}" for r in ratings))
    for line in board.warnings:
        print(f"! {line}")
    return 0


def register(sub) -> None:
    """Add the comparison commands to ``python -m studio``'s subparsers."""
    from studio.cli import _Parser

    cmp = sub.add_parser("compare", help="compare two or more models on a prompt set (YAML config)")
    cmp.add_argument("config", nargs="?", type=path_arg,
                     help="a YAML config: models, prompts, sampling, judge (see pipelines/compare/spec.py)")
    cmp.add_argument("--comparison-id", type=name_arg(), help="run (or resume) an existing comparison instead")
    cmp.set_defaults(func=cmd_compare)

    runs = sub.add_parser("comparisons", help="comparisons: list, show, judge, resume")
    runs.set_defaults(func=cmd_comparisons)
    c_sub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    c_sub.add_parser("list").add_argument("--json", action="store_true")
    c_show = c_sub.add_parser("show")
    c_show.add_argument("comparison", type=name_arg())
    c_show.add_argument("--json", action="store_true")
    c_judge = c_sub.add_parser("judge", help="let an LLM (both orders) or a rubric vote on every pair")
    c_judge.add_argument("comparison", type=name_arg())
    c_judge.add_argument("--target", type=name_arg(), help="the judge model: endpoint:NAME or local:NAME")
    c_judge.add_argument("--rubric", type=name_arg(), help="a rubric judge instead, e.g. reference_match")
    c_judge.add_argument("--params", help="the rubric's parameters as JSON")
    c_sub.add_parser("resume", help="generate what is missing (after a stop or an outage)").add_argument(
        "comparison", type=name_arg())
    c_metrics = c_sub.add_parser("metrics", help="BLEU / ROUGE-L against references, held-out perplexity, "
                                                 "reward-model accuracy")
    c_metrics.add_argument("comparison", type=name_arg())
    c_metrics.add_argument("--no-perplexity", action="store_true", help="skip perplexity (it loads each model)")
    c_metrics.add_argument("--json", action="store_true")

    board = sub.add_parser("leaderboard", help="Bradley–Terry ratings and win rates with 95%% intervals")
    board.add_argument("--comparison", type=name_arg(), help="only this comparison")
    board.add_argument("--voter-kind", choices=("human", "llm", "rubric"))
    board.add_argument("--slice", type=name_arg(), help="also rate per value of this prompt metadata field (topic, source...)")
    board.add_argument("--boot", type=bounded_int(0, MAX_BOOTSTRAP), default=200,
                       help=f"bootstrap resamples (0 = no intervals, at most {MAX_BOOTSTRAP:,})")
    board.add_argument("--length-controlled", action="store_true", help="also length-controlled win rates")
    board.add_argument("--json", action="store_true")
    board.set_defaults(func=cmd_leaderboard)
