"""Trainings, as the emulator runs them: a training is a prediction (as on Replicate,
where ``GET /v1/predictions/{id}`` answers a training too) whose ``training`` says where
its result goes. On success its output is ``{"version", "weights"}``: the new version of
the destination model (which then runs) and a weights file the emulator serves. Pure
data and rules, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["WEIGHTS_FILE", "WEIGHTS_TYPE", "TrainingTarget", "weights_bytes"]

#: The name and media type of a training's weights file (``urls`` under its id).
WEIGHTS_FILE = "trained_model.tar"
WEIGHTS_TYPE = "application/x-tar"
#: The size of the emulator's weights files: small, their content deterministic.
WEIGHTS_SIZE = 4096


@dataclass(frozen=True)
class TrainingTarget:
    """Where a training's result goes: the ``destination`` model (``owner/name``), the
    ``version`` id it makes there, and the ``base`` version it trains from."""

    destination: str
    version: str
    base: str

    def output(self, weights_url: str) -> dict[str, str]:
        """The training's output once it has succeeded: the new version as
        ``owner/name:id`` (the official Python client reads the destination from it)."""
        return {"version": f"{self.destination}:{self.version}", "weights": weights_url}

    def logs(self, base_model: str) -> str:
        return f"Training {base_model} into {self.destination}\n"


def weights_bytes(training_id: str, target: TrainingTarget) -> bytes:
    """The trained weights: bytes that name the training, the same for the same training."""
    seed = f"{training_id}:{target.destination}:{target.version}".encode()
    block = hashlib.sha256(seed).digest()
    return (block * (WEIGHTS_SIZE // len(block) + 1))[:WEIGHTS_SIZE]
