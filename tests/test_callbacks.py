"""``on_status``: plain or async functions, awaited in order under the call's deadline."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from replicate_home import Prediction, PredictionTimeout, ReplicateAPI, ReplicateHome
from replicate_home._client import BaseClient
from replicate_home.emulator import Emulator, Scenario

pytestmark = pytest.mark.anyio


class CallbackBroke(Exception):
    pass


@pytest.fixture(params=["home", "api"])
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client_for(emulator: Emulator, service: str, **options: Any) -> BaseClient:
    if service == "home":
        return ReplicateHome(emulator.base_url, **options)
    # wait=None: no `Prefer: wait`, so every status is seen on its own
    return ReplicateAPI("r8_test", base_url=emulator.base_url, wait=None, **options)


async def test_an_async_callback_is_awaited_once_per_status_change_in_order(
    emulator: Emulator, service: str
) -> None:
    seen: list[tuple[str, str]] = []

    async def on_status(prediction: Prediction) -> None:
        seen.append(("begin", prediction.status))
        await anyio.sleep(0.02)  # the call waits for it: nothing interleaves
        seen.append(("end", prediction.status))

    async with client_for(emulator, service) as client:
        result = await client.predict("gemma-2b", prompt="hi", on_status=on_status)
    statuses = [status for edge, status in seen if edge == "begin"]
    assert seen == [(edge, status) for status in statuses for edge in ("begin", "end")]
    assert statuses[0] == "starting"
    assert statuses[-1] == result.status == "succeeded"
    assert len(statuses) == len(set(statuses))


async def test_a_sync_callback_still_works(emulator: Emulator, service: str) -> None:
    statuses: list[str] = []
    async with client_for(emulator, service) as client:
        await client.predict("gemma-2b", prompt="hi", on_status=lambda p: statuses.append(p.status))
    assert statuses[0] == "starting"
    assert statuses[-1] == "succeeded"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_raising_callback_fails_the_call_with_its_exception(
    emulator: Emulator, service: str, kind: str
) -> None:
    # On the first status, after the create: the prediction exists, so the api client
    # cancels it. (Not mid-stream: abandoning an SSE stream under trio leaves httpcore's
    # generator to the garbage collector, a transport issue of its own.)
    def broken(prediction: Prediction) -> None:
        raise CallbackBroke(prediction.id)

    async def broken_async(prediction: Prediction) -> None:
        await anyio.lowlevel.checkpoint()
        broken(prediction)

    emulator.script("slow", Scenario(duration=5))
    async with client_for(emulator, service) as client:
        with pytest.raises(CallbackBroke):
            await client.predict(
                "gemma-2b", prompt="slow", on_status=broken if kind == "sync" else broken_async
            )
    if service == "api":  # the abandoned prediction was cancelled on the service
        assert emulator.stats().cancels == 1


async def test_an_async_callback_runs_under_the_calls_deadline(
    emulator: Emulator, service: str
) -> None:
    async def stuck(prediction: Prediction) -> None:
        await anyio.sleep_forever()

    async with client_for(emulator, service, timeout=0.3) as client:
        with pytest.raises(PredictionTimeout):
            await client.predict("gemma-2b", prompt="hi", on_status=stuck)


@pytest.mark.parametrize("bad", ["print", 42, True])
async def test_a_callback_of_the_wrong_type_fails_before_any_request(
    emulator: Emulator, service: str, bad: object
) -> None:
    async with client_for(emulator, service) as client:
        with pytest.raises(ValueError, match="on_status"):
            await client.predict("gemma-2b", prompt="hi", on_status=bad)  # type: ignore[arg-type]
    assert emulator.stats().requests == 0


# -- WebhookReceiver(on_delivery=...) ----------------------------------------------------


def _signed(secret: str, prediction_id: str, status: str) -> tuple[bytes, dict[str, str]]:
    import json
    import time

    from replicate_home.emulator._webhooks import sign

    now = int(time.time())
    body = json.dumps({"id": prediction_id, "status": status, "output": "ok"}).encode()
    headers = {
        "webhook-id": f"msg_{prediction_id}",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, f"msg_{prediction_id}", now, body),
    }
    return body, headers


async def test_an_async_on_delivery_is_awaited_before_the_answer() -> None:
    import base64

    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Route

    from replicate_home.emulator._server import serving
    from replicate_home.webhooks import WebhookReceiver

    secret = "whsec_" + base64.b64encode(b"c" * 24).decode()
    seen: list[str] = []

    async def on_delivery(prediction: Prediction) -> None:
        await anyio.lowlevel.checkpoint()
        if prediction.id == "bad":
            raise CallbackBroke(prediction.id)
        seen.append(prediction.id)

    receiver = WebhookReceiver(secret, on_delivery=on_delivery)
    app = Starlette(routes=[Route("/hook", receiver)])
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        body, headers = _signed(secret, "p1", "succeeded")
        assert (await http.post("/hook", content=body, headers=headers)).status_code == 200
        assert seen == ["p1"]  # awaited before the 200
        body, headers = _signed(secret, "bad", "succeeded")
        # The delivery fails with the callback's exception: the server answers 500
        # (Replicate would deliver it again).
        assert (await http.post("/hook", content=body, headers=headers)).status_code == 500
        assert seen == ["p1"]
    with pytest.raises(ValueError, match="on_delivery"):
        WebhookReceiver(secret, on_delivery="print")  # type: ignore[arg-type]
