"""Pull reviewers' answers from Argilla into DuckDB, then reconcile a final label per record.

Incremental: Argilla touches a dataset's ``last_activity_at`` on every response created, updated
or deleted, so a pull first reads that one value and stops when it equals the round's watermark
(a no-change pull is one small request). Otherwise it reads the records with their responses from
Argilla's database listing (not the search index, which the embedded engine rebuilds after a
restart), writes only responses that are new or changed, removes ones deleted in Argilla, and moves
the watermark to the value read *before* the listing, so nothing that lands meanwhile is missed.
Responses to records the studio does not know (added in Argilla by hand) are counted and reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable

from pipelines.review.client import ArgillaClient, ArgillaNotFound, ArgillaUnavailable
from pipelines.review.dataset import check_settings, dataset_spec
from pipelines.review.reconcile import ReconcileRule, as_shown, reconcile, shown_slot, vote_label
from storage import compare as compare_store
from storage import review as store
from storage.db import Database
from storage.ids import stable_id
from core.errors import ReviewError

Progress = Callable[..., None]


@dataclass
class RoundPull:
    round_id: str
    dataset_name: str
    changed: bool
    records_read: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    unknown_records: int = 0     # records with responses that the studio did not push
    reviewed: int = 0            # records whose final label comes from people
    votes: int = 0               # comparison rounds: the human votes the round has in the leaderboard
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _same(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs((a - b).total_seconds()) < 1e-6


def pull_round(db: Database, client: ArgillaClient, round_row: dict, rule: ReconcileRule | None = None,
               progress: Progress | None = None, force: bool = False) -> RoundPull:
    import time

    started = time.monotonic()
    progress = progress or (lambda **kw: None)
    result = RoundPull(round_row["id"], round_row["name"], changed=False)
    if not round_row.get("argilla_dataset_id"):
        return result
    try:
        dataset = client.dataset(round_row["argilla_dataset_id"])
    except ArgillaNotFound:
        store.update_round(db, round_row["id"], status="dataset_missing")
        raise ReviewError(f"The Argilla dataset {round_row['name']!r} was deleted in Argilla.",
                          hint="Answers pulled before are kept. Push again to recreate it and send the records "
                               "again.") from None
    watermark = dataset["last_activity_at"]
    if not force and watermark == round_row["settings"].get("activity_watermark"):
        store.update_round(db, round_row["id"], last_pulled_at=datetime.now(timezone.utc))
        result.seconds = round(time.monotonic() - started, 4)
        return result
    check_settings(client, dataset, dataset_spec(round_row["record_kind"]))
    result.changed = True
    try:
        _read_responses(db, client, round_row, result, progress)
    except ArgillaUnavailable as err:
        raise ArgillaUnavailable(f"{err.message} The pull stopped after {result.records_read:,} records.",
                                 hint="Pull again when Argilla is back; what was stored is kept and nothing is "
                                      "counted twice.") from None
    rule = rule or ReconcileRule(**round_row["settings"].get("rule", {}), min_submitted=round_row["min_submitted"])
    state = round_state(db, round_row)
    result.reviewed = reconcile_round(db, round_row, rule, state)
    if round_row["record_kind"] == "comparison":
        result.votes = sync_comparison_votes(db, round_row, state)
    store.merge_round_settings(db, round_row["id"], {"activity_watermark": watermark})
    store.update_round(db, round_row["id"], last_pulled_at=datetime.now(timezone.utc), status="open")
    result.seconds = round(time.monotonic() - started, 4)
    return result


def _read_responses(db: Database, client: ArgillaClient, round_row: dict, result: RoundPull,
                    progress: Progress) -> None:
    known = store.round_record_ids(db, round_row["id"])
    state = store.response_state(db, round_row["id"])
    users = client.users()
    seen: set[str] = set()
    changed: list[dict] = []
    progress(stage="reading reviews", done=0, total=len(known), unit="records")
    for page in client.iter_record_pages(round_row["argilla_dataset_id"]):
        for record in page:
            responses = record.get("responses") or []
            rid = record.get("external_id")
            if rid not in known:
                result.unknown_records += bool(responses)
                continue
            for response in responses:
                row = _response_row(round_row["id"], rid, response, users)
                seen.add(row["id"])
                before = state.get(row["id"])
                if before is None:
                    result.new += 1
                elif before[0] != row["status"] or not _same(before[1], row["responded_at"]):
                    result.updated += 1
                else:
                    result.unchanged += 1
                    continue
                changed.append(row)
        result.records_read += len(page)
        progress(stage="reading reviews", done=result.records_read, total=len(known), unit="records")
    store.upsert_responses(db, changed)
    gone = [rid for rid in state if rid not in seen]
    store.delete_responses(db, gone)
    result.deleted = len(gone)


def _response_row(round_id: str, review_record_id: str, response: dict, users: dict[str, str]) -> dict:
    values = response.get("values") or {}
    return {"id": stable_id("rvr", review_record_id, response["user_id"]), "round_id": round_id,
            "review_record_id": review_record_id, "reviewer": users.get(response["user_id"], response["user_id"]),
            "status": response["status"], "answer": {q: v.get("value") for q, v in values.items()},
            "responded_at": _parse_time(response.get("updated_at"))}


def round_state(db: Database, round_row: dict) -> tuple[list[dict], dict[str, list[dict]]]:
    """A round's records (with their source rows) and the stored responses per review record."""
    return (store.round_records(db, round_row["id"], round_row["record_kind"]),
            store.round_responses(db, round_row["id"]))


def reconcile_round(db: Database, round_row: dict, rule: ReconcileRule,
                    state: tuple[list[dict], dict[str, list[dict]]] | None = None) -> int:
    """Write every record's final label by ``rule``; returns how many are human-reviewed. ``state``:
    ``round_state``'s result when the caller has read it already."""
    kind = round_row["record_kind"]
    records, responses = state or round_state(db, round_row)
    finals = reconcile(kind, records, responses, rule)
    changed = [f for f, r in zip(finals, records)       # only what moved: updates are the slow part
               if r["current_final"] is None or json.loads(r["current_final"]) != f["final_label"]
               or r["current_rule"] != rule.name]
    store.write_finals(db, kind, changed)
    return sum(1 for f in finals if f["reviewed"])


def sync_comparison_votes(db: Database, round_row: dict,
                          state: tuple[list[dict], dict[str, list[dict]]] | None = None) -> int:
    """Each submitted answer of a comparison round is one human vote (voter = the Argilla user) on that
    pair, stored as shown (slot A, slot B, the order); answers deleted or discarded since lose their vote."""
    records, responses = state or round_state(db, round_row)
    votes = []
    for record in records:
        swapped = bool(record["order_swapped"])
        model_a, model_b = as_shown(record, "chosen_model", "rejected_model")
        out_a, out_b = as_shown(record, "output_a_id", "output_b_id")
        for response in responses.get(record["review_record_id"], []):
            label = vote_label("comparison", response["answer"], swapped)
            if response["status"] != "submitted" or label not in ("chosen", "rejected", "tie", "both_bad"):
                continue
            votes.append(compare_store.VoteRow(
                comparison_id=record["comparison_id"], prompt_id=record["prompt_id"], model_a=model_a,
                model_b=model_b, winner=shown_slot(label, swapped), voter_kind="human", voter=response["reviewer"],
                output_a_id=out_a, output_b_id=out_b, order_swapped=swapped,
                rationale=(response["answer"] or {}).get("rationale"), metadata={"source": "argilla"}))
    return compare_store.replace_round_votes(db, round_row["id"], votes)
