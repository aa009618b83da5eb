"""A final label per record from the LLM's label and the reviewers' answers.

Rules (``rule``):
- ``majority``: the majority of submitted answers wherever at least one was submitted; discarded
  answers and drafts never count; elsewhere the LLM label stays, marked unreviewed.
- ``strict``: as ``majority``, but only records with at least ``min_submitted`` submitted answers
  count as reviewed.
A tie between answers (``tie_policy``): ``keep_llm`` keeps the LLM label (unreviewed, flagged as
tied); ``mark`` makes the label 'undecided' (not usable for training until someone breaks it).

Preference (and comparison) answers are mapped back through the record's A/B swap: 'a' means the pair's chosen
response unless the order was swapped. A corrected response written by a reviewer who voted with
the majority becomes the new chosen response (the latest one wins).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from core.errors import BadInput

RULES = ("majority", "strict")
TIE_POLICIES = ("keep_llm", "mark")
LLM_LABEL = {"preference": "chosen", "sft": "good", "instruction": "good"}
VERDICT_QUESTION = {"preference": "preferred", "sft": "verdict", "instruction": "verdict", "comparison": "preferred"}
PAIRED = ("preference", "comparison")   # an A/B pair: answers go through the swap


def llm_label(kind: str, record: dict) -> str | None:
    """The machine's label of a record: the generation judge's (a preference pair's chosen, an SFT pair
    or instruction kept = good); for a comparison pair, the latest judge vote on it, LLM or rubric (None: none)."""
    if kind == "comparison":
        return record.get("judge_label")
    return LLM_LABEL[kind]


@dataclass(frozen=True)
class ReconcileRule:
    rule: str = "majority"
    tie_policy: str = "keep_llm"
    min_submitted: int = 1

    def __post_init__(self):
        if self.rule not in RULES:
            raise BadInput(f"Unknown reconcile rule {self.rule!r}.", hint=f"Use one of: {', '.join(RULES)}.")
        if self.tie_policy not in TIE_POLICIES:
            raise BadInput(f"Unknown tie policy {self.tie_policy!r}.", hint=f"Use one of: {', '.join(TIE_POLICIES)}.")
        if self.min_submitted < 1:
            raise BadInput(f"min_submitted={self.min_submitted} must be at least 1.",
                           hint="Use 1 for one reviewer per record, 2 or more for overlap.")

    @property
    def name(self) -> str:
        return f"{self.rule}/{self.tie_policy}"


def as_shown(record: dict, first: str, second: str) -> tuple:
    """Two columns of a paired record (chosen side first) in the order reviewers see them: (A, B)."""
    a, b = record[first], record[second]
    return (b, a) if record.get("order_swapped") else (a, b)


def shown_slot(label: str | None, order_swapped: bool | None) -> str | None:
    """A pair-oriented label as reviewers see it: 'chosen'/'rejected' -> the slot 'a'/'b' through the
    swap; 'tie', 'both_bad' and None stay as they are (the inverse of ``vote_label``)."""
    if label in ("chosen", "rejected"):
        return "a" if (label == "chosen") != bool(order_swapped) else "b"
    return label


def vote_label(kind: str, answer: dict, order_swapped: bool | None) -> str | None:
    """The pair-oriented label of one answer: preference 'a'/'b' -> 'chosen'/'rejected' through the swap."""
    value = (answer or {}).get(VERDICT_QUESTION[kind])
    if kind in PAIRED and value in ("a", "b"):
        return "chosen" if value == shown_slot("chosen", order_swapped) else "rejected"
    return value


def majority(labels: list[str]) -> tuple[str | None, bool]:
    """(the most common label, tied?)."""
    if not labels:
        return None, False
    counts = Counter(labels).most_common()
    tied = len(counts) > 1 and counts[0][1] == counts[1][1]
    return (None if tied else counts[0][0]), tied


def reconcile_record(kind: str, record: dict, responses: list[dict], rule: ReconcileRule) -> dict:
    """The final label of one record: {label, chosen, rejected, corrected, usable, n_reviews,
    agreement, tied, source, reviewed}. ``record`` is the source row plus ``order_swapped``."""
    submitted = [r for r in responses if r["status"] == "submitted"]
    votes = [(r, vote_label(kind, r["answer"], record.get("order_swapped"))) for r in submitted]
    votes = [(r, v) for r, v in votes if v]
    label, tied = majority([v for _, v in votes])
    enough = len(votes) >= (rule.min_submitted if rule.rule == "strict" else 1)
    out = {"n_reviews": len(votes), "tied": tied, "corrected": False}
    if enough and label is None and tied and rule.tie_policy == "mark":
        return {**out, **_texts(kind, record, "undecided", None), "label": "undecided", "usable": False,
                "agreement": None, "source": "human", "reviewed": True}
    if not enough or label is None:
        llm = llm_label(kind, record) or "undecided"
        return {**out, **_texts(kind, record, llm, None), "label": llm, "usable": llm != "undecided",
                "agreement": None, "source": "llm", "reviewed": False}
    with_majority = [r for r, v in votes if v == label]
    corrections = [r for r in with_majority if ((r["answer"] or {}).get("corrected") or "").strip()]
    correction = max(corrections, key=lambda r: str(r["responded_at"] or "")) if corrections else None
    text = correction["answer"]["corrected"].strip() if correction else None
    usable = text is not None or label in ("chosen", "rejected", "good")
    return {**out, **_texts(kind, record, label, text), "label": label, "corrected": text is not None,
            "usable": usable, "agreement": round(len(with_majority) / len(votes), 4), "source": "human",
            "reviewed": True}


def _texts(kind: str, record: dict, label: str, corrected: str | None) -> dict:
    """chosen/rejected texts for a label (preference), or the kept text (sft/instruction)."""
    if kind in PAIRED:
        chosen, rejected = record["chosen"], record["rejected"]
        if label == "rejected":
            chosen, rejected = rejected, chosen
        if corrected is not None:
            # the corrected text beats the response the majority preferred over (or, for tie/both bad,
            # the one the judge would have shipped)
            rejected = rejected if label in ("chosen", "rejected") else record["chosen"]
            chosen = corrected
        return {"chosen": chosen, "rejected": rejected}
    original = record.get("completion") if kind == "sft" else record.get("prompt")
    return {"chosen": corrected if corrected is not None else original, "rejected": None}


def reconcile(kind: str, records: list[dict], responses: dict[str, list[dict]], rule: ReconcileRule) -> list[dict]:
    """Final labels for a round's records, as rows for ``storage.review.write_finals``."""
    finals = []
    for record in records:
        label = reconcile_record(kind, record, responses.get(record["review_record_id"], []), rule)
        finals.append({"id": record["review_record_id"], "record_id": record["record_id"], "final_label": label,
                       "final_rule": rule.name, "final_source": label["source"], "reviewed": label["reviewed"]})
    return finals
