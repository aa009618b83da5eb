"""Seed import through DuckDB: the Python reader's promises (lines, encodings, bad rows, dedup),
the new report of a quote that is never closed, and the fallback said in the summary."""

from __future__ import annotations

import codecs
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.generate.seeds_io import ColumnMapping, RowProblem, SeedRow, iter_seeds
from storage import seeds as seed_store
from studio.services import seeds

CSV_MAP = ColumnMapping("text", "reference", ("category",))


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def stored(summary) -> list[tuple]:
    return [(s.line, s.text, s.reference, s.metadata) for s in seeds.list_seeds(summary.seed_set_id, limit=1000)]


def python_reader(path: Path, mapping: ColumnMapping) -> tuple[list[tuple], list[RowProblem]]:
    rows = list(iter_seeds(path, mapping))
    return ([(r.line, r.text, r.reference, r.metadata) for r in rows if isinstance(r, SeedRow)],
            [r for r in rows if isinstance(r, RowProblem)])


def test_duckdb_gives_every_row_the_python_readers_line_and_reports_bad_rows(db, tmp_path):
    """Quoted newlines, blank lines, CRLF, a row with too many fields, trailing empty fields, a
    short row, blank rows: the same seeds on the same lines as the Python reader."""
    path = write(tmp_path / "mixed.csv",
                 'text,reference,category\r\nhello,world,a\r\n\r\n"multi\r\nline",r,b\r\nbad,too,many,fields\r\n'
                 '\r\nafterblank,x,y\r\n,,\r\n  ,  ,  \r\nd,e,,\r\nf\r\n,orphan,z\r\nlast,z,e\r\n\r\n')
    summary = seeds.import_seeds(path, CSV_MAP)
    expected, problems = python_reader(path, CSV_MAP)
    assert summary.reader == "duckdb" and not any("Python reader" in w for w in summary.warnings)
    assert stored(summary) == expected and len(expected) == 6
    assert summary.problems == problems == [RowProblem(6, "has 4 fields but the header has 3"),
                                            RowProblem(13, "the text column 'text' is empty")]


def test_an_unterminated_quote_is_reported_not_merged_into_one_row(db, tmp_path):
    path = write(tmp_path / "quote.csv", 'text,reference,category\nhello,world,a\n"never closed,x,c\nnext,y,d\nlast,z,e\n')
    summary = seeds.import_seeds(path, CSV_MAP)
    assert (summary.reader, summary.imported, summary.skipped) == ("duckdb", 1, 1)
    assert stored(summary) == [(2, "hello", "world", {"category": "a"})]
    assert summary.problems == [RowProblem(3, "a quoted field starts on this line and is never closed; "
                                              "the rest of the file (3 lines) was not read")]


def test_broken_jsonl_lines_are_reported_with_their_line_numbers(db, tmp_path):
    lines = ['{"q": "one", "a": "1"}', "", "{not json", "[1, 2]", "   ", '{"q": ""}', '{"a": "no text"}',
             '{"q": 7, "a": 8}', '{"q": "\\ud800 lone"}', '{"q": "nan", "n": NaN}', "", '{"q": "last"}']
    path = write(tmp_path / "broken.jsonl", "\n".join(lines) + "\n")
    mapping = ColumnMapping("q", "a", ("n",))
    summary = seeds.import_seeds(path, mapping)
    expected, problems = python_reader(path, mapping)
    assert summary.reader == "duckdb"
    assert stored(summary) == expected == [(1, "one", "1", {"n": None}), (8, "7", "8", {"n": None}),
                                           (10, "nan", None, {"n": None}), (12, "last", None, {"n": None})]
    assert [(p.line, p.reason.split(" (")[0]) for p in summary.problems] == [
        (3, "not valid JSON"), (4, "is a list, not a JSON object"), (6, "the text column 'q' is empty"),
        (7, "has no 'q' field"), (9, "contains text that cannot be stored")]
    assert summary.problems == problems


TEXT = "text,reference\nCafé crème,über\n\"deux\nlignes\",ça\n"


def test_encodings_go_through_duckdb_with_the_python_readers_labels_and_lines(db, tmp_path):
    cases = {"utf16.csv": (TEXT.encode("utf-16"), "UTF-16 LE (with BOM)"),
             "utf16be.csv": (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "UTF-16 BE (with BOM)"),
             "bom.csv": (codecs.BOM_UTF8 + TEXT.encode(), "UTF-8 with BOM"),
             "latin1.csv": (TEXT.encode("cp1252"), "Windows-1252 (Latin-1)")}
    for name, (raw, label) in cases.items():
        summary = seeds.import_seeds(write(tmp_path / name, raw), ColumnMapping("text", "reference"))
        assert (summary.reader, summary.encoding) == ("duckdb", label), name
        assert stored(summary) == [(2, "Café crème", "über", {}), (3, "deux\nlignes", "ça", {})], name
    mixed = write(tmp_path / "mixed.csv", b"text,n\nok \xc3\xa9,1\ncaf\xe9,2\n\"x\ny\",3\n")
    summary = seeds.import_seeds(mixed, ColumnMapping("text", metadata=("n",)))
    assert summary.reader == "duckdb" and summary.encoding == "UTF-8"
    assert [(line, text) for line, text, _, _ in stored(summary)] == [(2, "ok é"), (3, "café"), (4, "x\ny")]
    assert any("1 line(s) were not valid UTF-8 (line 3)" in w for w in summary.warnings)


def test_ids_and_hashes_equal_the_python_readers_so_reimports_add_nothing(db, tmp_path):
    path = write(tmp_path / "same.jsonl", "\n".join(json.dumps(r) for r in [
        {"q": 'say "hi"\n\ttab \x0b', "a": "ok", "m": "x"}, {"q": "two", "a": None, "m": 5}, {"q": "🙂", "m": True}]))
    mapping = ColumnMapping("q", "a", ("m",))
    first = seeds.import_seeds(path, mapping)
    again = seeds.import_seeds(path, mapping)
    assert (first.reader, first.imported, again.imported, again.duplicates) == ("duckdb", 3, 0, 3)
    for seed in seeds.list_seeds(first.seed_set_id):
        hashed = seed_store.seed_content_hash(seed.text, seed.reference, seed.metadata)
        assert (seed.content_hash, seed.id) == (hashed, seed_store.seed_id(first.seed_set_id, seed.line, hashed))


def test_parquet_and_datasets_folders_go_through_duckdb(db, tmp_path):
    import datasets

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"q": ["a", None, "c"], "score": [1.5, float("nan"), 2.0], "n": [1, 2, 3]}), path,
                   row_group_size=2)
    summary = seeds.import_seeds(path, ColumnMapping("q", metadata=("score", "n")))
    assert summary.reader == "duckdb" and summary.problems == [RowProblem(2, "the text column 'q' is empty")]
    assert stored(summary) == [(1, "a", None, {"score": 1.5, "n": 1}), (3, "c", None, {"score": 2.0, "n": 3})]
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"q": ["x", "y"], "id": [7, 8]}).save_to_disk(str(folder))
    summary = seeds.import_seeds(folder, ColumnMapping("q", metadata=("id",)))
    assert summary.reader == "duckdb" and stored(summary) == [(1, "x", None, {"id": 7}), (2, "y", None, {"id": 8})]


def test_files_duckdb_cannot_read_faithfully_go_to_the_python_reader_and_the_summary_says_so(db, tmp_path):
    array = write(tmp_path / "arr.json", json.dumps([{"q": "a"}, {"q": "b"}], indent=2))
    summary = seeds.import_seeds(array, ColumnMapping("q"))
    assert (summary.reader, summary.imported) == ("python", 2)
    assert "Read by the Python reader, not DuckDB: it is one JSON array" in " ".join(summary.warnings)
    when = tmp_path / "when.parquet"
    pq.write_table(pa.table({"q": ["a"], "when": [datetime(2024, 1, 2, 3, 4)]}), when)
    summary = seeds.import_seeds(when, ColumnMapping("q", metadata=("when",)))
    assert summary.reader == "python" and stored(summary) == [(1, "a", None, {"when": "2024-01-02T03:04:00"})]
    assert any("the column 'when' holds timestamp" in w for w in summary.warnings)
