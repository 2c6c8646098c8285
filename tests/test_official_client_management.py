"""The official ``replicate`` client (1.0.7), unchanged, on the emulator's whole API:
trainings, collections, search, hardware, and model and deployment management.

Constructed as an app constructs it (a token and a base URL), against an emulator on
loopback. Its async API sleeps with ``asyncio.sleep``, so these run under asyncio only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import replicate
from replicate.exceptions import ReplicateError

from replicate_home.emulator import Emulator, Scenario
from replicate_home.emulator._simulation import generate_text

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TOKEN = "r8_official_management"
LLAMA = "meta/meta-llama-3-8b-instruct"


@pytest.fixture
async def official() -> AsyncIterator[tuple[Emulator, replicate.Client]]:
    emulator = Emulator(Scenario(duration=0.2))
    async with emulator.serve() as emu:
        client = replicate.Client(api_token=TOKEN, base_url=emu.base_url)
        try:
            yield emu, client
        finally:
            await client._async_client.aclose()


async def test_hardware_collections_and_search(official: tuple[Emulator, replicate.Client]) -> None:
    _, client = official
    skus = [hardware.sku for hardware in await client.hardware.async_list()]
    assert skus[:2] == ["cpu", "gpu-t4"]
    page = await client.collections.async_list()
    slugs = [collection.slug for collection in page.results]
    assert "text-to-image" in slugs
    collection = await client.collections.async_get("super-resolution")
    assert [model.id for model in collection.models] == ["replicate/upscaler"]
    found = await client.models.async_search("upscaler")
    assert found.results[0].id == "replicate/upscaler"
    assert (await client.models.async_search("no-such-thing-anywhere")).results == []


async def test_train_into_a_new_model_then_run_its_version(
    official: tuple[Emulator, replicate.Client],
) -> None:
    _, client = official
    destination = await client.models.async_create(
        owner="emulator", name="my-llama", visibility="private", hardware="gpu-t4"
    )
    assert destination.latest_version is None
    base = await client.models.async_get(LLAMA)
    assert base.latest_version is not None
    training = await client.trainings.async_create(
        model=LLAMA,
        version=base.latest_version.id,
        input={"train_data": "https://example.com/data.zip"},
        destination="emulator/my-llama",
    )
    assert training.status == "starting"
    with anyio.fail_after(10):
        while training.status not in ("succeeded", "failed", "canceled"):
            await anyio.sleep(0.05)
            training = await client.trainings.async_get(training.id)
    assert training.status == "succeeded"
    assert training.output is not None
    assert training.destination == "emulator/my-llama"
    assert training.output["version"].startswith("emulator/my-llama:")
    version = training.output["version"].split(":", 1)[1]
    model = await client.models.async_get("emulator/my-llama")
    assert model.latest_version is not None
    assert model.latest_version.id == version
    # Run by version, the client reads the version's schema: its output is an iterator.
    output = await client.async_run(f"emulator/my-llama:{version}", input={"prompt": "hi"})
    text = "".join([chunk async for chunk in output])
    assert text == "".join(generate_text("emulator/my-llama", "hi"))
    listed = await client.trainings.async_list()
    assert [t.id for t in listed.results] == [training.id]
    # The rules: a model with versions can't be deleted; its versions can, then it can.
    with pytest.raises(ReplicateError):
        await client.models.async_delete("emulator/my-llama")
    versions = model.versions
    assert [v.id for v in (await versions.async_list()).results] == [version]
    await versions.async_delete(version)
    assert await client.models.async_delete("emulator/my-llama")


async def test_cancel_a_training(official: tuple[Emulator, replicate.Client]) -> None:
    emu, client = official
    emu.script("", Scenario(duration=600.0), model=LLAMA)
    await client.models.async_create(
        owner="emulator", name="never", visibility="private", hardware="cpu"
    )
    base = await client.models.async_get(LLAMA)
    assert base.latest_version is not None
    training = await client.trainings.async_create(
        model=LLAMA, version=base.latest_version.id, input={}, destination="emulator/never"
    )
    canceled = await client.trainings.async_cancel(training.id)
    assert canceled.status == "canceled"
    assert (await client.models.async_get("emulator/never")).latest_version is None


async def test_a_training_into_a_model_that_does_not_exist_is_404(
    official: tuple[Emulator, replicate.Client],
) -> None:
    _, client = official
    base = await client.models.async_get(LLAMA)
    assert base.latest_version is not None
    with pytest.raises(ReplicateError) as raised:
        await client.trainings.async_create(
            model=LLAMA, version=base.latest_version.id, input={}, destination="emulator/nope"
        )
    assert raised.value.status == 404


async def test_deployment_management(official: tuple[Emulator, replicate.Client]) -> None:
    _, client = official
    sdxl = await client.models.async_get("stability-ai/sdxl")
    assert sdxl.latest_version is not None
    created = await client.deployments.async_create(
        name="my-app",
        model="stability-ai/sdxl",
        version=sdxl.latest_version.id,
        hardware="gpu-t4",
        min_instances=0,
        max_instances=2,
    )
    assert created.current_release is not None
    assert created.current_release.number == 1
    updated = await client.deployments.async_update(
        created.owner, created.name, max_instances=5, hardware="gpu-a40-large"
    )
    assert updated.current_release is not None
    assert updated.current_release.number == 2
    assert updated.current_release.configuration.max_instances == 5
    assert updated.current_release.configuration.hardware == "gpu-a40-large"
    assert await client.deployments.async_delete(created.owner, created.name)
    with pytest.raises(ReplicateError):
        await client.deployments.async_get(f"{created.owner}/{created.name}")
