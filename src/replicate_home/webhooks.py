"""Receiving Replicate's webhooks: verify a delivery, or let a receiver complete waits.

Replicate signs every webhook delivery (the Standard Webhooks scheme): the headers
``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (one or
more ``v1,<base64 HMAC-SHA256>`` separated by spaces) sign ``id.timestamp.body`` with
the key inside the account's ``whsec_...`` secret (``await client.webhook_secret()``).

- :func:`verify` checks a delivery and returns the :class:`Prediction` it carries, or
  raises :class:`WebhookVerificationError`. Use it in any web framework's handler.
- :class:`WebhookReceiver` is a plain ASGI app (mount it in Starlette, FastAPI or any ASGI
  server) that verifies deliveries and hands them to ``client.wait(prediction,
  webhooks=receiver)`` calls, so a webhook-driven wait sends no request at all after the
  create. A wait that hears nothing for ``fallback`` seconds follows the prediction as
  usual (stream or polls) for the rest of its time.

The receiver and the client must run in the same event loop (the usual case: the client
lives in the web app that mounts the receiver).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio

from ._exceptions import UnexpectedResponseFormat, WebhookVerificationError
from ._models import Prediction
from ._record import prediction_from_object

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_TOLERANCE",
    "WebhookReceiver",
    "WebhookVerificationError",
    "verify",
]

#: Seconds a delivery's timestamp may be away from now (either way), as the official
#: clients default to.
DEFAULT_TOLERANCE = 300.0
#: Seconds a webhook-driven wait listens without hearing anything before it follows the
#: prediction itself. Replicate sends ``output`` and ``logs`` events at most every half
#: second while a prediction makes progress, so silence this long means the deliveries
#: are not arriving (or the filter is only ``completed``: then choose a bound above the
#: model's running time).
DEFAULT_FALLBACK = 10.0
#: The largest delivery body the receiver reads.
MAX_BODY = 8 * 1024 * 1024
#: Predictions the receiver remembers at most (the oldest are forgotten first).
MAX_TRACKED = 10_000

_SECRET_PREFIX = "whsec_"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        raise ValueError("a webhook secret is a string that starts with 'whsec_'")
    try:
        return base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not valid base64 after 'whsec_'") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            if not isinstance(value, str) or not value.strip():
                break
            return value.strip()
    raise WebhookVerificationError(f"the delivery has no {name} header")


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Prediction:
    """Check one webhook delivery and return the :class:`Prediction` it carries.

    ``headers`` are the request's headers (any case), ``body`` its exact bytes (as
    received: re-encoding JSON breaks the signature), ``secret`` the ``whsec_...``
    signing secret. Raises :class:`WebhookVerificationError` when a header is missing,
    the timestamp is more than ``tolerance`` seconds from ``now`` (default: the clock)
    in either direction, or no signature matches (compared in constant time); a bad
    ``secret`` is a ``ValueError``; a verified body that is not a prediction raises
    :class:`UnexpectedResponseFormat`.
    """
    key = _key(secret)
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise ValueError("body must be the request's bytes")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative number of seconds, not {tolerance!r}")
    message_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not stamp.isdigit() or len(stamp) > 12:
        raise WebhookVerificationError("the webhook-timestamp header is not Unix seconds")
    moment = time.time() if now is None else now
    if not math.isfinite(moment) or abs(moment - int(stamp)) > tolerance:
        raise WebhookVerificationError(
            f"the delivery's timestamp is more than {tolerance:g} s from now: refused "
            "(a stale delivery may be a replay)"
        )
    signed = message_id.encode() + b"." + stamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    matched = False
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Every candidate is compared, in constant time, whatever matched before.
        matched = hmac.compare_digest(given, expected) or matched
    if not matched:
        raise WebhookVerificationError("no webhook signature matches the secret")
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        raise UnexpectedResponseFormat(text, "a webhook body that is not JSON") from None
    if not isinstance(data, dict):
        raise UnexpectedResponseFormat(text, "a webhook body that is not a JSON object")
    return prediction_from_object(data, text)


class _Entry:
    """What the receiver knows of one prediction, and how waiters hear of changes."""

    __slots__ = ("changed", "prediction")

    def __init__(self) -> None:
        self.prediction: Prediction | None = None
        self.changed = anyio.Event()


class WebhookReceiver:
    """A plain ASGI app that receives Replicate's webhook deliveries.

    Each ``POST`` is verified with ``secret`` (:func:`verify`, with ``tolerance``);
    a verified delivery is answered ``200`` and handed to the waits on its prediction
    (``await client.wait(prediction, webhooks=receiver)``), and to ``on_delivery`` if
    given: a plain or an async function, awaited before the answer; if it raises, the
    delivery fails with that exception (the ASGI server answers ``500``, and Replicate
    delivers it again). Anything else is answered ``400`` (unverified), ``413`` (over
    8 MiB) or ``405`` (not a POST), and ignored. ``fallback`` is how long a wait listens without
    hearing anything before it follows the prediction itself (see
    :data:`DEFAULT_FALLBACK`). The receiver remembers the latest state of the last
    10 000 predictions it heard of, so a wait that starts after the delivery still
    completes at once.

    Route to it where Replicate can reach it, e.g.
    ``Starlette(routes=[Route("/replicate/webhook", receiver)])`` (a ``Mount`` would
    redirect the exact path to a trailing slash), and pass that public URL as
    ``webhook=`` to ``create()``.
    """

    def __init__(
        self,
        secret: str,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        fallback: float = DEFAULT_FALLBACK,
        on_delivery: Callable[[Prediction], object] | None = None,
    ) -> None:
        _key(secret)  # a bad secret fails here, not at the first delivery
        if on_delivery is not None and not callable(on_delivery):
            raise ValueError(f"on_delivery must be a function or None, not {on_delivery!r}")
        if isinstance(fallback, bool) or not isinstance(fallback, (int, float)) or fallback <= 0:
            raise ValueError(f"fallback must be a positive number of seconds, not {fallback!r}")
        self._secret = secret
        self._tolerance = tolerance
        self.fallback = float(fallback)
        self._on_delivery = on_delivery
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Deliveries verified and accepted so far.
        self.delivered = 0
        #: Deliveries refused (unverified, too large, not a POST).
        self.refused = 0

    def __repr__(self) -> str:
        return f"WebhookReceiver(fallback={self.fallback!r}, delivered={self.delivered})"

    def latest(self, prediction_id: str) -> Prediction | None:
        """The latest state delivered for that prediction, if any."""
        entry = self._entries.get(prediction_id)
        return None if entry is None else entry.prediction

    def _entry(self, prediction_id: str) -> _Entry:
        entry = self._entries.get(prediction_id)
        if entry is None:
            entry = self._entries[prediction_id] = _Entry()
            while len(self._entries) > MAX_TRACKED:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(prediction_id)
        return entry

    def deliver(self, prediction: Prediction) -> None:
        """Record a verified state of a prediction and wake its waits. A terminal state
        is never replaced by a later delivery of an earlier one (deliveries may arrive
        out of order, and the final one may be sent again)."""
        entry = self._entry(prediction.id)
        if entry.prediction is None or not entry.prediction.done:
            entry.prediction = prediction
        changed, entry.changed = entry.changed, anyio.Event()
        changed.set()

    async def until_done(self, prediction_id: str) -> Prediction | None:
        """The prediction's terminal state once delivered; or, after ``fallback``
        seconds without any delivery for it, the latest state heard (``None`` if none).
        Used by ``client.wait(..., webhooks=receiver)``."""
        while True:
            entry = self._entry(prediction_id)
            if entry.prediction is not None and entry.prediction.done:
                return entry.prediction
            with anyio.move_on_after(self.fallback) as scope:
                await entry.changed.wait()
            if scope.cancelled_caught:
                return entry.prediction

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "lifespan":
            await _lifespan(receive, send)
            return
        if scope.get("type") != "http":
            return
        if scope.get("method") != "POST":
            self.refused += 1
            await _answer(send, 405, b"POST only", [(b"allow", b"POST")])
            return
        body = await _read_body(receive)
        if body is None:
            self.refused += 1
            await _answer(send, 413, b"delivery too large")
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        try:
            prediction = verify(headers, body, self._secret, tolerance=self._tolerance)
        except (WebhookVerificationError, UnexpectedResponseFormat):
            self.refused += 1
            await _answer(send, 400, b"unverified delivery")
            return
        self.delivered += 1
        self.deliver(prediction)
        if self._on_delivery is not None:
            reported = self._on_delivery(prediction)
            if inspect.isawaitable(reported):
                await reported
        await _answer(send, 200, b"")


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` past :data:`MAX_BODY` (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served on its own, the receiver has nothing to start or stop."""
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
