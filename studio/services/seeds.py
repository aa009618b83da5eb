"""Seeds: preview and import files, add typed seeds, list seed sets. The page and the CLI call these.

Why batches: a 1 GB upload is read, checked and hashed by DuckDB in a scratch database
(``pipelines.generate.seed_bulk``) and written ``BATCH_ROWS`` seeds per transaction, so memory stays
bounded and the database is free between batches for the app and other jobs. Files DuckDB cannot
read with the importer's promises stream through the Python reader (``seeds_io``) instead. Seed ids
are content-derived (the same in both readers), so running the same import again (after a crash, or
by mistake) adds nothing twice.

A seed set is found by name: importing into a name that exists adds the file's seeds to that set.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.generate import seed_bulk, seeds_io
from pipelines.generate.seeds_io import ColumnMapping, Preview, RowProblem, SeedRow
from storage import seeds as seed_store
from storage.db import Database, get_database
from storage.ids import new_id
from core import settings
from core.errors import BadInput, NotFound
from studio import access

BATCH_ROWS = 200_000       # seeds per write of a file import (one transaction; the file is free between)
PY_BATCH_ROWS = 5000       # seeds the Python reader buffers per write
MAX_PROBLEMS = 50          # problems kept for the report; all are counted
MAX_NAME_CHARS = 200
MAX_PAGE = 1000


@dataclass
class SeedImportSummary:
    seed_set_id: str | None  # None when no row could be used
    name: str
    imported: int            # seeds added now
    skipped: int             # rows that could not become seeds (see problems)
    problems: list[RowProblem]  # the first MAX_PROBLEMS, with line numbers
    encoding: str | None
    warnings: list[str] = field(default_factory=list)
    duplicates: int = 0      # seeds that were already in the set (a repeated import)
    format: str | None = None
    reader: str = "python"   # "duckdb", or "python" (typed seeds; files DuckDB cannot read: see warnings)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeedSetInfo:
    id: str
    name: str
    source: str
    source_path: str | None
    column_mapping: dict | None
    seeds: int
    created_at: datetime


@dataclass(frozen=True)
class Seed:
    id: str
    seed_set_id: str
    text: str
    reference: str | None
    metadata: dict[str, Any]
    line: int | None
    content_hash: str
    created_at: datetime


class _SeedWriter:
    """Buffers seeds and writes them BATCH_ROWS at a time; creates the set at the first write.

    A new set's id is chosen up front (``target_id``) because the bulk reader hashes seed ids with it."""

    def __init__(self, db: Database, name: str, source: str, source_path: str | None, mapping: dict | None):
        self.db, self.name, self.source, self.source_path, self.mapping = db, name, source, source_path, mapping
        existing = seed_store.find_seed_set(db, name)
        self.seed_set_id: str | None = existing["id"] if existing else None
        self.target_id = self.seed_set_id or seed_store.new_seed_set_id()
        self.appended = existing is not None
        self.buffer: list[dict] = []
        self.imported = self.duplicates = 0
        self.tables = 0  # bulk batches written

    def add(self, row: SeedRow) -> bool:
        """Buffer one seed; True when this filled a batch and it was written."""
        self.buffer.append({"text": row.text, "reference": row.reference, "metadata": row.metadata, "line": row.line})
        if len(self.buffer) >= PY_BATCH_ROWS:
            self.flush()
            return True
        return False

    def _ensure_set(self) -> str:
        if self.seed_set_id is None:
            self.seed_set_id = seed_store.create_seed_set(self.db, self.name, self.source, self.source_path,
                                                          self.mapping, set_id=self.target_id)
        return self.seed_set_id

    def flush(self) -> None:
        if not self.buffer:
            return
        new = seed_store.insert_seeds(self.db, self._ensure_set(), self.buffer)
        self._count(new, len(self.buffer))
        self.buffer = []

    def add_table(self, table) -> None:
        """Write a finished Arrow batch from the bulk reader (its ids were hashed with ``target_id``).

        Between two batches the file is closed (unless another thread of this process is using it):
        DuckDB makes the next batch faster than the connection's idle close, and an open connection
        keeps everything written so far cached, so memory would grow with the file."""
        if self.tables:
            self.db.close()
        self._ensure_set()
        self._count(seed_store.insert_seed_table(self.db, table, new_set=not self.appended), table.num_rows)
        self.tables += 1

    def _count(self, new: int, sent: int) -> None:
        self.imported += new
        self.duplicates += sent - new


def _set_name(name: str | None, default: str) -> str:
    name = (name or "").strip() or default
    if len(name) > MAX_NAME_CHARS:
        raise BadInput(f"The seed set name is {len(name)} characters long.", hint=f"Use at most {MAX_NAME_CHARS}.")
    return name


def preview_file(path: str | Path, rows: int = 20, fmt: str | None = None) -> Preview:
    """Format, encoding, columns and the first rows, for the column-mapping step."""
    return seeds_io.preview(path, rows=rows, fmt=fmt)


def _report(progress, reader, writer: _SeedWriter, skipped: int) -> None:
    if progress is None:
        return
    done, total, unit = reader.progress()
    progress.update(stage="import seeds", done=done, total=total, unit=unit,
                    message=f"{writer.imported + writer.duplicates:,} seeds, {skipped:,} skipped")


class _Problems:
    """Rows that could not become seeds: all counted, the first MAX_PROBLEMS kept (with lines)."""

    def __init__(self):
        self.kept: list[RowProblem] = []
        self.count = 0

    def add(self, problem: RowProblem) -> None:
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(problem)


def _import_python(reader: seeds_io.SeedReader, writer: _SeedWriter, problems: _Problems, progress) -> None:
    _report(progress, reader, writer, problems.count)
    for item in reader:
        if isinstance(item, RowProblem):
            problems.add(item)
        elif writer.add(item):
            _report(progress, reader, writer, problems.count)
    writer.flush()
    _report(progress, reader, writer, problems.count)


def _import_bulk(bulk: seed_bulk.BulkReader, writer: _SeedWriter, problems: _Problems, progress) -> None:
    """Python-made seeds and problems come first (in line order), then DuckDB's finished batches."""
    _report(progress, bulk, writer, problems.count)
    for item in bulk.items(writer.target_id, report=lambda: _report(progress, bulk, writer, problems.count)):
        if isinstance(item, RowProblem):
            problems.add(item)
        elif isinstance(item, SeedRow):
            writer.add(item)
        else:
            writer.flush()
            writer.add_table(item)
            if item.num_rows >= bulk.batch_rows:  # as the Python reader: a report per full batch
                _report(progress, bulk, writer, problems.count)
    writer.flush()
    _report(progress, bulk, writer, problems.count)


def _read_fast(reader: seeds_io.SeedReader, writer: _SeedWriter, problems: _Problems,
               progress) -> tuple[seeds_io.SeedReader | seed_bulk.BulkReader, str | None]:
    """Import through DuckDB; (the reader used, why the Python reader had to take over or None)."""
    work_dir = settings.current().home / "tmp" / new_id("import")
    bulk = None
    try:
        bulk = seed_bulk.BulkReader(reader, work_dir, BATCH_ROWS)
        _import_bulk(bulk, writer, problems, progress)
        return bulk, None
    except seed_bulk.BulkUnsupported as exc:  # raised before anything was written
        reader = seeds_io.open_seeds(reader.path, reader.mapping, reader.format)
        _import_python(reader, writer, problems, progress)
        return reader, exc.reason
    finally:
        if bulk is not None:
            bulk.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def import_seeds(path: str | Path, mapping: ColumnMapping, name: str | None = None, fmt: str | None = None,
                 progress=None) -> SeedImportSummary:
    """Stream a seed file into a seed set (named ``name``, default the file's stem).

    DuckDB reads it (``pipelines.generate.seed_bulk``); a file it cannot read with the importer's
    promises goes to the Python reader, and the summary's warnings say why. Bad rows are counted
    and reported, never fatal; a file without a single row is BadInput. ``progress`` is a
    ``studio.progress.ProgressReporter`` (or anything with its ``update``).
    """
    opened = seeds_io.open_seeds(path, mapping, fmt)  # what can fail before a row is read fails now
    source_path = str(Path(path).expanduser().resolve())
    writer = _SeedWriter(get_database(), _set_name(name, Path(path).stem), opened.format, source_path, mapping.to_dict())
    problems = _Problems()
    reader, fallback = _read_fast(opened, writer, problems, progress)
    if writer.imported + writer.duplicates + problems.count == 0:
        raise BadInput(f"{Path(path).name} has a header but no rows." if reader.format == "csv"
                       else f"{Path(path).name} has no rows.", hint="Pick a file with at least one seed.")
    warnings = list(reader.warnings)
    if fallback:
        warnings.append(f"Read by the Python reader, not DuckDB: {fallback}.")
    if writer.appended:
        warnings.append(f"A seed set named {writer.name!r} already existed; the seeds were added to it.")
    return SeedImportSummary(writer.seed_set_id, writer.name, writer.imported, problems.count, problems.kept,
                             reader.encoding, warnings, writer.duplicates, reader.format,
                             "python" if fallback else "duckdb")


def split_typed_seeds(block: str) -> list[str]:
    """The page's textarea: one seed per line; if the text has a blank line anywhere, seeds are
    separated by blank lines instead (so a seed may span several lines). Seeds are trimmed."""
    text = block.replace("\r\n", "\n").strip()
    parts = re.split(r"\n[ \t]*\n", text) if re.search(r"\n[ \t]*\n", text) else text.split("\n")
    return [part.strip() for part in parts if part.strip()]


def add_typed_seeds(texts: list[str] | str, name: str | None = None) -> SeedImportSummary:
    """Store typed seeds as a seed set (a string is split with ``split_typed_seeds``)."""
    items = split_typed_seeds(texts) if isinstance(texts, str) else list(texts)
    if not any(isinstance(t, str) and t.strip() for t in items):
        raise BadInput("No seeds were given.",
                       hint="Type at least one seed: one per line, or separate multi-line seeds with a blank line.")
    writer = _SeedWriter(get_database(), _set_name(name, f"typed {datetime.now():%Y-%m-%d %H:%M:%S}"), "typed", None, None)
    problems: list[RowProblem] = []
    for position, text in enumerate(items, start=1):
        if not isinstance(text, str) or not text.strip():
            problems.append(RowProblem(position, "the seed is empty"))
            continue
        writer.add(SeedRow(text=text.strip(), reference=None, metadata={}, line=position))
    writer.flush()
    warnings = [f"A seed set named {writer.name!r} already existed; the seeds were added to it."] if writer.appended else []
    return SeedImportSummary(writer.seed_set_id, writer.name, writer.imported, len(problems), problems[:MAX_PROBLEMS],
                             None, warnings, writer.duplicates, "typed")


def list_seed_sets() -> list[SeedSetInfo]:
    return [SeedSetInfo(**row) for row in seed_store.list_seed_sets(get_database())]


def list_seeds(seed_set_id: str, limit: int = 50, offset: int = 0) -> list[Seed]:
    """A page of a seed set, in file order."""
    if not 1 <= int(limit) <= MAX_PAGE:
        raise BadInput(f"limit={limit} is out of range.", hint=f"Ask for 1 to {MAX_PAGE} seeds per page.")
    if int(offset) < 0:
        raise BadInput(f"offset={offset} is negative.", hint="Use an offset of 0 or more.")
    db = get_database()
    if seed_store.get_seed_set(db, seed_set_id) is None:
        raise NotFound(f"No seed set {seed_set_id!r}.", hint="See `python -m studio seeds list`.")
    return [Seed(**row) for row in seed_store.list_seeds(db, seed_set_id, limit, offset)]


def get_seed(seed_id: str) -> Seed:
    row = seed_store.get_seed(get_database(), seed_id)
    if row is None:
        raise NotFound(f"No seed {seed_id!r}.", hint="List a seed set's seeds to find their ids.")
    return Seed(**row)


def safe_upload_name(filename: str) -> str:
    """The last path component, with only word characters, dots, dashes and spaces; never hidden."""
    name = str(filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .")
    if len(name) > 120:
        suffix = Path(name).suffix[:16]
        name = name[: 120 - len(suffix)] + suffix
    return name or "upload"


def save_upload(filename: str, data: bytes | BinaryIO) -> Path:
    """Store an uploaded file as STUDIO_HOME/uploads/<id>/<safe name> (it keeps its name, so the
    seed set is named after it, and two uploads with one name do not collide)."""
    cfg = settings.current()
    cfg.ensure_home()
    uploads = (cfg.home / "uploads").resolve()
    folder = uploads / new_id("upload")
    folder.mkdir(parents=True)
    target = folder / safe_upload_name(filename)
    if not target.resolve().is_relative_to(uploads):  # belt and braces: the name has no separators
        raise BadInput(f"The file name {filename!r} cannot be used.", hint="Rename the file and upload it again.")
    with open(target, "wb") as out:
        if isinstance(data, (bytes, bytearray, memoryview)):
            out.write(data)
        else:
            shutil.copyfileobj(data, out, 1 << 20)
    return target


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "import_seeds": "import seeds",
    "add_typed_seeds": "add seeds",
    "save_upload": "upload a seed file",
    "preview_file": "preview a file on the studio's machine",
}, internal=("safe_upload_name", "split_typed_seeds",))
