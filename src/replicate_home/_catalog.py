"""The homepage service's models: names, kinds, aliases and versions, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from ._exceptions import ModelNotSupportedError

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_MODEL",
    "IMAGE_MODELS",
    "MODELS",
    "MODEL_ALIASES",
    "MODEL_VERSIONS",
    "TEXT_MODELS",
    "ModelKind",
    "model_kind",
    "resolve_model",
]

ModelKind = Literal["text", "image"]

DEFAULT_MODEL = "google-deepmind/gemma-2b-it"
DEFAULT_IMAGE_MODEL = "stability-ai/stable-diffusion-3"

TEXT_MODELS: tuple[str, ...] = ("google-deepmind/gemma-2b-it",)
IMAGE_MODELS: tuple[str, ...] = (
    "stability-ai/stable-diffusion-3",
    "bytedance/sdxl-lightning-4step",
    "playgroundai/playground-v2.5-1024px-aesthetic",
)
MODELS: tuple[str, ...] = TEXT_MODELS + IMAGE_MODELS

MODEL_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "sd-3": "stability-ai/stable-diffusion-3",
        "sdxl": "bytedance/sdxl-lightning-4step",
        "playground-v2.5": "playgroundai/playground-v2.5-1024px-aesthetic",
        "gemma-2b": "google-deepmind/gemma-2b-it",
    }
)

MODEL_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "stability-ai/stable-diffusion-3": (
            "527d2a6296facb8e47ba1eaf17f142c240c19a30894f437feee9b91cc29d8e4f"
        ),
        "bytedance/sdxl-lightning-4step": (
            "5f24084160c9089501c1b3545d9be3c27883ae2239b6f412990e82d4a6210f8f"
        ),
        "playgroundai/playground-v2.5-1024px-aesthetic": (
            "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24"
        ),
        "google-deepmind/gemma-2b-it": (
            "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626"
        ),
    }
)


def resolve_model(model: str | None) -> str:
    """Return the full model name for ``model``.

    Empty or ``None`` gives the default text model; an alias gives its model; a full
    name gives itself. Anything else raises :class:`ModelNotSupportedError`.
    """
    if model is None or model == "":
        return DEFAULT_MODEL
    if isinstance(model, str):
        if model in MODEL_VERSIONS:
            return model
        if model in MODEL_ALIASES:
            return MODEL_ALIASES[model]
    raise ModelNotSupportedError(model, [*MODELS, *MODEL_ALIASES])


def model_kind(model: str) -> ModelKind:
    """Return whether a (resolved) homepage model makes text or images."""
    return "image" if model in IMAGE_MODELS else "text"
