"""What an :class:`~runtime.Executor` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

Counted where the executor already handles each event: ``submit`` (under its lock),
a batch written to a worker, a results frame read by the hub thread, a worker lost.
Job duration is measured in the main interpreter from what crosses the pipes: from a
batch being written to the worker until its results frame is read back, recorded
for every job of that batch (a job that waited behind others in its batch counts
that wait: it is what its caller waited for).
"""

from __future__ import annotations

import collections
import time

from .._worker import map_chunk
from ._failure import exception_name
from ._registry import ComponentOps, Histogram, Sample

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .._hub import Hub

__all__ = ["ExecutorOps"]

P = "parallel_runtime_"
_perf_counter = time.perf_counter


def _describe(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}" if module else name


class ExecutorOps(ComponentOps):
    kind = "executor"

    def __init__(self, executor: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(executor, on_failure, metrics)
        self.submitted = 0  # incremented by Executor.submit under the executor's lock
        self.completed = 0
        self.failed: collections.Counter[str] = collections.Counter()
        self.replaced = 0
        self.recycled: collections.Counter[str] = collections.Counter()  # by reason
        self.duration = Histogram()
        self._sent: dict[int, float] = {}
        # Looking at each result is needed for counting and for reporting failures.
        self._inspect = self.metrics or self.reports.hook is not None

    def attach(self, hub: Hub) -> None:
        self.heartbeats = [hub.heartbeat]
        self.register()

    # -------------------------------------------------------------- events
    def batch_sent(self, batch_id: int) -> None:
        if self.metrics:
            self._sent[batch_id] = _perf_counter()

    def batch_done(self, batch_id: int, items: list[Any], results: list[Any], worker: Any) -> None:
        """A results frame arrived (hub thread) and its futures are set."""
        if not self._inspect:
            return
        if self.metrics:
            started = self._sent.pop(batch_id, None)
            if started is not None:
                self.duration.observe(_perf_counter() - started, len(items))
        failed = 0
        for item, (ok, value) in zip(items, results, strict=True):
            if not ok:
                failed += 1
                self._job_failed(item.fn, value, worker)
            elif item.fn is map_chunk and value[1] is not None:
                failed += 1  # map(): the user's function raised inside the chunk
                self._job_failed(item.args[0], value[1], worker)
        self.completed += len(items) - failed

    def send_failed(self, fn: Any, exc: BaseException) -> None:
        """A job could not be pickled for the worker (NotTransferable); it never ran."""
        if self._inspect:
            from .._wire import encode_exception

            self._job_failed(fn, encode_exception(exc), None)

    def worker_lost(
        self, worker: Any, inflight: dict[int, list[Any]], error: BaseException
    ) -> None:
        """A worker died holding ``inflight`` batches; their jobs failed with ``error``."""
        for batch_id in inflight:
            self._sent.pop(batch_id, None)
        if not self._inspect:
            return
        from .._wire import encode_exception

        payload = encode_exception(error)
        for item in _items(inflight.values()):
            self._job_failed(item.fn, payload, worker)

    def worker_replaced(self) -> None:
        self.replaced += 1

    def worker_recycled(self, reason: str) -> None:
        """A worker was retired by a lifecycle limit (``tasks``, ``memory`` or ``age``)."""
        self.recycled[reason] += 1

    def _job_failed(self, fn: Any, payload: Any, worker: Any) -> None:
        exc_type = exception_name(payload[1])
        self.failed[exc_type] += 1
        if self.reports.hook is None:
            return
        info = None
        executor = self.owner()
        if worker is not None and executor is not None:
            from .._task import WorkerInfo

            info = WorkerInfo(id=worker.id, backend=executor.backend, pid=worker.pid)
        from ._failure_record import Failure  # a dataclass: loaded by the first failure

        self.reports.report(
            Failure(
                source="executor",
                task=_describe(fn),
                exception_type=exc_type,
                message=payload[2],
                traceback=payload[3],
                attempt=1,
                action="raise",
                time=time.time(),
                worker=info,
            )
        )

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        out += [
            Sample(P + "jobs_submitted_total", (), self.submitted),
            Sample(P + "jobs_completed_total", (), self.completed),
            Sample(P + "executor_workers_replaced_total", (), self.replaced),
            Sample(P + "job_duration_seconds", (), self.duration.snapshot()),
        ]
        out += [Sample(P + "jobs_failed_total", (k,), n) for k, n in list(self.failed.items())]
        out += [
            Sample(P + "workers_recycled_total", (k,), n) for k, n in list(self.recycled.items())
        ]
        return out

    def _state(self) -> tuple[int, int, int, int, bool, BaseException | None] | None:
        executor = self.owner()
        if executor is None:
            return None
        with executor._lock:
            workers = list(executor._workers.values())
            return (
                executor._count,
                sum(1 for w in workers if w.ready),
                len(executor._pending),
                sum(len(w.inflight) for w in workers),
                executor._shutdown,
                executor._broken,
            )

    def gauges(self) -> list[Sample]:
        state = self._state()
        if state is None:
            return []
        target, ready, queued, batches, _, _ = state
        return [
            Sample(P + "executor_workers_target", (), target),
            Sample(P + "executor_workers_alive", (), ready),
            Sample(P + "jobs_queued", (), queued),
            Sample(P + "batches_in_flight", (), batches),
        ]

    def not_ready(self) -> list[str]:
        state = self._state()
        if state is None:
            return []
        target, ready, _, _, shutdown, broken = state
        if broken is not None:
            return [f"{self.name}: broken: {broken}"]
        if shutdown:
            return [f"{self.name}: shutting down"]
        if ready < target:
            return [f"{self.name}: {ready} of {target} workers ready"]
        return []


def _items(batches: Iterable[list[Any]]) -> Iterable[Any]:
    for batch in batches:
        yield from batch
