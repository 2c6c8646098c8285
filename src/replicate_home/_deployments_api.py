"""``api.deployments``: managing deployments on the official API (list, get, create,
update, delete). What they return is a :class:`Deployment`, runnable as it is (pass
it wherever a model is accepted), carrying its current ``release``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._api_args import parse_model_ref
from ._api_records import read_deployment
from ._api_resource import ApiResource, check_name, check_version_id, owner_and_name
from ._models import Deployment
from ._paging import next_cursor, results_of
from ._service import RequestSpec

__all__ = ["MAX_INSTANCES", "MAX_MIN_INSTANCES", "DeploymentsAPI"]

#: The API's bounds on a deployment's instances.
MAX_MIN_INSTANCES = 5
MAX_INSTANCES = 20


def _instances(value: object, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"{what} must be a whole number from 0 to {most}, not {value!r}")
    return value


def _check_range(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError("min_instances can't be more than max_instances")


class DeploymentsAPI(ApiResource):
    """``api.deployments``: ``list``, ``get``, ``create``, ``update``, ``delete``."""

    def list(self) -> AsyncIterator[Deployment]:
        """Every deployment of the account, newest first, page after page
        (``GET /v1/deployments``). Stop iterating at any time."""

        def request(cursor: str | None) -> RequestSpec:
            query = None if cursor is None else {"cursor": cursor}
            return self._service.request("GET", "deployments", query=query)

        def read(data: dict[str, Any], text: str) -> tuple[list[Deployment], str | None]:
            page = [read_deployment(item, text) for item in results_of(data, text)]
            return page, next_cursor(data.get("next"))

        return self._listing(request, read)

    async def get(self, deployment: str | Deployment) -> Deployment:
        """One deployment with its current release."""
        owner, name = owner_and_name(deployment, "deployment")
        spec = self._service.request("GET", "deployments", owner, name)
        return read_deployment(*await self._send(spec))

    async def create(
        self,
        name: str,
        *,
        model: str,
        hardware: str,
        min_instances: int = 0,
        max_instances: int = 1,
    ) -> Deployment:
        """Create a deployment ``name`` (in the token's account) of ``model``
        (``owner/name:version``) on ``hardware`` (a SKU of ``api.hardware.list()``),
        scaling between ``min_instances`` (0-5) and ``max_instances`` (0-20)."""
        ref = parse_model_ref(model)
        if ref.name is None or ref.version is None:
            raise ValueError(f"a deployment runs 'owner/name:version', not {model!r}")
        low = _instances(min_instances, "min_instances", MAX_MIN_INSTANCES)
        high = _instances(max_instances, "max_instances", MAX_INSTANCES)
        _check_range(low, high)
        body = {
            "name": check_name(name, "deployment name"),
            "model": ref.name,
            "version": ref.version,
            "hardware": check_name(hardware, "hardware SKU"),
            "min_instances": low,
            "max_instances": high,
        }
        spec = self._service.request("POST", "deployments", json=body)
        return read_deployment(*await self._send(spec))

    async def update(
        self,
        deployment: str | Deployment,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        """Change what a deployment runs (``version``: a version id of its model) or its
        instance settings; only what is given changes, as a new release. Returns the
        deployment as updated."""
        owner, name = owner_and_name(deployment, "deployment")
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = check_version_id(version)
        if hardware is not None:
            body["hardware"] = check_name(hardware, "hardware SKU")
        if min_instances is not None:
            body["min_instances"] = _instances(min_instances, "min_instances", MAX_MIN_INSTANCES)
        if max_instances is not None:
            body["max_instances"] = _instances(max_instances, "max_instances", MAX_INSTANCES)
        _check_range(min_instances, max_instances)
        if not body:
            raise ValueError("give at least one of version, hardware, min_instances, max_instances")
        spec = self._service.request("PATCH", "deployments", owner, name, json=body)
        return read_deployment(*await self._send(spec))

    async def delete(self, deployment: str | Deployment) -> None:
        """Delete a deployment (the API refuses one that has had predictions lately,
        or still has instances running: scale it to zero first)."""
        owner, name = owner_and_name(deployment, "deployment")
        spec = self._service.request("DELETE", "deployments", owner, name, expect_body=False)
        await self._send(spec)
