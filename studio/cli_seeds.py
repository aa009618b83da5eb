"""``python -m studio seeds ...``: import, preview and list seeds (the Generate page's seed step).

``register(sub)`` adds the command group to the subparsers of ``studio.cli.build_parser``. The
handlers call ``studio.services.seeds``, the same functions the page calls.
"""

from __future__ import annotations

import argparse

from pipelines.generate.seeds_io import FORMATS
from core.inputs import MAX_COUNT, bounded_int, name_arg, path_arg

SHOWN_PROBLEMS = 5
CELL_CHARS = 40


def _cli():
    from studio import cli  # imported late: studio.cli imports this module while building its parser

    return cli


def _short(value, width: int = CELL_CHARS) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_import(args) -> int:
    from studio.runner import run_job
    from studio.services import seeds
    from pipelines.generate.seeds_io import ColumnMapping

    mapping = ColumnMapping(text=args.text, reference=args.reference, metadata=tuple(args.metadata or ()))
    summary = run_job(getattr(args, "job_id", None), lambda reporter, stop: seeds.import_seeds(
        args.file, mapping, name=args.name, fmt=args.format, progress=reporter)).value
    where = f"seed set {summary.seed_set_id}" if summary.seed_set_id else "no seed set"
    print(f"imported {summary.imported:,} seeds into {summary.name!r} ({where})")
    if summary.duplicates:
        print(f"already there: {summary.duplicates:,} (not added again)")
    if summary.skipped:
        print(f"skipped {summary.skipped:,} rows:")
        for problem in summary.problems[:SHOWN_PROBLEMS]:
            print(f"  {_short(problem, 100)}")
        if summary.skipped > SHOWN_PROBLEMS:
            print(f"  ... and {summary.skipped - SHOWN_PROBLEMS:,} more")
    print(f"format: {summary.format}, encoding: {summary.encoding or 'n/a (Arrow, UTF-8)'}")
    for warning in summary.warnings:
        print(f"warning: {warning}")
    return 0 if summary.imported + summary.duplicates else 1


def cmd_preview(args) -> int:
    from studio.services import seeds

    preview = seeds.preview_file(args.file, rows=args.rows, fmt=args.format)
    print(f"format: {preview.format}, encoding: {preview.encoding or 'n/a (Arrow, UTF-8)'}")
    print(f"columns: {', '.join(preview.columns) or '(none)'}\n")
    _cli()._table([{c: _short(r.get(c)) for c in preview.columns} for r in preview.rows], preview.columns)
    for warning in preview.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_list(args) -> int:
    from studio.services import seeds

    rows = [{**s.__dict__, "created_at": f"{s.created_at:%Y-%m-%d %H:%M}"} for s in seeds.list_seed_sets()]
    _cli()._table(rows, ["id", "name", "seeds", "source", "source_path", "created_at"])
    return 0


def cmd_show(args) -> int:
    from studio.services import seeds

    rows = [{"line": s.line, "id": s.id, "text": _short(s.text, 60), "reference": _short(s.reference)}
            for s in seeds.list_seeds(args.seed_set, limit=args.limit, offset=args.offset)]
    _cli()._table(rows, ["line", "id", "text", "reference"])
    return 0


HANDLERS = {"import": cmd_import, "preview": cmd_preview, "list": cmd_list, "show": cmd_show}


def cmd_seeds(args) -> int:
    return HANDLERS[args.action](args)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``seeds import|preview|list|show`` to the studio's subparsers."""
    parser_class = _cli()._Parser
    seeds = sub.add_parser("seeds", help="seed sets: import files, preview, list")
    seeds.set_defaults(func=cmd_seeds)
    s_sub = seeds.add_subparsers(dest="action", required=True, parser_class=parser_class)

    s_import = s_sub.add_parser("import", help="import a CSV, JSONL, JSON, Parquet file or a datasets folder")
    s_import.add_argument("file", type=path_arg, help="the file, or a folder written by Dataset.save_to_disk")
    s_import.add_argument("--text", required=True, metavar="COL", help="column that holds the seed text")
    s_import.add_argument("--reference", metavar="COL", help="column with a reference answer (optional)")
    s_import.add_argument("--metadata", nargs="+", action="extend", metavar="COL", help="columns kept as the seed's metadata")
    s_import.add_argument("--name", type=name_arg(), help="seed set name (default: the file name); an existing set is added to")
    s_import.add_argument("--format", choices=FORMATS, help="override the format the extension implies")

    s_preview = s_sub.add_parser("preview", help="format, encoding, columns and the first rows of a file")
    s_preview.add_argument("file", type=path_arg)
    s_preview.add_argument("--rows", type=bounded_int(1, 1000), default=10)
    s_preview.add_argument("--format", choices=FORMATS)

    s_sub.add_parser("list", help="seed sets with their number of seeds")
    s_show = s_sub.add_parser("show", help="the seeds of one set, in file order")
    s_show.add_argument("seed_set", type=name_arg(), help="seed set id (see `seeds list`)")
    s_show.add_argument("--limit", type=bounded_int(1, 10_000), default=50)
    s_show.add_argument("--offset", type=bounded_int(0, MAX_COUNT), default=0)
    return seeds
