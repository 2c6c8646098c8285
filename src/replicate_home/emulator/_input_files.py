"""The file references of a create's inputs (``format: uri`` values), checked and resolved
to bytes the way the emulator can: it never fetches anything from the network.

- its own Files API URLs (``{base}/v1/files/{id}``, the ``urls.get`` of an upload) and
  signed download URLs (``.../download?owner=&expiry=&signature=``): read from its store;
- its own output files (``{base}/_emulator/files/{prediction}/{name}``): regenerated;
- ``data:`` URIs: decoded;
- ``https://`` URLs: not fetched (tests have no network); the model works on the UTF-8
  bytes of the URL string itself, so its output still depends on which URL was sent.

Anything else (a bare string, ``ftp:``, an ``http`` URL of another host) is not a
usable file reference: the create answers ``422``, as the real API does for a value
that is not a URI. A reference that is well formed but names nothing (a deleted upload,
a bad signature, undecodable base64) fails the prediction instead, as on Replicate,
where the model's worker downloads input files after the create was accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from ._file_models import decode_data_uri
from ._file_store import FileStore

__all__ = ["NOT_A_URI", "check_uri", "resolve_uri"]

#: The real validator's description of a value that is not a URI.
NOT_A_URI = "Does not match format 'uri'"

#: ``output_file(prediction_id, name)``: an output file's pieces, length and media type.
OutputFile = Callable[[str, str], "tuple[Iterator[bytes], int, str] | None"]


def check_uri(value: str, base_url: str) -> str | None:
    """``None`` if ``value`` is a file reference the emulator accepts, else the
    description of the ``format`` error."""
    if value[:5].lower() == "data:":
        return None if "," in value else NOT_A_URI
    if value.startswith(f"{base_url}/"):
        return None
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and parts.netloc:
        return (
            f"{NOT_A_URI}: the emulator cannot fetch http URLs of other hosts; give one of "
            "its own file URLs, a data: URI or an https URL"
        )
    return NOT_A_URI


def resolve_uri(value: str, base_url: str, files: FileStore, output_file: OutputFile) -> bytes:
    """The bytes a file reference accepted by :func:`check_uri` stands for; ``LookupError``
    with the reason when it names nothing the emulator has."""
    if value[:5].lower() == "data:":
        try:
            return decode_data_uri(value)
        except ValueError as error:
            raise LookupError(f"cannot decode the data: URI: {error}") from None
    if not value.startswith(f"{base_url}/"):
        return value.encode()  # an https URL, not fetched (see the module docstring)
    parts = urlsplit(value[len(base_url) :])
    segments = parts.path.strip("/").split("/")
    if segments[:2] == ["v1", "files"] and len(segments) in (3, 4):
        stored = files.files.get(segments[2])
        if len(segments) == 4:
            query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
            if segments[3] != "download" or not files.valid_download(segments[2], query):
                stored = None
        if stored is not None:
            return stored.content
    elif segments[:2] == ["_emulator", "files"] and len(segments) == 4:
        found = output_file(segments[2], segments[3])
        if found is not None:
            return b"".join(found[0])
    raise LookupError(f"cannot download {value}: 404 File not found")
