"""``ReplicateAPI``: Replicate's official API on the shared core."""

from __future__ import annotations

import math

import httpx

from ._api import MAX_WAIT, ApiService
from ._budget import RateBudget
from ._client import BaseClient

__all__ = ["ReplicateAPI"]


class ReplicateAPI(BaseClient):
    """Predictions on Replicate's official API (``api.replicate.com/v1``), under trio or
    asyncio, with the same methods as :class:`ReplicateHome`.

    ``api_token`` is the argument, else ``REPLICATE_API_TOKEN`` (none raises
    :class:`AuthenticationError` here, before any request); it never appears in an
    error, a repr or a log record. ``base_url`` is the argument, else
    ``REPLICATE_BASE_URL``, else ``https://api.replicate.com``.

    ``predict()`` asks the API to hold the create's answer up to ``wait`` seconds
    (``Prefer: wait``; ``None`` turns it off) so a fast model needs no poll at all; it is
    kept short on purpose, because until the create answers the prediction can't be
    cancelled. Text predictions are followed on their event stream where they have one.
    A prediction that its caller abandons (cancelled, timed out, left a fan-out, lost a
    race) is cancelled on the service in the background; every create also carries a
    ``Cancel-After`` for the call's deadline, so the service ends it even if this
    process dies. All calls share one rate budget: ``creates_per_minute`` and
    ``requests_per_minute`` (Replicate's published limits by default).

    ``timeout`` bounds each call (create to result), in seconds; ``poll_interval``
    fixes the wait between polls where a prediction has no stream (by default it
    adapts); ``proxy`` is a proxy URL for the HTTP client the client opens, or pass your
    own ``http_client``, which is used as it is configured and left open.
    """

    def __init__(
        self,
        api_token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 150,
        poll_interval: float | None = None,
        wait: float | None = 1.0,
        http_client: httpx.AsyncClient | None = None,
        creates_per_minute: float = 600,
        requests_per_minute: float = 3000,
        proxy: str | None = None,
    ) -> None:
        if wait is not None:
            if isinstance(wait, bool) or not isinstance(wait, (int, float)):
                raise ValueError(f"wait must be a number of seconds or None, not {wait!r}")
            if not (0 < wait <= MAX_WAIT and math.isfinite(wait)):
                raise ValueError(f"wait must be between 0 and {MAX_WAIT} seconds, not {wait!r}")
        self._api = ApiService(api_token, base_url)
        super().__init__(
            self._api,
            timeout=timeout,
            poll_interval=poll_interval,
            proxy=proxy,
            http_client=http_client,
            wait=wait,
            budget=RateBudget(creates_per_minute, requests_per_minute),
        )

    @property
    def base_url(self) -> str:
        """The service URL this client talks to."""
        return self._api.base_url

    def __repr__(self) -> str:
        return f"ReplicateAPI(base_url={self.base_url!r}, timeout={self._timeout!r})"

    async def __aenter__(self) -> ReplicateAPI:
        await super().__aenter__()
        return self
