"""Seeds: preview and import files, add typed seeds, list seed sets. The page and the CLI call these.

Why batches: a 1 GB upload streams through ``pipelines.generate.seeds_io`` and is written
``BATCH_ROWS`` seeds per transaction, so memory stays bounded and the database is free between
batches for the app and other jobs. Seed ids are content-derived, so running the same import
again (after a crash, or by mistake) adds nothing twice.

A seed set is found by name: importing into a name that exists adds the file's seeds to that set.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.generate import seeds_io
from pipelines.generate.seeds_io import ColumnMapping, Preview, RowProblem, SeedRow
from storage import seeds as seed_store
from storage.db import Database, get_database
from storage.ids import new_id
from core import settings
from core.errors import BadInput, NotFound

BATCH_ROWS = 5000
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
    """Buffers seeds and writes them BATCH_ROWS at a time; creates the set at the first write."""

    def __init__(self, db: Database, name: str, source: str, source_path: str | None, mapping: dict | None):
        self.db, self.name, self.source, self.source_path, self.mapping = db, name, source, source_path, mapping
        existing = seed_store.find_seed_set(db, name)
        self.seed_set_id: str | None = existing["id"] if existing else None
        self.appended = existing is not None
        self.buffer: list[dict] = []
        self.imported = self.duplicates = 0

    def add(self, row: SeedRow) -> bool:
        """Buffer one seed; True when this filled a batch and it was written."""
        self.buffer.append({"text": row.text, "reference": row.reference, "metadata": row.metadata, "line": row.line})
        if len(self.buffer) >= BATCH_ROWS:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        if not self.buffer:
            return
        if self.seed_set_id is None:
            self.seed_set_id = seed_store.create_seed_set(self.db, self.name, self.source, self.source_path, self.mapping)
        new = seed_store.insert_seeds(self.db, self.seed_set_id, self.buffer)
        self.imported += new
        self.duplicates += len(self.buffer) - new
        self.buffer = []


def _set_name(name: str | None, default: str) -> str:
    name = (name or "").strip() or default
    if len(name) > MAX_NAME_CHARS:
        raise BadInput(f"The seed set name is {len(name)} characters long.", hint=f"Use at most {MAX_NAME_CHARS}.")
    return name


def preview_file(path: str | Path, rows: int = 20, fmt: str | None = None) -> Preview:
    """Format, encoding, columns and the first rows, for the column-mapping step."""
    return seeds_io.preview(path, rows=rows, fmt=fmt)


def _report(progress, reader: seeds_io.SeedReader, writer: _SeedWriter, skipped: int) -> None:
    if progress is None:
        return
    done, total, unit = reader.progress()
    progress.update(stage="import seeds", done=done, total=total, unit=unit,
                    message=f"{writer.imported + writer.duplicates:,} seeds, {skipped:,} skipped")


def import_seeds(path: str | Path, mapping: ColumnMapping, name: str | None = None, fmt: str | None = None,
                 progress=None) -> SeedImportSummary:
    """Stream a seed file into a seed set (named ``name``, default the file's stem).

    Bad rows are counted and reported, never fatal; a file without a single row is BadInput.
    ``progress`` is a ``studio.progress.ProgressReporter`` (or anything with its ``update``).
    """
    reader = seeds_io.open_seeds(path, mapping, fmt)
    source_path = str(Path(path).expanduser().resolve())
    writer = _SeedWriter(get_database(), _set_name(name, Path(path).stem), reader.format, source_path, mapping.to_dict())
    problems: list[RowProblem] = []
    skipped = 0
    _report(progress, reader, writer, skipped)
    for item in reader:
        if isinstance(item, RowProblem):
            skipped += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(item)
        elif writer.add(item):
            _report(progress, reader, writer, skipped)
    writer.flush()
    _report(progress, reader, writer, skipped)
    if writer.imported + writer.duplicates + skipped == 0:
        raise BadInput(f"{Path(path).name} has a header but no rows." if reader.format == "csv"
                       else f"{Path(path).name} has no rows.", hint="Pick a file with at least one seed.")
    warnings = list(reader.warnings)
    if writer.appended:
        warnings.append(f"A seed set named {writer.name!r} already existed; the seeds were added to it.")
    return SeedImportSummary(writer.seed_set_id, writer.name, writer.imported, skipped, problems,
                             reader.encoding, warnings, writer.duplicates, reader.format)


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
