"""What a :class:`~runtime.Pool` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

An observer of the pool (see :class:`~runtime.ops._registry.ObservingOps` for the
contract): ``task_failed`` counts failures by task kind and exception type and reports
them to ``on_failure`` with the action the pool decided (``event.decision``). Every
other counter and gauge is read from ``pool.statistics()`` when an endpoint asks; the
supervisor's and the hub's heartbeats are the pool's, handed over in ``attach``.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from ._failure import exception_name
from ._failure_record import Failure
from ._registry import ObservingOps, Sample

if TYPE_CHECKING:
    from .._events import TaskFailure

__all__ = ["PoolOps"]

P = "parallel_runtime_"

# PoolStatistics field (by task kind label) -> counter.
_BY_KIND = (
    ("completed_by_kind", P + "tasks_completed_total"),
    ("restarts_by_kind", P + "task_restarts_total"),
    ("gave_up_by_kind", P + "task_give_ups_total"),
    ("replaced_by_kind", P + "pool_workers_replaced_total"),
)


class PoolOps(ObservingOps):
    kind = "pool"

    def __init__(self, pool: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(pool, on_failure, metrics)
        self.failures: collections.Counter[tuple[str, str]] = collections.Counter()

    # -------------------------------------------------------------- events (observer hooks)
    def task_failed(self, event: TaskFailure) -> None:
        """The pool decided what to do about a failed task (``event.decision``)."""
        exc_type = exception_name(event.exception_type)
        with self._lock:
            self.failures[(event.kind, exc_type)] += 1
        if self.reports.hook is None:
            return
        self.reports.report(
            Failure(
                source="pool",
                task=event.kind,
                exception_type=exc_type,
                message=event.message,
                traceback=event.traceback or "",
                attempt=event.attempt,
                action=event.decision.action,
                time=time.time(),
                worker=event.worker,
            )
        )

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        stats = self.counted()
        if stats is not None:
            for field, name in _BY_KIND:
                out += [Sample(name, (k,), n) for k, n in list(getattr(stats, field).items())]
        with self._lock:
            failures = list(self.failures.items())
        out += [Sample(P + "task_failures_total", key, n) for key, n in failures]
        if stats is not None:
            out += [
                Sample(P + "workers_recycled_total", (reason,), n)
                for reason, n in list(stats.recycled_by_reason.items())
            ]
        return out

    def gauges(self) -> list[Sample]:
        stats = self.statistics()
        if stats is None:
            return []
        out = [
            Sample(P + "pool_workers_target", (), stats.target_workers),
            Sample(P + "pool_workers_alive", (), stats.workers_alive),
            Sample(P + "pool_workers_booting", (), stats.booting),
        ]
        out += [
            Sample(P + "restart_backoff_seconds", (k,), v)
            for k, v in list(stats.restart_backoff.items())
        ]
        return out

    def not_ready(self) -> list[str]:
        stats = self.statistics()
        if stats is None:
            return []
        if stats.state != "running":
            return [f"{self.name}: the pool is {stats.state}"]
        if stats.running < stats.target_workers:
            return [
                f"{self.name}: {stats.running} of {stats.target_workers} workers running "
                f"({stats.booting} booting, {stats.waiting_restart} waiting to restart)"
            ]
        return []
