"""How far reviewers agree with the LLM judge, and with each other.

Human vs judge is measured on records with a human majority label (ties left out): overall, per
rubric aspect (the judge's per-aspect scores of the two responses imply a preference per aspect),
per generator model (records that involve it) and per judge-confidence bucket, which is the judge's
calibration: a calibrated judge agrees with people about as often as its confidence says.
Between reviewers: Krippendorff's alpha (nominal; it handles records that not every reviewer saw)
from the ``krippendorff`` package, and per reviewer their counts and agreement with the majority.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from pipelines.review.reconcile import llm_label, majority, vote_label

BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0000001)


@dataclass
class Rate:
    n: int = 0
    agree: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.agree / self.n, 4) if self.n else None

    def add(self, agreed: bool) -> None:
        self.n += 1
        self.agree += int(agreed)

    def to_dict(self) -> dict:
        return {"n": self.n, "agree": self.agree, "rate": self.rate}


@dataclass
class Agreement:
    overall: dict = field(default_factory=dict)
    per_aspect: dict[str, dict] = field(default_factory=dict)
    per_model: dict[str, dict] = field(default_factory=dict)
    calibration: list[dict] = field(default_factory=list)
    alpha: float | None = None
    alpha_units: int = 0
    reviewers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _bucket(confidence: float | None) -> int | None:
    if confidence is None:
        return None
    return next(i for i in range(len(BUCKETS) - 1) if confidence < BUCKETS[i + 1])


def _aspect_label(chosen: dict | None, rejected: dict | None, aspect: str) -> str | None:
    a, b = (chosen or {}).get(aspect), (rejected or {}).get(aspect)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    return "chosen" if a > b else "rejected" if a < b else "tie"


def compute_agreement(kind: str, records: list[dict], responses: dict[str, list[dict]],
                      aspects: dict[str, dict] | None = None) -> Agreement:
    """``records``: round rows (review_record_id, order_swapped, confidence, models, response ids);
    ``responses``: review record id -> responses; ``aspects``: response id -> aspect scores."""
    aspects = aspects or {}
    overall, per_aspect, per_model = Rate(), defaultdict(Rate), defaultdict(Rate)
    buckets: dict[int, tuple[Rate, list[float]]] = {}
    votes_by_record: dict[str, dict[str, str]] = {}
    for record in records:
        llm = llm_label(kind, record)
        submitted = [r for r in responses.get(record["review_record_id"], []) if r["status"] == "submitted"]
        votes = {r["reviewer"]: vote_label(kind, r["answer"], record.get("order_swapped")) for r in submitted}
        votes = {who: v for who, v in votes.items() if v}
        votes_by_record[record["review_record_id"]] = votes
        human, _ = majority(list(votes.values()))
        if human is None or llm is None:   # no majority, or no judge vote on this comparison pair
            continue
        overall.add(human == llm)
        for model in {record.get("chosen_model"), record.get("rejected_model"), record.get("model")} - {None}:
            per_model[model].add(human == llm)
        b = _bucket(record.get("confidence"))
        if b is not None:
            rate, confs = buckets.setdefault(b, (Rate(), []))
            rate.add(human == llm)
            confs.append(record["confidence"])
        chosen_aspects = aspects.get(record.get("chosen_response_id"))
        rejected_aspects = aspects.get(record.get("rejected_response_id"))
        for aspect in sorted(set(chosen_aspects or {}) & set(rejected_aspects or {})):
            judged = _aspect_label(chosen_aspects, rejected_aspects, aspect)
            if judged is not None:
                per_aspect[aspect].add(judged == human)
    out = Agreement(overall=overall.to_dict(), per_aspect={a: r.to_dict() for a, r in sorted(per_aspect.items())},
                    per_model={m: r.to_dict() for m, r in sorted(per_model.items())})
    for b in sorted(buckets):
        rate, confs = buckets[b]
        out.calibration.append({"bucket": f"{BUCKETS[b]:.1f}-{min(BUCKETS[b + 1], 1.0):.1f}", **rate.to_dict(),
                                "mean_confidence": round(sum(confs) / len(confs), 4)})
    out.alpha, out.alpha_units = krippendorff_alpha(votes_by_record)
    out.reviewers = reviewer_table(votes_by_record, responses)
    return out


def krippendorff_alpha(votes_by_record: dict[str, dict[str, str]]) -> tuple[float | None, int]:
    """Nominal alpha over records with at least two votes; (None, n) when it is undefined (fewer
    than two such records' worth of pairable votes, or only one label used)."""
    units = {rid: v for rid, v in votes_by_record.items() if len(v) >= 2}
    if not units:
        return None, 0
    import krippendorff
    import numpy as np

    reviewers = sorted({who for v in units.values() for who in v})
    labels = sorted({label for v in units.values() for label in v.values()})
    if len(labels) < 2:
        return (1.0 if len(units) >= 1 else None), len(units)  # perfect agreement on a single label
    code = {label: i for i, label in enumerate(labels)}
    data = np.full((len(reviewers), len(units)), np.nan)
    for j, votes in enumerate(units.values()):
        for who, label in votes.items():
            data[reviewers.index(who), j] = code[label]
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return (None if math.isnan(alpha) else round(alpha, 4)), len(units)


def reviewer_table(votes_by_record: dict[str, dict[str, str]], responses: dict[str, list[dict]]) -> list[dict]:
    """Per reviewer: submitted, discarded and drafts, and how often they voted with the majority of
    records where two or more reviewers voted and a majority exists."""
    stats: dict[str, dict] = defaultdict(lambda: {"submitted": 0, "discarded": 0, "draft": 0, "with_majority": Rate()})
    for rows in responses.values():
        for r in rows:
            stats[r["reviewer"]][r["status"]] += 1
    for votes in votes_by_record.values():
        if len(votes) < 2:
            continue
        label, _ = majority(list(votes.values()))
        if label is None:
            continue
        for who, v in votes.items():
            stats[who]["with_majority"].add(v == label)
    return [{"reviewer": who, "submitted": s["submitted"], "discarded": s["discarded"], "drafts": s["draft"],
             "majority_n": s["with_majority"].n, "majority_rate": s["with_majority"].rate}
            for who, s in sorted(stats.items())]
