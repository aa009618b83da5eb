"""Reading seed files: CSV, JSON Lines, JSON arrays, Parquet and ``datasets`` folders, streamed.

Why this shape: an upload may be 1 GB, mis-encoded, or half broken. ``open_seeds`` checks what can
be checked before reading rows (the file exists and is not empty, the format, the encoding, the
columns the mapping names) and raises ``BadInput`` for those. Iterating it then yields a
``SeedRow`` per usable row and a ``RowProblem`` per unusable one (not JSON, not an object, empty
text), so one bad line never stops an import and every skipped line is reported by number.
Memory stays constant: rows are read one at a time (see ``seed_readers``).

Text is data: seeds are kept verbatim (no stripping, no templating, no interpretation), whatever
they look like (prompt injections, SQL, paths).

``line`` is the 1-based line of the file where a row starts (the CSV header is a line too); for
Parquet and ``datasets`` folders it is the 1-based row number.
"""

from __future__ import annotations

import itertools
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pipelines.generate import seed_readers as rd
from core.errors import BadInput
from core.inputs import special_kind

FORMATS = ("csv", "jsonl", "json", "parquet", "datasets")
EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
              ".parquet": "parquet", ".pq": "parquet"}
DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
COLUMN_SAMPLE = 50  # JSON has no header: columns are the keys of the first rows


@dataclass(frozen=True)
class ColumnMapping:
    """Which column is the seed text, which (optional) the reference answer, which go to metadata."""

    text: str
    reference: str | None = None
    metadata: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise BadInput("The column mapping names no text column.", hint="Choose the column that holds the seed text.")
        object.__setattr__(self, "reference", self.reference or None)
        object.__setattr__(self, "metadata", tuple(dict.fromkeys(m for m in self.metadata if m)))

    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.text, *([self.reference] if self.reference else []), *self.metadata]))

    def to_dict(self) -> dict:
        return {"text": self.text, "reference": self.reference, "metadata": list(self.metadata)}


@dataclass(frozen=True)
class SeedRow:
    text: str
    reference: str | None
    metadata: dict[str, Any]
    line: int


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Preview:
    format: str
    encoding: str | None  # None for Parquet and datasets folders (Arrow stores UTF-8)
    columns: list[str]
    rows: list[dict]
    warnings: list[str] = field(default_factory=list)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The format named by ``fmt``, else by the folder's markers or the file's extension."""
    if fmt:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise BadInput(f"Unknown seed format {fmt!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
        return fmt
    if path.is_dir():
        if any((path / marker).exists() for marker in DATASET_MARKERS):
            return "datasets"
        raise BadInput(f"The folder {path.name} is not a dataset saved with save_to_disk (it has no "
                       f"{' or '.join(DATASET_MARKERS)}).", hint="Pick a file, or a folder written by Dataset.save_to_disk.")
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise BadInput(f"Cannot tell the format of {path.name} from its extension.",
                       hint=f"Name it .csv, .jsonl, .json or .parquet, or pass the format ({', '.join(FORMATS)}).")
    return found


def _check_kind(path: Path, fmt: str) -> None:
    """A ``datasets`` source is a folder; every other format is a regular file (never a FIFO or device)."""
    mode = path.stat().st_mode
    if fmt == "datasets":
        if not stat.S_ISDIR(mode):
            raise BadInput(f"{path.name} is not a folder, so it cannot be a datasets folder.",
                           hint="Give the folder that datasets' save_to_disk wrote, or pick the file's own format.")
    elif stat.S_ISDIR(mode):
        raise BadInput(f"{path.name} is a folder, not a {fmt} file.",
                       hint=f"Give a .{fmt} file inside it, or use --format datasets for a datasets folder.")
    elif not stat.S_ISREG(mode):
        raise BadInput(f"{path.name} is {special_kind(mode)}, not a file the studio can read seeds from.",
                       hint="Copy the data into a regular file and import that.")


class SeedReader:
    """An opened seed file: ``columns``, ``encoding``, ``warnings``; iterate it for rows."""

    def __init__(self, path: str | Path, mapping: ColumnMapping | None = None, fmt: str | None = None):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise BadInput(f"No such file or folder: {self.path}.", hint="Check the path.")
        self.format = detect_format(self.path, fmt)
        _check_kind(self.path, self.format)
        self.mapping = mapping
        self.encoding: str | None = None
        self.columns: list[str] = []
        self._notes: list[str] = []
        self._source: rd.TextSource | None = None
        self._encoding: rd.Encoding | None = None
        self._rows_done = 0
        self._finished = False
        self._rows_total: int | None = None
        self._json_layout = "lines"
        self._dialect = None
        self.batch_rows = rd.BATCH_ROWS  # Parquet / datasets rows per read; a preview asks for fewer
        self.header_start = self.header_lines = 1  # a CSV header's first line and how many lines it spans
        {"csv": self._open_csv, "jsonl": self._open_json, "json": self._open_json,
         "parquet": self._open_parquet, "datasets": self._open_datasets}[self.format]()
        if mapping is not None:
            self._check_columns(mapping)

    # -- opening: everything that can fail before a row is read -------------------------------
    def _open_text(self) -> str:
        size = self.path.stat().st_size
        with open(self.path, "rb") as raw:
            head = raw.read(rd.HEAD_BYTES)
        self._encoding = rd.detect_encoding(head, complete=size <= rd.HEAD_BYTES)
        self.encoding = self._encoding.label
        if self._encoding.note:
            self._notes.append(self._encoding.note)
        text = head[self._encoding.bom:].decode(self._encoding.codec, errors="ignore")
        if not text.strip() and size <= rd.HEAD_BYTES:
            raise BadInput(f"The file {self.path.name} is empty.", hint="Pick a file with a header and rows.")
        return text

    def _lines(self) -> Iterator[str]:
        self._source = rd.TextSource(self.path, self._encoding)
        return self._source.lines()

    def _open_csv(self) -> None:
        head = self._open_text()
        sample = head.splitlines(keepends=True)
        self._dialect = rd.sniff_dialect(sample[:-1][:20] if len(sample) > 1 else sample)
        rows = self._csv_rows()
        header = next(rows, None)
        rows.close()
        if header is None:
            raise BadInput(f"The file {self.path.name} is empty.", hint="Pick a file with a header and rows.")
        if isinstance(header[1], rd.BadRecord):
            raise BadInput(f"The header line of {self.path.name} is {header[1].reason}.", hint="Fix the first line of the file.")
        self.columns, notes = rd.header_names(header[1])
        self.header_start = header[0]
        self.header_lines = 1 + sum(cell.count("\n") for cell in header[1])
        self._notes.extend(notes)
        if self._dialect.delimiter != ",":
            names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
            self._notes.append(f"Columns are separated by {names.get(self._dialect.delimiter, repr(self._dialect.delimiter))}.")

    def _csv_rows(self) -> Iterator[tuple[int, list[str] | rd.BadRecord]]:
        return rd.csv_rows(self._lines(), self._dialect)

    def _open_json(self) -> None:
        head = self._open_text()
        first = head.lstrip()[:1]
        if first == "[":
            self._json_layout = "array"
            if self.format == "jsonl":
                self._notes.append("The file holds one JSON array, not JSON Lines; it was read as an array.")
        elif first == "{":
            first_line = head.lstrip().split("\n", 1)[0]
            if "\n" in head.lstrip() and isinstance(rd.json_line_record(first_line), rd.BadRecord) \
                    and first_line.rstrip().endswith("{"):
                raise BadInput(f"{self.path.name} holds one JSON object spread over several lines.",
                               hint="Use a JSON list of objects ([{...}, {...}]) or JSON Lines (one object per line).")
        elif self.format == "json":
            raise BadInput(f"{self.path.name} does not start with a JSON list or object.",
                           hint="Use a JSON list of objects ([{...}, {...}]) or JSON Lines (one object per line).")
        keys: dict[str, None] = {}
        for _, record in itertools.islice(self._raw_records(), COLUMN_SAMPLE):
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
        self.columns = list(keys)

    def _open_parquet(self) -> None:
        parquet = rd.parquet_file(self.path)
        self.columns = list(parquet.schema_arrow.names)
        self._rows_total = parquet.metadata.num_rows

    def _open_datasets(self) -> None:
        self._dataset, notes = rd.load_dataset_folder(self.path)
        self._notes.extend(notes)
        self.columns = list(self._dataset.column_names)
        self._rows_total = len(self._dataset)

    def _check_columns(self, mapping: ColumnMapping) -> None:
        if self.format in ("json", "jsonl") and not self.columns:
            return  # no object in the first rows: each row reports its own problem
        missing = [c for c in mapping.columns() if c not in self.columns]
        if missing:
            what = "Column" if len(missing) == 1 else "Columns"
            raise BadInput(f"{what} {', '.join(repr(m) for m in missing)} not found; the file has: "
                           f"{', '.join(self.columns) or '(no columns)'}.",
                           hint="Map the text, reference and metadata to columns the file has.")

    # -- reading ------------------------------------------------------------------------------
    def _raw_records(self) -> Iterator[tuple[int, dict | rd.BadRecord]]:
        if self.format == "csv":
            rows = self._csv_rows()
            next(rows, None)  # the header
            return rd.csv_records(rows, self.columns)
        if self.format in ("json", "jsonl"):
            if self._json_layout == "array":
                lines = self._lines()
                return rd.json_array_records(_reader_of(lines))
            return rd.jsonl_records(self._lines())
        wanted = self.mapping.columns() if self.mapping else self.columns
        if self.format == "parquet":
            return rd.parquet_records(self.path, wanted, self.batch_rows)
        return rd.dataset_records(self._dataset, wanted, self.batch_rows)

    def records(self) -> Iterator[tuple[int, dict | rd.BadRecord]]:
        """``(line, record)`` pairs; a record is a dict, or a BadRecord saying why the line is unusable."""
        self._finished = False
        for line, record in self._raw_records():
            self._rows_done += 1
            yield line, record
        self._finished = True

    def __iter__(self) -> Iterator[SeedRow | RowProblem]:
        if self.mapping is None:
            raise BadInput("No column mapping was given.", hint="Say which column holds the seed text.")
        for line, record in self.records():
            yield to_seed(line, record, self.mapping)

    # -- what the bulk reader (``seed_bulk``) reuses of this reader's detection --------------------
    @property
    def text_encoding(self) -> rd.Encoding | None:
        return self._encoding

    @property
    def dialect(self):
        return self._dialect

    @property
    def json_layout(self) -> str:
        return self._json_layout

    @property
    def dataset(self):
        return getattr(self, "_dataset", None)

    @property
    def warnings(self) -> list[str]:
        return self._notes + (self._source.warnings() if self._source else [])

    def progress(self) -> tuple[float, float | None, str]:
        """(done, total, unit): megabytes for text files, rows for Parquet and datasets folders."""
        if self._rows_total is not None:
            return self._rows_done, self._rows_total, "rows"
        size = self.path.stat().st_size
        done = size if self._finished else (self._source.bytes_read() if self._source else 0)
        return round(done / 1e6, 2), round(size / 1e6, 2), "MB"


def _reader_of(lines: Iterator[str]):
    """A ``read(n)`` over decoded lines, for the incremental JSON array decoder."""
    pending: list[str] = []

    def read(n: int) -> str:
        size = 0
        pending.clear()
        for line in lines:
            pending.append(line)
            size += len(line)
            if size >= n:
                break
        return "".join(pending)

    return read


def _as_text(value: Any) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not). Numbers become text; lists and objects are not text."""
    if value is None or (isinstance(value, float) and value != value):
        return None, "is empty"
    if isinstance(value, (dict, list, tuple)):
        return None, f"is {rd.kind_of(list(value) if isinstance(value, tuple) else value)}, not text"
    text = value if isinstance(value, str) else str(rd.json_safe(value))
    if not text.strip():
        return None, "is empty"
    return text, None


def to_seed(line: int, record: dict | rd.BadRecord, mapping: ColumnMapping) -> SeedRow | RowProblem:
    """One record as a seed, or the reason it cannot be one. Values are kept verbatim."""
    if isinstance(record, rd.BadRecord):
        return RowProblem(line, record.reason)
    if mapping.text not in record:
        return RowProblem(line, f"has no {mapping.text!r} field")
    text, why = _as_text(record[mapping.text])
    if text is None:
        return RowProblem(line, f"the text column {mapping.text!r} {why}")
    reference = None
    if mapping.reference:
        value = rd.json_safe(record.get(mapping.reference))
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        reference = value if isinstance(value, str) else (None if value is None else str(value))
        reference = reference if reference and reference.strip() else None
    metadata = {column: rd.json_safe(record.get(column)) for column in mapping.metadata}
    try:
        text.encode("utf-8")
        if reference:
            reference.encode("utf-8")
        if metadata:
            json.dumps(metadata, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return RowProblem(line, "contains text that cannot be stored (an unpaired UTF-16 surrogate)")
    return SeedRow(text=text, reference=reference, metadata=metadata, line=line)


def open_seeds(path: str | Path, mapping: ColumnMapping, fmt: str | None = None) -> SeedReader:
    """Open and check a seed file (raises BadInput now, before any row is read)."""
    return SeedReader(path, mapping, fmt)


def iter_seeds(path: str | Path, mapping: ColumnMapping, fmt: str | None = None) -> Iterator[SeedRow | RowProblem]:
    """Stream the seeds of a file; problems with single rows are yielded, not raised."""
    return iter(open_seeds(path, mapping, fmt))


def preview(path: str | Path, rows: int = 20, fmt: str | None = None) -> Preview:
    """The format, encoding, columns and first rows (reads only the head of the file)."""
    if rows < 0:
        raise BadInput(f"rows={rows} is negative.", hint="Ask for 0 or more preview rows.")
    reader = SeedReader(path, None, fmt)
    reader.batch_rows = max(1, min(rows, rd.BATCH_ROWS))
    shown: list[dict] = []
    problems: list[str] = []
    for line, record in reader.records():
        if len(shown) >= rows:
            break
        if isinstance(record, rd.BadRecord):
            problems.append(f"line {line}: {record.reason}")
        else:
            shown.append({column: rd.json_safe(record.get(column)) for column in reader.columns})
        if len(problems) >= rows:
            break
    warnings = reader.warnings + problems
    if not shown and not problems:
        warnings.append("The file has a header but no rows." if reader.format == "csv" else "The file has no rows.")
    return Preview(reader.format, reader.encoding, reader.columns, shown, warnings)
