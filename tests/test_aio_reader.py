"""The event loop reads its executor's completions itself (runtime.aio._reader), on asyncio and trio.

While a task awaits a ``runtime.Executor`` result, the loop holds the executor inbox's
reader role: no helper thread reads for it, other threads' waits are served by it, and it
gives the role back when nothing awaits (kept reserved for a moment, which the hub breaks).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import pytest

import runtime
import runtime.aio
from runtime import _inbox
from runtime.aio import open_executor
from tests import aio_helpers as h
from tests.helpers import tasks
from tests.helpers.wire import decoding_threads

if TYPE_CHECKING:
    from runtime.aio import AsyncExecutor

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


async def _warm(ex: AsyncExecutor) -> runtime.Executor:
    executor = ex.executor
    assert isinstance(executor, runtime.Executor)
    await anyio.to_thread.run_sync(executor.wait_ready, 20)
    return executor


async def test_awaited_results_are_read_by_the_loop(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reservation the reader does not take up within the grace period goes to the hub
    # (by design); a loaded machine can deschedule the loop that long, so widen it here.
    monkeypatch.setattr(_inbox, "RESERVATION_GRACE", 5.0)
    async with open_executor(workers=2, backend=backend) as ex:
        executor = await _warm(ex)
        with decoding_threads() as readers:
            for i in range(30):
                assert await ex.run(h.square, i) == i * i
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(ex.run, h.square, i)
        assert readers, "no message was decoded at all"
        assert [name for name in readers if name != threading.current_thread().name] == []
        # Nothing awaits any more: the loop gave the role back.
        assert executor._inbox._state != _inbox._READING


async def test_the_loop_serves_another_threads_wait(backend: str) -> None:
    async with open_executor(workers=2, backend=backend) as ex:
        executor = await _warm(ex)
        gate = runtime.Channel()
        try:
            outcome: list[int] = []
            async with anyio.create_task_group() as tg:
                # This task keeps the loop holding the reader role until the gate opens.
                tg.start_soon(ex.run, tasks.released_by, gate, 1)
                for _ in range(1000):  # scheduler turns until that task awaits
                    if executor._inbox.held_here():
                        break
                    await anyio.lowlevel.checkpoint()

                def in_a_thread() -> None:
                    outcome.append(executor.submit(h.square, 9).result(timeout=20))
                    gate.send("go")

                await anyio.to_thread.run_sync(in_a_thread)
            assert outcome == [81]
        finally:
            gate.release()


async def test_a_blocking_wait_in_the_loop_thread_reads_for_itself(backend: str) -> None:
    """A loop that holds the role and blocks in Future.result() must not wait for itself."""
    async with open_executor(workers=1, backend=backend) as ex:
        executor = await _warm(ex)
        gate = runtime.Channel()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ex.run, tasks.released_by, gate, "first")
                inbox = executor._inbox
                for _ in range(1000):  # scheduler turns (trio may run tasks in either order)
                    if inbox.held_here():
                        break  # that task awaits now: the loop holds the role
                    await anyio.lowlevel.checkpoint()
                assert inbox.held_here()
                gate.send("go")
                assert executor.submit(h.square, 4).result(timeout=20) == 16
        finally:
            gate.release()


async def test_run_sync_gives_the_role_back_and_cancels_cleanly(backend: str) -> None:
    runtime.aio.configure_default_executor(workers=1, backend=backend)
    try:
        assert await runtime.aio.run_sync(h.square, 5) == 25
        with anyio.move_on_after(0.05):
            await runtime.aio.run_sync(tasks.wait_for_stop, 30.0)  # abandoned: asked to stop
        assert await runtime.aio.run_sync(h.square, 6) == 36
        default = runtime.aio._default.default_executor()
        assert default.executor is not None
        assert default.executor._inbox._state != _inbox._READING
    finally:
        await runtime.aio.aclose_default_executor()


needs_reservations = pytest.mark.skipif(
    not _inbox._RESERVABLE, reason="reservations need the hub's timerfd (Linux, 3.13+)"
)


@needs_reservations
async def test_back_to_back_awaits_keep_the_role_without_rearming_the_hub(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two awaits the role stays reserved for the loop's thread: no epoll_ctl pair per call."""
    monkeypatch.setattr(_inbox, "RESERVATION_GRACE", 5.0)  # a slow machine must not break it
    async with open_executor(workers=1, backend=backend) as ex:
        executor = await _warm(ex)
        inbox = executor._inbox
        assert await ex.run(h.square, 1) == 1
        arms: list[int] = []
        arm = inbox._arm
        monkeypatch.setattr(inbox, "_arm", lambda: (arms.append(1), arm())[1])
        for i in range(20):
            assert await ex.run(h.square, i) == i * i
            assert inbox._state == _inbox._RESERVED
            assert inbox._holder == threading.get_ident()
        assert arms == []


@needs_reservations
async def test_a_lingering_loop_that_blocks_does_not_hold_up_other_threads(backend: str) -> None:
    """The loop kept the role reserved, then blocked in code of its own: the hub takes over."""
    async with open_executor(workers=1, backend=backend) as ex:
        executor = await _warm(ex)
        assert await ex.run(h.square, 2) == 4
        assert executor._inbox._state == _inbox._RESERVED
        done = threading.Event()

        def submit_from_a_thread() -> None:
            executor.submit(h.square, 7).add_done_callback(lambda _f: done.set())

        helper = threading.Thread(target=submit_from_a_thread)
        helper.start()
        # The loop's thread blocks here, awaiting nothing: only the hub can read now.
        assert done.wait(20)
        helper.join(20)


@needs_reservations
async def test_a_loop_keeps_no_reservation_while_another_threads_job_runs(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_inbox, "RESERVATION_GRACE", 30.0)  # the hub would not break it
    async with open_executor(workers=2, backend=backend) as ex:
        executor = await _warm(ex)
        gate = runtime.Channel()
        try:
            held = executor.submit(tasks.released_by, gate, "held")
            assert await ex.run(h.square, 3) == 9
            assert executor._inbox._state == _inbox._FREE  # the hub reads for "held"
            done = threading.Event()
            held.add_done_callback(lambda _f: done.set())
            gate.send("go")
            assert await anyio.to_thread.run_sync(done.wait, 20)
        finally:
            gate.release()


def test_a_thread_waits_while_no_loop_runs() -> None:
    """After the loop ended, the executor is read by waiting callers and the hub again."""

    async def main(executor: runtime.Executor) -> int:
        ex = runtime.aio.AsyncExecutor(executor)
        return await ex.run(h.square, 3)

    with runtime.Executor(1, backend="thread") as executor:
        assert anyio.run(main, executor) == 9
        done = threading.Event()
        future = executor.submit(h.square, 4)
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(20)
        assert future.result() == 16
