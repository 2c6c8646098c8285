"""What a file input is (a path, a binary file object or bytes) and the checks a
model input gets before anything is sent: JSON values and files, however nested.

How a file input is then sent (uploaded or inlined) is :mod:`._uploads`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import anyio

__all__ = ["FileInput", "check_file_input", "check_input", "is_file_input"]

#: What a file input may be: a path, an anyio path, a binary file object or bytes.
FileInput = os.PathLike[str] | anyio.Path | io.IOBase | bytes | bytearray | memoryview


def is_file_input(value: object) -> bool:
    """Whether ``value`` is sent as a file (a path, a binary file object or bytes)."""
    return isinstance(value, (os.PathLike, anyio.Path, io.IOBase, bytes, bytearray, memoryview))


def check_file_input(value: object) -> None:
    """Raise ``ValueError`` for a file input that can't be sent: a path that is not a
    file, a closed file, a text-mode file. Synchronous and cheap (one ``stat``)."""
    if isinstance(value, (os.PathLike, anyio.Path)):
        path = Path(os.fspath(value))
        if path.is_dir():
            raise ValueError(f"file input {str(path)!r} is a directory, not a file")
        if not path.is_file():
            raise ValueError(f"file input {str(path)!r} is not a readable file")
    elif isinstance(value, io.IOBase):
        if value.closed:
            raise ValueError("file input is a closed file")
        if isinstance(value, io.TextIOBase):
            raise ValueError("file input is open in text mode; open it with 'rb'")
        if not value.readable():
            raise ValueError("file input is not open for reading; open it with 'rb'")


def check_input(value: Any) -> bool:
    """Check a model input: JSON values and file inputs, however nested. ``True`` if
    it holds a file; ``ValueError`` for a bad file or a value that is neither."""
    has_file = False
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if is_file_input(item):
            check_file_input(item)
            has_file = True
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise ValueError(f"input keys must be strings, not {key!r}")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif item is None or isinstance(item, (str, int, float, bool)):
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"input must be JSON-serialisable: {item!r} is not")
        else:
            raise ValueError(
                f"input must be JSON-serialisable (or a file): {type(item).__name__} is not"
            )
    return has_file
