"""``replicate-home models``: the catalog's models, their kinds and aliases."""

from __future__ import annotations

from typing import TextIO

from .. import _catalog

__all__ = ["print_models"]


def print_models(out: TextIO) -> None:
    aliases: dict[str, list[str]] = {}
    for alias, model in _catalog.MODEL_ALIASES.items():
        aliases.setdefault(model, []).append(alias)
    width = max(len(model) for model in _catalog.MODELS)
    print(f"{'MODEL':<{width}}  KIND   ALIASES", file=out)
    defaults = (_catalog.DEFAULT_MODEL, _catalog.DEFAULT_IMAGE_MODEL)
    for model in _catalog.MODELS:
        kind = _catalog.model_kind(model)
        names = ", ".join(aliases.get(model, []))
        default = " (default)" if model in defaults else ""
        print(f"{model:<{width}}  {kind:<5}  {names}{default}", file=out)
