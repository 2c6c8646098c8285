"""The example predictions of the emulator's models (``GET /v1/models/{owner}/{name}/
examples``): one finished prediction per model that takes a prompt alone (text and
image models), made long ago and the same in every run; none for models whose input
needs files. Pure, no I/O: the example is rendered, never stored or run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from ._catalogue import ModelInfo
from ._scenarios import Scenario
from ._simulation import Prediction, generate_text, make_prediction_id

__all__ = ["EXAMPLE_PROMPT", "example_prediction"]

#: The prompt of every example.
EXAMPLE_PROMPT = "An astronaut riding a rainbow unicorn, cinematic, dramatic"
#: When the examples were made (Unix time).
_MADE = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
_EXAMPLE = Scenario(duration=2.0, start_delay=0.5)


def example_prediction(model: str, info: ModelInfo, now: float) -> Prediction | None:
    """The example prediction of ``model`` as of ``now`` (emulator clock): finished, since
    it was created long before; ``None`` for a model whose input needs files."""
    if info.kind not in ("text", "image"):
        return None
    seed = hashlib.sha256(f"example:{model}".encode()).digest()
    chunks = generate_text(model, EXAMPLE_PROMPT) if info.kind == "text" else ()
    return Prediction(
        id=make_prediction_id(seed),
        model=model,
        version=info.version,
        kind=info.kind,
        input={"prompt": EXAMPLE_PROMPT},
        prompt=EXAMPLE_PROMPT,
        scenario=_EXAMPLE,
        created=now - 3600.0,
        wall_created=_MADE,
        chunks=chunks,
        source="web",
    )
