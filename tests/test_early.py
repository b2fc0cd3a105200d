"""A new executor creates its interpreters while it loads its machinery (``runtime._early``)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import runtime
from runtime import _early
from tests.helpers import tasks

pytestmark = pytest.mark.timeout(60)

needs_early = pytest.mark.skipif(
    sys.version_info < (3, 13) or not runtime.capabilities().subinterpreters,
    reason="interpreters are created ahead on 3.13+ with own-GIL subinterpreters only",
)


def _early_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "runtime-interp-worker-early"]


def _no_early_threads_left(timeout: float = 10.0) -> bool:
    for thread in _early_threads():
        thread.join(timeout)
    return not _early_threads()


def test_a_fresh_process_gets_its_first_result_on_every_backend(backend):
    """The machinery loads inside the first constructor: check it from a cold start."""
    code = (
        "import runtime\n"
        "from tests.helpers import tasks\n"
        "if __name__ == '__main__':\n"
        f"    with runtime.Executor(2, backend={backend!r}) as ex:\n"
        "        print(ex.submit(tasks.square, 7).result(timeout=30), "
        "list(ex.map(tasks.square, range(4))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49", "[0,", "1,", "4,", "9]"]


@needs_early
def test_workers_run_in_the_interpreters_created_ahead():
    with runtime.Executor(2, backend="subinterpreter") as ex:
        assert [ex.submit(tasks.square, n).result(timeout=20) for n in range(4)] == [0, 1, 4, 9]
        threads = {w.handle._thread for w in ex._workers.values()}
        assert all(t is not None and t.name.startswith("runtime-interp-worker-") for t in threads)
    assert not _early_threads()


@pytest.mark.parametrize(
    ("backend", "injected", "abiflags", "started"),
    [
        ("subinterpreter", False, "", True),
        ("auto", False, "", True),
        ("auto", False, "t", False),  # free-threaded build: auto may pick threads
        ("thread", False, "", False),
        ("process", False, "", False),
        ("subinterpreter", True, "", False),  # injected capabilities decide later
        ("nonsense", False, "", False),
    ],
)
@needs_early
def test_which_constructors_create_interpreters_ahead(
    monkeypatch, backend, injected, abiflags, started
):
    monkeypatch.setattr(sys, "abiflags", abiflags, raising=False)
    early = _early.start_interpreters(2, backend, injected)
    try:
        assert len(early) == (2 if started else 0)
    finally:
        for interp in early:
            interp.discard()
    assert _no_early_threads_left()


@needs_early
def test_a_constructor_that_fails_after_starting_them_destroys_them():
    with pytest.raises(runtime.ConfigurationError, match="memory size"):
        runtime.Executor(2, backend="subinterpreter", max_worker_memory="lots")
    assert _no_early_threads_left()


@needs_early
def test_an_interpreter_that_cannot_be_created_fails_the_first_submit(monkeypatch):
    def refuse() -> object:
        raise RuntimeError("no interpreters today")

    monkeypatch.setattr(_early, "_create", refuse)
    with (
        runtime.Executor(1, backend="subinterpreter") as ex,
        pytest.raises(runtime.BootstrapError, match="no interpreters today"),
    ):
        ex.submit(tasks.square, 3).result(timeout=20)


@needs_early
def test_a_worker_module_that_does_not_import_fails_the_first_submit(monkeypatch):
    monkeypatch.setattr(
        _early, "worker_prelude", lambda: "raise ImportError('no worker module here')\n"
    )
    with (
        runtime.Executor(1, backend="subinterpreter") as ex,
        pytest.raises(runtime.BootstrapError, match="no worker module here"),
    ):
        ex.submit(tasks.square, 3).result(timeout=20)


@needs_early
@pytest.mark.parametrize(
    ("loaded", "cpus", "workers", "ahead"),
    [(False, 2, 2, 1), (False, 4, 2, 2), (False, 1, 3, 1), (True, 2, 2, 2)],
)
def test_a_cold_constructor_leaves_a_cpu_to_its_loading(monkeypatch, loaded, cpus, workers, ahead):
    """In a fresh process all but one CPU's worth start early; once loaded, all of them."""
    from runtime import _executor

    asked: list[int] = []
    real = _executor.start_interpreters

    def recording(count: int, backend: str, injected: bool) -> list[_early.EarlyInterpreter]:
        asked.append(count)
        return real(count, backend, injected)

    monkeypatch.setattr(_executor, "start_interpreters", recording)
    monkeypatch.setattr(_executor, "usable_cpu_count", lambda: cpus)
    monkeypatch.setattr(_executor, "_loaded", loaded)
    with runtime.Executor(workers, backend="subinterpreter") as ex:
        assert list(ex.map(tasks.square, range(6))) == [n * n for n in range(6)]
    assert asked == [ahead]
    assert not _early_threads()
