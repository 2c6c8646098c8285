"""What the emulated Replicate lists besides models: its hardware, its collections (which
hold the emulator's own models, by what they do) and the documentation pages its search
finds. Pure data and rules, no I/O.

The hardware SKUs are the ones replicate-python's recorded ``GET /v1/hardware`` answered,
with the newer GPUs after them; collection slugs, names and descriptions are the
recorded ``GET /v1/collections`` ones where the emulator has models of that kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._schemas import ModelKind

__all__ = [
    "COLLECTIONS",
    "HARDWARE",
    "PAGES",
    "Collection",
    "DocPage",
    "collection_members",
    "hardware_skus",
    "model_readme",
    "model_tags",
]

#: ``GET /v1/hardware``: SKU and name, in the real answer's order and key order.
HARDWARE: tuple[dict[str, str], ...] = (
    {"sku": "cpu", "name": "CPU"},
    {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    {"sku": "gpu-a40-small", "name": "Nvidia A40 GPU"},
    {"sku": "gpu-a40-large", "name": "Nvidia A40 (Large) GPU"},
    {"sku": "gpu-l40s", "name": "Nvidia L40S GPU"},
    {"sku": "gpu-a100-large", "name": "Nvidia A100 (80GB) GPU"},
    {"sku": "gpu-h100", "name": "Nvidia H100 GPU"},
)


def hardware_skus() -> frozenset[str]:
    """The SKUs a model or a deployment may name."""
    return frozenset(item["sku"] for item in HARDWARE)


@dataclass(frozen=True)
class Collection:
    """A collection of models: those of the emulator's models whose kind is in ``kinds``."""

    slug: str
    name: str
    description: str
    full_description: str
    kinds: frozenset[ModelKind]

    def summary(self) -> dict[str, Any]:
        """Its item in ``GET /v1/collections``."""
        return {"name": self.name, "slug": self.slug, "description": self.description}


def _collection(
    slug: str, name: str, description: str, overview: str, *kinds: ModelKind
) -> Collection:
    full = f"## Overview\n\n{overview}\n\nThe models here are the emulator's own: they run "
    full += "at once and answer deterministic outputs."
    return Collection(slug, name, description, full, frozenset(kinds))


#: The collections, in the order ``GET /v1/collections`` lists them.
COLLECTIONS: tuple[Collection, ...] = (
    _collection(
        "text-to-image",
        "Text to image",
        "Models that generate images from text prompts",
        "These models turn a **text prompt** into one or more images.",
        "image",
    ),
    _collection(
        "language-models",
        "Language models",
        "Models that can understand and generate text",
        "Large language models that answer a **prompt** with text, streamed as it grows.",
        "text",
    ),
    _collection(
        "trainable-language-models",
        "Trainable language models",
        "Language models that you can fine-tune using Replicate's training API.",
        "Language models whose versions can be **trained** into a model of your own.",
        "text",
    ),
    _collection(
        "vision-models",
        "Vision models",
        "Multimodal large language models with vision capabilities like object detection "
        "and optical character recognition (OCR)",
        "Models that take an **image** and a prompt and answer text about the image.",
        "vision",
    ),
    _collection(
        "super-resolution",
        "Super resolution",
        "Upscaling models that create high-quality images from low-quality images",
        "These models make an image **larger**, restoring detail.",
        "upscale",
    ),
    _collection(
        "image-editing",
        "Image editing",
        "Tools for manipulating images.",
        "Models that take an **image** and a prompt and answer an edited image.",
        "image-to-image",
    ),
    _collection(
        "speech-to-text",
        "Speech to text",
        "Models that transcribe speech into text",
        "Models that turn **audio** into a transcription, as plain text or subtitles.",
        "speech-to-text",
    ),
    _collection(
        "text-to-video",
        "Videos",
        "Models that create and edit videos",
        "Models that generate a **video** from a text prompt.",
        "video",
    ),
)


def collection_members(
    collection: Collection, kinds: Mapping[str, ModelKind], catalogue: Iterable[str]
) -> list[str]:
    """The models of ``catalogue`` (in its order) that belong in ``collection``."""
    return [model for model in catalogue if kinds[model] in collection.kinds]


@dataclass(frozen=True)
class DocPage:
    """A documentation page the search finds: its title, its path, and what it is about."""

    name: str
    href: str
    about: str

    def item(self) -> dict[str, str]:
        return {"href": self.href, "name": self.name}


#: The documentation pages search knows (paths as on replicate.com).
PAGES: tuple[DocPage, ...] = (
    DocPage("Run a model from Python", "/docs/get-started/python", "python client run model"),
    DocPage("Run a model from Node.js", "/docs/get-started/nodejs", "javascript node client"),
    DocPage(
        "Create a prediction",
        "/docs/topics/predictions/create-a-prediction",
        "prediction create run input output wait",
    ),
    DocPage(
        "Stream output",
        "/docs/topics/predictions/streaming",
        "stream streaming server-sent events language text",
    ),
    DocPage(
        "Fine-tune a language model",
        "/docs/guides/fine-tune-a-language-model",
        "training train fine-tune language text trainable",
    ),
    DocPage(
        "Fine-tune an image model",
        "/docs/guides/fine-tune-an-image-model",
        "training train fine-tune image text-to-image",
    ),
    DocPage(
        "Getting started with image editing",
        "/docs/guides/image-editing",
        "image editing image-to-image edit",
    ),
    DocPage(
        "Upscale images",
        "/docs/guides/upscale-images",
        "upscale super-resolution image upscaling",
    ),
    DocPage("Deployments", "/docs/topics/deployments", "deployment hardware instances scaling"),
    DocPage("Webhooks", "/docs/topics/webhooks", "webhook events signature"),
    DocPage("Input files", "/docs/topics/predictions/input-files", "file upload input files"),
)

_KIND_TAGS: Mapping[ModelKind, tuple[str, ...]] = {
    "text": ("text-generation", "language-model", "chat"),
    "image": ("text-to-image", "image-generation"),
    "upscale": ("super-resolution", "upscaling", "image-restoration"),
    "image-to-image": ("image-to-image", "image-editing"),
    "speech-to-text": ("speech-to-text", "transcription", "audio"),
    "video": ("text-to-video", "video-generation"),
    "vision": ("image-to-text", "vision", "multimodal"),
}


def model_tags(kind: ModelKind) -> list[str]:
    """The search metadata's tags of a model of ``kind``."""
    return list(_KIND_TAGS[kind])


def model_readme(model: str, description: str, kind: ModelKind) -> str:
    """The README (Markdown) of one of the emulator's catalogue models."""
    tags = ", ".join(_KIND_TAGS[kind])
    return (
        f"# {model}\n\n{description}.\n\n"
        "This model is served by the replicate-home emulator: it runs at once, on no "
        "hardware, and its outputs are deterministic for an input.\n\n"
        f"## Tags\n\n{tags}\n"
    )
