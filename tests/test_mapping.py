"""Executor.map: lazy with buffersize (Python 3.14 semantics), and results as they finish."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import sys

import pytest

import runtime
from tests.helpers import tasks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ex(backend):
    with runtime.Executor(2, backend=backend) as executor:
        yield executor


class Counted:
    """An input iterator that records how many items were pulled from it."""

    def __init__(self, items):
        self._it = iter(items)
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        value = next(self._it)
        self.pulled += 1
        return value


def _pulls_after_each_result(executor, buffersize, n=12):
    source = Counted(range(n))
    it = executor.map(tasks.square, source, buffersize=buffersize)
    pulls = [source.pulled]
    results = []
    for value in it:
        results.append(value)
        pulls.append(source.pulled)
    assert results == [x * x for x in range(n)]
    return pulls


def test_buffersize_reads_the_input_as_results_are_taken(ex):
    # Submitted at the call: `buffersize` items; then one more before each result is waited for.
    assert _pulls_after_each_result(ex, 3) == [3, *[min(12, 3 + k) for k in range(1, 13)]]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="Executor.map(buffersize=) is new in 3.14")
def test_buffersize_matches_the_stdlib_executor_on_314(ex):
    with cf.ThreadPoolExecutor(2) as stdlib:
        expected = _pulls_after_each_result(stdlib, 3)
    assert _pulls_after_each_result(ex, 3) == expected


def test_buffersize_counts_chunks(ex):
    source = Counted(range(100))
    it = ex.map(tasks.square, source, chunksize=5, buffersize=2)
    assert source.pulled == 10
    assert next(it) == 0
    assert source.pulled == 15  # one more chunk submitted before the first was waited for
    assert list(it) == [x * x for x in range(1, 100)]


def test_an_endless_input(ex):
    it = ex.map(tasks.square, itertools.count(), buffersize=4)
    assert list(itertools.islice(it, 50)) == [x * x for x in range(50)]
    it.close()
    chunked = ex.map(tasks.add, itertools.count(), itertools.repeat(1), chunksize=64, buffersize=2)
    assert list(itertools.islice(chunked, 1000)) == list(range(1, 1001))


def test_closing_a_lazy_map_stops_reading_and_cancels_queued_chunks(backend):
    gate = runtime.Channel()
    with runtime.Executor(1, backend=backend) as executor:
        source = Counted(itertools.chain([gate], itertools.repeat(None)))
        it = executor.map(tasks.released_by, source, itertools.repeat("v"), buffersize=3)
        assert source.pulled == 3
        it.close()  # the first job still waits on the gate; the two behind it are cancelled
        assert source.pulled == 3
        gate.send("go")
    gate.close()


def test_buffersize_with_timeout(ex):
    gate = runtime.Channel()
    it = ex.map(tasks.released_by, [gate, None], ["slow", "fast"], buffersize=1, timeout=0.2)
    with pytest.raises(TimeoutError):
        list(it)
    gate.send("go")
    gate.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_buffersize(ex, bad):
    with pytest.raises(runtime.ConfigurationError, match="buffersize") as info:
        ex.map(tasks.square, [1], buffersize=bad)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [0, -2, 2.0, None])
def test_bad_chunksize_is_a_configuration_error(ex, bad):
    with pytest.raises(runtime.ConfigurationError, match="chunksize"):
        ex.map(tasks.square, [1], chunksize=bad)


def test_without_buffersize_the_input_is_read_at_once(ex):
    source = Counted(range(500))
    it = ex.map(tasks.square, source)
    assert source.pulled == 500
    assert list(it) == [x * x for x in range(500)]


def test_unordered_yields_what_finished_first(ex):
    gate = runtime.Channel()
    it = ex.map(tasks.released_by, [gate, None], ["slow", "fast"], ordered=False)
    assert next(it) == "fast"  # the head of the line still waits on the gate
    gate.send("go")
    assert list(it) == ["slow"]
    gate.close()


def test_unordered_with_buffersize_refills_as_jobs_finish(ex):
    # Two jobs in flight on two workers: the head waits on the gate, and every job
    # that finishes is replaced at once, so the rest stream past it.
    gate = runtime.Channel()
    values = ["slow", "fast-1", "fast-2", "fast-3", "fast-4"]
    it = ex.map(
        tasks.released_by, [gate, None, None, None, None], values, ordered=False, buffersize=2
    )
    assert sorted(itertools.islice(it, 4)) == values[1:]
    gate.send("go")
    assert list(it) == ["slow"]
    gate.close()


@pytest.mark.parametrize(
    "kwargs", [{}, {"chunksize": 7}, {"buffersize": 3}, {"buffersize": 2, "chunksize": 16}]
)
def test_unordered_returns_every_result_once(ex, kwargs):
    got = list(ex.map(tasks.square, range(300), ordered=False, **kwargs))
    assert sorted(got) == [x * x for x in range(300)]


def test_unordered_timeout(ex):
    gate = runtime.Channel()
    it = ex.map(tasks.released_by, [gate], ["slow"], ordered=False, timeout=0.2)
    with pytest.raises(TimeoutError):
        next(it)
    gate.send("go")
    gate.close()


def test_unordered_empty_input(ex):
    assert list(ex.map(tasks.square, [], ordered=False)) == []
    assert list(ex.map(tasks.square, [], buffersize=3)) == []
