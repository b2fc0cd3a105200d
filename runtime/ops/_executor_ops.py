"""What an :class:`~runtime.Executor` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

An observer of the executor (see :class:`~runtime.ops._registry.ObservingOps` for the
contract): ``job_failed`` counts failures by exception type and reports them to
``on_failure``; ``batch_finished`` times jobs. The executor measures a batch in the
main interpreter from its being written to a worker until its results frame is read
back, and that time is recorded for every job of the batch (a job that waited behind
others in its batch counts that wait: it is what its caller waited for). Everything
else (submitted, completed, workers, queue) is read from ``executor.statistics()`` when
an endpoint asks.
"""

from __future__ import annotations

import collections
import time

from ._failure import exception_name
from ._registry import Histogram, ObservingOps, Sample

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._events import BatchFinished, JobFailed

__all__ = ["ExecutorOps"]

P = "parallel_runtime_"


def _describe(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}" if module else name


class ExecutorOps(ObservingOps):
    kind = "executor"

    def __init__(self, executor: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(executor, on_failure, metrics)
        self.failed: collections.Counter[str] = collections.Counter()  # by exception type
        self.duration = Histogram()

    # -------------------------------------------------------------- events (observer hooks)
    def job_failed(self, event: JobFailed) -> None:
        exc_type = exception_name(event.exception_type)
        with self._lock:
            self.failed[exc_type] += 1
        if self.reports.hook is None:
            return
        from ._failure_record import Failure  # a dataclass: loaded by the first failure

        self.reports.report(
            Failure(
                source="executor",
                task=_describe(event.function),
                exception_type=exc_type,
                message=event.message,
                traceback=event.traceback or "",
                attempt=1,
                action="raise",
                time=time.time(),
                worker=event.worker,
            )
        )

    def batch_finished(self, event: BatchFinished) -> None:
        if self.metrics:
            with self._lock:
                self.duration.observe(event.seconds, event.jobs)

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        stats = self.counted()
        if stats is not None:
            out += [
                Sample(P + "jobs_submitted_total", (), stats.submitted),
                Sample(P + "jobs_completed_total", (), stats.completed),
                Sample(P + "executor_workers_replaced_total", (), stats.replaced),
            ]
        with self._lock:
            duration = self.duration.snapshot()
            failed = list(self.failed.items())
        out.append(Sample(P + "job_duration_seconds", (), duration))
        out += [Sample(P + "jobs_failed_total", (k,), n) for k, n in failed]
        if stats is not None:
            out += [
                Sample(P + "workers_recycled_total", (k,), n)
                for k, n in list(stats.recycled.items())
            ]
        return out

    def gauges(self) -> list[Sample]:
        stats = self.statistics()
        if stats is None:
            return []
        return [
            Sample(P + "executor_workers_target", (), stats.workers_target),
            Sample(P + "executor_workers_alive", (), stats.workers_alive),
            Sample(P + "jobs_queued", (), stats.queued),
            Sample(P + "batches_in_flight", (), stats.batches_in_flight),
        ]

    def not_ready(self) -> list[str]:
        stats = self.statistics()
        if stats is None:
            return []
        if stats.broken is not None or stats.state == "broken":
            return [f"{self.name}: broken: {stats.broken}"]
        if stats.state == "shutdown":
            return [f"{self.name}: shutting down"]
        if stats.workers_alive < stats.workers_target:
            return [f"{self.name}: {stats.workers_alive} of {stats.workers_target} workers ready"]
        return []
