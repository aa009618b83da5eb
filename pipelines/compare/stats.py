"""Statistics over votes: pairwise win rates with bootstrap intervals, Bradley–Terry ratings on an
Elo-like scale, a length-controlled win rate, the judge's position bias, and human–judge agreement.

Conventions, so every number on the page means the same thing:
- An outcome is 1 (first model won), 0 (second won) or 0.5 (tie, and "both bad", which is a tie
  between two bad answers). Win rate = (wins + ties / 2) / votes; wins, losses, ties and both-bad
  are reported separately next to it.
- Bootstrap intervals resample votes with replacement (as multinomial counts over the distinct
  outcomes, which is the same distribution and far cheaper at 100k votes), with a fixed seed so
  the same votes always give the same interval.
- Bradley–Terry: P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400)), ratings centred on 1000. The
  log-likelihood is maximised with scipy's L-BFGS-B (with its exact gradient); a tiny L2 term keeps
  ratings finite when one model won every game.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import optimize, stats

from core.errors import BadInput
from core.inputs import MAX_BOOTSTRAP, check_number

OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
SCALE, BASE, CENTER = 400.0, 10.0, 1000.0
DEFAULT_REG = 0.1           # a weak prior: keeps a model that won every game finite (1 win -> ~+280)


@dataclass(frozen=True)
class VoteTable:
    """Votes as integer model indices and outcome codes (0 a, 1 b, 2 tie, 3 both bad)."""

    models: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    code: np.ndarray

    @classmethod
    def from_votes(cls, model_a: Sequence[str], model_b: Sequence[str], winner: Sequence[str],
                   models: Sequence[str] | None = None) -> "VoteTable":
        a, b, w = np.asarray(model_a, dtype=object), np.asarray(model_b, dtype=object), np.asarray(winner, dtype=object)
        if not len(a) == len(b) == len(w):
            raise BadInput("The vote columns differ in length.", hint="Give one model_a, model_b and winner per vote.")
        names = tuple(models) if models is not None else tuple(sorted(set(a.tolist()) | set(b.tolist())))
        index = {m: i for i, m in enumerate(names)}
        codes = {k: i for i, k in enumerate(OUTCOME)}
        unknown = set(w.tolist()) - set(codes)
        if unknown:
            raise BadInput(f"Unknown vote outcome {sorted(unknown)[0]!r}.", hint=f"Use one of {list(OUTCOME)}.")
        return cls(names, np.fromiter((index[m] for m in a), np.int64, len(a)),
                   np.fromiter((index[m] for m in b), np.int64, len(b)),
                   np.fromiter((codes[x] for x in w), np.int64, len(w)))

    def __len__(self) -> int:
        return len(self.code)


@dataclass
class PairWinRate:
    model: str
    opponent: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: float            # (wins + (ties + both_bad) / 2) / n
    ci_low: float
    ci_high: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties + self.both_bad


@dataclass
class Rating:
    model: str
    rating: float
    ci_low: float
    ci_high: float
    games: int
    wins: float                # ties count half
    rank: int = 0


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def _check(n_boot: int, confidence: float) -> None:
    check_number(n_boot, "n_boot", 0, MAX_BOOTSTRAP, integer=True)
    if not 0 < confidence < 1:
        raise BadInput(f"confidence={confidence!r} is out of range.", hint="Use a level between 0 and 1, e.g. 0.95.")


# -- win rates ------------------------------------------------------------------------------------
def pairwise_win_rates(table: VoteTable, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
                       ) -> list[PairWinRate]:
    """One row per ordered pair that met (both directions), from ``model``'s point of view."""
    _check(n_boot, confidence)
    n = len(table.models)
    # counts[i, j, k]: votes between i and j (i shown as first) with outcome k (0 = i won, 1 = j won, 2 tie, 3 both bad)
    counts = np.zeros((n, n, 4), dtype=np.int64)
    np.add.at(counts, (table.first, table.second, table.code), 1)
    flipped = counts.transpose(1, 0, 2)[:, :, [1, 0, 2, 3]]
    totals = counts + flipped
    rng = np.random.default_rng(seed)
    rows: list[PairWinRate] = []
    for i in range(n):
        for j in range(n):
            if i == j or totals[i, j].sum() == 0:
                continue
            w, l, t, bb = (int(x) for x in totals[i, j])
            m = w + l + t + bb
            rate = (w + (t + bb) / 2) / m
            low = high = rate
            if n_boot:
                draws = rng.multinomial(m, np.array([w, l, t + bb]) / m, size=n_boot)
                low, high = _percentiles((draws[:, 0] + draws[:, 2] / 2) / m, confidence)
            rows.append(PairWinRate(table.models[i], table.models[j], w, l, t, bb, float(rate), float(low), float(high)))
    return rows


def win_rate_matrix(rows: Sequence[PairWinRate]) -> dict[str, dict[str, float]]:
    """model -> opponent -> win rate (rows of the page's heat map)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        out.setdefault(row.model, {})[row.opponent] = row.win_rate
    return out


# -- Bradley–Terry ----------------------------------------------------------------------------------------
def _wins_matrix(first: np.ndarray, second: np.ndarray, outcome: np.ndarray, weights: np.ndarray, n: int
                 ) -> np.ndarray:
    """W[i, j] = (weighted) wins of i over j, ties split half and half."""
    wins = np.zeros((n, n))
    np.add.at(wins, (first, second), weights * outcome)
    np.add.at(wins, (second, first), weights * (1 - outcome))
    return wins


def fit_bradley_terry(wins: np.ndarray, reg: float = DEFAULT_REG) -> np.ndarray:
    """Strengths (natural-log scale, mean 0) maximising sum W_ij log σ(θ_i − θ_j) − reg/2 ‖θ‖².

    ``wins`` may be a stack (B, n, n) of independent tables (the bootstrap): their summed losses are
    separable, so one L-BFGS-B run fits all B at once with vectorised numpy instead of B runs."""
    stacked = wins if wins.ndim == 3 else wins[None]
    count, n = stacked.shape[0], stacked.shape[-1]
    games = stacked + stacked.transpose(0, 2, 1)

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(count, n)
        diff = theta[:, :, None] - theta[:, None, :]
        log_p = -np.logaddexp(0.0, -diff)                 # log σ(θ_i − θ_j), stable
        value = -(stacked * log_p).sum() + reg / 2 * (theta * theta).sum()
        residual = stacked - games * np.exp(log_p)        # d/dθ_i of the log-likelihood, pair by pair
        grad = -residual.sum(axis=2) + reg * theta
        return float(value), grad.ravel()

    result = optimize.minimize(loss, np.zeros(count * n), jac=True, method="L-BFGS-B",
                               options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8})
    theta = result.x.reshape(count, n)
    theta = theta - theta.mean(axis=1, keepdims=True)
    return theta if wins.ndim == 3 else theta[0]


def to_elo(theta: np.ndarray) -> np.ndarray:
    return CENTER + SCALE * theta / math.log(BASE)


def bradley_terry(table: VoteTable, n_boot: int = 200, seed: int = 0, confidence: float = 0.95,
                  reg: float = DEFAULT_REG) -> list[Rating]:
    """Ratings of every model in the table, best first, with bootstrap intervals."""
    _check(n_boot, confidence)
    n = len(table.models)
    if n < 2:
        raise BadInput("Ratings need votes between at least two models.", hint="Compare two or more models first.")
    outcome = np.array(list(OUTCOME.values()))[table.code]
    # Distinct (first, second, outcome) cells and how often each occurs: the bootstrap resamples these.
    cells, cell_counts = np.unique(np.stack([table.first, table.second, table.code]), axis=1, return_counts=True)
    cell_outcome = np.array(list(OUTCOME.values()))[cells[2]]
    point = to_elo(fit_bradley_terry(_wins_matrix(cells[0], cells[1], cell_outcome, cell_counts.astype(float), n), reg))
    low, high = point.copy(), point.copy()
    if n_boot and len(table):
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(table), cell_counts / len(table), size=n_boot)
        stack = np.stack([_wins_matrix(cells[0], cells[1], cell_outcome, d, n) for d in draws.astype(float)])
        samples = to_elo(fit_bradley_terry(stack, reg))
        low, high = _percentiles(samples, confidence)
    games = np.bincount(table.first, minlength=n) + np.bincount(table.second, minlength=n)
    wins = np.bincount(table.first, outcome, minlength=n) + np.bincount(table.second, 1 - outcome, minlength=n)
    ratings = [Rating(m, float(point[i]), float(min(low[i], point[i])), float(max(high[i], point[i])),
                      int(games[i]), float(wins[i])) for i, m in enumerate(table.models)]
    ratings.sort(key=lambda r: (-r.rating, r.model))
    for rank, rating in enumerate(ratings, start=1):
        rating.rank = rank
    return ratings


def expected_win_probability(rating_i: float, rating_j: float) -> float:
    return 1.0 / (1.0 + BASE ** ((rating_j - rating_i) / SCALE))


# -- length control ---------------------------------------------------------------------------------------
def length_controlled_win_rate(outcomes: Sequence[float], length_a: Sequence[float], length_b: Sequence[float],
                               reg: float = 1e-2) -> float:
    """The win rate of A over B had both answered at the same length (AlpacaEval's idea).

    Fits P(A wins) = σ(β0 + β1·tanh((len_a − len_b) / sd)) by maximum likelihood (ties as half a win)
    and reports σ(β0): the part of the preference that length does not explain."""
    y = np.asarray(outcomes, dtype=float)
    diff = np.asarray(length_a, dtype=float) - np.asarray(length_b, dtype=float)
    if len(y) == 0:
        raise BadInput("No votes to control for length.", hint="Judge the comparison first.")
    spread = diff.std() or 1.0
    x = np.tanh(diff / spread)

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = beta[0] + beta[1] * x
        log_p, log_q = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
        value = -(y * log_p + (1 - y) * log_q).sum() + reg / 2 * beta @ beta
        r = y - np.exp(log_p)
        return value, -np.array([r.sum(), (r * x).sum()]) + reg * beta

    beta = optimize.minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B").x
    return float(1.0 / (1.0 + math.exp(-beta[0])))


# -- judges -------------------------------------------------------------------------------------------------
@dataclass
class PositionBias:
    judge: str
    first: int                 # verdicts for the answer shown first (slot A)
    second: int
    ties: int
    share_first: float | None  # first / (first + second)
    p_value: float | None      # two-sided binomial test against 1/2
    biased: bool
    message: str = ""


def position_bias(judge: str, first: int, second: int, ties: int = 0, alpha: float = 0.01, min_share: float = 0.65
                  ) -> PositionBias:
    """Warn when a judge prefers one slot far more than chance: significant at ``alpha`` AND a share
    of at least ``min_share`` (a 52% lean over 100k verdicts is significant but harmless)."""
    decided = first + second
    if decided == 0:
        return PositionBias(judge, first, second, ties, None, None, False, "no decided verdicts yet")
    share = first / decided
    p_value = float(stats.binomtest(first, decided, 0.5).pvalue)
    lean = max(share, 1 - share)
    biased = p_value < alpha and lean >= min_share
    slot = "first (A)" if share >= 0.5 else "second (B)"
    message = (f"{judge} preferred the {slot} answer in {lean:.0%} of {decided} decided verdicts (binomial test "
               f"p = {p_value:.2g}): position bias." if biased else "")
    return PositionBias(judge, first, second, ties, share, p_value, biased, message)


@dataclass
class Agreement:
    n: int
    agree: int
    rate: float | None
    kappa: float | None        # Cohen's kappa over the labels first / second / tie
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


def agreement(pairs: Sequence[tuple[str, str]]) -> Agreement:
    """Agreement of two raters on the same comparisons; each pair is (human, judge) outcomes already
    in the same orientation: 'first', 'second' or 'tie'."""
    labels = ("first", "second", "tie")
    confusion = {a: {b: 0 for b in labels} for a in labels}
    for human, judge in pairs:
        confusion[human][judge] += 1
    n = len(pairs)
    if n == 0:
        return Agreement(0, 0, None, None, confusion)
    agree = sum(confusion[x][x] for x in labels)
    observed = agree / n
    expected = sum(sum(confusion[x].values()) * sum(confusion[y][x] for y in labels) for x in labels) / n ** 2
    kappa = None if expected == 1 else (observed - expected) / (1 - expected)
    return Agreement(n, agree, observed, kappa, confusion)
