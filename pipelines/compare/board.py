"""The leaderboard: Bradley–Terry ratings, pairwise win rates, slices, length control, judge checks.

One read of the votes (numpy columns from DuckDB), then everything is computed in memory, which is
what keeps 100,000 votes with bootstrap intervals within a couple of seconds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipelines.compare import stats
from storage import compare as store
from storage.db import Database

SLICE_BOOT = 100


@dataclass
class LengthControlled:
    model: str
    opponent: str
    win_rate: float
    lc_win_rate: float


@dataclass
class Leaderboard:
    ratings: list[stats.Rating] = field(default_factory=list)
    win_rates: list[stats.PairWinRate] = field(default_factory=list)
    votes: int = 0
    ties: int = 0
    both_bad: int = 0
    slice_key: str | None = None
    slices: dict[str, list[stats.Rating]] = field(default_factory=dict)
    length_controlled: list[LengthControlled] = field(default_factory=list)
    position_bias: list[stats.PositionBias] = field(default_factory=list)
    agreement: stats.Agreement | None = None
    message: str = ""

    @property
    def matrix(self) -> dict[str, dict[str, float]]:
        return stats.win_rate_matrix(self.win_rates)

    @property
    def warnings(self) -> list[str]:
        return [b.message for b in self.position_bias if b.biased]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["matrix"], out["warnings"] = self.matrix, self.warnings
        return out


def _oriented(model_a: str, model_b: str, winner: str) -> str:
    """A vote's outcome for the pair in sorted order: 'first' / 'second' model won, or 'tie'."""
    if winner in ("tie", "both_bad"):
        return "tie"
    first_won = (winner == "a") == (model_a <= model_b)
    return "first" if first_won else "second"


def human_judge_agreement(cols: dict[str, np.ndarray]) -> stats.Agreement | None:
    """Every (human vote, judge vote) on the same prompt and model pair, compared."""
    humans: dict[tuple, list[str]] = defaultdict(list)
    judges: dict[tuple, list[str]] = defaultdict(list)
    for a, b, w, kind, p in zip(cols["model_a"], cols["model_b"], cols["winner"], cols["voter_kind"], cols["prompt_id"]):
        key = (p, *sorted([a, b]))
        (humans if kind == "human" else judges)[key].append(_oriented(a, b, w))
    pairs = [(h, j) for key in humans.keys() & judges.keys() for h in humans[key] for j in judges[key]]
    return stats.agreement(pairs) if pairs else None


def _length_controlled(table: stats.VoteTable, cols: dict[str, np.ndarray], rows: list[stats.PairWinRate]
                       ) -> list[LengthControlled]:
    outcome = np.array(list(stats.OUTCOME.values()))[table.code]
    out = []
    for row in rows:
        i, j = table.models.index(row.model), table.models.index(row.opponent)
        forward = (table.first == i) & (table.second == j)
        backward = (table.first == j) & (table.second == i)
        y = np.concatenate([outcome[forward], 1 - outcome[backward]])
        len_i = np.concatenate([cols["words_a"][forward], cols["words_b"][backward]])
        len_j = np.concatenate([cols["words_b"][forward], cols["words_a"][backward]])
        out.append(LengthControlled(row.model, row.opponent, row.win_rate,
                                    stats.length_controlled_win_rate(y, len_i, len_j)))
    return out


def build_leaderboard(db: Database, *, comparison_id: str | None = None, voter_kind: str | None = None,
                      slice_key: str | None = None, n_boot: int = 200, seed: int = 0,
                      length_controlled: bool = False) -> Leaderboard:
    cols = store.vote_table(db, comparison_id=comparison_id, voter_kind=voter_kind, slice_key=slice_key)
    board = Leaderboard(slice_key=slice_key)
    board.votes = len(cols["winner"])
    if board.votes == 0:
        board.message = "No votes yet: vote in the arena or let a judge vote."
        return board
    board.ties = int((cols["winner"] == "tie").sum())
    board.both_bad = int((cols["winner"] == "both_bad").sum())
    table = stats.VoteTable.from_votes(cols["model_a"], cols["model_b"], cols["winner"])
    board.ratings = stats.bradley_terry(table, n_boot=n_boot, seed=seed)
    board.win_rates = stats.pairwise_win_rates(table, n_boot=max(n_boot, 1000) if n_boot else 0, seed=seed)
    if slice_key:
        for value in sorted({v for v in cols["slice"].tolist() if v is not None}):
            keep = cols["slice"] == value
            sub = stats.VoteTable.from_votes(cols["model_a"][keep], cols["model_b"][keep], cols["winner"][keep])
            if len(sub.models) >= 2:
                board.slices[value] = stats.bradley_terry(sub, n_boot=min(n_boot, SLICE_BOOT), seed=seed)
    if length_controlled:
        board.length_controlled = _length_controlled(table, cols, [r for r in board.win_rates if r.model < r.opponent])
    if comparison_id:
        board.position_bias = [stats.position_bias(judge, first, second, ties)
                               for judge, first, second, ties in store.judge_order_counts(db, comparison_id)]
    human = cols["voter_kind"] == "human"
    if voter_kind is None and human.any() and not human.all():
        board.agreement = human_judge_agreement(cols)
    return board
