"""The official API's records other than predictions and files: models and their
versions, collections, search results, hardware, the account, trainings and a
deployment's release, read from untrusted answers.

Pure (no I/O). Each record needs the few fields that identify it (a model's ``owner``
and ``name``, a version's ``id`` ...: :class:`UnexpectedResponseFormat` without them);
every other field is information for the caller, ``None`` (or empty) when missing or
malformed, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._decode import require_id, require_string
from ._exceptions import UnexpectedResponseFormat
from ._models import Deployment, DeploymentRelease, Prediction
from ._record import parse_timestamp, prediction_from_object

__all__ = [
    "Account",
    "Collection",
    "Hardware",
    "Model",
    "ModelVersion",
    "SearchHit",
    "SearchPage",
    "SearchResults",
    "read_account",
    "read_collection",
    "read_deployment",
    "read_hardware",
    "read_model",
    "read_search",
    "read_version",
]


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model: ``id`` (64 hex digits) is what a prediction or a training
    runs; ``openapi_schema`` describes its input and output."""

    id: str
    created_at: datetime | None = None
    cog_version: str | None = None
    openapi_schema: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Model:
    """A model on Replicate (``owner/name``), as ``GET /v1/models/{owner}/{name}``
    describes it. ``latest_version`` is ``None`` for a model with no version yet;
    ``default_example`` is the prediction its author chose to show, if any."""

    owner: str
    name: str
    description: str | None = None
    visibility: str | None = None
    is_official: bool = False
    run_count: int | None = None
    url: str | None = field(default=None, repr=False)
    github_url: str | None = field(default=None, repr=False)
    paper_url: str | None = field(default=None, repr=False)
    license_url: str | None = field(default=None, repr=False)
    cover_image_url: str | None = field(default=None, repr=False)
    latest_version: ModelVersion | None = field(default=None, repr=False)
    default_example: Prediction | None = field(default=None, repr=False, compare=False)

    @property
    def full_name(self) -> str:
        """``owner/name``, as a model is passed to ``predict`` and the other calls."""
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        return self.full_name


@dataclass(frozen=True)
class Collection:
    """A curated collection of models (``slug`` like ``text-to-image``).

    ``models`` are the full models where the answer had them (``collections.get``);
    ``model_names`` are their ``owner/name`` always (a listing or a search answers only
    names, or nothing)."""

    slug: str
    name: str
    description: str | None = None
    full_description: str | None = field(default=None, repr=False)
    models: tuple[Model, ...] = field(default=(), repr=False)
    model_names: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class SearchHit:
    """A model a search found, with the search's relevance ``score`` and ``tags``."""

    model: Model
    score: float | None = None
    tags: tuple[str, ...] = ()
    generated_description: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SearchPage:
    """A documentation page a search found; ``href`` is a path on replicate.com."""

    name: str
    href: str


@dataclass(frozen=True)
class SearchResults:
    """What ``GET /v1/search`` found: models (best first), collections and pages."""

    query: str
    models: tuple[SearchHit, ...] = ()
    collections: tuple[Collection, ...] = ()
    pages: tuple[SearchPage, ...] = ()


@dataclass(frozen=True)
class Hardware:
    """A hardware type models and deployments run on: ``sku`` (``gpu-t4``) is what a
    create or update takes, ``name`` what people read."""

    sku: str
    name: str | None = None


@dataclass(frozen=True)
class Account:
    """The account the API token belongs to: ``type`` is ``user`` or
    ``organization``."""

    username: str
    type: str | None = None
    name: str | None = None
    github_url: str | None = field(default=None, repr=False)
    avatar_url: str | None = field(default=None, repr=False)


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _count(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return value if isinstance(value, dict) else None


def read_version(data: dict[str, Any], text: str) -> ModelVersion:
    """A :class:`ModelVersion` from a version object (``id`` required)."""
    return ModelVersion(
        id=require_id(data, "id", text),
        created_at=parse_timestamp(data.get("created_at")),
        cog_version=_text(data, "cog_version"),
        openapi_schema=_object(data, "openapi_schema"),
    )


def read_model(data: dict[str, Any], text: str) -> Model:
    """A :class:`Model` from a model object (``owner`` and ``name`` required)."""
    latest = _object(data, "latest_version")
    example = _object(data, "default_example")
    default_example: Prediction | None = None
    if example is not None:
        try:
            default_example = prediction_from_object(example, text)
        except UnexpectedResponseFormat:
            default_example = None  # an example is information, not a reason to fail
    return Model(
        owner=require_id(data, "owner", text),
        name=require_id(data, "name", text),
        description=_text(data, "description"),
        visibility=_text(data, "visibility"),
        is_official=data.get("is_official") is True,
        run_count=_count(data, "run_count"),
        url=_text(data, "url"),
        github_url=_text(data, "github_url"),
        paper_url=_text(data, "paper_url"),
        license_url=_text(data, "license_url"),
        cover_image_url=_text(data, "cover_image_url"),
        latest_version=None if latest is None else _lenient_version(latest, text),
        default_example=default_example,
    )


def _lenient_version(data: dict[str, Any], text: str) -> ModelVersion | None:
    try:
        return read_version(data, text)
    except UnexpectedResponseFormat:
        return None


def read_collection(data: dict[str, Any], text: str) -> Collection:
    """A :class:`Collection` from a collection object: a listing's item, a
    ``collections.get`` answer (full models) or a search's (model names)."""
    models: list[Model] = []
    names: list[str] = []
    listed = data.get("models")
    for item in listed if isinstance(listed, list) else ():
        if isinstance(item, dict):
            model = read_model(item, text)
            models.append(model)
            names.append(model.full_name)
        elif isinstance(item, str) and item:
            names.append(item)
    slug = require_id(data, "slug", text)
    return Collection(
        slug=slug,
        name=_text(data, "name") or slug,
        description=_text(data, "description"),
        full_description=_text(data, "full_description"),
        models=tuple(models),
        model_names=tuple(names),
    )


def read_search(data: dict[str, Any], text: str, query: str) -> SearchResults:
    """:class:`SearchResults` from a search answer; malformed entries are skipped."""
    hits: list[SearchHit] = []
    for item in _objects(data, "models"):
        model = _object(item, "model")
        if model is None:
            continue
        metadata = _object(item, "metadata") or {}
        score = metadata.get("score")
        tags = metadata.get("tags")
        hits.append(
            SearchHit(
                model=read_model(model, text),
                score=float(score)
                if isinstance(score, (int, float)) and not isinstance(score, bool)
                else None,
                tags=tuple(tag for tag in tags if isinstance(tag, str))
                if isinstance(tags, list)
                else (),
                generated_description=_text(metadata, "generated_description"),
            )
        )
    pages = [
        SearchPage(name, href)
        for item in _objects(data, "pages")
        if (name := _text(item, "name")) is not None and (href := _text(item, "href")) is not None
    ]
    return SearchResults(
        query=_text(data, "query") or query,
        models=tuple(hits),
        collections=tuple(read_collection(item, text) for item in _objects(data, "collections")),
        pages=tuple(pages),
    )


def _objects(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def read_hardware(items: object, text: str) -> list[Hardware]:
    """The hardware list (a JSON array of ``{"sku", "name"}``)."""
    if not isinstance(items, list):
        raise UnexpectedResponseFormat(text, "the hardware list is not a JSON array")
    return [
        Hardware(sku=require_string(item, "sku", text), name=_text(item, "name"))
        for item in items
        if isinstance(item, dict)
    ]


def read_account(data: dict[str, Any], text: str) -> Account:
    """An :class:`Account` from ``GET /v1/account`` (``username`` required)."""
    return Account(
        username=require_string(data, "username", text),
        type=_text(data, "type"),
        name=_text(data, "name"),
        github_url=_text(data, "github_url"),
        avatar_url=_text(data, "avatar_url"),
    )


def read_deployment(data: dict[str, Any], text: str) -> Deployment:
    """A :class:`Deployment` (runnable as it is) with its current release."""
    owner = require_id(data, "owner", text)
    name = require_id(data, "name", text)
    try:
        deployment = Deployment(f"{owner}/{name}")
    except ValueError:
        raise UnexpectedResponseFormat(text, "a deployment name that is not owner/name") from None
    release = _object(data, "current_release")
    if release is None:
        return deployment
    configuration = _object(release, "configuration") or {}
    creator = _object(release, "created_by") or {}
    return Deployment(
        deployment.name,
        release=DeploymentRelease(
            number=_count(release, "number"),
            model=_text(release, "model"),
            version=_text(release, "version"),
            created_at=parse_timestamp(release.get("created_at")),
            created_by=_text(creator, "username"),
            hardware=_text(configuration, "hardware"),
            min_instances=_count(configuration, "min_instances"),
            max_instances=_count(configuration, "max_instances"),
        ),
    )
