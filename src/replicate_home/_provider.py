"""``ReplicateHome``: the original provider's surface on the shared core."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, ClassVar

import httpx

from . import _catalog
from ._bounded import DEFAULT_MAX_RESPONSE_BYTES
from ._client import BaseClient, close_http_client
from ._home import HomeService
from ._prompt import Messages
from ._run import Output, stream_chunks

__all__ = ["ReplicateHome"]

logger = logging.getLogger("replicate_home")

#: Keyword arguments of ``create_async_generator`` that configure the call.
_CALL_OPTIONS = ("base_url", "timeout", "poll_interval", "max_response_bytes")


class ReplicateHome(BaseClient):
    """Text and image predictions on Replicate's homepage endpoint.

    Use it as a client::

        async with ReplicateHome() as client:
            async for chunk in client.generate("gemma-2b", prompt="Hello"):
                print(chunk, end="")

    or through the original provider's classmethod, :meth:`create_async_generator`.
    ``base_url`` is the argument, else ``REPLICATE_HOME_BASE_URL``, else the real
    endpoint. ``timeout`` bounds each call (create to result), in seconds.
    ``poll_interval`` fixes the wait between polls; by default it adapts. ``proxy`` is
    a proxy URL for the HTTP client the client opens; or pass your own
    ``http_client`` (an ``httpx.AsyncClient``), which is used as it is configured and
    left open. ``max_response_bytes`` caps what one answer may be (decoded): 32 MiB by
    default; past it a call raises :class:`ResponseTooLarge`.
    """

    #: Replicate's site (the original provider's ``url``).
    url: ClassVar[str] = "https://replicate.com"
    #: Where predictions are created; polls go to ``/api/poll`` beside it.
    api_endpoint: ClassVar[str] = "https://homepage.replicate.com/api/prediction"
    #: The provider works (kept from the original provider).
    working: ClassVar[bool] = True
    #: Text is yielded as it is generated.
    supports_stream: ClassVar[bool] = True

    #: The model used when none is named: ``google-deepmind/gemma-2b-it``.
    default_model: ClassVar[str] = _catalog.DEFAULT_MODEL
    #: The default image model: ``stability-ai/stable-diffusion-3``.
    default_image_model: ClassVar[str] = _catalog.DEFAULT_IMAGE_MODEL
    #: Models that make images (one :class:`ImageResponse` per prediction).
    image_models: ClassVar[list[str]] = list(_catalog.IMAGE_MODELS)
    #: Models that make text (yielded in chunks).
    text_models: ClassVar[list[str]] = list(_catalog.TEXT_MODELS)
    #: Every supported model: ``text_models + image_models``.
    models: ClassVar[list[str]] = text_models + image_models
    #: Short names: ``sd-3``, ``sdxl``, ``playground-v2.5``, ``gemma-2b``.
    model_aliases: ClassVar[dict[str, str]] = dict(_catalog.MODEL_ALIASES)
    #: The version each model runs at. These lists and dicts are copies: changing them
    #: does not change what the client accepts.
    model_versions: ClassVar[dict[str, str]] = dict(_catalog.MODEL_VERSIONS)

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 150,
        poll_interval: float | None = None,
        proxy: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._home = HomeService(base_url)
        super().__init__(
            self._home,
            timeout=timeout,
            poll_interval=poll_interval,
            proxy=proxy,
            http_client=http_client,
            max_response_bytes=max_response_bytes,
        )

    @property
    def base_url(self) -> str:
        """The service URL this client talks to."""
        return self._home.base_url

    def __repr__(self) -> str:
        return f"ReplicateHome(base_url={self.base_url!r}, timeout={self._timeout!r})"

    async def __aenter__(self) -> ReplicateHome:
        await super().__aenter__()
        return self

    @classmethod
    def get_model(cls, model: str | None) -> str:
        """Resolve a model name or alias; empty gives :attr:`default_model`.

        Raises :class:`ModelNotSupportedError` (a ``ValueError``) naming the supported
        models, before any network call.
        """
        return _catalog.resolve_model(model)

    @classmethod
    async def create_async_generator(
        cls,
        model: str | None,
        messages: Messages,
        prompt: str | None = None,
        proxy: str | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[Output, None]:
        """The original provider's entry point, unchanged in meaning.

        Yields text chunks, or one :class:`ImageResponse` for image models. ``kwargs``
        may set ``base_url``, ``timeout``, ``poll_interval`` and ``max_response_bytes``;
        other keyword arguments (which provider frameworks pass to every provider) are
        accepted and ignored. It opens an HTTP client for this one call and closes it
        when the generator ends (or is closed: ``aclose()``, ``contextlib.aclosing``).
        A generator dropped unclosed after its first item is closed by the event loop's
        garbage collection hooks instead (it can't close itself); trio reports that with
        a ``ResourceWarning`` naming this generator, as it does for any async generator.
        """
        options = {name: kwargs.pop(name) for name in _CALL_OPTIONS if name in kwargs}
        if kwargs:
            logger.debug("create_async_generator ignores %s", ", ".join(sorted(kwargs)))
        client = cls(proxy=proxy, **options)
        call = client._service.prepare(model, messages, prompt)
        # Not `async with client`: a generator must not yield inside its context.
        http = client._new_http_client()
        try:
            engine = client._new_engine(http)
            async with aclosing(stream_chunks(engine, call)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await close_http_client(http)
