"""Keeping credentials out of everything the library shows.

A server may echo the ``Authorization`` header back, in an error body, a prediction's
``error``, its output. Answers are scrubbed as they are read, before any exception,
``Prediction``, log record or CLI line is made from them, so none can carry the token.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REDACTED", "Scrubber"]

#: What a secret is replaced with.
REDACTED = "[redacted]"

#: Shorter secrets are not scrubbed: a token of a few characters (a test's ``"t"``)
#: would take every occurrence of those letters out of every answer. Real tokens are
#: about forty characters.
MIN_SECRET = 8


class Scrubber:
    """Replaces each of ``secrets`` with :data:`REDACTED` in text, bytes and JSON values."""

    __slots__ = ("_bytes", "_secrets")

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        self._secrets = tuple(secret for secret in secrets if len(secret) >= MIN_SECRET)
        self._bytes = tuple(secret.encode("utf-8", "surrogatepass") for secret in self._secrets)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def bytes(self, body: bytes) -> bytes:
        for secret in self._bytes:
            if secret in body:
                body = body.replace(secret, REDACTED.encode())
        return body

    def value(self, value: Any) -> Any:
        """``value`` (decoded JSON) with every string scrubbed, keys too."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(key): self.value(item) for key, item in value.items()}
        return value

    def answer(self, data: dict[str, Any], text: str) -> tuple[dict[str, Any], str]:
        """A decoded answer whose bytes were scrubbed already: JSON escapes (``\\u0072``)
        can still spell a secret, so where the text has any, the values are scrubbed too."""
        if self._secrets and "\\" in text:
            scrubbed: dict[str, Any] = self.value(data)
            return scrubbed, self.text(text)
        return data, text
