"""``api.models``: models on the official API, read (get, list, readme, examples,
versions) and managed (create, update, delete, delete a version). Named after the
official 2.x client's ``models`` group; a model is passed as ``"owner/name"`` (or a
:class:`Model`), as everywhere else in this library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import urlsplit

from ._api_records import Model, ModelVersion, read_model, read_version
from ._api_resource import ApiResource, check_name, check_version_id, owner_and_name
from ._models import Prediction
from ._paging import next_cursor, results_of
from ._record import prediction_from_object
from ._service import RequestSpec

__all__ = ["ModelsAPI"]

SortBy = Literal["model_created_at", "latest_version_created_at"]
SortDirection = Literal["asc", "desc"]

_SORT_BY = ("model_created_at", "latest_version_created_at")
_VISIBILITY = ("public", "private")
#: The longest README or description sent (the API's own limits are lower).
MAX_TEXT = 1_000_000


def _check_url(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a URL string, not {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http:// or https:// URL, not {value!r}")
    return value


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{what} must be a string of at most {MAX_TEXT} characters")
    return value


class ModelsAPI(ApiResource):
    """``api.models``: ``get``, ``list``, ``create``, ``update``, ``delete``, and the
    groups ``readme``, ``examples`` and ``versions``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: A model's README (``api.models.readme.get("owner/name")``).
        self.readme = ReadmeAPI(self._engine, self._service)
        #: A model's example predictions (``api.models.examples.list(...)``).
        self.examples = ExamplesAPI(self._engine, self._service)
        #: A model's versions (``list``, ``get``, ``delete``).
        self.versions = VersionsAPI(self._engine, self._service)

    async def get(self, model: str | Model) -> Model:
        """One model (``GET /v1/models/{owner}/{name}``)."""
        owner, name = owner_and_name(model)
        return read_model(*await self._send(self._service.request("GET", "models", owner, name)))

    def list(
        self,
        *,
        sort_by: SortBy | None = None,
        sort_direction: SortDirection | None = None,
    ) -> AsyncIterator[Model]:
        """Every public model, page after page (``GET /v1/models``; by default the
        latest version's creation, newest first). Stop iterating at any time."""
        query: dict[str, str] = {}
        if sort_by is not None:
            if sort_by not in _SORT_BY:
                raise ValueError(f"sort_by must be one of {', '.join(_SORT_BY)}")
            query["sort_by"] = sort_by
        if sort_direction is not None:
            if sort_direction not in ("asc", "desc"):
                raise ValueError("sort_direction must be 'asc' or 'desc'")
            query["sort_direction"] = sort_direction

        def request(cursor: str | None) -> RequestSpec:
            extra = {} if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "models", query={**query, **extra})

        def read(data: dict[str, Any], text: str) -> tuple[list[Model], str | None]:
            page = [read_model(item, text) for item in results_of(data, text)]
            return page, next_cursor(data.get("next"))

        return self._listing(request, read)

    async def create(
        self,
        model: str,
        *,
        hardware: str,
        visibility: Literal["public", "private"] = "private",
        description: str | None = None,
        github_url: str | None = None,
        paper_url: str | None = None,
        license_url: str | None = None,
        cover_image_url: str | None = None,
    ) -> Model:
        """Create a model (``POST /v1/models``) with no version yet: a training's
        destination, or a model to push versions to. ``model`` is ``owner/name`` (the
        owner must be the token's account); ``hardware`` a SKU of
        ``api.hardware.list()``."""
        owner, name = owner_and_name(model)
        if visibility not in _VISIBILITY:
            raise ValueError("visibility must be 'public' or 'private'")
        body: dict[str, Any] = {
            "owner": owner,
            "name": name,
            "visibility": visibility,
            "hardware": check_name(hardware, "hardware SKU"),
        }
        if description is not None:
            body["description"] = _check_text(description, "description")
        for key, url in (
            ("github_url", github_url),
            ("paper_url", paper_url),
            ("license_url", license_url),
            ("cover_image_url", cover_image_url),
        ):
            if url is not None:
                body[key] = _check_url(url, key)
        spec = self._service.request("POST", "models", json=body)
        return read_model(*await self._send(spec))

    async def update(
        self,
        model: str | Model,
        *,
        description: str | None = None,
        readme: str | None = None,
        github_url: str | None = None,
        paper_url: str | None = None,
        weights_url: str | None = None,
        license_url: str | None = None,
    ) -> Model:
        """Change a model's description, README or links (``PATCH``); only what is
        given changes. Returns the model as updated."""
        owner, name = owner_and_name(model)
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = _check_text(description, "description")
        if readme is not None:
            body["readme"] = _check_text(readme, "readme")
        for key, url in (
            ("github_url", github_url),
            ("paper_url", paper_url),
            ("weights_url", weights_url),
            ("license_url", license_url),
        ):
            if url is not None:
                body[key] = _check_url(url, key)
        if not body:
            raise ValueError("give at least one field to update")
        spec = self._service.request("PATCH", "models", owner, name, json=body)
        return read_model(*await self._send(spec))

    async def delete(self, model: str | Model) -> None:
        """Delete a model (``DELETE``). The API refuses (:class:`ResponseStatusError`)
        a model that still has versions, or is public: delete its versions first."""
        owner, name = owner_and_name(model)
        await self._send(self._service.request("DELETE", "models", owner, name, expect_body=False))


class ReadmeAPI(ApiResource):
    """``api.models.readme``."""

    async def get(self, model: str | Model) -> str:
        """The model's README, as Markdown text (``GET .../readme``)."""
        owner, name = owner_and_name(model)
        spec = self._service.request("GET", "models", owner, name, "readme", text_body=True)
        _, text = await self._send(spec)
        return text


class ExamplesAPI(ApiResource):
    """``api.models.examples``."""

    def list(self, model: str | Model) -> AsyncIterator[Prediction]:
        """The example predictions the model's author chose, page after page
        (``GET .../examples``)."""
        owner, name = owner_and_name(model)

        def request(cursor: str | None) -> RequestSpec:
            query = None if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "models", owner, name, "examples", query=query)

        def read(data: dict[str, Any], text: str) -> tuple[list[Prediction], str | None]:
            page = [
                replace(prediction_from_object(item, text), _downloads=self._engine().downloads)
                for item in results_of(data, text)
            ]
            return page, next_cursor(data.get("next"))

        return self._listing(request, read)


class VersionsAPI(ApiResource):
    """``api.models.versions``."""

    def list(self, model: str | Model) -> AsyncIterator[ModelVersion]:
        """The model's versions, newest first, page after page."""
        owner, name = owner_and_name(model)

        def request(cursor: str | None) -> RequestSpec:
            query = None if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "models", owner, name, "versions", query=query)

        def read(data: dict[str, Any], text: str) -> tuple[list[ModelVersion], str | None]:
            page = [read_version(item, text) for item in results_of(data, text)]
            return page, next_cursor(data.get("next"))

        return self._listing(request, read)

    async def get(self, model: str | Model, version: str | ModelVersion) -> ModelVersion:
        """One version of the model, with its input and output schema."""
        owner, name = owner_and_name(model)
        spec = self._service.request(
            "GET", "models", owner, name, "versions", check_version_id(version)
        )
        return read_version(*await self._send(spec))

    async def delete(self, model: str | Model, version: str | ModelVersion) -> None:
        """Delete a version of the model (the API answers 202: it is removed soon)."""
        owner, name = owner_and_name(model)
        spec = self._service.request(
            "DELETE",
            "models",
            owner,
            name,
            "versions",
            check_version_id(version),
            expect_body=False,
        )
        await self._send(spec)
