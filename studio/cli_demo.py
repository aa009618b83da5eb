"""``python -m studio demo [--quick]``: the built-in alignment demo, end to end (see studio/services/demo.py).

Without ``--detach`` it runs here and prints each stage and the win rate with its interval; with it,
it starts the same chain as a background job (what the Home page's button does).
"""

from __future__ import annotations

import json

from core.inputs import MAX_COUNT, bounded_int, name_arg


def cmd_demo(args) -> int:
    from studio.runner import run_job
    from studio.services import demo

    if args.detach:
        print(f"started the demo as job {demo.start_demo_job(quick=args.quick)}; "
              "watch it with `python -m studio jobs list`")
        return 0
    overrides = {k: v for k, v in (("base_model", args.base_model), ("generator", args.generator),
                                   ("train_prompts", args.train_prompts), ("heldout_prompts", args.heldout_prompts),
                                   ("max_steps", args.max_steps)) if v is not None}
    options = demo.DemoOptions.quick(**overrides) if args.quick else demo.DemoOptions(**overrides)
    result = run_job(args.job_id, lambda reporter, stop: demo.run_demo(options, reporter)).value
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        for stage in result.stages:
            print(f"  {stage.stage:<9} {stage.seconds:>7.1f} s  {stage.detail}")
        print(result.headline())
        print("The interval lies above 50%: the trained model wins." if result.significant
              else "The interval reaches 50% or below: no clear win this time.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the alignment demo: generate pairs, DPO with LoRA, compare with the base")
    p.add_argument("--quick", action="store_true", help="fewer prompts and steps: checks the wiring in less time")
    p.add_argument("--detach", action="store_true", help="run as a background job and return")
    p.add_argument("--base-model", type=name_arg(), help="registry name of the model to align (default: smollm2-135m-instruct)")
    p.add_argument("--generator", type=name_arg(), help="target writing the candidates (default: endpoint:embedded)")
    p.add_argument("--train-prompts", type=bounded_int(1, MAX_COUNT), help="use only the first N training prompts")
    p.add_argument("--heldout-prompts", type=bounded_int(1, MAX_COUNT), help="evaluate on the first N held-out prompts")
    p.add_argument("--max-steps", type=bounded_int(1, MAX_COUNT), help="DPO optimizer steps")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_demo)
