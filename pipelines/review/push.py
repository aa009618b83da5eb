"""Push LLM-labeled records to Argilla for a second, human pass.

Order of work, so that an interruption loses nothing and duplicates nothing:
1. the round (one per Argilla dataset name) and the dataset (created, or a draft finished);
2. the selection is planned in DuckDB: stable review-record ids, a seeded random A/B order per record,
   a priority (active review: least confident / swap disagreement first);
3. unsent records go in batches of ``batch_size``, upserted by ``external_id`` = the stable id, and each
   confirmed batch is marked pushed. A push stopped half-way resumes with the unsent ones; a batch sent
   but not marked is upserted again, which Argilla treats as an update, not a new record.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pipelines.review.client import BULK_LIMIT, ArgillaClient, ArgillaNotFound, ArgillaUnavailable
from pipelines.review.reconcile import PAIRED, ReconcileRule, as_shown, reconcile_record, shown_slot
from pipelines.review.dataset import DEFAULT_GUIDELINES, KINDS, agent_name, dataset_spec, ensure_dataset
from storage import review as store
from storage.db import Database
from storage.ids import content_hash, stable_id
from core.errors import BadInput
from core.inputs import MAX_COUNT, MAX_SEED, check_name, check_number

Progress = Callable[..., None]
ORDERS = ("least_confident", "newest")


@dataclass(frozen=True)
class PushRequest:
    """What to send for review and how (the Review page's form and ``review push``'s options)."""

    kind: str = field(default="preference", metadata={"help": "preference, sft, instruction, or comparison (a "
                                                                "comparison's model pairs, blind; run_id = the comparison)"})
    dataset_name: str | None = field(default=None, metadata={"help": "Argilla dataset; default studio-<kind>"})
    workspace: str = field(default="default", metadata={"help": "Argilla workspace (created when missing)"})
    run_id: str | None = field(default=None, metadata={"help": "only records of this generation run (kind comparison: "
                                                              "of this comparison)"})
    model: str | None = field(default=None, metadata={"help": "only records with a response from this model"})
    min_confidence: float | None = field(default=None, metadata={"help": "judge confidence at least (0-1)"})
    max_confidence: float | None = field(default=None, metadata={"help": "judge confidence at most (0-1)"})
    swap_disagreement_only: bool = field(default=False, metadata={"help": "only pairs whose judge orders disagreed"})
    limit: int = field(default=500, metadata={"help": "at most this many records in the round's selection"})
    order: str = field(default="least_confident", metadata={"help": "least_confident (active review) or newest"})
    min_submitted: int = field(default=1, metadata={"help": "reviewers per record before it counts as completed"})
    guidelines: str | None = field(default=None, metadata={"help": "guidelines text shown to reviewers"})
    seed: int = field(default=0, metadata={"help": "seed of the random A/B order"})
    batch_size: int = field(default=256, metadata={"help": "records per request (1-500)"})

    def __post_init__(self):
        if self.kind not in KINDS:
            raise BadInput(f"kind={self.kind!r} is not a review kind.", hint=f"Use one of: {', '.join(KINDS)}.")
        if self.limit < 1:
            raise BadInput(f"limit={self.limit} must be at least 1.", hint="Use e.g. 500.")
        check_number(self.limit, "limit", 1, MAX_COUNT, integer=True)
        check_number(self.seed, "seed", 0, MAX_SEED, integer=True)
        if self.min_submitted < 1:
            raise BadInput(f"min_submitted={self.min_submitted} must be at least 1.", hint="Use 1, or 2+ for overlap.")
        if not 1 <= self.batch_size <= BULK_LIMIT:
            raise BadInput(f"batch_size={self.batch_size} must be between 1 and {BULK_LIMIT}.", hint="Use 256.")
        if self.order not in ORDERS:
            raise BadInput(f"order={self.order!r} is unknown.", hint=f"Use one of: {', '.join(ORDERS)}.")
        for name in ("min_confidence", "max_confidence"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise BadInput(f"{name}={value} is outside 0-1.", hint="Judge confidence runs from 0 to 1.")
        if None not in (self.min_confidence, self.max_confidence) and self.min_confidence > self.max_confidence:
            raise BadInput(f"min_confidence={self.min_confidence} is above max_confidence={self.max_confidence}.",
                           hint="Swap them, or leave one empty.")
        if self.dataset_name is not None and not self.dataset_name.strip():
            raise BadInput("dataset_name is empty.", hint="Give a name, or leave it out for studio-<kind>.")
        if self.dataset_name is not None:
            check_name(self.dataset_name, "dataset name")
        if self.guidelines is not None and len(self.guidelines) > 10_000:
            raise BadInput(f"The guidelines have {len(self.guidelines):,} characters; Argilla takes at most 10,000.",
                           hint="Shorten them.")

    @property
    def name(self) -> str:
        return (self.dataset_name or f"studio-{self.kind}").strip()

    @property
    def filters(self) -> dict:
        return {"run_id": self.run_id, "model": self.model, "min_confidence": self.min_confidence,
                "max_confidence": self.max_confidence, "swap_disagreement": True if self.swap_disagreement_only else None}


@dataclass
class PushResult:
    round_id: str
    dataset_name: str
    dataset_url: str
    selected: int           # records in this push's selection
    planned_new: int        # of which new to the round
    sent: int               # records sent in this push (new, or left over from an interrupted one)
    already_in_round: int   # selected records the round already had (not sent again unless unsent)
    total_in_round: int

    def to_dict(self) -> dict:
        return asdict(self)


def _round(db: Database, client: ArgillaClient, req: PushRequest) -> dict:
    round_row = store.find_round(db, req.name, req.workspace)
    if round_row is None:
        round_id = stable_id("rr", req.workspace, req.name, datetime.now(timezone.utc).isoformat())
        store.create_round(db, {"id": round_id, "name": req.name, "record_kind": req.kind, "argilla_url": client.url,
                                "argilla_dataset_name": req.name, "workspace": req.workspace,
                                "min_submitted": req.min_submitted, "guidelines": req.guidelines,
                                "filters": req.filters, "settings": {"seed": req.seed, "order": req.order},
                                "status": "open"})
        return store.get_round(db, round_id)
    if round_row["record_kind"] != req.kind:
        raise BadInput(f"The dataset {req.name!r} reviews {round_row['record_kind']} records, not {req.kind}.",
                       hint="Choose another dataset name for this kind.")
    return round_row


def _plan(db: Database, round_row: dict, req: PushRequest) -> tuple[int, int]:
    """Add the selection to the round; returns (selected, new)."""
    selected = store.select_candidates(db, req.kind, req.filters, req.limit, req.order)
    known = store.round_record_ids(db, round_row["id"])
    seed = round_row["settings"].get("seed", req.seed)
    rule = ReconcileRule(min_submitted=round_row["min_submitted"])
    rows = []
    for row in selected:
        rid = stable_id("rv", round_row["id"], req.kind, row["record_id"])
        if rid in known:
            continue
        swapped = random.Random(content_hash(seed, row["record_id"])).random() < 0.5 if req.kind in PAIRED else None
        initial = reconcile_record(req.kind, row, [], rule)
        rows.append({"id": rid, "round_id": round_row["id"], "record_kind": req.kind, "record_id": row["record_id"],
                     "order_swapped": swapped, "priority": float(row["priority"]), "final_label": initial,
                     "final_rule": rule.name, "final_source": initial["source"]})
    store.plan_records(db, rows)
    return len(selected), len(rows)


def argilla_record(kind: str, row: dict, question_ids: dict[str, str]) -> dict:
    """One Argilla record (bulk upsert item) with the judge's outputs as suggestions."""
    prompt = [{"role": "user", "content": row["prompt"]}]
    agent = agent_name(row.get("judge_model"))
    score = row.get("confidence")
    score = None if score is None else min(max(float(score), 0.0), 1.0)
    if kind in PAIRED:
        a, b = as_shown(row, "chosen", "rejected")
        ma, mb = as_shown(row, "chosen_model", "rejected_model")
        fields = {"prompt": prompt, "response_a": a, "response_b": b}
        meta = {"model_a": ma, "model_b": mb, "length_diff": len(a) - len(b)}
        if kind == "preference":
            sa, sb = as_shown(row, "chosen_score", "rejected_score")
            meta.update(judge_score=score, swap_agreement={True: "yes", False: "no"}.get(row.get("swap_agreement"), "n/a"))
            suggestions = [("preferred", shown_slot("chosen", row["order_swapped"])), ("rating_a", _rating(sa)),
                           ("rating_b", _rating(sb))]
        else:  # a comparison pair: the latest judge vote on it, if any (model names are hidden metadata)
            suggestions = [("preferred", shown_slot(row.get("judge_label"), row["order_swapped"]))]
    else:
        fields = {"prompt": prompt} if kind == "instruction" else {"prompt": prompt, "response": row["completion"]}
        meta = {"model": row.get("model"), "judge_score": score}
        suggestions = [("verdict", "good"), ("rating", _rating(row.get("score")))] if kind == "sft" else []
    return {"external_id": row["review_record_id"], "fields": fields,
            "metadata": {k: v for k, v in meta.items() if v is not None},
            "suggestions": [{"question_id": question_ids[name], "value": value, "agent": agent, "type": "model",
                             **({"score": score} if score is not None else {})}
                            for name, value in suggestions if value is not None]}


def _rating(score) -> int | None:
    """The judge's 1-5 score as an Argilla rating (an int 1-5), when there is one."""
    if score is None:
        return None
    return int(min(max(round(float(score)), 1), 5))


def push_records(db: Database, client: ArgillaClient, req: PushRequest, progress: Progress | None = None) -> PushResult:
    progress = progress or (lambda **kw: None)
    spec = dataset_spec(req.kind)
    progress(stage="preparing the dataset", done=0, total=1)
    round_row = _round(db, client, req)
    dataset = ensure_dataset(client, req.name, req.workspace, spec, req.guidelines or DEFAULT_GUIDELINES[req.kind],
                             round_row["min_submitted"])
    if round_row["argilla_dataset_id"] not in (None, dataset["id"]):
        store.reset_pushed(db, round_row["id"])  # deleted in Argilla and created again: send everything
    store.update_round(db, round_row["id"], argilla_dataset_id=dataset["id"], argilla_url=client.url, status="open")
    selected, new = _plan(db, round_row, req)
    question_ids = {q["name"]: q["id"] for q in client.items(dataset["id"], "questions")}
    todo = store.unpushed_records(db, round_row["id"], req.kind)
    progress(stage="sending records", done=0, total=len(todo), unit="records")
    sent = 0
    for start in range(0, len(todo), req.batch_size):
        batch = todo[start:start + req.batch_size]
        try:
            created = client.upsert_records(dataset["id"], [argilla_record(req.kind, r, question_ids) for r in batch])
        except ArgillaUnavailable as err:
            raise ArgillaUnavailable(f"{err.message} {sent:,} of {len(todo):,} records were sent before it stopped.",
                                     hint="Push again when Argilla is back: it resumes with the rest, without "
                                          "duplicates.") from None
        except ArgillaNotFound:
            raise ArgillaNotFound(f"The Argilla dataset {req.name!r} was deleted during the push.",
                                  hint="Push again to recreate it.") from None
        store.mark_pushed(db, {r["external_id"]: r["id"] for r in created})
        sent += len(batch)
        progress(stage="sending records", done=sent, total=len(todo), unit="records")
    total = len(store.round_record_ids(db, round_row["id"]))
    return PushResult(round_id=round_row["id"], dataset_name=req.name, dataset_url=dataset_url(client.url, dataset["id"]),
                      selected=selected, planned_new=new, sent=sent, already_in_round=selected - new,
                      total_in_round=total)


def dataset_url(base: str, dataset_id: str) -> str:
    """Where a reviewer opens the dataset in Argilla's web UI."""
    return f"{base.rstrip('/')}/dataset/{dataset_id}/annotation-mode"
