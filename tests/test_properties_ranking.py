"""The leaderboard's ranking: Bradley-Terry ratings with bootstrap intervals (properties)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicate_home.comparisons import PairRecord, Vote, leaderboard
from replicate_home.comparisons._ranking import bradley_terry

MODELS = ("alpha", "beta", "gamma", "delta")
ROUNDS = 60  # enough for the properties; the default (200) is for people


@st.composite
def votes(draw: st.DrawFn, models: tuple[str, ...] = MODELS, min_size: int = 1) -> list[Vote]:
    pairs = st.lists(st.sampled_from(models), min_size=2, max_size=2, unique=True)
    drawn = draw(
        st.lists(
            st.tuples(pairs, st.sampled_from(["a", "b", "tie"])), min_size=min_size, max_size=40
        )
    )
    return [Vote(a, b, result) for (a, b), result in drawn]  # type: ignore[arg-type]


@given(votes(), st.sampled_from(MODELS), st.data())
def test_a_model_that_wins_every_vote_ranks_first(
    drawn: list[Vote], winner: str, data: st.DataObject
) -> None:
    others = [model for model in MODELS if model != winner]
    won = []
    for _ in drawn:
        opponent = data.draw(st.sampled_from(others))
        first = data.draw(st.booleans())
        won.append(Vote(winner, opponent, "a") if first else Vote(opponent, winner, "b"))
    board = leaderboard(won, MODELS, rounds=ROUNDS)
    assert board.ratings[0].model == winner
    assert board.ratings[0].rating > board.ratings[1].rating
    assert board.ratings[0].wins == len(won)


@given(votes(), st.permutations(MODELS), st.integers(0, 2**32))
def test_relabelling_models_permutes_the_ratings(
    drawn: list[Vote], permuted: list[str], seed: int
) -> None:
    rename = dict(zip(MODELS, permuted, strict=True))
    renamed = [Vote(rename[v.model_a], rename[v.model_b], v.result) for v in drawn]
    before = {r.model: r for r in leaderboard(drawn, MODELS, rounds=ROUNDS, seed=seed).ratings}
    after = {r.model: r for r in leaderboard(renamed, MODELS, rounds=ROUNDS, seed=seed).ratings}
    for model, rating in before.items():
        moved = after[rename[model]]
        assert moved.rating == pytest.approx(rating.rating, abs=1e-4)
        assert moved.low == pytest.approx(rating.low, abs=1e-4)
        assert moved.high == pytest.approx(rating.high, abs=1e-4)
        assert (moved.wins, moved.losses, moved.ties) == (rating.wins, rating.losses, rating.ties)


@given(votes(min_size=0), st.integers(0, 2**32))
def test_intervals_contain_the_estimate_and_are_deterministic(drawn: list[Vote], seed: int) -> None:
    board = leaderboard(drawn, MODELS, rounds=ROUNDS, seed=seed)
    for rating in board.ratings:
        assert rating.low <= rating.rating <= rating.high
        assert all(math.isfinite(value) for value in (rating.low, rating.rating, rating.high))
    assert leaderboard(drawn, MODELS, rounds=ROUNDS, seed=seed) == board
    assert board.votes == len(drawn)
    assert sum(r.votes for r in board.ratings) == 2 * len(drawn)


def _sampled_votes(strengths: list[float], count: int, generator: random.Random) -> list[Vote]:
    """``count`` votes between random pairs, won as the Bradley-Terry model says (a fifth
    of them ties)."""
    drawn = []
    for _ in range(count):
        i, j = generator.sample(range(len(MODELS)), 2)
        odds = 1 / (1 + 10 ** ((strengths[j] - strengths[i]) / 400))
        tie = generator.random() < 0.2
        result = "tie" if tie else "a" if generator.random() < odds else "b"
        drawn.append(Vote(MODELS[i], MODELS[j], result))  # type: ignore[arg-type]
    return drawn


@settings(max_examples=max(5, settings().max_examples // 4))
@given(
    st.lists(st.floats(-300, 300), min_size=len(MODELS), max_size=len(MODELS)),
    st.integers(3 * len(MODELS), 8 * len(MODELS)),
    st.integers(0, 2**32),
)
def test_more_votes_never_widen_the_intervals_on_average(
    strengths: list[float], count: int, seed: int
) -> None:
    # Votes drawn from fixed true strengths, from three votes a model on: four times
    # as many votes give narrower intervals, averaged over models and vote draws. (Below
    # about three votes a model the prior's virtual games outweigh the votes and hold
    # every rating near 1000, intervals included: docs/judging.md.)
    generator = random.Random(seed)

    def mean_width(count: int) -> float:
        widths = []
        for draw in range(3):
            board = leaderboard(
                _sampled_votes(strengths, count, generator), MODELS, rounds=40, seed=draw
            )
            widths.extend(r.high - r.low for r in board.ratings)
        return sum(widths) / len(widths)

    assert mean_width(4 * count) <= mean_width(count)


def test_ratings_follow_the_votes_on_the_elo_scale() -> None:
    # 3:1 odds between two models with many votes: about 400 * log10(3) = 191 apart.
    many = [Vote("a", "b", "a")] * 300 + [Vote("a", "b", "b")] * 100
    ratings = bradley_terry(many)
    assert ratings["a"] - ratings["b"] == pytest.approx(190.8, abs=2)
    assert (ratings["a"] + ratings["b"]) / 2 == pytest.approx(1000, abs=1)
    # No votes: every model sits at the reference.
    assert bradley_terry([], ["x", "y"]) == {"x": 1000.0, "y": 1000.0}


def test_disconnected_models_and_clean_sweeps_get_finite_ratings() -> None:
    # Two groups that never met, and a model that won all its votes.
    board = leaderboard(
        [Vote("a", "b", "a")] * 3 + [Vote("c", "d", "tie"), Vote("c", "d", "a")], rounds=50
    )
    ratings = {r.model: r for r in board.ratings}
    assert all(math.isfinite(r.rating) for r in board.ratings)
    assert ratings["a"].rating > ratings["c"].rating > ratings["d"].rating > ratings["b"].rating
    assert board.pairs == (PairRecord("a", "b", 3, 0, 0), PairRecord("c", "d", 1, 0, 1))
    assert board.pairs[1].win_rate == 0.75
    assert board.pairs[1].votes == 2


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="'a', 'b' or 'tie'"):
        Vote("a", "b", "win")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two different"):
        Vote("a", "a", "tie")
    with pytest.raises(ValueError, match="rounds"):
        leaderboard([], rounds=0)
    with pytest.raises(ValueError, match="confidence"):
        leaderboard([], confidence=1)
    with pytest.raises(ValueError, match="prior"):
        leaderboard([], prior=0)
