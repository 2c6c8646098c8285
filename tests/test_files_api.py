"""``ReplicateAPI``'s Files API methods on the emulator: upload (path, file object,
bytes) reaches it intact, get, list page after page, delete; bad input fails before any
request."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import pytest

from replicate_home import ReplicateAPI, ResponseStatusError, UploadedFile
from replicate_home.emulator import Emulator

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


async def test_upload_get_list_delete(emulator: Emulator, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        from_path = await api.upload_file(image, metadata={"ref": 1})
        from_anyio = await api.upload_file(anyio.Path(image))
        with image.open("rb") as opened:
            opened.read(3)  # sent from its start all the same
            from_object = await api.upload_file(opened, filename="other.png")
        from_bytes = await api.upload_file(b"RIFF-sound", content_type="audio/wav")
        got = await api.get_file(from_path.id)
        listed = [file.id async for file in api.list_files()]
        await api.delete_file(from_bytes)
        with pytest.raises(ResponseStatusError) as missing:
            await api.get_file(from_bytes.id)
    assert isinstance(from_path, UploadedFile)
    assert (from_path.name, from_path.content_type, from_path.size) == (
        "cat.png",
        "image/png",
        len(PNG),
    )
    assert from_path.metadata == {"ref": 1}
    assert from_path.url == f"{emulator.base_url}/v1/files/{from_path.id}"
    assert from_object.name == "other.png"
    assert from_bytes.content_type == "audio/wav"
    assert got == from_path
    assert listed == [from_bytes.id, from_object.id, from_anyio.id, from_path.id]
    assert missing.value.status_code == 404
    stored = emulator.files.files
    assert stored[from_path.id].content == PNG
    assert stored[from_anyio.id].content == PNG
    assert stored[from_object.id].content == PNG
    assert from_bytes.id not in stored


async def test_bad_uploads_fail_before_any_request(emulator: Emulator, tmp_path: Path) -> None:
    closed = io.BytesIO(PNG)
    closed.close()
    async with ReplicateAPI("t", base_url=emulator.base_url) as api:
        bad = [
            (tmp_path, "directory"),
            (closed, "closed"),
            ("a string", "path, a binary file or bytes"),
            (tmp_path / "missing", "not a readable file"),
        ]
        for value, message in bad:
            with pytest.raises(ValueError, match=message):
                await api.upload_file(value)
        with pytest.raises(ValueError, match="filename"):
            await api.upload_file(PNG, filename="")
    assert len(emulator.requests) == 0
