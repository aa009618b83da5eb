"""Seed files at DuckDB's speed, with the Python reader's promises.

Why: the Python reader (``seeds_io``) handles one row at a time and ran at 0.07x of DuckDB's own
``read_csv``. Here DuckDB's readers (read_csv with ``store_rejects``, JSON functions, Parquet and
Arrow scans) do the bulk of the work in a scratch database (``storage.seed_import``), and the Python
reader's own rules decide only the rows SQL leaves to it: empty texts, broken or odd JSON lines,
rows DuckDB's CSV reader refused. The result is what the Python reader gives, row for row, line for
line, plus one thing it could not do: a quote that is never closed is reported with its line
instead of swallowing the rest of the file into one row.

Line numbers: DuckDB keeps no line per row, so each row's line is worked out from the lines the rows
before it span (1 + the newlines inside their fields), the header, and the blank lines and refused
rows before it (their lines come from the byte offsets DuckDB reports). When the counts do not add
up (blank lines between rows *and* blank lines inside quoted fields) the file goes to the Python
reader, and the summary says so. So do JSON arrays (DuckDB gives no line per element), CSV dialects
DuckDB does not share with Python's csv module, and Parquet or ``datasets`` columns of types whose
Python spelling SQL does not reproduce (dates, nested values, bytes, decimals).

Encodings: UTF-8 (with or without BOM) is read in place. Anything else (UTF-16/32, Windows-1252) and
a UTF-8 file with undecodable lines is first rewritten as UTF-8 by the Python reader's per-line
decoder into the work folder, line for line, so line numbers and warnings stay the same.
"""

from __future__ import annotations

import csv
import heapq
import io
import threading
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from pipelines.generate import seed_readers as rd
from pipelines.generate.seeds_io import RowProblem, SeedReader, SeedRow, to_seed
from storage.seed_import import MAX_LINE_BYTES, Reject, SeedStage

MEMORY_LIMIT = "768MB"   # the scratch database spills to the work folder past this
CHUNK = 1 << 20
ARROW_BATCH_ROWS = 65536
TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer)
METADATA_TYPES = TEXT_TYPES + (pa.types.is_boolean, pa.types.is_floating)
Item = pa.Table | SeedRow | RowProblem


class BulkUnsupported(Exception):
    """DuckDB cannot keep the importer's promises for this file: the Python reader takes it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# -- lines of a file, by bytes ------------------------------------------------------------------
def count_lines(path: Path) -> int:
    """Physical lines: newlines, plus one for a last line without its newline."""
    count, last = 0, b"\n"
    with open(path, "rb") as raw:
        while block := raw.read(CHUNK):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def lines_at(path: Path, positions: list[int]) -> dict[int, int]:
    """The line each byte offset falls on (offsets in any order)."""
    wanted = sorted(set(positions))
    found: dict[int, int] = {}
    newlines, start, i = 0, 0, 0
    with open(path, "rb") as raw:
        while i < len(wanted) and (block := raw.read(CHUNK)):
            end = start + len(block)
            while i < len(wanted) and wanted[i] < end:
                found[wanted[i]] = newlines + block.count(b"\n", 0, wanted[i] - start) + 1
                i += 1
            newlines += block.count(b"\n")
            start = end
    for position in wanted[i:]:
        found[position] = newlines + 1
    return found


def empty_lines(path: Path, before: int) -> list[int]:
    """Lines (before line ``before``) that hold nothing: DuckDB skips them without a row."""
    found = []
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            if number >= before:
                break
            if line in (b"\n", b"\r\n", b"\r"):
                found.append(number)
    return found


def _run_with_progress(work: Callable[[], None], report: Callable[[], None] | None, every: float = 1.0) -> None:
    """Run ``work`` in a thread and call ``report`` here every ``every`` seconds until it ends."""
    if report is None:
        work()
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name="seed-bulk-read", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every)
        if thread.is_alive():
            report()
    if failure:
        raise failure[0]


class BulkReader:
    """One seed file read by DuckDB: ``items(seed_set_id)`` yields finished Arrow batches, and the
    seeds and problems the Python reader's rules made of the rows SQL left to them."""

    def __init__(self, reader: SeedReader, work_dir: Path, batch_rows: int):
        self.reader, self.mapping, self.work_dir, self.batch_rows = reader, reader.mapping, Path(work_dir), batch_rows
        self.format, self.encoding = reader.format, reader.encoding
        self._source: rd.TextSource | None = None
        self._stage: SeedStage | None = None
        self._done = self._total_rows = 0
        self._arrow_plan = self._check_supported()

    # -- what DuckDB can take ---------------------------------------------------------------------
    def _check_supported(self):
        fmt = self.format
        if fmt in ("json", "jsonl") and self.reader.json_layout == "array":
            raise BulkUnsupported("it is one JSON array, and DuckDB gives no line numbers for its elements")
        if fmt == "csv":
            d = self.reader.dialect
            if d.quotechar not in ('"', "'") or not d.doublequote or d.escapechar or d.skipinitialspace:
                raise BulkUnsupported("its CSV dialect (escape characters or spaces after delimiters) is "
                                      "one DuckDB's reader does not share with Python's csv module")
            if self.reader.header_start != 1:
                raise BulkUnsupported("it has blank lines before the header")
        if fmt in ("parquet", "datasets"):
            return self._arrow_columns()
        return None

    def _arrow_columns(self) -> Callable[[], tuple[pa.RecordBatchReader | pa.Table, set[str]]]:
        """Check the mapped columns' types now; return how to open them, renamed t, r, m0, m1, ..."""
        m = self.mapping
        if self.format == "parquet":
            schema = rd.parquet_file(self.reader.path).schema_arrow
        else:
            if getattr(self.reader.dataset, "_indices", None) is not None:
                raise BulkUnsupported("the dataset has an indices mapping (a selection not saved flat)")
            schema = self.reader.dataset.data.table.schema
        picked = [(m.text, "t")] + ([(m.reference, "r")] if m.reference else [])
        picked += [(name, f"m{k}") for k, name in enumerate(m.metadata)]
        for name, new in picked:
            kind = schema.field(name).type
            allowed = TEXT_TYPES if new in ("t", "r") else METADATA_TYPES
            if not any(check(kind) for check in allowed):
                raise BulkUnsupported(f"the column {name!r} holds {kind}, which SQL does not spell as the Python reader does")
        floats = {new for name, new in picked if pa.types.is_floating(schema.field(name).type)}
        out_schema = pa.schema([pa.field(new, schema.field(name).type) for name, new in picked])

        def open_columns() -> tuple[pa.RecordBatchReader | pa.Table, set[str]]:
            if self.format == "datasets":
                table = self.reader.dataset.data.table
                return pa.table([table.column(name) for name, _ in picked], schema=out_schema), floats
            batches = rd.parquet_file(self.reader.path).iter_batches(
                batch_size=ARROW_BATCH_ROWS, columns=list(dict.fromkeys(name for name, _ in picked)))
            renamed = (pa.RecordBatch.from_arrays([b.column(name) for name, _ in picked], schema=out_schema)
                       for b in batches)
            return pa.RecordBatchReader.from_batches(out_schema, renamed), floats

        return open_columns

    @property
    def warnings(self) -> list[str]:
        extra = self._source.warnings() if self._source else []
        return self.reader.warnings + [w for w in extra if w not in self.reader.warnings]

    def progress(self) -> tuple[float, float | None, str]:
        """(done, total, unit) as the Python reader reports it: MB of text files, rows otherwise."""
        if self.format in ("parquet", "datasets"):
            return self._done, self.reader.progress()[1], "rows"
        size = self.reader.path.stat().st_size
        if self._total_rows:
            done = size * self._done / self._total_rows
        elif self._stage is not None:
            done = size * max(0.0, self._stage.query_progress()) / 100 * 0.99
        else:
            done = 0
        return round(done / 1e6, 2), round(size / 1e6, 2), "MB"

    def close(self) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None

    # -- reading ----------------------------------------------------------------------------------
    def items(self, seed_set_id: str, report: Callable[[], None] | None = None) -> Iterator[Item]:
        """Everything DuckDB cannot keep a promise about is raised as BulkUnsupported before the
        first item, so a caller that falls back has written nothing."""
        python_items, ok_rows = self._stage_and_number(report)
        self._total_rows = ok_rows
        yield from python_items
        for table in self._stage.seed_batches(seed_set_id, list(self.mapping.metadata), self.batch_rows):
            self._done += table.num_rows
            yield table

    def _stage_and_number(self, report) -> tuple[Iterator[Item], int]:
        path = self._text_path() if self.format in ("csv", "json", "jsonl") else None
        rejects = self._stage_file(path, report)
        if any(r.error_type == "INVALID ENCODING" for r in rejects) and self._source is None:
            path = self._utf8_copy()  # some lines are not UTF-8: decode them as the Python reader does
            rejects = self._stage_file(path, report)
        if self._arrow_plan is not None:
            self._stage.number_lines(1, [])
            return self._odd_items([]), self._stage.counts()[2]
        extras, reject_items, last_line = self._rejects(path, rejects)
        first = self.reader.header_lines + 1 if self.format == "csv" else 1
        rows, spanned, ok_rows = self._stage.counts()
        blank = last_line - (first - 1) - spanned - sum(span for _, span in extras)
        if blank < 0:
            raise BulkUnsupported("DuckDB and Python count its line breaks differently (carriage returns alone?)")
        if blank:
            blanks = empty_lines(path, last_line + 1)
            if len(blanks) != blank:
                raise BulkUnsupported("it has blank lines both between rows and inside quoted fields, so "
                                      "DuckDB's rows cannot be given their line numbers")
            extras = sorted(extras + [(line, 1) for line in blanks])
        self._stage.number_lines(first, extras)
        return self._odd_items(reject_items), ok_rows

    def _stage_file(self, path: Path | None, report) -> list[Reject]:
        self.close()
        self._stage = SeedStage(self.work_dir / "duckdb", MEMORY_LIMIT)
        try:
            _run_with_progress(lambda: self._stage_now(path), report)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # a file DuckDB cannot read: Python's turn
            raise BulkUnsupported(f"DuckDB could not read it ({str(exc).strip().splitlines()[0][:200]})") from None
        return self._stage.rejects()

    def _stage_now(self, path: Path | None) -> None:
        m = self.mapping
        if self.format == "csv":
            at = {name: i for i, name in enumerate(self.reader.columns)}
            self._stage.stage_csv(path, len(self.reader.columns), self.reader.dialect.delimiter,
                                  self.reader.dialect.quotechar, at[m.text],
                                  at[m.reference] if m.reference else None, [at[c] for c in m.metadata])
        elif self.format in ("json", "jsonl"):
            self._stage.stage_jsonl(path, m.text, m.reference, list(m.metadata))
        else:
            source, floats = self._arrow_plan()
            self._stage.stage_arrow(source, len(m.metadata), bool(m.reference), floats)

    def _text_path(self) -> Path:
        enc = self.reader.text_encoding
        return self.reader.path if enc.codec == "utf-8" else self._utf8_copy()

    def _utf8_copy(self) -> Path:
        """The file rewritten as UTF-8, line for line, by the Python reader's decoder."""
        self._source = rd.TextSource(self.reader.path, self.reader.text_encoding)
        target = self.work_dir / "utf8.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", errors="surrogatepass", newline="") as out:
            for line in self._source.lines():
                out.write(line)
        return target

    # -- the rows SQL left to the Python reader's rules ------------------------------------------------
    def _rejects(self, path: Path, rejects: list[Reject]) -> tuple[list[tuple[int, int]], list[Item], int]:
        """(line, span) of each refused row, the seeds or problems they are, and the last line read."""
        last_line = count_lines(path)
        lines = lines_at(path, [_error_byte(r) for r in rejects])
        extras: dict[int, int] = {}
        items: list[Item] = []
        for reject in rejects:
            raw = reject.raw.lstrip("\r\n")
            inner = raw.rstrip("\r\n").count("\n")
            # DuckDB reports where the error is: the extra or missing column ends the row, so the row
            # starts `inner` lines earlier; a bad quote is where its field starts.
            ends_row = reject.error_type in ("TOO MANY COLUMNS", "MISSING COLUMNS")
            line = max(1, lines[_error_byte(reject)] - (inner if ends_row else 0))
            if self.format == "csv" and rd.never_closed(raw, self.reader.dialect):
                rest = last_line - line + 1
                items.append(RowProblem(line, f"a quoted field starts on this line and is never closed; the rest "
                                              f"of the file ({rest:,} line{'s' * (rest != 1)}) was not read"))
                last_line = line - 1
                break
            if line not in extras:  # DuckDB reports each missing or extra column of a row
                extras[line] = 1 + inner
                items.extend(self._reject_item(line, raw, reject))
        return sorted(extras.items()), items, last_line

    def _reject_item(self, line: int, raw: str, reject: Reject) -> list[Item]:
        if reject.error_type == "LINE SIZE OVER MAXIMUM":
            return [RowProblem(line, f"is longer than {MAX_LINE_BYTES >> 20} MB")]
        if self.format != "csv":
            record = rd.json_line_record(raw.rstrip("\r\n"))
            return [] if record is None else [to_seed(line, record, self.mapping)]
        try:  # Python's csv module reads what DuckDB's strict reader refused (a quote inside a field)
            rows = [row for row in csv.reader(io.StringIO(raw), self.reader.dialect) if any(c.strip() for c in row)]
        except csv.Error as exc:
            return [RowProblem(line, f"not a valid CSV row ({exc})")]
        if len(rows) != 1:
            return [RowProblem(line, f"not a valid CSV row ({reject.message.strip().rstrip('.')})")]
        _, record = next(rd.csv_records(iter([(line, rows[0])]), self.reader.columns))
        return [to_seed(line, record, self.mapping)]

    def _odd_items(self, reject_items: list[Item]) -> Iterator[Item]:
        """Seeds and problems of the rows SQL did not finish, merged with the refused rows by line."""
        return heapq.merge(self._odd_rows(), sorted(reject_items, key=_line_of), key=_line_of)

    def _odd_rows(self) -> Iterator[Item]:
        for line, raw, text, blank_all in self._stage.odd_rows():
            if raw is not None:
                record = rd.json_line_record(raw)
                if record is not None:
                    yield to_seed(line, record, self.mapping)
            elif not blank_all:
                yield to_seed(line, {self.mapping.text: text}, self.mapping)


def _line_of(item: SeedRow | RowProblem) -> int:
    return item.line


def _error_byte(reject: Reject) -> int:
    """A missing column is noticed at the row's end, past its newline: step back onto the row."""
    return max(0, reject.byte_position - 1) if reject.error_type == "MISSING COLUMNS" else reject.byte_position



