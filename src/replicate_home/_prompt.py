"""Turning chat messages into the single prompt string the models take."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Message", "Messages", "format_prompt", "last_message_content"]

#: One chat message: a mapping with string ``"role"`` and ``"content"``.
Message = Mapping[str, Any]
#: A conversation: a non-empty sequence of :data:`Message`, oldest first.
Messages = Sequence[Message]


def _checked(messages: object) -> list[tuple[str, str]]:
    """Validate ``messages`` and return ``(role, content)`` pairs."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            "messages must be a list of {'role': ..., 'content': ...} mappings, "
            f"not {type(messages).__name__}"
        )
    if not messages:
        raise ValueError("messages must not be empty")
    pairs: list[tuple[str, str]] = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(
                f"messages[{position}] must be a mapping with 'role' and 'content', "
                f"not {type(message).__name__}"
            )
        missing = [key for key in ("role", "content") if key not in message]
        if missing:
            raise ValueError(f"messages[{position}] has no {' or '.join(map(repr, missing))}")
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"messages[{position}]: 'role' and 'content' must be strings")
        pairs.append((role, content))
    return pairs


def format_prompt(messages: Messages) -> str:
    """Render chat messages as one prompt.

    One message gives its content unchanged. Several give ``"Role: content"`` lines
    (role capitalized) joined by newlines, followed by ``"\\nAssistant:"`` so the model
    answers as the assistant. Malformed messages raise ``ValueError``.
    """
    pairs = _checked(messages)
    if len(pairs) == 1:
        return pairs[0][1]
    lines = "\n".join(f"{role.capitalize()}: {content}" for role, content in pairs)
    return f"{lines}\nAssistant:"


def last_message_content(messages: Messages) -> str:
    """Return the last message's content (what image models take as their prompt)."""
    return _checked(messages)[-1][1]
