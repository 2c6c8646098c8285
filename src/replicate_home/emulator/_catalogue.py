"""The models the emulator knows: their pinned versions, what each produces, and which
are official (run by name) or community models (run by version only). Pure data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from ._judge_models import JUDGE_MODELS
from ._schemas import ModelKind

__all__ = [
    "COMMUNITY_MODELS",
    "EXTRA_IMAGE_MODELS",
    "FILE_MODELS",
    "MODELS",
    "ModelInfo",
    "model_info",
    "version_for",
]


class ModelInfo(NamedTuple):
    """What the emulator knows about one model: its pinned version, what it produces, and
    whether it is an official model (run by name on ``POST /v1/models/.../predictions``)
    or a community model (run by version only)."""

    version: str
    kind: ModelKind
    official: bool = True


#: The homepage models, name -> (version, kind). The single source of truth of the emulator.
MODELS: Mapping[str, ModelInfo] = {
    "google-deepmind/gemma-2b-it": ModelInfo(
        "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626", "text"
    ),
    "stability-ai/stable-diffusion-3": ModelInfo(
        "527d2a6296facb8e47ba1eaf17f142c240c19a30894f437feee9b91cc29d8e4f", "image"
    ),
    "bytedance/sdxl-lightning-4step": ModelInfo(
        "5f24084160c9089501c1b3545d9be3c27883ae2239b6f412990e82d4a6210f8f", "image"
    ),
    "playgroundai/playground-v2.5-1024px-aesthetic": ModelInfo(
        "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24", "image"
    ),
}

#: Models that produce images besides the homepage's; every other model name produces text.
EXTRA_IMAGE_MODELS: frozenset[str] = frozenset(
    {"stability-ai/sdxl", "black-forest-labs/flux-schnell", "nvidia/sana", "fofr/sdxl-emoji"}
)

#: Models that take or give files, name -> kind (see :mod:`._schemas` for their inputs).
FILE_MODELS: Mapping[str, ModelKind] = {
    "replicate/upscaler": "upscale",
    "replicate/img2img": "image-to-image",
    "openai/whisper": "speech-to-text",
    "minimax/video-01": "video",
}

#: Community models: the real API runs them by version only (its model route answers 404
#: for them). Every other model name is official (runs by name), so that any name works
#: on the model route as it always has.
COMMUNITY_MODELS: frozenset[str] = frozenset(
    {
        "bytedance/sdxl-lightning-4step",
        "playgroundai/playground-v2.5-1024px-aesthetic",
        "nvidia/sana",
        "fofr/sdxl-emoji",
        "lucataco/phi-3-mini-4k-instruct",
    }
)


def version_for(model: str) -> str:
    """The version id the emulator gives ``model`` (``owner/name``): its pinned one for the
    homepage models, else the hex SHA-256 of the name, so it is the same in every run."""
    known = MODELS.get(model)
    return known.version if known is not None else hashlib.sha256(model.encode()).hexdigest()


def model_info(model: str) -> ModelInfo:
    """What the emulator makes of any ``owner/name``: its version and what it produces."""
    official = model not in COMMUNITY_MODELS
    known = MODELS.get(model)
    if known is not None:
        return known._replace(official=official)
    kind: ModelKind = (
        FILE_MODELS.get(model)
        or JUDGE_MODELS.get(model)
        or ("image" if model in EXTRA_IMAGE_MODELS else "text")
    )
    return ModelInfo(version_for(model), kind, official)
