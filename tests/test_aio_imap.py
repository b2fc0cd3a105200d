"""AsyncExecutor.imap: results as an async iterator, in order or as they finish, lazy with buffersize."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
from typing import TYPE_CHECKING

import anyio
import pytest

import runtime
from runtime.aio import AsyncExecutor, open_executor
from tests.helpers import tasks

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def ex(backend: str) -> AsyncIterator[AsyncExecutor]:
    async with open_executor(workers=2, backend=backend) as executor:
        yield executor


class Counted:
    def __init__(self, items: object) -> None:
        self._it = iter(items)  # type: ignore[call-overload]
        self.pulled = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> object:
        value = next(self._it)
        self.pulled += 1
        return value


@pytest.mark.anyio
async def test_ordered_results(ex: AsyncExecutor) -> None:
    assert [v async for v in ex.imap(tasks.square, range(300))] == [x * x for x in range(300)]
    assert [v async for v in ex.imap(tasks.add, [1, 2], [10, 20, 30], chunksize=1)] == [11, 22]
    assert [v async for v in ex.imap(tasks.square, [])] == []


@pytest.mark.anyio
async def test_unordered_results_come_as_they_finish(ex: AsyncExecutor) -> None:
    gate = runtime.Channel()
    got = []
    async with contextlib.aclosing(
        ex.imap(tasks.released_by, [gate, None], ["slow", "fast"], ordered=False)
    ) as results:
        async for value in results:
            got.append(value)
            if value == "fast":
                gate.send("go")  # only now may the head of the line finish
    assert got == ["fast", "slow"]
    gate.close()


@pytest.mark.anyio
async def test_unordered_with_buffersize_streams_past_a_slow_job(ex: AsyncExecutor) -> None:
    gate = runtime.Channel()
    values = ["slow", *(f"fast-{i}" for i in range(6))]
    gates = [gate, *[None] * 6]
    got = []
    async for value in ex.imap(tasks.released_by, gates, values, ordered=False, buffersize=2):
        got.append(value)
        if len(got) == 6:
            gate.send("go")
    assert sorted(got[:6]) == values[1:]
    assert got[6] == "slow"
    gate.close()


@pytest.mark.anyio
async def test_buffersize_reads_the_input_as_results_are_taken(ex: AsyncExecutor) -> None:
    source = Counted(range(20))
    pulls = []
    async for _ in ex.imap(tasks.square, source, buffersize=3):
        pulls.append(source.pulled)
    assert pulls == [min(20, 3 + k) for k in range(1, 21)]


@pytest.mark.anyio
async def test_an_endless_input_and_leaving_early(ex: AsyncExecutor) -> None:
    got = []
    async with contextlib.aclosing(
        ex.imap(tasks.square, itertools.count(), buffersize=4, chunksize=8)
    ) as results:
        async for value in results:
            got.append(value)
            if len(got) == 100:
                break
    assert got == [x * x for x in range(100)]


@pytest.mark.anyio
async def test_the_first_failure_is_raised(ex: AsyncExecutor) -> None:
    async def collect(ordered: bool, got: list[int]) -> None:
        async for value in ex.imap(tasks.reject_if, range(10), [6] * 10, ordered=ordered):
            got.append(value)

    for ordered in (True, False):
        got: list[int] = []
        with pytest.raises(tasks.Rejected) as info:
            await collect(ordered, got)
        assert info.value.code == 6
        assert 6 not in got
        if ordered:
            assert got == list(range(6))


@pytest.mark.anyio
async def test_cancelling_the_consumer_abandons_the_rest(ex: AsyncExecutor) -> None:
    gate = runtime.Channel()
    with anyio.move_on_after(0.2) as scope:
        async for _ in ex.imap(tasks.released_by, [gate, None, None], ["a", "b", "c"]):
            pass
    assert scope.cancelled_caught
    gate.send("go")  # let the running job end so the executor can shut down
    gate.close()


@pytest.mark.anyio
async def test_bad_arguments_fail_at_the_call(ex: AsyncExecutor) -> None:
    with pytest.raises(runtime.ConfigurationError, match="buffersize"):
        ex.imap(tasks.square, [1], buffersize=0)
    with pytest.raises(runtime.ConfigurationError, match="chunksize"):
        ex.imap(tasks.square, [1], chunksize=0)


@pytest.mark.anyio
async def test_on_a_stdlib_executor() -> None:
    with cf.ThreadPoolExecutor(2) as pool:
        aex = AsyncExecutor(pool)
        assert [v async for v in aex.imap(tasks.square, range(20), buffersize=3)] == [
            x * x for x in range(20)
        ]
        got = [v async for v in aex.imap(tasks.square, range(20), ordered=False)]
        assert sorted(got) == [x * x for x in range(20)]
