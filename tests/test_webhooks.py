"""Webhooks: the emulator's signed deliveries, ``verify``, the ASGI receiver and
webhook-driven waits, over loopback; interop with the official client 1.0.7."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import replicate
from replicate.webhook import InvalidSignatureError, WebhookSigningSecret
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from replicate_home import Deployment, Prediction, ReplicateAPI, ReplicateHome
from replicate_home.emulator import Emulator, Scenario
from replicate_home.emulator import serve_asgi as serving
from replicate_home.emulator._webhooks import WebhookDelivery, sign
from replicate_home.webhooks import WebhookReceiver, WebhookVerificationError, verify

pytestmark = pytest.mark.anyio

LLAMA = "meta/meta-llama-3-8b-instruct"
TOKEN = "r8_webhooks_token"
UNREACHABLE = "http://127.0.0.1:9/hook"


def api(emulator: Emulator, **options: Any) -> ReplicateAPI:
    return ReplicateAPI(TOKEN, base_url=emulator.base_url, **options)


@asynccontextmanager
async def receiving(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """The receiver mounted in a Starlette app served on loopback; its webhook URL."""
    app = Starlette(routes=[Route("/hooks/replicate", receiver)])
    async with serving(app) as base_url:
        yield f"{base_url}/hooks/replicate"


def v1_requests(emulator: Emulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emulator.requests if r.path.startswith("/v1/")]


async def deliveries(emulator: Emulator, count: int) -> list[WebhookDelivery]:
    with anyio.fail_after(10):
        await emulator.wait_for(lambda e: len(e.webhook_deliveries) >= count)
    return list(emulator.webhook_deliveries)


async def test_a_webhook_driven_wait_sends_no_request_after_the_create() -> None:
    emulator = Emulator(Scenario(duration=0.4))
    async with emulator.serve() as emu:
        receiver = WebhookReceiver(emu.webhook_secret)
        async with receiving(receiver) as url, api(emu) as client:
            created = await client.create(LLAMA, prompt="hooked", webhook=url)
            done = await client.wait(created, webhooks=receiver)
    assert done.status == "succeeded"
    assert done.text
    assert done.polls == 0
    assert v1_requests(emu) == [f"POST /v1/models/{LLAMA}/predictions"]
    assert emu.stats().polls == 0
    assert receiver.delivered >= 2  # start ... completed
    latest = receiver.latest(created.id)
    assert latest is not None
    assert (latest.status, latest.output) == (done.status, done.output)


async def test_a_wait_falls_back_to_following_when_no_delivery_arrives() -> None:
    emulator = Emulator(Scenario(duration=0.6), webhook_retry_delays=())
    async with emulator.serve() as emu:
        receiver = WebhookReceiver(emu.webhook_secret, fallback=0.2)
        async with api(emu) as client:
            created = await client.create(LLAMA, prompt="lost", webhook=UNREACHABLE)
            done = await client.wait(created, webhooks=receiver)
    assert done.status == "succeeded"
    assert receiver.delivered == 0
    followed = [r for r in v1_requests(emu) if created.id in r]
    assert followed  # it followed the prediction itself (stream and/or polls)
    sent = await deliveries(emu, 1)
    assert all(not delivery.ok for delivery in sent)
    assert emu.stats().webhooks_failed == len(sent)


@pytest.mark.slow
async def test_the_emulator_signs_every_event_and_filters_them() -> None:
    emulator = Emulator(Scenario(duration=1.2))
    async with emulator.serve() as emu:
        receiver = WebhookReceiver(emu.webhook_secret)
        async with receiving(receiver) as url, api(emu) as client:
            everything = await client.create(LLAMA, prompt="all", webhook=url)
            final_only = await client.create(
                LLAMA, prompt="end", webhook=url, webhook_events_filter=["completed"]
            )
            await client.wait(everything, webhooks=receiver)
            await client.wait(final_only, webhooks=receiver)
    events = [(d.prediction_id, d.event) for d in emu.webhook_deliveries]
    mine = [event for pid, event in events if pid == everything.id]
    assert mine[0] == "start"
    assert mine[-1] == "completed"
    assert "output" in mine
    assert [event for pid, event in events if pid == final_only.id] == ["completed"]
    assert all(delivery.ok and delivery.attempt == 1 for delivery in emu.webhook_deliveries)
    times = [d.timestamp for d in emu.webhook_deliveries if d.prediction_id == everything.id]
    assert times == sorted(times)


async def test_a_failing_final_delivery_is_retried_with_the_same_id() -> None:
    emulator = Emulator(Scenario(duration=0.1), webhook_retry_delays=(0.05, 0.05))
    refusals = 0

    async def flaky(request: Request) -> Response:
        nonlocal refusals
        refusals += 1
        return Response(status_code=500 if refusals <= 2 else 204)

    app = Starlette(routes=[Route("/hook", flaky, methods=["POST"])])
    async with emulator.serve() as emu, serving(app) as base, api(emu) as client:
        hook = f"{base}/hook"
        await client.create(LLAMA, prompt="x", webhook=hook, webhook_events_filter=["completed"])
        sent = await deliveries(emu, 3)
    assert [(d.event, d.attempt, d.status_code) for d in sent] == [
        ("completed", 1, 500),
        ("completed", 2, 500),
        ("completed", 3, 204),
    ]
    assert len({d.webhook_id for d in sent}) == 1
    assert emu.stats().webhooks_failed == 2


async def test_verify_accepts_an_emulator_delivery_and_refuses_tampering() -> None:
    emulator = Emulator(Scenario(duration=0.1))
    async with emulator.serve() as emu:
        receiver = WebhookReceiver(emu.webhook_secret)
        async with receiving(receiver) as url, api(emu) as client:
            created = await client.create(
                LLAMA, prompt="sign me", webhook=url, webhook_events_filter=["completed"]
            )
            (delivery,) = await deliveries(emu, 1)
            assert await client.webhook_secret() == emu.webhook_secret
    secret = emu.webhook_secret
    headers, body = delivery.headers, delivery.body
    prediction = verify(headers, body, secret)
    assert isinstance(prediction, Prediction)
    assert (prediction.id, prediction.status) == (created.id, "succeeded")
    # The official client agrees (its validate raises unless the delivery is valid).
    official_secret = WebhookSigningSecret(key=secret)
    replicate.webhooks.validate(
        headers=headers, body=body.decode(), secret=official_secret, tolerance=300
    )
    with pytest.raises(InvalidSignatureError):
        replicate.webhooks.validate(
            headers=headers, body=body.decode()[:-1] + " }", secret=official_secret
        )
    other = "whsec_" + base64.b64encode(b"another key of twenty-four").decode()
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(headers, body.replace(b"succeeded", b"failed"), secret)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(headers, body, other)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify(headers, body, secret, now=delivery.timestamp + 301)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify(headers, body, secret, now=delivery.timestamp - 301)
    for missing in headers:
        partial = {k: v for k, v in headers.items() if k != missing}
        with pytest.raises(WebhookVerificationError, match=missing):
            verify(partial, body, secret)
    # Several signatures in one header: one that matches is enough.
    several = {**headers, "webhook-signature": f"v1,{'A' * 44} {headers['webhook-signature']}"}
    assert verify(several, body, secret).id == created.id
    with pytest.raises(ValueError, match="whsec_"):
        verify(headers, body, "not-a-secret")


def test_verify_matches_the_signing_scheme() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = b'{"id": "p1", "status": "processing"}'
    now = int(time.time())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": sign(secret, "msg_1", now, body),
    }
    assert verify(headers, body, secret).status == "processing"
    assert verify(headers, body.decode(), secret).id == "p1"


async def test_the_receiver_refuses_what_it_cannot_verify() -> None:
    secret = "whsec_" + base64.b64encode(b"r" * 24).decode()
    receiver = WebhookReceiver(secret)
    async with receiving(receiver) as url, httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 405
        assert (await http.post(url, content=b"{}")).status_code == 400
        huge = b"x" * (8 * 1024 * 1024 + 1)
        assert (await http.post(url, content=huge)).status_code == 413
        now = int(time.time())
        body = b'{"id": "p9", "status": "succeeded", "output": "ok"}'
        headers = {
            "webhook-id": "msg_9",
            "webhook-timestamp": str(now),
            "webhook-signature": sign(secret, "msg_9", now, body),
        }
        assert (await http.post(url, content=body, headers=headers)).status_code == 200
    assert (receiver.delivered, receiver.refused) == (1, 3)
    latest = receiver.latest("p9")
    assert latest is not None
    assert latest.output == "ok"
    with pytest.raises(ValueError, match="whsec_"):
        WebhookReceiver("nope")
    with pytest.raises(ValueError, match="fallback"):
        WebhookReceiver(secret, fallback=0)


async def test_the_official_client_uses_handles_deployments_and_the_secret() -> None:
    emulator = Emulator(Scenario(duration=0.3), deployments={"acme/chat": LLAMA})
    emulator.script("forever", Scenario(duration=600.0))
    async with emulator.serve() as emu:

        def use_client() -> tuple[Any, ...]:
            client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
            client.poll_interval = 0.02
            try:
                deployed = client.deployments.predictions.create(
                    "acme/chat", input={"prompt": "hello"}
                )
                deployed.wait()
                long = client.deployments.predictions.create(
                    "acme/chat", input={"prompt": "forever"}
                )
                got = client.predictions.get(long.id)
                canceled = client.predictions.cancel(long.id)
                listed = client.predictions.list()
                secret = client.webhooks.default.secret()
                return deployed, got, canceled, listed, secret
            finally:
                client._client.close()

        deployed, got, canceled, listed, secret = await anyio.to_thread.run_sync(use_client)
        async with api(emu) as ours:
            mine = await ours.get(deployed.id)
    assert deployed.status == "succeeded"
    assert "".join(deployed.output)
    assert got.status in ("starting", "processing")
    assert canceled.status == "canceled"
    assert [p.id for p in listed.results] == [canceled.id, deployed.id]
    assert secret.key == emu.webhook_secret
    assert mine.deployment == "acme/chat"
    assert Deployment("acme/chat").name == mine.deployment


async def test_predict_generate_and_fan_out_take_webhooks_too() -> None:
    emulator = Emulator(Scenario(duration=0.1))
    async with emulator.serve() as emu:
        receiver = WebhookReceiver(emu.webhook_secret)
        async with receiving(receiver) as url, api(emu) as client:
            only_end = ["completed"]
            one = await client.predict(
                LLAMA, prompt="a", webhook=url, webhook_events_filter=only_end
            )
            async with aclosing(
                client.generate(LLAMA, prompt="b", webhook=url, webhook_events_filter=only_end)
            ) as chunks:
                _ = [chunk async for chunk in chunks]
            async with client.fan_out(
                [LLAMA, LLAMA], prompt="c", webhook=url, webhook_events_filter=only_end
            ) as events:
                _ = [event async for event in events]
            sent = await deliveries(emu, 4)
    assert {d.event for d in sent} == {"completed"}
    assert len({d.prediction_id for d in sent}) == 4
    assert one.id in {d.prediction_id for d in sent}
    assert receiver.delivered == 4


async def test_the_homepage_service_has_no_webhooks(emulator: Emulator) -> None:
    async with ReplicateHome(emulator.base_url) as client:
        with pytest.raises(ValueError, match="ReplicateAPI"):
            await client.predict("gemma-2b", prompt="x", webhook="http://127.0.0.1:9/h")
    assert emulator.stats().requests == 0
