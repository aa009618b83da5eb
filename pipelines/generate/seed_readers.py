"""Record sources for seed files: encoding detection and one streaming reader per format.

Why a module of its own: ``seeds_io`` maps records to seeds; this module only turns bytes into
``(line, record)`` pairs, where a record is a dict or a ``BadRecord`` saying why the line is not
usable. Every reader streams: the csv module over decoded lines, JSON Lines line by line, a JSON
array through an incremental decoder, Parquet by record batches, a ``datasets`` folder through its
memory-mapped Arrow files. Nothing here reads a whole file into memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from core.errors import BadInput

HEAD_BYTES = 64 * 1024          # what encoding and dialect detection look at
JSON_CHUNK_CHARS = 1 << 20      # a JSON array is decoded this many characters at a time
MAX_RECORD_CHARS = 256 << 20    # one JSON element larger than this is treated as broken
BATCH_ROWS = 1024               # Parquet / datasets rows per batch
DELIMITERS = (",", ";", "\t", "|")

# A single field may be megabytes long (a whole document as one seed). The csv module's default
# limit is 128 KiB; the limit is process-wide, so raise it once, to the largest value C accepts.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class BadRecord:
    """A line that could not become a record; the import goes on and reports it."""

    reason: str


@dataclass(frozen=True)
class Encoding:
    codec: str               # name Python decodes each line with (no BOM handling needed)
    label: str               # what the user is told
    bom: int = 0             # bytes of byte-order mark to skip
    unit: int = 1            # bytes per code unit: lines of UTF-16/32 end at an aligned "\n" unit
    note: str | None = None  # a warning to show


_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE mark
    (codecs.BOM_UTF32_LE, Encoding("utf-32-le", "UTF-32 LE (with BOM)", 4, 4)),
    (codecs.BOM_UTF32_BE, Encoding("utf-32-be", "UTF-32 BE (with BOM)", 4, 4)),
    (codecs.BOM_UTF8, Encoding("utf-8", "UTF-8 with BOM", 3)),
    (codecs.BOM_UTF16_LE, Encoding("utf-16-le", "UTF-16 LE (with BOM)", 2, 2)),
    (codecs.BOM_UTF16_BE, Encoding("utf-16-be", "UTF-16 BE (with BOM)", 2, 2)),
)
CP1252_NOTE = ("The file is not valid UTF-8; it was read as Windows-1252 (Latin-1). "
               "If accented letters look wrong, save the file as UTF-8 and import it again.")


def detect_encoding(head: bytes, complete: bool) -> Encoding:
    """UTF-8/16/32 by byte-order mark, UTF-16 without BOM by its zero bytes, then UTF-8, then cp1252."""
    for bom, enc in _BOMS:
        if head.startswith(bom):
            return Encoding(enc.codec, enc.label, enc.bom, enc.unit, f"The file was read as {enc.label}.")
    if len(head) >= 4 and b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > len(head) // 4 and min(even, odd) <= max(even, odd) // 10:
            label, codec = ("UTF-16 LE", "utf-16-le") if odd > even else ("UTF-16 BE", "utf-16-be")
            return Encoding(codec, label, 0, 2, f"The file has no byte-order mark; it looks like {label} and was read so.")
        raise BadInput("The file looks binary (it contains zero bytes), not like text.",
                       hint="If it is a Parquet file, name it .parquet or pass the format (--format parquet).")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return Encoding("utf-8", "UTF-8")
    except UnicodeDecodeError:
        pass
    if _mostly_utf8(head):  # a UTF-8 file with a few stray Latin-1 lines: those lines fall back alone
        return Encoding("utf-8", "UTF-8")
    return Encoding("cp1252", "Windows-1252 (Latin-1)", note=CP1252_NOTE)


def _mostly_utf8(head: bytes) -> bool:
    """True when some line with non-ASCII bytes decodes as UTF-8 (cp1252 text almost never does)."""
    for line in head.split(b"\n")[:-1] or [head]:
        if not line.isascii():
            try:
                line.decode("utf-8")
                return True
            except UnicodeDecodeError:
                continue
    return False


def _decode_cp1252(raw: bytes) -> str:
    """cp1252 leaves five bytes undefined; those lines fall back to Latin-1, which decodes anything."""
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class TextSource:
    """Decoded lines of a text file (line endings kept, as the csv module expects).

    Each line is decoded on its own, so one undecodable line loses nothing else: in a UTF-8 file
    (a 1 GB export glued from two sources) it is read as cp1252; in UTF-16/32 its bad bytes become
    U+FFFD. Either way its number is reported in ``warnings()``.
    """

    path: Path
    encoding: Encoding
    fallback_lines: list[int] = field(default_factory=list)
    _raw: io.BufferedReader | None = None

    def lines(self) -> Iterator[str]:
        with open(self.path, "rb") as raw:
            self._raw = raw
            raw.seek(self.encoding.bom)
            chunks = raw if self.encoding.unit == 1 else self._wide_chunks(raw)
            for number, chunk in enumerate(chunks, start=1):
                yield self._decode(number, chunk)

    def _decode(self, number: int, chunk: bytes) -> str:
        if self.encoding.codec == "cp1252":
            return _decode_cp1252(chunk)
        try:
            return chunk.decode(self.encoding.codec)
        except UnicodeDecodeError:
            self.fallback_lines.append(number)
            if self.encoding.codec == "utf-8":
                return _decode_cp1252(chunk)
            return chunk.decode(self.encoding.codec, errors="replace")

    def _wide_chunks(self, raw: io.BufferedReader) -> Iterator[bytes]:
        """Raw lines of UTF-16/32: split at a newline code unit on a code-unit boundary (a
        surrogate pair never contains one, so no character is cut)."""
        unit, newline = self.encoding.unit, "\n".encode(self.encoding.codec)
        buf, scanned = bytearray(), 0
        while block := raw.read(1 << 16):
            buf += block
            start = 0
            at = buf.find(newline, scanned)
            while at != -1:
                if (at - start) % unit:  # a "\n" byte pattern across two code units
                    at = buf.find(newline, at + 1)
                    continue
                yield bytes(buf[start:at + unit])
                start = at + unit
                at = buf.find(newline, start)
            del buf[:start]
            scanned = max(0, len(buf) - unit + 1)
            scanned -= scanned % unit
        if buf:
            yield bytes(buf)

    def bytes_read(self) -> int:
        try:
            return self._raw.tell() if self._raw is not None and not self._raw.closed else 0
        except (OSError, ValueError):
            return 0

    def warnings(self) -> list[str]:
        if not self.fallback_lines:
            return []
        first = ", ".join(str(n) for n in self.fallback_lines[:5])
        more = f" and {len(self.fallback_lines) - 5} more" if len(self.fallback_lines) > 5 else ""
        how = ("they were read as Windows-1252 (Latin-1)" if self.encoding.codec == "utf-8"
               else "their undecodable bytes became \ufffd")
        return [f"{len(self.fallback_lines)} line(s) were not valid {self.encoding.label} (line {first}{more}); {how}."]


# -- CSV ---------------------------------------------------------------------------------------
def sniff_dialect(sample_lines: list[str]) -> type[csv.Dialect] | csv.Dialect:
    """Comma, semicolon, tab or pipe, judged from the header line first (it is rarely quoted)."""
    header = sample_lines[0] if sample_lines else ""
    present = [d for d in DELIMITERS if d in header]
    if len(present) <= 1:
        delimiter = present[0] if present else ","
    else:
        try:
            return csv.Sniffer().sniff("".join(sample_lines), delimiters="".join(present))
        except csv.Error:
            delimiter = max(present, key=header.count)

    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    return Dialect


def header_names(row: list[str]) -> tuple[list[str], list[str]]:
    """Column names as the header gives them; blank names and repeats get a usable name."""
    names, notes, seen = [], [], set()
    for index, raw in enumerate(row, start=1):
        name = raw.strip() or f"column_{index}"
        if not raw.strip():
            notes.append(f"Column {index} has no name in the header; it is called {name!r}.")
        if name in seen:
            renamed = f"{name}_{index}"
            notes.append(f"The header names {name!r} twice; column {index} is called {renamed!r}.")
            name = renamed
        seen.add(name)
        names.append(name)
    return names, notes


class _Tap:
    """The lines a csv reader takes, kept until the record they make is read; ``ended`` once the
    reader asked past the last line (so the record it returns then ran into the end of the file)."""

    def __init__(self, lines: Iterator[str]):
        self.lines, self.taken, self.ended = iter(lines), [], False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        try:
            line = next(self.lines)
        except StopIteration:
            self.ended = True
            raise
        self.taken.append(line)
        return line

    def take(self) -> str:
        raw, self.taken = "".join(self.taken), []
        return raw


def never_closed(raw: str, dialect) -> bool:
    """True when the record's quoted field runs to the end of the file (Python's strict csv says so)."""
    try:
        for _ in csv.reader(io.StringIO(raw), dialect, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def csv_rows(lines: Iterator[str], dialect) -> Iterator[tuple[int, list[str] | BadRecord]]:
    """Non-blank CSV records with the line each starts on (a quoted field may span lines). A quote
    that is never closed would swallow the rest of the file into one record: that record is a
    BadRecord that says so."""
    tap = _Tap(lines)
    reader = csv.reader(tap, dialect)
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last_line = reader.line_num
            tap.take()
            yield start, BadRecord(f"not a valid CSV row ({exc})")
            continue
        last_line = reader.line_num
        raw = tap.take()
        if tap.ended and never_closed(raw, dialect):
            rest = last_line - start + 1
            yield start, BadRecord(f"a quoted field starts on this line and is never closed; the rest of the file "
                                   f"({rest:,} line{'s' * (rest != 1)}) was not read")
            return
        if any(cell.strip() for cell in row):
            yield start, row


def csv_records(rows: Iterator[tuple[int, list[str] | BadRecord]], names: list[str]) -> Iterator[tuple[int, dict | BadRecord]]:
    """Rows after the header as dicts; a row with more (non-empty) fields than the header is flagged."""
    for start, row in rows:
        if isinstance(row, BadRecord):
            yield start, row
        elif len(row) > len(names) and any(v.strip() for v in row[len(names):]):
            yield start, BadRecord(f"has {len(row)} fields but the header has {len(names)}")
        else:
            yield start, {name: (row[i] if i < len(row) else None) for i, name in enumerate(names)}


# -- JSON --------------------------------------------------------------------------------------
def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return {list: "a list", str: "a string", int: "a number", float: "a number", dict: "an object"}.get(
        type(value), type(value).__name__)


def json_line_record(text: str) -> dict | BadRecord | None:
    """One JSON Lines line: a dict, a BadRecord saying why not, or None for a blank line."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadRecord(f"not valid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return BadRecord("not usable JSON (nested too deeply)")
    if not isinstance(value, dict):
        return BadRecord(f"is {kind_of(value)}, not a JSON object")
    return value


def jsonl_records(lines: Iterator[str]) -> Iterator[tuple[int, dict | BadRecord]]:
    for number, text in enumerate(lines, start=1):
        record = json_line_record(text)
        if record is not None:
            yield number, record


def json_array_records(read: Callable[[int], str]) -> Iterator[tuple[int, dict | BadRecord]]:
    """Elements of a top-level JSON array, decoded incrementally (a 1 GB array in constant memory).

    A syntax error inside the array cannot be skipped reliably, so it ends the read with one
    BadRecord; the elements before it are kept.
    """
    decoder = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        if pos > JSON_CHUNK_CHARS:
            buf, pos = buf[pos:], 0
        chunk = read(max(JSON_CHUNK_CHARS, len(buf) - pos))
        eof = not chunk
        buf += chunk
        return not eof

    def skip_space() -> str:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or not more():
                return buf[pos] if pos < len(buf) else ""

    if skip_space() != "[":
        yield line, BadRecord("a JSON file must hold a list of objects ([{...}, {...}])")
        return
    pos += 1
    if skip_space() == "]":
        return
    while True:
        skip_space()
        start_line = line
        try:
            value, end = decoder.raw_decode(buf, pos)
            if end >= len(buf) and more():  # a number at the buffer's edge may continue
                continue
        except json.JSONDecodeError as exc:
            # Cut by the buffer's end (mid-string, mid-keyword, mid-number), not broken: read on.
            truncated = exc.pos >= len(buf) - 16 or exc.msg.startswith("Unterminated string")
            if truncated and len(buf) - pos < MAX_RECORD_CHARS and more():
                continue
            yield start_line, BadRecord(f"not valid JSON ({exc.msg}); the rest of the file was not read")
            return
        line += buf.count("\n", pos, end)
        pos = end
        yield start_line, value if isinstance(value, dict) else BadRecord(f"is {kind_of(value)}, not a JSON object")
        after = skip_space()
        if after == "]":
            return
        if after != ",":
            yield line, BadRecord("not valid JSON (expected ',' or ']' between elements); the rest of the file was not read")
            return
        pos += 1


def json_safe(value: Any) -> Any:
    """Metadata values as JSON can hold them (Arrow gives dates, bytes, decimals; floats may be NaN)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# -- Arrow-backed formats ------------------------------------------------------------------------
def parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:  # buffered column reads: a big row group is not loaded whole
        return pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise BadInput(f"{path.name} is not a readable Parquet file ({str(exc).splitlines()[0]}).",
                       hint="Check the file, or pass the right format (--format csv|jsonl|json).") from None


def parquet_records(path: Path, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, dict]]:
    """Rows in order; a damaged page (pyarrow's OSError / ArrowInvalid mid-file) is a BadInput that
    says how far the file was readable, never a crash."""
    number = 0
    batches = parquet_file(path).iter_batches(batch_size=batch_rows, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # pyarrow: OSError (bad page header), ArrowInvalid, ArrowException
            raise BadInput(f"{path.name} is damaged after row {number} ({str(exc).splitlines()[0]}).",
                           hint="Re-export the Parquet file, or import it as CSV/JSONL.") from None
        for row in batch.to_pylist():
            number += 1
            yield number, row


def load_dataset_folder(path: Path) -> tuple[Any, list[str]]:
    """A folder written by ``save_to_disk``; a DatasetDict gives its 'train' split (or its first)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError / its own errors for a bad folder
        raise BadInput(f"{path} could not be loaded as a datasets folder ({str(exc).splitlines()[0]}).",
                       hint="Use a folder written by Dataset.save_to_disk.") from None
    notes = []
    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise BadInput(f"{path} holds no splits.", hint="Save a dataset with at least one split.")
        split = "train" if "train" in loaded else next(iter(loaded))
        notes.append(f"The folder holds the splits {', '.join(loaded)}; the {split!r} split was read.")
        loaded = loaded[split]
    return loaded, notes


def dataset_records(dataset, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, dict]]:
    number = 0
    for batch in dataset.select_columns(columns).iter(batch_size=batch_rows):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            number += 1
            yield number, dict(zip(keys, values))
