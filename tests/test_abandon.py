"""Abandoned workers: silent afterwards, out of live_workers, and harmless at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import runtime
from runtime._common import init_spec, next_worker_id, pack_bootstrap
from runtime._hub import Hub
from runtime.backends import abandoned_workers, create_worker, live_workers

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_abandoned_worker_is_silent_and_ends_by_itself(backend, hang_gate, caplog):
    events: list[object] = []
    closed = threading.Event()
    hub = Hub(name="runtime-test-hub")
    try:
        worker = create_worker(
            backend,
            next_worker_id(),
            hub,
            lambda w, m: events.append(m),
            lambda w: closed.set(),
        )
        info = {"id": worker.id, "backend": backend, "attempt": 1, "slot": 1, "kind": "t"}
        bootstrap = pack_bootstrap("tests.helpers.lifecycle:hang", backend)
        worker.start(init_spec(info, backend, bootstrap))
        assert worker in live_workers()
        worker.abandon("the test gave up on it")
        assert worker.abandoned == "the test gave up on it"
        assert worker not in live_workers()
        assert "abandoning" in caplog.text
        assert "the test gave up on it" in caplog.text
        if backend == "process":
            assert worker.join(10)  # killed, not abandoned to run on
            assert worker not in abandoned_workers()
        else:
            assert worker in abandoned_workers()
        os.write(hang_gate, b"x" * 8)  # the bootstrap returns; its "ready" meets a closed pipe
        assert worker.join(20)
        assert worker not in abandoned_workers()
        assert events == []
        assert not closed.is_set()
        worker.abandon("twice is harmless")
    finally:
        hub.close()


SCRIPT = textwrap.dedent(
    """
    import atexit, logging, sys, warnings
    warnings.simplefilter("ignore")  # 3.12's loud subinterpreter warning
    sys.path.insert(0, {root!r})
    import runtime
    from runtime.backends import abandoned_workers
    atexit.register(lambda: print("user atexit ran", flush=True))
    pool = runtime.Pool("tests.helpers.lifecycle:Fail", backend={backend!r},
                        bootstrap="tests.helpers.lifecycle:hang", boot_timeout=0.5)
    try:
        pool.start()
    except runtime.BootstrapError as exc:
        print("start failed:", "did not finish the bootstrap" in str(exc))
    print("abandoned:", len(abandoned_workers()))
    sys.stdout.write("unflushed tail\\n")
    how = {how!r}
    if how == "exit3":
        sys.exit(3)
    if how == "raise":
        raise ValueError("the script failed")
    """
)


@pytest.mark.parametrize(("how", "status"), [("return", 0), ("exit3", 3), ("raise", 1)])
def test_exit_with_a_hung_abandoned_worker(backend, tmp_path, how, status):
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # nobody ever writes: the bootstrap hangs for good
    env = dict(os.environ, RUNTIME_TEST_HANG_GATE=str(gate), PYTHONPATH=ROOT)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=ROOT, backend=backend, how=how)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )
    assert time.monotonic() - started < 60
    assert "Fatal Python error" not in proc.stderr
    assert "remaining subinterpreters" not in proc.stderr
    assert proc.returncode == status, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "start failed: True"
    assert lines[1] == f"abandoned: {0 if backend == 'process' else 1}"
    assert "unflushed tail" in lines
    assert "user atexit ran" in lines
    if how == "raise":
        assert "ValueError: the script failed" in proc.stderr


def test_exit_status_helper_reads_sys_exit_on_312(monkeypatch):
    from runtime import backends

    monkeypatch.setattr(backends, "_exit_request", [])
    assert backends._exit_status() == (1 if getattr(sys, "last_exc", None) else 0)
    monkeypatch.setattr(backends, "_exit_request", [7])
    assert backends._exit_status() == 7
    monkeypatch.setattr(backends, "_exit_request", [None])
    assert backends._exit_status() == 0
    assert runtime.Error  # the package stays importable with the guard registered


@pytest.mark.skipif(not runtime.capabilities().subinterpreters, reason="no subinterpreters")
def test_a_refused_interpreter_creation_is_tried_again(monkeypatch):
    from runtime import _early

    calls: list[int] = []
    real = _early._create

    def flaky() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("interpreter creation failed")
        return real()

    monkeypatch.setattr(_early, "_create", flaky)
    interp = _early.create_interpreter()
    _early.destroy_interpreter(interp)  # 3.12 aborts at exit on an interpreter left behind
    assert len(calls) == 2
    monkeypatch.setattr(_early, "_create", lambda: (_ for _ in ()).throw(RuntimeError("no")))
    with pytest.raises(RuntimeError, match="no"):
        _early.create_interpreter(attempts=2)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="InterpreterError is new in 3.13")
def test_a_refusal_raised_as_interpreter_error_is_tried_again_too(monkeypatch):
    from runtime import _early

    refusal = _early._low.InterpreterError
    assert not issubclass(refusal, RuntimeError)  # why it needs catching by name
    calls: list[int] = []
    real = _early._create

    def flaky() -> object:
        calls.append(1)
        if len(calls) < 3:
            raise refusal("interpreter creation failed")
        return real()

    monkeypatch.setattr(_early, "_create", flaky)
    interp = _early.create_interpreter()
    _early.destroy_interpreter(interp)
    assert len(calls) == 3
