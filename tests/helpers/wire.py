"""Jobs for tests/test_wire.py: what a worker has imported, and values echoed with their types."""

from __future__ import annotations

import sys


def loaded(*names: str) -> list[bool]:
    """Which of ``names`` the calling worker has imported."""
    return [name in sys.modules for name in names]


def echo_typed(value: object) -> tuple[object, str]:
    """``value`` back, with the name of its type as the worker saw it."""
    return value, type(value).__qualname__


def add(a: int, b: int = 0) -> int:
    return a + b
