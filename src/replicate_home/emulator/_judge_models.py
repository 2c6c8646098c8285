"""The emulator's judge models: deterministic scorers whose score depends on the output
they are given, so tests check a judging run's plumbing end to end. Pure, no I/O.

``replicate-home/text-judge`` (a text model) reads the output between the ``<output>``
markers of the prompt it is sent (the prompt
:func:`replicate_home.comparisons.judge_prompt` writes) and answers a sentence and a
``SCORE: N`` line, ``N`` = :func:`judge_score` of that text. ``replicate-home/vision-judge``
(a vision model: a prompt and an ``image``) scores the image's bytes the same way. Given a
prompt with no output to judge, the text judge says so and gives no score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from ._file_models import FileDigest
from ._schemas import ModelKind

__all__ = ["JUDGE_MODELS", "judge_answer", "judge_score"]

#: The judge models, name -> kind.
JUDGE_MODELS: Mapping[str, ModelKind] = {
    "replicate-home/text-judge": "text",
    "replicate-home/vision-judge": "vision",
}

_OPEN, _CLOSE = "<output>\n", "\n</output>"


def judge_score(material: str | bytes) -> int:
    """The score (1 to 10) the emulator's judges give ``material``: an output's text, or
    an image's bytes; the first byte of its SHA-256, modulo 10, plus 1."""
    data = material.encode() if isinstance(material, str) else material
    return 1 + hashlib.sha256(data).digest()[0] % 10


def _words(text: str) -> tuple[str, ...]:
    words = text.split(" ")
    return (words[0], *(" " + word for word in words[1:]))


def judge_answer(model: str, prompt: str, files: Mapping[str, FileDigest]) -> tuple[str, ...]:
    """The answer of judge ``model`` to ``prompt`` (the vision judge's image in
    ``files["image"]``), as chunks of words."""
    if JUDGE_MODELS[model] == "vision":
        image = files.get("image")
        if image is None:
            return _words("I was given no image to judge.")
        score = 1 + bytes.fromhex(image.sha256)[0] % 10
        return _words(f"The image of {image.length} bytes earns {score}.\nSCORE: {score}")
    start, end = prompt.rfind(_OPEN), prompt.rfind(_CLOSE)
    if start < 0 or end < start:
        return _words("I see no output to judge.")
    output = prompt[start + len(_OPEN) : end]
    score = judge_score(output)
    return _words(f"The output of {len(output)} characters earns {score}.\nSCORE: {score}")
