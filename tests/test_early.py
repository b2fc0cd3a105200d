"""A new executor creates its interpreters while it loads its machinery (``runtime._early``)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import runtime
from runtime import _early
from runtime.backends import live_workers
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


def test_a_script_without_a_main_guard_gets_the_hint(backend, tmp_path):
    """A worker that re-imports such a script meets its top-level Executor: one clear error.

    The check must hold although a new executor no longer imports the worker module
    before it starts (a worker always has it loaded; the main interpreter may not).
    """
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import runtime\n"
        "def inc(x):\n"
        "    return x + 1\n"
        f"ex = runtime.Executor(1, backend={backend!r})\n"
        "try:\n"
        "    print('result', ex.submit(inc, 1).result(timeout=30))\n"
        "except runtime.Error as exc:\n"
        "    print('error', type(exc).__name__, exc)\n"
        "ex.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    if backend == "thread":  # thread workers share the main interpreter: nothing is re-imported
        assert done.stdout.split() == ["result", "2"]
    else:
        assert done.stdout.startswith("error NotTransferable "), done.stdout
        assert "an Executor was created while a worker re-imported the main script" in done.stdout
        assert "if __name__ == '__main__':" in done.stdout


@needs_early
def test_workers_run_in_the_interpreters_created_ahead():
    with runtime.Executor(2, backend="subinterpreter") as ex:
        assert [ex.submit(tasks.square, n).result(timeout=20) for n in range(4)] == [0, 1, 4, 9]
        ids = {h.native_thread_id for h in live_workers()}
        names = {t.name for t in threading.enumerate() if t.native_id in ids}
        assert len(names) == 2
        assert all(name.startswith("runtime-interp-worker-") for name in names)
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


# ---------------------------------------------------------------------- the switch interval
@pytest.fixture
def interval():
    """The test's switch interval, restored afterwards whatever happens."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(saved)


def test_fast_switching_lowers_the_interval_while_any_thread_is_inside(interval):
    entered, leave = threading.Event(), threading.Event()

    def inside() -> None:
        with _early.fast_switching:
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=inside)
    other.start()
    assert entered.wait(10)
    assert sys.getswitchinterval() == pytest.approx(_early.FAST_SWITCH_INTERVAL)
    with _early.fast_switching:  # a second user: the first one leaving must not restore it
        leave.set()
        other.join(10)
        assert sys.getswitchinterval() == pytest.approx(_early.FAST_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(interval)


def test_fast_switching_leaves_alone_an_interval_the_program_set(interval):
    with _early.fast_switching:
        sys.setswitchinterval(0.002)  # the program's own choice, made meanwhile
    assert sys.getswitchinterval() == pytest.approx(0.002)
    sys.setswitchinterval(_early.FAST_SWITCH_INTERVAL / 2)  # already faster: not raised
    with _early.fast_switching:
        assert sys.getswitchinterval() == pytest.approx(_early.FAST_SWITCH_INTERVAL / 2)
    assert sys.getswitchinterval() == pytest.approx(_early.FAST_SWITCH_INTERVAL / 2)


def test_fast_switching_is_restored_when_the_block_raises(interval):
    with pytest.raises(ValueError, match="boom"), _early.fast_switching:
        raise ValueError("boom")
    assert sys.getswitchinterval() == pytest.approx(interval)


def test_workers_switch_fast_only_while_interpreters_are_created(
    backend, interval, monkeypatch, tmp_path
):
    """Subinterpreter workers lower the interval while they boot and restore it; others never touch it."""
    runtime.Executor(1, backend="thread").shutdown()  # loaded: a cold constructor switches fast too
    calls: list[float] = []
    real = sys.setswitchinterval

    def recording(value: float) -> None:
        calls.append(value)
        real(value)

    monkeypatch.setattr(sys, "setswitchinterval", recording)
    with runtime.Executor(2, backend=backend) as ex:
        assert ex.submit(tasks.square, 5).result(timeout=30) == 25
        ex.wait_ready(timeout=30)
        assert sys.getswitchinterval() == pytest.approx(interval)
    runtime.Pool(tasks.Report(str(tmp_path / "out")), workers=2, backend=backend).run()
    assert len(tasks.read_lines(str(tmp_path / "out"))) == 2
    assert sys.getswitchinterval() == pytest.approx(interval)
    if backend == "subinterpreter":
        assert _early.FAST_SWITCH_INTERVAL in calls
        assert calls[-1] == pytest.approx(interval)
    else:
        assert calls == []


def test_a_worker_boots_beside_a_thread_that_never_releases_the_gil_by_itself(backend, interval):
    """A thread of the main interpreter running Python code (an event loop's, the application's)."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        with runtime.Executor(2, backend=backend, max_tasks_per_worker=2) as ex:
            # Six jobs, two per worker: recycling creates more workers beside the spinner.
            assert [ex.submit(tasks.square, n).result(timeout=60) for n in range(6)] == [
                n * n for n in range(6)
            ]
    finally:
        stop.set()
        spinner.join(10)
    assert sys.getswitchinterval() == pytest.approx(interval)
