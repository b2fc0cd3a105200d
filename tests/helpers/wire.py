"""Jobs for tests/test_wire.py: what a worker has imported, and values echoed with their types.

Also, for the main side: :func:`decoding_threads`, who reads the workers' messages.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


def loaded(*names: str) -> list[bool]:
    """Which of ``names`` the calling worker has imported."""
    return [name in sys.modules for name in names]


def echo_typed(value: object) -> tuple[object, str]:
    """``value`` back, with the name of its type as the worker saw it."""
    return value, type(value).__qualname__


def add(a: int, b: int = 0) -> int:
    return a + b


@contextlib.contextmanager
def decoding_threads() -> Iterator[list[str]]:
    """The name of the thread that decodes each message from a worker, while inside.

    Counting decodes, not the hub's wake-ups: the hub's watch may fire just as another
    thread takes the reader role, and the hub then finds the role taken and reads nothing,
    as designed.
    """
    from runtime import _hub  # main side only: workers import this module for its jobs

    readers: list[str] = []
    decode = _hub._decode

    def counting(view: bytes | memoryview, start: int, end: int) -> tuple[Any, ...]:
        readers.append(threading.current_thread().name)
        return decode(view, start, end)

    _hub._decode = counting
    try:
        yield readers
    finally:
        _hub._decode = decode
