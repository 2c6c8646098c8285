"""What each kind of emulated model takes and gives: Cog-style ``Input`` and ``Output``
JSON schemas, one table. Pure data, no I/O.

The versions' ``openapi_schema`` serve these schemas, and :mod:`._validation` checks a
create's ``input`` against the very same ``Input`` schema, so what a model documents and
what it accepts never differ.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "DEFAULT_VIDEO_BYTES",
    "MAX_VIDEO_BYTES",
    "MODEL_KINDS",
    "TEXT_KINDS",
    "ModelKind",
    "input_schema",
    "output_schema",
]

ModelKind = Literal[
    "text", "image", "upscale", "image-to-image", "speech-to-text", "video", "vision"
]
#: Every model kind, in the order the docs list them.
MODEL_KINDS: tuple[ModelKind, ...] = (
    "text",
    "image",
    "upscale",
    "image-to-image",
    "speech-to-text",
    "video",
    "vision",
)

#: The kinds whose output is text streamed as it is written (a vision model reads an
#: image and writes text).
TEXT_KINDS: frozenset[str] = frozenset({"text", "vision"})

#: The size of a video model's output unless its ``output_bytes`` input says otherwise.
DEFAULT_VIDEO_BYTES = 8 * 1024 * 1024
#: The largest ``output_bytes`` a video model accepts.
MAX_VIDEO_BYTES = 64 * 1024 * 1024

_URI: dict[str, Any] = {"type": "string", "format": "uri"}


def _prop(title: str, description: str, **schema: Any) -> dict[str, Any]:
    return {**schema, "title": title, "description": description}


_PROMPT = _prop("Prompt", "Prompt to send to the model.", type="string")
_SEED = _prop("Seed", "Random seed. Leave blank to randomize the seed", type="integer")

# kind -> (required names, properties in x-order)
_INPUTS: Mapping[str, tuple[tuple[str, ...], dict[str, dict[str, Any]]]] = {
    "text": (
        ("prompt",),
        {
            "prompt": _PROMPT,
            "seed": _SEED,
            "max_new_tokens": _prop(
                "Max New Tokens",
                "Maximum number of tokens to generate.",
                type="integer",
                default=512,
                minimum=1,
            ),
            "temperature": _prop(
                "Temperature",
                "Randomness of the output.",
                type="number",
                default=0.7,
                minimum=0,
                maximum=5,
            ),
        },
    ),
    "image": (
        ("prompt",),
        {
            "prompt": _PROMPT,
            "seed": _SEED,
            "width": _prop("Width", "Width of the output image", type="integer", default=1024),
            "height": _prop("Height", "Height of the output image", type="integer", default=1024),
            "num_outputs": _prop(
                "Num Outputs",
                "Number of images to output",
                type="integer",
                default=1,
                minimum=1,
                maximum=4,
            ),
        },
    ),
    "upscale": (
        ("image",),
        {
            "image": _prop("Image", "Input image", **_URI),
            "scale": _prop(
                "Scale",
                "Factor to scale the image by",
                type="integer",
                default=2,
                minimum=1,
                maximum=4,
            ),
            "face_enhance": _prop(
                "Face Enhance", "Run a face enhancer as well", type="boolean", default=False
            ),
        },
    ),
    "image-to-image": (
        ("image", "prompt"),
        {
            "image": _prop("Image", "Input image to transform", **_URI),
            "prompt": _PROMPT,
            "strength": _prop(
                "Strength",
                "How much to change the input image (1: entirely)",
                type="number",
                default=0.8,
                minimum=0,
                maximum=1,
            ),
            "num_outputs": _prop(
                "Num Outputs",
                "Number of images to output",
                type="integer",
                default=1,
                minimum=1,
                maximum=4,
            ),
            "reference_images": _prop(
                "Reference Images",
                "More images to draw style from",
                type="array",
                items=dict(_URI),
            ),
            "output_format": _prop(
                "Output Format",
                "Format of the output images",
                type="string",
                enum=["png"],
                default="png",
            ),
        },
    ),
    "speech-to-text": (
        ("audio",),
        {
            "audio": _prop("Audio", "Audio file", **_URI),
            "transcription": _prop(
                "Transcription",
                "Choose the format for the transcription",
                type="string",
                enum=["plain text", "srt", "vtt"],
                default="plain text",
            ),
            "translate": _prop(
                "Translate", "Translate the text to English", type="boolean", default=False
            ),
            "language": _prop(
                "Language",
                "Language spoken in the audio; 'auto' detects it",
                type="string",
                default="auto",
            ),
            "temperature": _prop(
                "Temperature",
                "Temperature to use for sampling",
                type="number",
                default=0,
                minimum=0,
                maximum=1,
            ),
        },
    ),
    "vision": (
        ("prompt", "image"),
        {
            "prompt": _PROMPT,
            "image": _prop("Image", "Image to look at", **_URI),
            "max_new_tokens": _prop(
                "Max New Tokens",
                "Maximum number of tokens to generate.",
                type="integer",
                default=512,
                minimum=1,
            ),
        },
    ),
    "video": (
        ("prompt",),
        {
            "prompt": _PROMPT,
            "first_frame_image": _prop("First Frame Image", "First frame for the video", **_URI),
            "prompt_optimizer": _prop(
                "Prompt Optimizer", "Use the prompt optimizer", type="boolean", default=True
            ),
            "output_bytes": _prop(
                "Output Bytes",
                "(emulator only) size of the output file, in bytes",
                type="integer",
                default=DEFAULT_VIDEO_BYTES,
                minimum=1,
                maximum=MAX_VIDEO_BYTES,
            ),
        },
    ),
}


def input_schema(kind: str) -> dict[str, Any]:
    """The Cog ``Input`` schema of a model of ``kind`` (a fresh copy: callers may keep it)."""
    required, properties = _INPUTS[kind]
    ordered = {
        name: {**schema, "x-order": order}
        for order, (name, schema) in enumerate(properties.items())
    }
    return {"type": "object", "title": "Input", "required": list(required), "properties": ordered}


_FILE_OUTPUT: dict[str, Any] = {"type": "string", "format": "uri", "title": "Output"}
_OUTPUTS: Mapping[str, dict[str, Any]] = {
    "text": {
        "type": "array",
        "items": {"type": "string"},
        "title": "Output",
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    },
    "image": {"type": "array", "items": dict(_URI), "title": "Output"},
    "vision": {
        "type": "array",
        "items": {"type": "string"},
        "title": "Output",
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    },
    "upscale": _FILE_OUTPUT,
    "image-to-image": {"type": "array", "items": dict(_URI), "title": "Output"},
    "speech-to-text": {
        "type": "object",
        "title": "Output",
        "required": ["segments", "transcription"],
        "properties": {
            "segments": {"title": "Segments"},
            "srt_file": {"type": "string", "title": "Srt File", "format": "uri"},
            "txt_file": {"type": "string", "title": "Txt File", "format": "uri"},
            "translation": {"type": "string", "title": "Translation"},
            "transcription": {"type": "string", "title": "Transcription"},
            "detected_language": {"type": "string", "title": "Detected Language"},
        },
    },
    "video": _FILE_OUTPUT,
}


def output_schema(kind: str) -> dict[str, Any]:
    """The Cog ``Output`` schema of a model of ``kind`` (a fresh copy)."""
    return copy.deepcopy(dict(_OUTPUTS[kind]))
