"""Training data snapshots: immutable, content-hashed copies of the rows a run trains on.

Why a copy: pairs keep changing after a run (reviews land, a generation resumes, a pair is flagged),
but a run must say exactly what it learned from. ``create_snapshot`` filters the pairs, applies the
final human labels, splits train/eval with a seed and stores each row's exact TRL payload (the
conversational row ``pipelines/generate/export.py``'s ``to_trl`` makes) in ``snapshot_records``.
The snapshot id is a hash of the ordered record hashes and the split settings, so creating the same
snapshot twice returns the first one. The pre-training checks (counts after each filter, chosen ==
rejected, length bias, duplicates, rows over the training max length) are stored with it.

Filtering and checks are plain Python over rows read with named SQL; only this module writes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from storage.db import Database
from storage.ids import content_hash, stable_id
from storage.snapshot_spec import LABEL_RULES, LENGTH_UNITS, RECORD_KINDS, SnapshotSpec  # noqa: F401 (re-exported)
from storage.snapshot_rows import (TokenCounter, Row, Steps, build_checks, is_human, row_length, split_rows, to_rows,
                                   apply_label, kto_examples)
from core.errors import BadInput, NotFound

SPLITS = ("train", "eval")

SELECT_PREFERENCE = """
SELECT id, run_id, instruction_id, prompt, chosen, rejected, chosen_response_id, rejected_response_id,
       confidence, flagged, human_reviewed
FROM preference_pairs WHERE ($runs IS NULL OR list_contains($runs, run_id)) ORDER BY id
"""
SELECT_SFT = """
SELECT id, run_id, instruction_id, prompt, completion, response_id, confidence, flagged, human_reviewed
FROM sft_pairs WHERE ($runs IS NULL OR list_contains($runs, run_id)) ORDER BY id
"""
# Lineage: snapshot rows -> their pairs (either table) -> generation runs, counted per run and split.
SELECT_LINEAGE = """
WITH src AS (
    SELECT DISTINCT split, coalesce(json_extract_string(payload, '$._source.pair_id'), record_id) AS pair_id
    FROM snapshot_records WHERE snapshot_id = ?),
pairs AS (SELECT id, run_id, 'preference' AS pair_kind FROM preference_pairs
          UNION ALL SELECT id, run_id, 'sft' AS pair_kind FROM sft_pairs)
SELECT p.run_id, g.name AS run_name, p.pair_kind, src.split, count(*) AS pairs
FROM src LEFT JOIN pairs p ON p.id = src.pair_id LEFT JOIN generation_runs g ON g.id = p.run_id
GROUP BY ALL ORDER BY p.run_id NULLS LAST, p.pair_kind, src.split DESC
"""
SNAPSHOT_COLUMNS = ("id, name, record_kind, content_hash, filters, split_seed, eval_fraction, n_train, n_eval, "
                    "checks, created_at")
SELECT_SNAPSHOT = f"SELECT {SNAPSHOT_COLUMNS} FROM dataset_snapshots WHERE id = ?"
SELECT_SNAPSHOT_BY_HASH = f"SELECT {SNAPSHOT_COLUMNS} FROM dataset_snapshots WHERE content_hash = ?"
SELECT_SNAPSHOTS = f"SELECT {SNAPSHOT_COLUMNS} FROM dataset_snapshots ORDER BY created_at DESC, id"
INSERT_SNAPSHOT = f"INSERT INTO dataset_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_RECORDS = ("INSERT INTO snapshot_records (snapshot_id, record_id, split, position, content_hash, payload) "
                  "SELECT snapshot_id, record_id, split, position, content_hash, payload FROM incoming_records")
SELECT_ROWS = ("SELECT payload FROM snapshot_records WHERE snapshot_id = ? AND (? IS NULL OR split = ?) "
               "ORDER BY split DESC, position")
SELECT_RECORD_SOURCES = ("SELECT coalesce(json_extract_string(payload, '$._source.pair_id'), record_id), split "
                         "FROM snapshot_records WHERE snapshot_id = ? ORDER BY split DESC, position")


@dataclass
class SnapshotSummary:
    id: str
    name: str | None
    record_kind: str
    content_hash: str
    filters: dict
    split_seed: int
    eval_fraction: float
    n_train: int
    n_eval: int
    counts: list[dict] = field(default_factory=list)   # [{"step", "remaining", "removed"}] after each filter
    checks: list[dict] = field(default_factory=list)   # [{"name", "severity", "message", ...}]
    created_at: datetime | None = None
    created: bool = False                               # False: the same content existed already

    @property
    def blocking(self) -> list[dict]:
        return [c for c in self.checks if c["severity"] == "blocking"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out




# -- reading candidates ------------------------------------------------------------------------
def _dicts(cur, sql: str, params) -> list[dict]:
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _reviewed_labels(db: Database, record_kind: str) -> dict[str, dict]:
    """record_id -> final label (storage.review's FinalLabel as a dict: source, reviewed, label, chosen,
    rejected, corrected, usable, n_reviews, agreement)."""
    from storage.review import reviewed_labels

    return {rid: label.to_dict() for rid, label in reviewed_labels(db, record_kind).items()}


def _load_pairs(db: Database, spec: SnapshotSpec, kind: str) -> list[dict]:
    """Candidate pairs of one table with their final labels resolved (None = tie / both bad; for a
    KTO snapshot, None = no good or bad example, see ``kto_examples``)."""
    runs = list(spec.generation_run_ids) or None
    with db.session() as cur:
        rows = _dicts(cur, SELECT_PREFERENCE if kind == "preference" else SELECT_SFT, {"runs": runs})
    labels = _reviewed_labels(db, kind) if rows else {}
    out = []
    for row in rows:
        review = labels.get(row["id"]) if is_human(labels.get(row["id"])) else None
        label = review if spec.label_rule == "prefer_human" else None
        if spec.record_kind == "kto":
            examples = kto_examples(kind, row, label)
            resolved = {**row, "kto": examples} if examples else None
        else:
            resolved = apply_label(kind, row, label)
        out.append({"row": resolved, "id": row["id"], "confidence": row["confidence"],
                    "human": review is not None or bool(row["human_reviewed"]), "flagged": bool(row["flagged"]),
                    "agreement": review.get("agreement") if review else None})
    return out


def _same_texts(row: dict) -> bool:
    return row["chosen"].strip() == row["rejected"].strip()


def _contradicts(row: dict) -> bool:
    """A KTO pair that labels one text both good and bad."""
    labels: dict[str, set[bool]] = {}
    for _, text, good in row["kto"]:
        labels.setdefault(text.strip(), set()).add(good)
    return any(len(seen) > 1 for seen in labels.values())


def _filter(db: Database, spec: SnapshotSpec, count_tokens: TokenCounter | None) -> tuple[list[Row], Steps, dict]:
    """Every filter in order; returns the kept rows, the counts and what the checks need."""
    tables = {"preference": ("preference",), "kto": ("preference", "sft"), "sft": ("sft",),
              "prompts": ("preference", "sft")}[spec.record_kind]
    steps, found = Steps(), {}
    pairs = steps.start("in the selected generation runs" if spec.generation_run_ids else "all pairs",
                        [p for table in tables for p in _load_pairs(db, spec, table)])
    if spec.only_human_reviewed:
        pairs = steps.keep("human-reviewed", pairs, lambda p: p["human"])
    if spec.record_kind == "kto":
        pairs = steps.keep("with a good or bad example (SFT pairs: reviewed by a person; not tie or undecided)",
                           pairs, lambda p: p["row"] is not None)
    elif spec.label_rule == "prefer_human":
        pairs = steps.keep("usable after review (not tie, both bad or bad)", pairs, lambda p: p["row"] is not None)
    if spec.min_judge_confidence is not None:
        pairs = steps.keep(f"judge confidence >= {spec.min_judge_confidence}", pairs,
                           lambda p: p["confidence"] is not None and p["confidence"] >= spec.min_judge_confidence)
    if spec.min_reviewer_agreement is not None:
        pairs = steps.keep(f"reviewer agreement >= {spec.min_reviewer_agreement}", pairs,
                           lambda p: p["agreement"] is None or p["agreement"] >= spec.min_reviewer_agreement)
    if spec.exclude_flagged:
        pairs = steps.keep("not flagged", pairs, lambda p: not p["flagged"])
    if spec.record_kind in ("preference", "kto"):
        same = _same_texts if spec.record_kind == "preference" else _contradicts
        found["identical"] = sum(1 for p in pairs if same(p["row"]))
        if spec.drop_identical:
            pairs = steps.keep("chosen differs from rejected", pairs, lambda p: not same(p["row"]))
    rows = to_rows(spec.record_kind, pairs)
    if spec.record_kind == "kto":
        rows = steps.start("as KTO rows (chosen -> good, rejected -> bad)", rows)
    if spec.max_length is not None:
        unit = spec.max_length_unit
        rows = steps.keep(f"at most {spec.max_length} {unit}", rows,
                          lambda r: row_length(r, spec, count_tokens) <= spec.max_length)
    seen: set[str] = set()
    unique = [r for r in rows if not (r.hash in seen or seen.add(r.hash))]
    found["duplicates"] = len(rows) - len(unique)
    if spec.drop_duplicates or spec.record_kind == "prompts":  # a prompt dataset lists each prompt once
        kept = {id(r) for r in unique}
        rows = steps.keep("no exact duplicates", rows, lambda r: id(r) in kept)
    return rows, steps, found


# -- public API ---------------------------------------------------------------------------------
def preview_snapshot(db: Database, spec: SnapshotSpec, count_tokens: TokenCounter | None = None
                     ) -> tuple[SnapshotSummary, list[tuple[Row, str, int]]]:
    """Everything create_snapshot would store, without storing it (the page's live check panel)."""
    spec.validate()
    if spec.max_length is not None and spec.max_length_unit == "tokens" and count_tokens is None:
        raise BadInput("max_length_unit='tokens' needs a tokenizer.", hint="Pick a model to count tokens with, "
                       "or use max_length_unit='chars'.")
    rows, steps, found = _filter(db, spec, count_tokens)
    placed = split_rows(rows, spec)
    n_eval = sum(1 for _, split, _ in placed if split == "eval")
    n_train = len(placed) - n_eval
    digest = content_hash(spec.record_kind, sorted((r.record_id, r.hash) for r in rows),
                          spec.eval_fraction, spec.split_seed)
    summary = SnapshotSummary(
        id=stable_id("snap", digest), name=spec.name, record_kind=spec.record_kind, content_hash=digest,
        filters=spec.filters(), split_seed=spec.split_seed, eval_fraction=spec.eval_fraction, n_train=n_train,
        n_eval=n_eval, counts=steps.counts, checks=build_checks(spec, rows, found, n_train, n_eval, count_tokens))
    return summary, placed


def create_snapshot(db: Database, spec: SnapshotSpec, count_tokens: TokenCounter | None = None) -> SnapshotSummary:
    """Filter, split, check and store; the same content returns the existing snapshot (created=False).

    Raises BadInput when a check is blocking (the data cannot train), saying how much there is and
    how much is needed."""
    summary, placed = preview_snapshot(db, spec, count_tokens)
    if summary.blocking:
        first = summary.blocking[0]
        raise BadInput(first["message"], hint="Loosen the filters, generate or review more pairs, or lower "
                       "eval_fraction.")
    existing = _get_by_hash(db, summary.content_hash)
    if existing is not None:
        return existing
    records = pa.table({
        "snapshot_id": [summary.id] * len(placed), "record_id": [r.record_id for r, _, _ in placed],
        "split": [s for _, s, _ in placed], "position": pa.array([p for _, _, p in placed], pa.int32()),
        "content_hash": [r.hash for r, _, _ in placed],
        "payload": [json.dumps({**r.payload, "_source": r.source}, ensure_ascii=False) for r, _, _ in placed],
    })
    checks = json.dumps({"counts": summary.counts, "checks": summary.checks})
    with db.session(transaction=True) as cur:
        if cur.execute(SELECT_SNAPSHOT_BY_HASH, [summary.content_hash]).fetchone():
            return _get_by_hash(db, summary.content_hash)  # another process stored it first
        now = datetime.now().astimezone()
        cur.execute(INSERT_SNAPSHOT, [summary.id, summary.name, summary.record_kind, summary.content_hash,
                                      json.dumps(summary.filters), summary.split_seed, summary.eval_fraction,
                                      summary.n_train, summary.n_eval, checks, now])
        cur.register("incoming_records", records)
        try:
            cur.execute(INSERT_RECORDS)
        finally:
            cur.unregister("incoming_records")
    summary.created_at, summary.created = now, True
    return summary


def _from_row(row) -> SnapshotSummary:
    (id_, name, kind, digest, filters, seed, fraction, n_train, n_eval, checks, created) = row
    checks = json.loads(checks) if checks else {}
    return SnapshotSummary(id=id_, name=name, record_kind=kind, content_hash=digest,
                           filters=json.loads(filters) if filters else {}, split_seed=seed, eval_fraction=fraction,
                           n_train=n_train, n_eval=n_eval, counts=checks.get("counts", []),
                           checks=checks.get("checks", []), created_at=created)


def _get_by_hash(db: Database, digest: str) -> SnapshotSummary | None:
    with db.session() as cur:
        row = cur.execute(SELECT_SNAPSHOT_BY_HASH, [digest]).fetchone()
    return _from_row(row) if row else None


def get_snapshot(db: Database, snapshot_id: str) -> SnapshotSummary:
    with db.session() as cur:
        row = cur.execute(SELECT_SNAPSHOT, [snapshot_id]).fetchone()
    if row is None:
        raise NotFound(f"There is no snapshot {snapshot_id!r}.", hint="`python -m studio snapshots list` lists them.")
    return _from_row(row)


def list_snapshots(db: Database) -> list[SnapshotSummary]:
    with db.session() as cur:
        return [_from_row(r) for r in cur.execute(SELECT_SNAPSHOTS).fetchall()]


def read_snapshot_rows(db: Database, snapshot_id: str, split: str | None = "train") -> list[dict]:
    """The exact TRL rows of one split (or both with split=None), in stored order, without lineage keys."""
    if split is not None and split not in SPLITS:
        raise BadInput(f"split={split!r} is not a split.", hint="Use 'train', 'eval' or None for both.")
    get_snapshot(db, snapshot_id)
    with db.session() as cur:
        rows = cur.execute(SELECT_ROWS, [snapshot_id, split, split]).fetchall()
    out = []
    for (payload,) in rows:
        data = json.loads(payload)
        data.pop("_source", None)
        out.append(data)
    return out


def snapshot_record_ids(db: Database, snapshot_id: str) -> dict[str, list[str]]:
    """Lineage: {"train": [...], "eval": [...]} source pair ids in stored order (KTO's two rows of a pair
    and a prompt asked in several pairs name each pair once)."""
    get_snapshot(db, snapshot_id)
    with db.session() as cur:
        rows = cur.execute(SELECT_RECORD_SOURCES, [snapshot_id]).fetchall()
    out: dict[str, dict[str, None]] = {"train": {}, "eval": {}}
    for pair_id, split in rows:
        out[split][pair_id] = None
    return {split: list(ids) for split, ids in out.items()}


def snapshot_lineage(db: Database, snapshot_id: str) -> dict[str, Any]:
    """Which generation runs (and how many pairs of each) a snapshot came from; a pair deleted since
    shows with run_id None, and the snapshot keeps its exact copy regardless."""
    ids = snapshot_record_ids(db, snapshot_id)
    with db.session() as cur:
        by_run = _dicts(cur, SELECT_LINEAGE, [snapshot_id])
    return {"record_ids": ids, "by_generation_run": by_run}
