"""The models of the emulator's account: created over ``POST /v1/models``, given versions
by trainings, updated, and deleted under the real API's rules. Pure state, no I/O.

A trained version exists once its training has succeeded (so a canceled or failed
training leaves no version); the model's ``latest_version`` is its newest such version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ._schemas import ModelKind

__all__ = [
    "ACCOUNT_NAME",
    "MAX_MODELS",
    "UPDATABLE",
    "AccountModel",
    "AccountModels",
    "AccountVersion",
    "ModelRuleError",
    "trained_version_id",
]

#: The name of the emulator's account: every token belongs to it.
ACCOUNT_NAME = "emulator"
#: The real API's limit of models per account.
MAX_MODELS = 1000
#: The fields ``PATCH /v1/models/{owner}/{name}`` may change.
UPDATABLE = ("description", "readme", "github_url", "paper_url", "weights_url", "license_url")
#: A model name: lowercase letters, digits, dashes, underscores and dots, as on Replicate.
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")

Visibility = Literal["public", "private"]


class ModelRuleError(Exception):
    """A request the real API's rules refuse: ``status`` (403, 404, 409 or 422), ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def trained_version_id(destination: str, training_id: str) -> str:
    """The id of the version a training makes: the same for the same training."""
    return hashlib.sha256(f"{destination}:{training_id}".encode()).hexdigest()


def _iso(wall: float) -> str:
    moment = datetime.fromtimestamp(wall, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AccountVersion:
    """One version of an account model. ``ready_at(now)`` is the wall time from which it
    exists (its training's completion), or ``None`` while it does not (yet)."""

    id: str
    kind: ModelKind
    base: str
    """The version it was trained from (which can't be deleted while this one exists)."""
    ready_at: Callable[[float], float | None]

    def created_at(self, now: float) -> str | None:
        ready = self.ready_at(now)
        return None if ready is None else _iso(ready)


@dataclass
class AccountModel:
    """A model of the account, with the fields ``POST``/``PATCH`` set."""

    owner: str
    name: str
    visibility: Visibility
    hardware: str
    fields: dict[str, str | None] = field(default_factory=dict)
    versions: list[AccountVersion] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def live_versions(self, now: float) -> list[AccountVersion]:
        """Its versions that exist at ``now``, newest first."""
        live = [(v.ready_at(now), v) for v in self.versions]
        ready = [(at, v) for at, v in live if at is not None]
        ready.sort(key=lambda pair: -pair[0])
        return [version for _, version in ready]

    def version(self, version_id: str, now: float) -> AccountVersion | None:
        return next((v for v in self.live_versions(now) if v.id == version_id), None)

    def model_object(
        self, run_count: int, now: float, latest: Callable[[AccountVersion], dict[str, Any]]
    ) -> dict[str, Any]:
        """Its model object, with ``latest(version)`` as ``latest_version`` (or ``null``)."""
        versions = self.live_versions(now)
        return {
            "url": f"https://replicate.com/{self.full_name}",
            "owner": self.owner,
            "name": self.name,
            "description": self.fields.get("description"),
            "visibility": self.visibility,
            "github_url": self.fields.get("github_url"),
            "paper_url": self.fields.get("paper_url"),
            "license_url": self.fields.get("license_url"),
            "run_count": run_count,
            "cover_image_url": self.fields.get("cover_image_url"),
            "default_example": None,
            "latest_version": latest(versions[0]) if versions else None,
        }


class AccountModels:
    """The account's models by ``owner/name``, in creation order; ``owner`` is the
    account's name (the only owner a create may name)."""

    def __init__(self, owner: str, hardware: frozenset[str]) -> None:
        self.owner = owner
        self._hardware = hardware
        self._models: dict[str, AccountModel] = {}

    def __contains__(self, model: object) -> bool:
        return model in self._models

    def get(self, model: str) -> AccountModel | None:
        return self._models.get(model)

    def names(self) -> list[str]:
        return list(self._models)

    def create(self, payload: Mapping[str, Any]) -> AccountModel:
        """A new model from a ``POST /v1/models`` body; :class:`ModelRuleError` if refused."""
        problems = []
        for key in ("owner", "name", "visibility", "hardware"):
            if not isinstance(payload.get(key), str):
                problems.append(f"{key} is required: a string")
        for key in ("description", "github_url", "paper_url", "license_url", "cover_image_url"):
            if key in payload and payload[key] is not None and not isinstance(payload[key], str):
                problems.append(f"{key} must be a string")
        if problems:
            raise ModelRuleError(422, "; ".join(problems))
        owner, name = str(payload["owner"]), str(payload["name"])
        if owner != self.owner:
            raise ModelRuleError(
                403, f"You can only create models for your own account ({self.owner})"
            )
        if not MODEL_NAME.fullmatch(name):
            raise ModelRuleError(
                422,
                "name must be lowercase letters, digits, dashes, underscores and dots, "
                "starting with a letter or digit (at most 100)",
            )
        visibility = payload["visibility"]
        if visibility not in ("public", "private"):
            raise ModelRuleError(422, "visibility must be 'public' or 'private'")
        if payload["hardware"] not in self._hardware:
            raise ModelRuleError(
                422, f"hardware must be one of: {', '.join(sorted(self._hardware))}"
            )
        full = f"{owner}/{name}"
        if full in self._models:
            raise ModelRuleError(409, f"A model named {full} already exists")
        if len(self._models) >= MAX_MODELS:
            raise ModelRuleError(409, f"An account has at most {MAX_MODELS} models")
        fields = {
            key: payload.get(key)
            for key in ("description", "github_url", "paper_url", "license_url", "cover_image_url")
        }
        model = AccountModel(owner, name, visibility, str(payload["hardware"]), fields)
        self._models[full] = model
        return model

    def update(self, model: str, payload: Mapping[str, Any]) -> AccountModel:
        """Apply a ``PATCH`` body: only :data:`UPDATABLE` fields, each a string."""
        found = self._owned(model)
        unknown = sorted(set(payload) - set(UPDATABLE))
        if unknown:
            raise ModelRuleError(
                422, f"Only these fields can be updated: {', '.join(UPDATABLE)}; got {unknown}"
            )
        wrong = sorted(key for key, value in payload.items() if not isinstance(value, str))
        if wrong:
            raise ModelRuleError(422, f"{', '.join(wrong)} must be strings")
        found.fields.update(payload)
        return found

    def delete(self, model: str, now: float) -> None:
        """The real rules: only your own models, only private ones, only without versions."""
        found = self._owned(model)
        if found.visibility != "private":
            raise ModelRuleError(409, "Only private models can be deleted")
        if found.live_versions(now):
            raise ModelRuleError(
                409, "A model with versions can't be deleted: delete its versions first"
            )
        del self._models[model]

    def delete_version(self, model: str, version_id: str, now: float) -> None:
        """The real rules: only versions of your own private models, not one another
        version of yours was trained from."""
        found = self._owned(model)
        version = found.version(version_id, now)
        if version is None:
            raise ModelRuleError(404, "Version not found")
        if found.visibility != "private":
            raise ModelRuleError(409, "Only versions of private models can be deleted")
        for other in self._models.values():
            if any(v.base == version_id for v in other.live_versions(now)):
                raise ModelRuleError(
                    409, "This version is the base of a trained version and can't be deleted"
                )
        found.versions.remove(version)

    def add_version(self, model: str, version: AccountVersion) -> None:
        self._owned(model).versions.append(version)

    def _owned(self, model: str) -> AccountModel:
        found = self._models.get(model)
        if found is None:
            raise ModelRuleError(404, "Model not found")
        return found
