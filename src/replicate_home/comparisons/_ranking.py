"""A leaderboard from pairwise votes: Bradley-Terry ratings with bootstrap intervals.

Each vote compares two models on one prompt: ``a`` (the first won), ``b`` or ``tie``.
The Bradley-Terry model gives each model a strength ``p`` such that ``i`` beats ``j``
with probability ``p_i / (p_i + p_j)``; a tie counts as half a win for each side (as
Chatbot Arena counts them). The strengths are fitted by maximum likelihood with Newton's
method, in pure Python (a handful of models: no numpy needed).

Regularisation. Every model also plays ``prior`` virtual games against a fixed
reference model of strength 1, all tied. That is a weak prior pulling each rating
towards the reference. It keeps the fit finite and unique where plain maximum likelihood
has none: a model that wins every vote (its rating would be infinite), one that loses
every vote, and comparison graphs in several pieces (each piece would float on its own
scale; the reference ties them to one). With many votes the prior's weight vanishes.

Ratings are shown on the Elo scale: ``1000 + 400 * log10(p)`` (the reference is 1000;
a 400-point gap is 10:1 odds). The 95 % interval is a percentile bootstrap: the votes
are resampled with replacement ``rounds`` times from a seeded generator (the same votes
and seed give the same intervals), refitted, and the 2.5th and 97.5th percentiles taken.
With few votes that distribution can be skewed enough to leave the estimate outside
it; the interval is then widened to reach the estimate, so it always contains it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._summary import percentile

__all__ = ["Leaderboard", "PairRecord", "Rating", "Vote", "bradley_terry", "leaderboard"]

VoteResult = Literal["a", "b", "tie"]

#: The Elo scale's anchor and spread: ``BASE + SPREAD * log10(strength)``.
BASE = 1000.0
SPREAD = 400.0

_TOLERANCE = 1e-11
_MAX_ITERATIONS = 100


@dataclass(frozen=True)
class Vote:
    """One pairwise judgement: ``model_a`` against ``model_b``, and which won."""

    model_a: str
    model_b: str
    result: VoteResult

    def __post_init__(self) -> None:
        if self.result not in ("a", "b", "tie"):
            raise ValueError(f"a vote's result is 'a', 'b' or 'tie', not {self.result!r}")
        if self.model_a == self.model_b:
            raise ValueError("a vote compares two different models")


@dataclass(frozen=True)
class Rating:
    """One model's place: ``rating`` (Elo scale) with its 95 % interval ``low`` ..
    ``high``, and its own record (``votes`` it took part in: ``wins``, ``losses``,
    ``ties``)."""

    model: str
    rating: float
    low: float
    high: float
    votes: int
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class PairRecord:
    """Two models' head-to-head record (``model_a`` sorts before ``model_b``);
    ``win_rate`` is ``model_a``'s share, a tie counting half."""

    model_a: str
    model_b: str
    wins_a: int
    wins_b: int
    ties: int

    @property
    def votes(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def win_rate(self) -> float:
        return (self.wins_a + self.ties / 2) / self.votes


@dataclass(frozen=True)
class Leaderboard:
    """Ratings best first (equal ratings by name), every pair's record, the vote count."""

    ratings: tuple[Rating, ...]
    pairs: tuple[PairRecord, ...]
    votes: int


def _tallies(
    votes: Sequence[Vote], index: dict[str, int]
) -> tuple[list[float], dict[tuple[int, int], int]]:
    """Each model's score (wins, ties half) and the games played per pair (i < j)."""
    score = [0.0] * len(index)
    games: dict[tuple[int, int], int] = {}
    for vote in votes:
        i, j = index[vote.model_a], index[vote.model_b]
        if vote.result == "a":
            score[i] += 1.0
        elif vote.result == "b":
            score[j] += 1.0
        else:
            score[i] += 0.5
            score[j] += 0.5
        pair = (i, j) if i < j else (j, i)
        games[pair] = games.get(pair, 0) + 1
    return score, games


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _log_likelihood(
    theta: Sequence[float], wins: Sequence[float], games: dict[tuple[int, int], int], prior: float
) -> float:
    total = math.fsum(w * t for w, t in zip(wins, theta, strict=True))
    for (i, j), n in games.items():
        high = max(theta[i], theta[j])
        total -= n * (high + math.log(math.exp(theta[i] - high) + math.exp(theta[j] - high)))
    for t in theta:
        high = max(t, 0.0)
        total -= prior * (high + math.log(math.exp(t - high) + math.exp(-high)))
    return total


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """``matrix^-1 vector`` for a symmetric positive definite ``matrix`` (Cholesky)."""
    size = len(vector)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            value = matrix[i][j] - math.fsum(lower[i][k] * lower[j][k] for k in range(j))
            lower[i][j] = math.sqrt(value) if i == j else value / lower[j][j]
    middle = [0.0] * size
    for i in range(size):
        middle[i] = (vector[i] - math.fsum(lower[i][k] * middle[k] for k in range(i))) / lower[i][i]
    result = [0.0] * size
    for i in reversed(range(size)):
        rest = math.fsum(lower[k][i] * result[k] for k in range(i + 1, size))
        result[i] = (middle[i] - rest) / lower[i][i]
    return result


def _fit(
    score: list[float],
    games: dict[tuple[int, int], int],
    prior: float,
    start: Sequence[float] | None = None,
) -> list[float]:
    """Log-strengths maximising the likelihood, the reference (log-strength 0) among the
    opponents with ``prior`` tied games each: Newton's method with a backtracking line
    search. The reference games make the log-likelihood strictly concave (a unique,
    finite maximum; the Hessian is negative definite), so a handful of steps reach it.
    ``start`` is where it begins: a bootstrap fit starts from the estimate."""
    size = len(score)
    wins = [value + prior / 2 for value in score]
    theta = [0.0] * size if start is None else list(start)
    current = _log_likelihood(theta, wins, games, prior)
    for _ in range(_MAX_ITERATIONS):
        gradient = list(wins)
        curvature = [[0.0] * size for _ in range(size)]  # minus the Hessian
        for i, t in enumerate(theta):
            p = _sigmoid(t)
            gradient[i] -= prior * p
            curvature[i][i] += prior * p * (1 - p)
        for (i, j), n in games.items():
            p = _sigmoid(theta[i] - theta[j])
            gradient[i] -= n * p
            gradient[j] -= n * (1 - p)
            weight = n * p * (1 - p)
            curvature[i][i] += weight
            curvature[j][j] += weight
            curvature[i][j] -= weight
            curvature[j][i] -= weight
        if max((abs(value) for value in gradient), default=0.0) < _TOLERANCE:
            break
        step = _solve(curvature, gradient)
        scale = 1.0
        while True:
            trial = [t + scale * d for t, d in zip(theta, step, strict=True)]
            value = _log_likelihood(trial, wins, games, prior)
            if value >= current or scale < 1e-9:
                break
            scale /= 2
        theta, current = trial, value
        if max(abs(scale * d) for d in step) < _TOLERANCE:
            break
    return theta


def _elo(log_strength: float) -> float:
    return BASE + SPREAD * log_strength / math.log(10)


def bradley_terry(
    votes: Iterable[Vote], models: Iterable[str] = (), *, prior: float = 1.0
) -> dict[str, float]:
    """Each model's Bradley-Terry rating (Elo scale) from ``votes``; ``models`` adds
    models with no votes yet (they stay at the reference, 1000)."""
    if not prior > 0:
        raise ValueError("the prior must be a positive number of virtual games")
    votes = list(votes)
    names = _names(votes, models)
    index = {name: i for i, name in enumerate(names)}
    fitted = _fit(*_tallies(votes, index), prior)
    return {name: _elo(value) for name, value in zip(names, fitted, strict=True)}


def _names(votes: Sequence[Vote], models: Iterable[str]) -> list[str]:
    names = set(models)
    for vote in votes:
        names.update((vote.model_a, vote.model_b))
    return sorted(names)


def leaderboard(
    votes: Iterable[Vote],
    models: Iterable[str] = (),
    *,
    rounds: int = 200,
    seed: int = 0,
    prior: float = 1.0,
    confidence: float = 0.95,
) -> Leaderboard:
    """The leaderboard of ``votes``: ratings with ``confidence`` intervals from
    ``rounds`` bootstrap resamples drawn from ``random.Random(seed)``, pair records,
    and the vote count. ``models`` adds models with no votes yet."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence is a share between 0 and 1")
    if not prior > 0:
        raise ValueError("the prior must be a positive number of virtual games")
    votes = list(votes)
    names = _names(votes, models)
    index = {name: i for i, name in enumerate(names)}
    estimate = _fit(*_tallies(votes, index), prior)
    samples: list[list[float]] = [[] for _ in names]
    generator = random.Random(seed)
    if votes:
        for _ in range(rounds):
            resample = [votes[generator.randrange(len(votes))] for _ in votes]
            for i, value in enumerate(_fit(*_tallies(resample, index), prior, estimate)):
                samples[i].append(value)
    tail = (1 - confidence) / 2
    ratings = []
    for i, name in enumerate(names):
        drawn = samples[i] or [estimate[i]]
        low = min(percentile(drawn, tail) or 0.0, estimate[i])
        high = max(percentile(drawn, 1 - tail) or 0.0, estimate[i])
        wins = losses = ties = 0
        for vote in votes:
            if name not in (vote.model_a, vote.model_b):
                continue
            if vote.result == "tie":
                ties += 1
            elif (vote.result == "a") == (vote.model_a == name):
                wins += 1
            else:
                losses += 1
        ratings.append(
            Rating(
                name,
                _elo(estimate[i]),
                _elo(low),
                _elo(high),
                wins + losses + ties,
                wins,
                losses,
                ties,
            )
        )
    ratings.sort(key=lambda rating: (-rating.rating, rating.model))
    return Leaderboard(tuple(ratings), _pairs(votes), len(votes))


def _pairs(votes: Sequence[Vote]) -> tuple[PairRecord, ...]:
    records: dict[tuple[str, str], list[int]] = {}
    for vote in votes:
        first, second = sorted((vote.model_a, vote.model_b))
        counts = records.setdefault((first, second), [0, 0, 0])
        if vote.result == "tie":
            counts[2] += 1
        elif (vote.result == "a") == (vote.model_a == first):
            counts[0] += 1
        else:
            counts[1] += 1
    return tuple(PairRecord(a, b, *counts) for (a, b), counts in sorted(records.items()))
