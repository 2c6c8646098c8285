"""The files uploaded to one emulator through ``/v1/files``, and their signed download
URLs (``?owner=&expiry=&signature=``, an HMAC under a key of the store's own)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

__all__ = ["FILE_LIFETIME", "MAX_FILE_SIZE", "FileStore", "StoredFile"]

#: The real API's limit for one file.
MAX_FILE_SIZE = 100 * 1024 * 1024
#: Files kept at most (the oldest go first).
MAX_FILES = 1000
#: How long a file lives (the real API: a day).
FILE_LIFETIME = timedelta(days=1)
_OWNER = "emulator"


@dataclass
class StoredFile:
    id: str
    name: str
    content_type: str
    content: bytes
    metadata: Any
    created_at: datetime
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.content).hexdigest()


class FileStore:
    """The uploaded files of one emulator, newest last; ``uploads`` counts creates."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.uploads = 0
        self._key = secrets.token_bytes(32)

    def add(self, stored: StoredFile) -> None:
        self.uploads += 1
        self.files[stored.id] = stored
        while len(self.files) > MAX_FILES:
            del self.files[next(iter(self.files))]

    def sign(self, file_id: str, expiry: int) -> str:
        """The signature of a download URL: as the real API describes it, the base64
        HMAC-SHA256 of ``"{owner} {id} {expiry}"`` under a secret of the service's."""
        message = f"{_OWNER} {file_id} {expiry}".encode()
        return base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest()).decode()

    def by_url(self, base_url: str, url: str) -> StoredFile | None:
        """The file a ``urls.get`` URL of this emulator names, if it is one."""
        prefix = f"{base_url}/v1/files/"
        if not url.startswith(prefix):
            return None
        return self.files.get(url[len(prefix) :].split("/", 1)[0])

    def download_url(self, base_url: str, file_id: str, expires_in: float = 3600) -> str:
        """A signed ``/v1/files/{id}/download`` URL under ``base_url``, valid for
        ``expires_in`` seconds: the bytes, for whoever has it (no token)."""
        expiry = int(time.time() + expires_in)
        query = urlencode(
            {"expiry": expiry, "owner": _OWNER, "signature": self.sign(file_id, expiry)}
        )
        return f"{base_url}/v1/files/{file_id}/download?{query}"

    def valid_download(self, file_id: str, query: Mapping[str, str]) -> bool:
        """Whether a download's query (``owner``, ``expiry``, ``signature``) is a valid,
        unexpired signature for a stored file."""
        try:
            expiry = int(query.get("expiry", ""))
        except ValueError:
            return False
        return (
            file_id in self.files
            and query.get("owner") == _OWNER
            and expiry > time.time()
            and hmac.compare_digest(query.get("signature", ""), self.sign(file_id, expiry))
        )
