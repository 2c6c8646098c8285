"""Webhook deliveries, sent and signed as Replicate sends them.

For a create with ``webhook``, the emulator POSTs the prediction object to that URL for
each event of its ``webhook_events_filter`` (all four by default): ``start`` at once,
``output`` and ``logs`` when they change (at most every half second), ``completed`` at
the terminal status. Each delivery is signed (Standard Webhooks): headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
id.timestamp.body>`` under the key inside the emulator's ``whsec_...`` secret. As
Replicate documents, only the final delivery is retried (on a connection failure or a
non-2xx answer), several times on an exponential backoff, the last about a minute after
completion; intermediate deliveries are sent once.

The emulator is a loopback tool: it delivers to loopback addresses only (``localhost``,
``127.0.0.0/8``, ``::1``). A webhook anywhere else is recorded as a failed delivery and
never sent, so a test can't reach the internet by accident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx

from ._api_rules import api_object
from ._responses import json_bytes
from ._simulation import Prediction, stream_events

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "WEBHOOK_EVENTS",
    "DeliveryHost",
    "WebhookDelivery",
    "WebhookSender",
    "new_secret",
    "sign",
]

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
#: Seconds between attempts at a final delivery: six retries, the last ~60 s after the
#: first attempt.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 29.0)
#: ``output`` and ``logs`` deliveries of one prediction are this far apart at least.
THROTTLE = 0.5
#: Seconds one delivery attempt may take ("respond within a few seconds").
ATTEMPT_TIMEOUT = 5.0


def is_loopback(url: str) -> bool:
    """Whether ``url`` names a loopback host."""
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and a base64 key of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of one delivery: ``v1,<base64 HMAC-SHA256>``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt at delivering a webhook."""

    prediction_id: str
    event: str
    """``start``, ``output``, ``logs`` or ``completed``."""
    url: str
    webhook_id: str
    """The ``webhook-id`` header (the same for every attempt at one delivery)."""
    timestamp: int
    signature: str
    body: bytes = field(repr=False)
    attempt: int
    """1 for the first attempt, then 2, 3, ... for retries."""
    status_code: int | None
    """The receiver's answer, or ``None`` when it could not be reached."""
    error: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The signing headers as sent."""
        return {
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(self.timestamp),
            "webhook-signature": self.signature,
        }

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryHost(Protocol):
    """What the sender needs of the emulator it sends for (its state)."""

    @property
    def stopping(self) -> bool:
        """Whether the emulator is stopping: pending deliveries are dropped."""
        ...

    @property
    def stream_url(self) -> str | None:
        """The stream origin's URL, for ``urls.stream`` of the objects delivered."""
        ...

    def now(self) -> float:
        """The emulator's time."""
        ...

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds at most, less if the emulator changes meanwhile."""
        ...

    def record_delivery(self, delivery: WebhookDelivery) -> None:
        """Note one delivery attempt."""
        ...


class WebhookSender:
    """Sends the webhooks of one serving emulator, in a task group of its own, signed
    with ``secret``."""

    def __init__(
        self,
        host: DeliveryHost,
        secret: str,
        group: anyio.abc.TaskGroup,
        http: httpx.AsyncClient,
        retry_delays: Sequence[float],
    ) -> None:
        self._emu = host
        self._secret = secret
        self._group = group
        self._http = http
        self._retry_delays = tuple(retry_delays)

    def start(self, pred: Prediction, url: str, events: Sequence[str], base: str) -> None:
        """Deliver the webhooks of ``pred`` (objects rendered with URLs under ``base``)."""
        self._group.start_soon(self._follow, pred, url, frozenset(events), base)

    async def _follow(self, pred: Prediction, url: str, events: frozenset[str], base: str) -> None:
        emu = self._emu

        def render(now: float, *, as_created: bool = False) -> dict[str, Any]:
            return api_object(base, pred, now, as_created=as_created, stream_url=emu.stream_url)

        now = emu.now()
        if "start" in events:
            await self._deliver(pred, url, "start", render(now, as_created=True))
        watched = events & {"output", "logs"}
        sent = render(now)
        last_sent = now
        while not emu.stopping:
            now = emu.now()
            if pred.is_terminal(now):
                break
            current = render(now)
            changed = [
                event
                for event, key in (("output", "output"), ("logs", "logs"))
                if event in watched and current[key] != sent[key]
            ]
            if changed and now - last_sent >= THROTTLE:
                await self._deliver(pred, url, changed[0], current)
                sent, last_sent = current, now
                continue
            _, due = stream_events(pred, now)
            wake = pred.end_time if due is None else due
            if now < pred.start_time:
                wake = min(wake, pred.start_time)
            if changed:  # throttled: send it as soon as the throttle allows
                wake = last_sent + THROTTLE
            await emu.pause(max(wake - now, 0.0))
        if "completed" in events and not emu.stopping:
            await self._deliver(pred, url, "completed", render(emu.now()), final=True)

    async def _deliver(
        self, pred: Prediction, url: str, event: str, obj: dict[str, Any], *, final: bool = False
    ) -> None:
        body = json_bytes(obj)
        webhook_id = "msg_" + secrets.token_urlsafe(18)
        delays = self._retry_delays if final else ()
        for attempt in range(1, len(delays) + 2):
            timestamp = int(time.time())
            signature = sign(self._secret, webhook_id, timestamp, body)
            headers = {
                "content-type": "application/json",
                "user-agent": "replicate-home-emulator-webhook",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature,
            }
            status: int | None = None
            error: str | None = None
            if not is_loopback(url):
                error = "not sent: the emulator delivers webhooks to loopback addresses only"
                delays = ()
            else:
                try:
                    with anyio.fail_after(ATTEMPT_TIMEOUT):
                        response = await self._http.post(url, content=body, headers=headers)
                    status = response.status_code
                except (httpx.HTTPError, TimeoutError) as failure:
                    error = f"{type(failure).__name__}: {failure}"
            delivery = WebhookDelivery(
                pred.id, event, url, webhook_id, timestamp, signature, body, attempt, status, error
            )
            self._emu.record_delivery(delivery)
            if delivery.ok or attempt > len(delays):
                return
            await anyio.sleep(delays[attempt - 1])
