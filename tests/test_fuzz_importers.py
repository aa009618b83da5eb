"""Fuzzed seed files: arbitrary bytes, encodings and shapes either import or raise a StudioError.

The property for every generated file (CSV/TSV, JSON Lines, JSON, Parquet, and plain garbage under
each extension): ``preview_file`` and ``import_seeds`` return normally or raise a ``StudioError``
with a message; no other exception escapes; and afterwards the DuckDB file reopens with consistent
counts (every seed belongs to a set, the set counts add up, an import that raised added nothing,
one that returned added exactly what it reported). One STUDIO_HOME serves the whole module, so
the database sees every case one after another, as a long-lived studio would.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.fixtures.fuzz  # noqa: F401  (the hypothesis profiles)
from pipelines.generate.seeds_io import ColumnMapping
from storage.db import get_database
from core.errors import StudioError
from studio.services import seeds as seeds_svc

SUFFIXES = [".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252", "shift_jis", "koi8-r"]
COLUMN = st.sampled_from(["text", "prompt", "", " ", "missing"]) | st.text(max_size=8)
SEED_SET_NAME = st.none() | st.text(max_size=40) | st.just("x" * 201)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["text", "prompt", "x", ""])
                                                                | st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(folder / "home"))
        yield folder / "home"
        get_database().close()


def _counts() -> tuple[int, int]:
    """Seeds, and seeds that are broken (no set, or no text): one query, so each case stays cheap."""
    with get_database().session() as cur:
        return cur.execute("SELECT count(*), count(*) FILTER (WHERE t.id IS NULL OR s.text IS NULL) "
                           "FROM seeds s LEFT JOIN seed_sets t ON s.seed_set_id = t.id").fetchone()


def _check_database(home: Path, before: int, added: int | None) -> None:
    seeds, broken = _counts()
    assert broken == 0
    assert seeds == before + (added or 0), "an import added other than what it reported"
    assert sum(s.seeds for s in seeds_svc.list_seed_sets()) == seeds
    get_database().close()  # the next case reopens the file: no half-written state may stop it


def _import_case(home: Path, data: bytes, suffix: str, column: str, name: str | None) -> None:
    """Write the file, preview it, import it; only StudioErrors may come out."""
    home.mkdir(parents=True, exist_ok=True)
    before = _counts()[0]
    added = None
    with tempfile.TemporaryDirectory(dir=home.parent) as tmp:
        path = Path(tmp) / f"seeds{suffix}"
        path.write_bytes(data)
        try:
            preview = seeds_svc.preview_file(path, rows=5)
            assert isinstance(preview.columns, list)
        except StudioError as exc:
            assert str(exc).strip()
        try:
            summary = seeds_svc.import_seeds(path, ColumnMapping(text=column), name=name)
            added = summary.imported
            assert summary.imported + summary.duplicates + summary.skipped > 0
            assert all(p.line >= 1 and p.reason for p in summary.problems)
        except StudioError as exc:
            assert str(exc).strip() and exc.message
    _check_database(home, before, added)


@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES), column=COLUMN, name=SEED_SET_NAME)
def test_arbitrary_bytes(home, data, suffix, column, name):
    _import_case(home, data, suffix, column, name)


@st.composite
def csv_files(draw) -> tuple[bytes, str, str]:
    header = draw(st.lists(st.text(max_size=8), min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(st.text(max_size=30), max_size=5), max_size=8))  # ragged on purpose
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):
        text = text.replace("\r\n", "\n")
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if draw(st.booleans()) and data:  # cut the file somewhere, as an interrupted upload would
        data = data[: draw(st.integers(0, len(data)))]
    column = draw(st.sampled_from(header) | COLUMN)
    return data, draw(st.sampled_from([".csv", ".tsv"])), column


@given(case=csv_files(), name=SEED_SET_NAME)
def test_csv_shapes_and_encodings(home, case, name):
    data, suffix, column = case
    _import_case(home, data, suffix, column, name)


@st.composite
def json_files(draw) -> tuple[bytes, str, str]:
    values = draw(st.lists(JSON_VALUES, max_size=8))
    suffix = draw(st.sampled_from([".jsonl", ".json", ".ndjson"]))
    if draw(st.booleans()):
        lines = [json.dumps(v, ensure_ascii=draw(st.booleans())) for v in values]
        if draw(st.booleans()):  # garbage lines between good ones
            lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))
        text = "\n".join(lines)
    else:
        text = json.dumps(draw(st.sampled_from([values, values[0] if values else {}, {"data": values}])),
                          indent=draw(st.sampled_from([None, 2])))
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return data, suffix, draw(st.just("text") | COLUMN)


@given(case=json_files(), name=SEED_SET_NAME)
def test_json_and_jsonl_shapes(home, case, name):
    data, suffix, column = case
    _import_case(home, data, suffix, column, name)


ARROW_COLUMNS = {
    "str": st.lists(st.none() | st.text(max_size=20), min_size=1, max_size=6).map(lambda v: pa.array(v, pa.string())),
    "int": st.lists(st.none() | st.integers(-2**63, 2**63 - 1), min_size=1, max_size=6).map(lambda v: pa.array(v, pa.int64())),
    "float": st.lists(st.none() | st.floats(), min_size=1, max_size=6).map(lambda v: pa.array(v, pa.float64())),
    "bool": st.lists(st.none() | st.booleans(), min_size=1, max_size=6).map(lambda v: pa.array(v, pa.bool_())),
    "binary": st.lists(st.none() | st.binary(max_size=10), min_size=1, max_size=6).map(lambda v: pa.array(v, pa.binary())),
    "list": st.lists(st.none() | st.lists(st.text(max_size=5), max_size=3), min_size=1, max_size=6).map(
        lambda v: pa.array(v, pa.list_(pa.string()))),
    "struct": st.lists(st.none() | st.fixed_dictionaries({"a": st.text(max_size=5)}), min_size=1, max_size=6).map(
        lambda v: pa.array(v, pa.struct([("a", pa.string())]))),
}


DAMAGE = ["none", "cut", "flip"]


@st.composite
def parquet_files(draw) -> tuple[bytes, str, str]:
    names = draw(st.lists(st.sampled_from(["text", "prompt", "meta"]) | st.text(min_size=1, max_size=6),
                          min_size=1, max_size=3, unique=True))
    arrays = [draw(st.sampled_from(sorted(ARROW_COLUMNS)).flatmap(ARROW_COLUMNS.get)) for _ in names]
    rows = min(len(a) for a in arrays)
    table = pa.table({n: a.slice(0, rows) for n, a in zip(names, arrays)})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=draw(st.integers(1, 4)))
    data = sink.getvalue()
    damage = draw(st.sampled_from(DAMAGE))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data, ".parquet", draw(st.sampled_from(names) | COLUMN)


@given(case=parquet_files(), name=SEED_SET_NAME)
def test_parquet_types_and_damage(home, case, name):
    data, suffix, column = case
    _import_case(home, data, suffix, column, name)


def _damaged_page_parquet() -> bytes:
    """A valid file with one byte of its first data page header changed (footer intact)."""
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": ["a seed", "another seed"]}), sink)
    data = bytearray(sink.getvalue())
    data[5] ^= 0xFF  # right after the 4-byte magic: the first page header
    return bytes(data)


def test_a_damaged_parquet_page_is_bad_input(home):
    _import_case(home, _damaged_page_parquet(), ".parquet", "text", None)


@given(block=st.text(max_size=300), name=SEED_SET_NAME)
def test_typed_seeds(home, block, name):
    """The page's textarea: any text becomes seeds or a BadInput, never a crash."""
    home.mkdir(parents=True, exist_ok=True)
    before = _counts()[0]
    added = None
    try:
        summary = seeds_svc.add_typed_seeds(block, name=name)
        added = summary.imported
        assert summary.imported + summary.duplicates == len(seeds_svc.split_typed_seeds(block)) - summary.skipped
    except StudioError as exc:
        assert exc.message
    _check_database(home, before, added)
