"""Shared fixtures: every behaviour runs on every backend that works on this Python."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings

import pytest

import runtime

ALL_BACKENDS = ("subinterpreter", "thread", "process")


def available_backends() -> list[str]:
    caps = runtime.capabilities()
    return [b for b in ALL_BACKENDS if b != "subinterpreter" or caps.subinterpreters]


@pytest.fixture(params=available_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """The worker backend under test (subinterpreter, thread, process)."""
    name: str = request.param
    if name == "subinterpreter" and sys.version_info < (3, 13):
        # Explicit subinterpreters on 3.12 warn loudly by design; the tests use safe modules only.
        warnings.filterwarnings("ignore", message="runtime: own-GIL subinterpreters on Python 3.12")
    return name


@pytest.fixture
def hang_gate(tmp_path, monkeypatch):
    """A FIFO the ``tests.helpers.lifecycle.hang*`` bootstraps wait on (yields the test's fd).

    Written at teardown, so every worker hung on it ends and none outlives the test.
    """
    from runtime.backends import abandoned_workers

    path = tmp_path / "gate"
    os.mkfifo(path)
    holder = os.open(path, os.O_RDWR)  # a writer exists, so readers never block in open()
    monkeypatch.setenv("RUNTIME_TEST_HANG_GATE", str(path))
    yield holder
    os.write(holder, b"x" * 256)
    end = time.monotonic() + 20
    while abandoned_workers() and time.monotonic() < end:
        time.sleep(0.02)
    os.close(holder)
    assert not abandoned_workers()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The event loop of ``@pytest.mark.anyio`` tests: each runs on asyncio and on trio."""
    name: str = request.param
    return name


@pytest.fixture(autouse=True)
def _no_leaked_workers():
    """Every test must leave no worker thread, interpreter or process behind."""
    yield
    from runtime.backends import live_workers

    deadline = 10.0

    end = time.monotonic() + deadline
    while live_workers() and time.monotonic() < end:
        time.sleep(0.02)
    leaked = live_workers()
    assert not leaked, f"workers left behind: {leaked}"
    names = [
        t.name for t in threading.enumerate() if t.name.startswith("runtime-") and t.is_alive()
    ]
    end = time.monotonic() + deadline
    while names and time.monotonic() < end:
        time.sleep(0.02)
        names = [
            t.name for t in threading.enumerate() if t.name.startswith("runtime-") and t.is_alive()
        ]
    assert not names, f"threads left behind: {names}"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
