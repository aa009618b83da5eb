"""Leakage guard: evaluation prompts that a compared model already saw in training.

A win on a prompt the model trained on says little, so before numbers are trusted the comparison's
prompts are checked against the training split of each compared model's snapshot: exact matches
(after normalising case and spaces) and near-duplicates (MinHash LSH proposes, exact Jaccard of
shingles decides: the Generate pipeline's ``near_duplicates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from pipelines.generate.dedup import near_duplicates

THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE = 3


@dataclass
class LeakageReport:
    model: str
    training_prompts: int
    exact: list[int] = field(default_factory=list)             # positions of eval prompts seen verbatim
    near: list[tuple[int, float]] = field(default_factory=list)  # (position, Jaccard similarity)

    @property
    def leaked(self) -> int:
        return len(self.exact) + len(self.near)

    def message(self, total: int) -> str:
        if not self.leaked:
            return ""
        return (f"{self.leaked} of {total} evaluation prompts overlap the training prompts of {self.model} "
                f"({len(self.exact)} exact, {len(self.near)} near-duplicates): its wins on them may be memorised.")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def check_leakage(model: str, eval_prompts: Sequence[str], train_prompts: Sequence[str],
                  threshold: float = THRESHOLD) -> LeakageReport:
    report = LeakageReport(model, len(train_prompts))
    seen = {_norm(t) for t in train_prompts}
    rest = []
    for position, prompt in enumerate(eval_prompts):
        if _norm(prompt) in seen:
            report.exact.append(position)
        else:
            rest.append(position)
    if not rest or not train_prompts:
        return report
    texts = [("all", t) for t in train_prompts] + [("all", eval_prompts[p]) for p in rest]
    matches = near_duplicates(texts, threshold=threshold, num_perm=NUM_PERM, shingle_size=SHINGLE)
    offset = len(train_prompts)
    leaked: dict[int, float] = {}
    for index in range(offset, len(texts)):               # in order, so a chain through an eval prompt resolves
        if index not in matches:
            continue
        target, similarity = matches[index]
        if target < offset:
            leaked[index] = similarity
        elif target in leaked:                            # a near-copy of an eval prompt that is itself leaked
            leaked[index] = min(similarity, leaked[target])
    report.near = [(rest[i - offset], round(s, 4)) for i, s in sorted(leaked.items())]
    return report
