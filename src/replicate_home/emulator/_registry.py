"""The models and deployments one emulator serves: the built-in catalogue
(:mod:`._catalogue`) with the emulator's own models and community models, the version
ids it has answered (which a create may then name alone), and its deployments."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._account_models import ACCOUNT_NAME, AccountModels, AccountVersion
from ._api_rules import model_description, model_object, version_object
from ._catalogue import (
    COMMUNITY_MODELS,
    EXTRA_IMAGE_MODELS,
    FILE_MODELS,
    MODELS,
    ModelInfo,
    model_info,
)
from ._directory import hardware_skus
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
    last_used: float | None = None
    """Emulator-clock time of its last prediction, if any."""


class ModelRegistry:
    """The models and deployments of one emulator. ``community`` names more community
    models; ``models`` maps more model names to their kind (both checked here)."""

    def __init__(
        self,
        community: Iterable[str],
        models: Mapping[str, ModelKind],
        clock: Callable[[], float],
    ) -> None:
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
        self._clock = clock
        #: The models of the emulator's account (created over ``POST /v1/models``).
        self.account = AccountModels(ACCOUNT_NAME, hardware_skus())
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

    def exists(self, model: str) -> bool:
        """Whether ``owner/name`` is a model: any name is, but the account's own names
        only once created."""
        owner = model.split("/", 1)[0]
        return owner != self.account.owner or model in self.account

    def info(self, model: str) -> ModelInfo:
        """What the emulator makes of ``owner/name``, with its own models and community
        models; an account model runs as its latest version (which a training made)."""
        owned = self.account.get(model)
        if owned is not None:
            versions = owned.live_versions(self._clock())
            if not versions:
                return ModelInfo("", "text", official=False)  # nothing to run yet
            return ModelInfo(versions[0].id, versions[0].kind, official=False)
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

    def searchable(self) -> list[str]:
        """The models search looks at: the catalogue and the account's public models."""
        public = [
            name
            for name in self.account.names()
            if (owned := self.account.get(name)) is not None and owned.visibility == "public"
        ]
        return [*self.catalogue(), *public]

    def description(self, model: str) -> str:
        """What a model is for, as its object says."""
        owned = self.account.get(model)
        if owned is not None:
            return owned.fields.get("description") or ""
        return model_description(self.info(model))

    def version_objects(self, model: str) -> list[dict[str, Any]]:
        """The version objects of ``model``, newest first."""
        owned = self.account.get(model)
        if owned is None:
            return [version_object(self.info(model))]
        now = self._clock()
        return [self._account_version(v, now) for v in owned.live_versions(now)]

    def model_object(self, model: str, run_count: int) -> dict[str, Any]:
        """The model object of ``model`` (an account model's own fields and versions)."""
        owned = self.account.get(model)
        if owned is None:
            return model_object(model, self.info(model), run_count)
        now = self._clock()
        return owned.model_object(run_count, now, lambda v: self._account_version(v, now))

    @staticmethod
    def _account_version(version: AccountVersion, now: float) -> dict[str, Any]:
        info = ModelInfo(version.id, version.kind, official=False)
        return version_object(info, created_at=version.created_at(now))

    def version_info(self, model: str, version: str) -> ModelInfo | None:
        """What runs as ``version`` of ``model``, if it is one of its versions now."""
        owned = self.account.get(model)
        if owned is None:
            info = self.info(model)
            return info if version == info.version else None
        found = owned.version(version, self._clock())
        return None if found is None else ModelInfo(found.id, found.kind, official=False)

    def remember_version(self, model: str, version: str) -> None:
        """Note that ``version`` is ``model``'s (within a bound on the versions kept)."""
        if version in self._known_versions or len(self._known_versions) < _MAX_KNOWN_VERSIONS:
            self._known_versions[version] = model

    def model_of_version(self, version: str) -> str | None:
        """The model a bare version id belongs to, if the emulator knows it (a trained
        version only while it exists)."""
        model = self._known_versions.get(version)
        if model is not None and model in self.account:
            return model if self.version_info(model, version) is not None else None
        return model

    def deploy(self, name: str, model: str) -> Deployment:
        """Serve (or serve again, at release 1) a deployment ``name`` that runs ``model``
        at the emulator's version of it; ``ValueError`` unless both are ``owner/name``."""
        for label, value in (("deployment name", name), ("model", model)):
            if not isinstance(value, str) or not OWNER_NAME.fullmatch(value):
                raise ValueError(f"a {label} must be 'owner/name', got {value!r}")
        deployment = Deployment(name, model, self.info(model).version)
        self.deployments[name] = deployment
        return deployment
