"""Blind pairwise votes: which two outputs a person compares, kept from them until the
vote.

A pair is two succeeded cells of one prompt from two different models, the prompt and
the two models drawn at random, the order too. The page gets the outputs and an opaque
pair id, never the models or the cells' numbers (a cell's number gives its column
away); the viewer remembers the pair (a bounded table: the oldest pairs are forgotten)
and, once the vote is in, says which model was which. A skipped pair is forgotten
without a word about its models.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

__all__ = ["CHOICES", "Pair", "PairBook", "choose_pair", "parse_thumb", "parse_vote"]

#: What a person can answer: the first output won, the second, a tie, or skip.
CHOICES = ("a", "b", "tie", "skip")
#: Pairs remembered at once (each a few numbers); the oldest are forgotten first.
PAIRS = 10_000
#: The longest voter name kept.
MAX_VOTER = 80


@dataclass(frozen=True)
class Pair:
    """Cells ``cell_a`` (shown first) and ``cell_b`` of one prompt, for run ``run_id``."""

    id: str
    run_id: str
    cell_a: int
    cell_b: int
    model_a: str
    model_b: str


def choose_pair(cells: Sequence[Mapping[str, Any]], random: Random) -> tuple[int, int] | None:
    """Two cells (numbers, in the order shown) of one prompt from two different models,
    drawn from ``cells`` (rows with ``cell``, ``prompt_index`` and ``model``); ``None``
    when no prompt has two models' outputs."""
    by_prompt: dict[int, dict[str, int]] = {}
    for row in cells:
        by_prompt.setdefault(row["prompt_index"], {}).setdefault(row["model"], row["cell"])
    prompts = sorted(index for index, models in by_prompt.items() if len(models) >= 2)
    if not prompts:
        return None
    models = by_prompt[random.choice(prompts)]
    first, second = random.sample(sorted(models), 2)
    return models[first], models[second]


class PairBook:
    """The pairs handed out and not voted on yet."""

    def __init__(self, size: int = PAIRS) -> None:
        self._pairs: OrderedDict[str, Pair] = OrderedDict()
        self._size = size

    def add(self, run_id: str, cell_a: int, cell_b: int, model_a: str, model_b: str) -> Pair:
        pair = Pair(secrets.token_urlsafe(12), run_id, cell_a, cell_b, model_a, model_b)
        self._pairs[pair.id] = pair
        while len(self._pairs) > self._size:
            self._pairs.popitem(last=False)
        return pair

    def take(self, run_id: str, pair_id: str) -> Pair | None:
        """The pair ``pair_id`` of ``run_id``, forgotten as it is taken (one vote each)."""
        pair = self._pairs.get(pair_id)
        if pair is None or pair.run_id != run_id:
            return None
        del self._pairs[pair_id]
        return pair


def parse_vote(body: object) -> tuple[str, str, str]:
    """``(pair, choice, voter)`` from a vote's JSON body; ``ValueError`` if malformed."""
    if not isinstance(body, dict):
        raise ValueError("a vote is a JSON object")
    pair, choice, voter = body.get("pair"), body.get("choice"), body.get("voter")
    if not isinstance(pair, str) or not pair:
        raise ValueError("a vote names its pair")
    if choice not in CHOICES:
        raise ValueError(f"a vote's choice is one of {', '.join(CHOICES)}")
    if not isinstance(voter, str) or not voter.strip() or len(voter) > MAX_VOTER:
        raise ValueError(f"a vote needs a voter name (1 to {MAX_VOTER} characters)")
    return pair, str(choice), voter.strip()


def parse_thumb(body: object) -> tuple[int, int, str]:
    """``(cell, value, voter)`` from a thumb's JSON body; ``ValueError`` if malformed."""
    if not isinstance(body, dict):
        raise ValueError("a thumb is a JSON object")
    cell, value, voter = body.get("cell"), body.get("value"), body.get("voter")
    if isinstance(cell, bool) or not isinstance(cell, int):
        raise ValueError("a thumb names its cell")
    if value not in (-1, 0, 1) or isinstance(value, bool):
        raise ValueError("a thumb is 1 (up), -1 (down) or 0 (none)")
    if not isinstance(voter, str) or not voter.strip() or len(voter) > MAX_VOTER:
        raise ValueError(f"a thumb needs a voter name (1 to {MAX_VOTER} characters)")
    return cell, int(value), voter.strip()
