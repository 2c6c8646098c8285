"""The official ``replicate`` client (1.0.7), unchanged, against the emulator.

Constructed as an app would construct it (a token and a base URL, nothing else) against
an emulator with the settings ``replicate-home emulator`` serves with, it runs, streams,
paginates, cancels, reads file outputs and looks up models and the account. Its async API
sleeps with ``asyncio.sleep``, so these tests run under asyncio only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import replicate
from replicate.helpers import FileOutput
from replicate.pagination import async_paginate

from replicate_home.emulator import Emulator, Scenario
from replicate_home.emulator._png import gradient_png
from replicate_home.emulator._simulation import generate_text

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TOKEN = "r8_official_client_token"
LLAMA = "meta/meta-llama-3-8b-instruct"
SDXL = "stability-ai/sdxl"


def text_of(prompt: str, model: str = LLAMA) -> str:
    return "".join(generate_text(model, prompt))


@pytest.fixture
async def official() -> AsyncIterator[tuple[Emulator, replicate.Client]]:
    emulator = Emulator(Scenario(duration=0.2), page_size=2)
    async with emulator.serve() as emu:
        client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
        try:
            yield emu, client
        finally:
            await client._async_client.aclose()


async def test_run_a_text_model_and_a_long_one_whose_wait_runs_out(
    official: tuple[Emulator, replicate.Client],
) -> None:
    emu, client = official
    emu.script("long", Scenario(duration=1.2))
    output = await client.async_run(LLAMA, input={"prompt": "haiku"})
    assert "".join(output) == text_of("haiku")
    # The create's wait runs out before the end: it answers `starting`, so the client
    # waits for the end and returns the whole output, not the part produced so far.
    long = await client.async_run(LLAMA, input={"prompt": "long"}, wait=1)
    assert "".join(long) == text_of("long")
    (held, _) = [r for r in emu.requests if r.method == "POST"]
    assert held.headers["authorization"] == f"Bearer {TOKEN}"


async def test_stream_from_the_stream_origin_with_the_clients_token_ignored(
    official: tuple[Emulator, replicate.Client],
) -> None:
    emu, client = official
    events = [event async for event in await client.async_stream(LLAMA, input={"prompt": "s"})]
    assert [event.event.value for event in events[-1:]] == ["done"]
    assert "".join(str(event) for event in events[:-1]) == text_of("s")
    (stream,) = [r for r in emu.requests if r.origin == "stream"]
    assert stream.status_code == 200
    # This client sends its token to the stream host too: the stream ignores it.
    assert stream.headers["authorization"] == f"Bearer {TOKEN}"
    assert (emu.stats().stream_requests, emu.stats().polls) == (1, 0)


async def test_create_wait_get_paginate_and_cancel(
    official: tuple[Emulator, replicate.Client],
) -> None:
    emu, client = official
    emu.script("forever", Scenario(duration=600.0))
    created = [
        await client.models.predictions.async_create(model=LLAMA, input={"prompt": f"p{n}"})
        for n in range(3)
    ]
    assert {prediction.status for prediction in created} == {"starting"}
    # `version` may name an official model alone.
    by_name = await client.predictions.async_create(version=LLAMA, input={"prompt": "v"})
    long = await client.models.predictions.async_create(model=LLAMA, input={"prompt": "forever"})
    canceled = await client.predictions.async_cancel(long.id)
    assert canceled.status == "canceled"
    assert (await client.predictions.async_get(long.id)).status == "canceled"

    first = created[0]
    client.poll_interval = 0.05  # an app may tune it; the emulator does not need it
    await first.async_wait()
    assert (first.status, "".join(first.output)) == ("succeeded", text_of("p0"))
    assert first.metrics is not None
    assert first.metrics["total_time"] >= first.metrics["predict_time"]

    ids = [
        prediction.id
        async for page in async_paginate(client.predictions.async_list)
        for prediction in page
    ]
    newest_first = [long.id, by_name.id, *(p.id for p in reversed(created))]
    assert ids == newest_first
    assert emu.stats().cancels == 1


async def test_file_outputs_are_read_as_files(official: tuple[Emulator, replicate.Client]) -> None:
    emu, client = official
    emu.script("two", Scenario(duration=0.2, images=2))
    output = await client.async_run(SDXL, input={"prompt": "two"})
    assert all(isinstance(item, FileOutput) for item in output)
    assert [await item.aread() for item in output] == [gradient_png("two", n) for n in range(2)]
    chunks = [chunk async for chunk in output[1]]
    assert b"".join(chunks) == gradient_png("two", 1)


async def test_models_versions_and_account(official: tuple[Emulator, replicate.Client]) -> None:
    _, client = official
    model = await client.models.async_get(LLAMA)
    assert (model.owner, model.name) == ("meta", "meta-llama-3-8b-instruct")
    assert model.latest_version is not None
    versions: list[Any] = (await model.versions.async_list()).results
    assert [version.id for version in versions] == [model.latest_version.id]
    version = await model.versions.async_get(model.latest_version.id)
    output = await client.async_run(f"{LLAMA}:{version.id}", input={"prompt": "pinned"})
    # The version's schema says its output is an iterator: the client gives one.
    assert "".join([chunk async for chunk in output]) == text_of("pinned")
    account = await client.accounts.async_current()
    assert (account.type, account.username) == ("user", "emulator")
