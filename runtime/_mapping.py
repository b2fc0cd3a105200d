"""``Executor.map``'s machinery: eager or lazy submission, results in order or as they finish.

Work travels in chunks: each job is ``map_chunk(fn, chunk)`` and its result is
``(values, error)``, so a chunk stops at its first failing item as ``map`` does.

* Eager (no ``buffersize``): the whole input is read and submitted when ``map`` is
  called, in chunks sized from the item and worker counts when ``chunksize=1``.
* Lazy (``buffersize=k``, Python 3.14's ``Executor.map`` semantics): ``k`` chunks
  are submitted when ``map`` is called and one more each time a result is taken,
  so the input is read only as fast as results are consumed and memory stays flat
  on a 10-million-item generator or an endless ``itertools.count()``. The next
  chunk is submitted *before* waiting for the oldest (as CPython does), so the
  workers are not left idle while the consumer works.
* ``ordered=False``: results come as their chunks finish. Every future reports to
  one ``SimpleQueue`` through a done-callback and the consumer blocks on that queue:
  nothing polls and no thread is spent per call. With ``buffersize`` a finished
  chunk is replaced at once, so uneven job lengths never leave a worker waiting
  behind a slow head of line.

Leaving the iterator early (``break``, an exception, garbage collection) cancels
the chunks that have not started. The iterator holds the executor weakly, as
CPython's does, so an abandoned lazy map does not keep an executor alive.
"""

from __future__ import annotations

import collections
import itertools
import queue
import time
import weakref
from collections.abc import Sequence

from ._errors import ConfigurationError
from ._wire import decode_exception
from ._worker import map_chunk

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

__all__ = ["auto_chunksize", "check_buffersize", "check_chunksize", "map_results"]

type Chunk = Sequence[tuple[Any, ...]]


def auto_chunksize(count: int, workers: int, max_batch: int = 256) -> int:
    """Items per chunk for ``count`` items on ``workers`` workers, at most ``max_batch``.

    About 8 chunks per worker keeps every worker busy while amortising the per-job cost.
    """
    return max(1, min(max_batch, count // (8 * max(1, workers))))


def check_chunksize(chunksize: object) -> int:
    if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
        raise ConfigurationError(f"chunksize must be an int >= 1, got {chunksize!r}")
    return chunksize


def check_buffersize(buffersize: object) -> int | None:
    if buffersize is None:
        return None
    if not isinstance(buffersize, int) or isinstance(buffersize, bool) or buffersize < 1:
        raise ConfigurationError(
            f"buffersize must be None or an int >= 1 (chunks submitted ahead), got {buffersize!r}"
        )
    return buffersize


def map_results(
    executor: cf.Executor,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    *,
    timeout: float | None,
    chunksize: int,
    buffersize: int | None,
    ordered: bool,
    auto_chunksize: Callable[[int], int],
) -> Iterator[Any]:
    """Submit ``fn`` over the zipped ``iterables`` to ``executor`` and return the result iterator."""
    chunksize = check_chunksize(chunksize)
    buffersize = check_buffersize(buffersize)
    end = None if timeout is None else time.monotonic() + timeout
    zipped = zip(*iterables, strict=False)
    source: Iterator[Chunk] | None
    if buffersize is None:
        items = list(zipped)
        size = chunksize if chunksize > 1 else auto_chunksize(len(items))
        chunks: Iterable[Chunk] = (items[i : i + size] for i in range(0, len(items), size))
        source = None
    else:
        source = itertools.batched(zipped, chunksize)
        chunks = itertools.islice(source, buffersize)
    futures: collections.deque[cf.Future[Any]] = collections.deque()
    try:
        for chunk in chunks:
            futures.append(executor.submit(map_chunk, fn, chunk))
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    # Submitted above, before the first value is asked for; the generator only collects.
    feed = _Feed(source, executor, fn)
    if ordered:
        return _in_order(futures, feed, end)
    return _as_completed(futures, feed, end)


class _Feed:
    """Submits the next chunk of a lazy map (nothing for an eager one, or once the executor is gone)."""

    __slots__ = ("fn", "ref", "source")

    def __init__(
        self, source: Iterator[Chunk] | None, executor: cf.Executor, fn: Callable[..., Any]
    ) -> None:
        self.source = source
        self.ref = weakref.ref(executor)
        self.fn = fn

    def next(self) -> cf.Future[Any] | None:
        if self.source is None:
            return None
        executor = self.ref()
        if executor is None:
            return None
        chunk = next(self.source, None)
        if chunk is None:
            return None
        return executor.submit(map_chunk, self.fn, chunk)


def _remaining(end: float | None) -> float | None:
    return None if end is None else max(0.0, end - time.monotonic())


def _chunk_result(future: cf.Future[Any], end: float | None) -> tuple[list[Any], Any]:
    try:
        result: tuple[list[Any], Any] = future.result(_remaining(end))
        return result
    finally:
        future.cancel()  # only has an effect after a timeout: the chunk is given up


def _in_order(
    futures: collections.deque[cf.Future[Any]], feed: _Feed, end: float | None
) -> Iterator[Any]:
    try:
        while futures:
            nxt = feed.next()
            if nxt is not None:
                futures.append(nxt)
            # Pop before waiting: no reference to a finished chunk outlives its values.
            values, error = _chunk_result(futures.popleft(), end)
            yield from values
            if error is not None:
                raise decode_exception(error)
    finally:
        for future in futures:
            future.cancel()


def _as_completed(
    futures: collections.deque[cf.Future[Any]], feed: _Feed, end: float | None
) -> Iterator[Any]:
    done: queue.SimpleQueue[cf.Future[Any]] = queue.SimpleQueue()
    pending = dict.fromkeys(futures)
    futures.clear()
    for future in pending:
        future.add_done_callback(done.put)
    try:
        while pending:
            try:
                future = done.get(timeout=_remaining(end))
            except queue.Empty:
                raise TimeoutError from None
            del pending[future]
            nxt = feed.next()
            if nxt is not None:
                pending[nxt] = None
                nxt.add_done_callback(done.put)
            values, error = future.result()
            del future
            yield from values
            if error is not None:
                raise decode_exception(error)
    finally:
        for future in pending:
            future.cancel()
