"""Who reads an executor's completions (runtime._inbox), and the start-up that does not wait.

A caller blocked in ``result()`` reads its own completion; several callers share the
reader role; the hub reads when nobody else does; a worker that dies, or a read torn by a
signal handler, fails that worker's jobs instead of losing them. The constructor returns
before the workers booted, and a failing bootstrap still reaches the caller.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from typing import TYPE_CHECKING

import pytest

import runtime
import runtime._inbox
from runtime import _wire
from runtime.backends import live_workers
from tests.helpers import tasks
from tests.helpers.wire import decoding_threads

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- the reader role
def test_concurrent_callers_each_get_their_own_results(backend: str) -> None:
    errors: list[BaseException] = []
    finished: list[int] = []
    start = threading.Barrier(6)

    def caller(k: int) -> None:
        try:
            start.wait(20)
            for i in range(40):
                assert ex.submit(tasks.add, k, i).result(timeout=20) == k + i
            finished.append(k)
        except BaseException as exc:
            errors.append(exc)

    with runtime.Executor(2, backend=backend) as ex:
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
    assert not errors
    assert sorted(finished) == list(range(6))


def test_the_stdlib_ways_of_waiting_still_work(backend: str) -> None:
    with runtime.Executor(2, backend=backend) as ex:
        futures = [ex.submit(tasks.square, i) for i in range(20)]
        done, not_done = cf.wait(futures, timeout=20)
        assert not not_done
        assert len(done) == 20
        more = [ex.submit(tasks.square, i) for i in range(10)]
        assert sorted(f.result() for f in cf.as_completed(more, timeout=20)) == [
            i * i for i in range(10)
        ]
        seen: list[int] = []
        called = threading.Event()
        future = ex.submit(tasks.square, 7)
        future.add_done_callback(lambda f: (seen.append(f.result()), called.set()))
        assert called.wait(20)
        assert seen == [49]
        assert future.exception(timeout=20) is None


def test_a_caller_reads_its_own_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-to-back calls wake no helper thread: the hub never reads them."""
    # A reservation the caller does not take up within the grace period goes to the hub
    # (by design); a loaded machine can deschedule the caller that long, so widen it here.
    monkeypatch.setattr(runtime._inbox, "RESERVATION_GRACE", 5.0)
    with runtime.Executor(2, backend="thread") as ex:
        ex.wait_ready(20)
        if ex._inbox.timer_fd is None:
            pytest.skip("reservations need os.timerfd_create (Linux, Python 3.13+)")
        # Who decodes each message (counting the hub's wake-ups instead failed once in
        # 3.13.0's CI rehearsal: see decoding_threads). Shutdown's messages are not counted.
        with decoding_threads() as readers:
            for i in range(50):
                assert ex.submit(tasks.square, i).result(timeout=20) == i * i
        assert len(readers) >= 50, readers
        assert [name for name in readers if name != threading.current_thread().name] == []


def test_our_futures_carry_the_stdlib_future_state() -> None:
    """The lean Future keeps every attribute the stdlib's methods use (the Condition lazily)."""
    stdlib = set(vars(cf.Future()))
    with runtime.Executor(1, backend="thread") as ex:
        future = ex.submit(tasks.square, 2)
        assert future.result(timeout=20) == 4
        assert future.done()
        assert not future.running()  # builds the Condition on demand
        assert stdlib <= set(vars(future))
        pending = [ex.submit(tasks.sleep_then, 0.2) for _ in range(3)]
        assert pending[-1].cancel()  # the last one was still queued
        assert pending[-1].cancelled()
        with pytest.raises(cf.CancelledError):
            pending[-1].result(timeout=20)
    stdlib_done = {cf._base.CANCELLED, cf._base.CANCELLED_AND_NOTIFIED, cf._base.FINISHED}
    assert stdlib_done == _wire.DONE


def test_a_submitter_that_never_waits_does_not_stall_the_executor(backend: str) -> None:
    """Its reservation of the reader role lapses (the hub's timer) and the hub reads."""
    ran = runtime.Channel()
    try:
        with runtime.Executor(1, backend=backend) as ex:
            ex.wait_ready(20)

            def submit_and_leave() -> None:
                ex.submit(tasks.square, 2)
                ex.submit(tasks.square, 3)  # the worker holds two batches
                # Queued: it is sent only once a completion has been read.
                ex.submit(tasks.announce, ran, "third ran")

            thread = threading.Thread(target=submit_and_leave)
            thread.start()
            thread.join(20)
            assert ran.recv(timeout=20) == "third ran"
    finally:
        ran.release()


@pytest.mark.skipif(not runtime._inbox._RESERVABLE, reason="no reservations without timerfd")
def test_a_caller_keeps_no_reservation_while_other_jobs_are_in_flight(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Done with its own result, a caller keeps the role reserved only if nothing else runs:
    another job's completion must not wait for the caller to come back."""
    monkeypatch.setattr(runtime._inbox, "RESERVATION_GRACE", 30.0)  # the hub would not break it
    gate = runtime.Channel()
    try:
        with runtime.Executor(2, backend=backend) as ex:
            ex.wait_ready(20)
            inbox = ex._inbox
            assert ex.submit(tasks.square, 2).result(timeout=20) == 4
            assert inbox._state == runtime._inbox._RESERVED  # nothing else in flight: kept
            held = ex.submit(tasks.released_by, gate, "held")
            assert ex.submit(tasks.square, 3).result(timeout=20) == 9
            assert inbox._state == runtime._inbox._FREE  # "held" runs: the hub reads for it
            done = threading.Event()
            held.add_done_callback(lambda _f: done.set())
            gate.send("go")
            assert done.wait(20)  # read by the hub, although nobody waits in result()
            assert held.result() == "held"
    finally:
        gate.release()


def test_a_worker_that_dies_while_its_caller_reads_fails_only_its_job() -> None:
    with runtime.Executor(2, backend="process") as ex:
        ex.wait_ready(20)
        gate = runtime.Channel()
        try:
            other = ex.submit(tasks.released_by, gate, "other")
            dying = ex.submit(tasks.die_hard)  # least loaded: the other worker
            waiting: list[object] = []
            helper = threading.Thread(target=lambda: waiting.append(other.result(timeout=30)))
            helper.start()
            with pytest.raises(runtime.WorkerCrashed, match="exited with code 3"):
                dying.result(timeout=20)
            gate.send("go")
            helper.join(30)
            assert waiting == ["other"]
            assert ex.submit(tasks.square, 3).result(timeout=20) == 9  # replaced, not broken
        finally:
            gate.release()


def test_an_interrupted_read_fails_that_workers_jobs_instead_of_losing_them(backend: str) -> None:
    """A signal handler's exception between a pipe read and its buffering (Ctrl-C in the main
    thread) may have eaten bytes: the worker's stream cannot be trusted, so its jobs fail
    and it is replaced."""
    gate = runtime.Channel()
    try:
        with runtime.Executor(1, backend=backend) as ex:
            ex.wait_ready(20)
            held = ex.submit(tasks.released_by, gate, "held")
            (handle,) = live_workers()  # this test's only worker
            # What such an interruption leaves behind (runtime._inbox: Connection.reading).
            handle.conn.reading = True
            ex._inbox._interrupted()
            with pytest.raises(runtime.WorkerCrashed):
                held.result(timeout=20)
            gate.send("go")  # let the old worker finish its job and leave
            assert ex.submit(tasks.square, 5).result(timeout=20) == 25
    finally:
        gate.release()


# ---------------------------------------------------------------------- lazy start-up
@pytest.fixture
def boot_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Bootstraps (tasks.gated_boot) wait until the test calls ``open_gate(workers)``."""
    path = tmp_path / "boot-gate"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)  # a writer from the start: the workers' opens never block
    monkeypatch.setenv("RUNTIME_TEST_BOOT_GATE", str(path))

    def open_gate(workers: int) -> None:
        os.write(fd, b"x" * workers)

    yield open_gate
    os.close(fd)


def test_the_constructor_does_not_wait_for_the_workers(
    backend: str, boot_gate: Callable[[int], None]
) -> None:
    with runtime.Executor(2, backend=backend, bootstrap=tasks.gated_boot) as ex:
        future = ex.submit(tasks.square, 6)
        assert not future.done()  # every worker is still in its bootstrap
        with pytest.raises(TimeoutError, match="2 of 2 workers had not booted"):
            ex.wait_ready(timeout=0.05)
        boot_gate(2)
        assert future.result(timeout=20) == 36
        ex.wait_ready(timeout=20)


def test_a_bootstrap_failure_surfaces_from_result_and_submit(
    backend: str, boot_gate: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_TEST_BOOT_FAILS", "1")
    with runtime.Executor(2, backend=backend, bootstrap=tasks.gated_boot) as ex:
        queued = ex.submit(tasks.square, 2)  # no worker can have failed yet: it queues
        boot_gate(2)
        with pytest.raises(runtime.BootstrapError, match="failed as told") as info:
            queued.result(timeout=20)
        assert "gated_boot" in (info.value.remote_traceback or "")
        with pytest.raises(runtime.BootstrapError, match="failed as told"):
            ex.submit(tasks.square, 3)
        with pytest.raises(runtime.BootstrapError):
            ex.wait_ready(timeout=20)


def test_a_burst_right_after_the_constructor_still_spreads(
    backend: str, boot_gate: Callable[[int], None]
) -> None:
    with runtime.Executor(2, backend=backend, bootstrap=tasks.gated_boot) as ex:
        futures = [ex.submit(tasks.slow_worker_id, 1.0) for _ in range(2)]
        boot_gate(2)
        owners = {f.result(timeout=20) for f in futures}
    assert len(owners) == 2
