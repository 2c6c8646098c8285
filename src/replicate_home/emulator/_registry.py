"""The models and deployments one emulator serves: the built-in catalogue
(:mod:`._catalogue`) with the emulator's own models and community models, the version
ids it has answered (which a create may then name alone), and its deployments."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._catalogue import (
    COMMUNITY_MODELS,
    EXTRA_IMAGE_MODELS,
    FILE_MODELS,
    MODELS,
    ModelInfo,
    model_info,
)
from ._judge_models import JUDGE_MODELS
from ._schemas import MODEL_KINDS, ModelKind

__all__ = ["OWNER_NAME", "Deployment", "ModelRegistry"]

#: ``owner/name`` of a model or a deployment.
OWNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
#: Version ids the emulator remembers for ``POST /v1/predictions`` with a bare id.
_MAX_KNOWN_VERSIONS = 100_000


@dataclass
class Deployment:
    """A deployment the emulator serves: the model and version it runs."""

    name: str
    model: str
    version: str
    release: int = 1
    configuration: dict[str, Any] = field(
        default_factory=lambda: {"hardware": "gpu-t4", "min_instances": 0, "max_instances": 1}
    )


class ModelRegistry:
    """The models and deployments of one emulator. ``community`` names more community
    models; ``models`` maps more model names to their kind (both checked here)."""

    def __init__(self, community: Iterable[str], models: Mapping[str, ModelKind]) -> None:
        if isinstance(community, str):
            raise ValueError("community_models must be a collection of 'owner/name' strings")
        self._community = frozenset(community)
        self._models: dict[str, ModelKind] = {}
        for name, kind in models.items():
            if not isinstance(name, str) or not OWNER_NAME.fullmatch(name):
                raise ValueError(f"models keys must be 'owner/name', got {name!r}")
            if kind not in MODEL_KINDS:
                raise ValueError(
                    f"models[{name!r}] must be one of {', '.join(MODEL_KINDS)}, got {kind!r}"
                )
            self._models[name] = kind
        #: The deployments by name (``owner/name``), in creation order.
        self.deployments: dict[str, Deployment] = {}
        self._known_versions: dict[str, str] = {
            model_info(model).version: model
            for model in (
                *MODELS,
                *sorted(EXTRA_IMAGE_MODELS),
                *FILE_MODELS,
                *JUDGE_MODELS,
                *self._models,
            )
        }

    def info(self, model: str) -> ModelInfo:
        """What the emulator makes of ``owner/name``, with its own models and community
        models."""
        info = model_info(model)
        kind = self._models.get(model)
        if kind is not None:
            info = info._replace(kind=kind)
        return info._replace(official=False) if model in self._community else info

    def catalogue(self) -> list[str]:
        """The models ``GET /v1/models`` lists, each once, in a stable order."""
        names = (
            *MODELS,
            *sorted(EXTRA_IMAGE_MODELS),
            *FILE_MODELS,
            *JUDGE_MODELS,
            *sorted(COMMUNITY_MODELS | self._community),
            *self._models,
        )
        return list(dict.fromkeys(names))

    def remember_version(self, model: str, version: str) -> None:
        """Note that ``version`` is ``model``'s (within a bound on the versions kept)."""
        if version in self._known_versions or len(self._known_versions) < _MAX_KNOWN_VERSIONS:
            self._known_versions[version] = model

    def model_of_version(self, version: str) -> str | None:
        """The model a bare version id belongs to, if the emulator knows it."""
        return self._known_versions.get(version)

    def deploy(self, name: str, model: str) -> Deployment:
        """Serve (or serve again, at release 1) a deployment ``name`` that runs ``model``
        at the emulator's version of it; ``ValueError`` unless both are ``owner/name``."""
        for label, value in (("deployment name", name), ("model", model)):
            if not isinstance(value, str) or not OWNER_NAME.fullmatch(value):
                raise ValueError(f"a {label} must be 'owner/name', got {value!r}")
        deployment = Deployment(name, model, self.info(model).version)
        self.deployments[name] = deployment
        return deployment
