"""What a :class:`~runtime.Pool` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

Everything is counted on the pool's supervisor thread, where the events are handled
anyway (under the pool's lock); this module only turns those events into counters
and :class:`~runtime.Failure` records, so the Pool class grows by a call per event.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from ._failure import exception_name
from ._failure_record import Failure
from ._heartbeat import Heartbeat
from ._registry import ComponentOps, Sample

if TYPE_CHECKING:
    import threading

    from .._hub import Hub
    from .._wire import ExcPayload

__all__ = ["PoolOps"]

P = "parallel_runtime_"

# The slot's state right after Pool._on_failure decided: what happens next.
_ACTIONS = {"waiting": "restart", "gave_up": "give_up", "done": "stop"}
_COUNTERS = {
    "completed": P + "tasks_completed_total",
    "restarts": P + "task_restarts_total",
    "gave_up": P + "task_give_ups_total",
    "replaced": P + "pool_workers_replaced_total",
}


class PoolOps(ComponentOps):
    kind = "pool"

    def __init__(self, pool: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(pool, on_failure, metrics)
        self.by_kind: collections.Counter[tuple[str, str]] = collections.Counter()
        self.failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self.recycles: collections.Counter[str] = collections.Counter()
        self.supervisor = Heartbeat("supervisor")

    def attach(self, thread: threading.Thread, hub: Hub) -> None:
        """Called by ``Pool.start`` before its supervisor thread starts."""
        self.supervisor.thread = thread
        self.heartbeats = [self.supervisor, hub.heartbeat]
        self.register()

    # -------------------------------------------------------------- events (supervisor thread)
    def count(self, what: str, kind: str) -> None:
        """``what`` is the Pool's own counter name: completed, restarts, gave_up, replaced."""
        self.by_kind[(what, kind)] += 1

    def recycled(self, reason: str, kind: str) -> None:
        """A worker replaced by a lifecycle limit: ``max_tasks``, ``memory`` or ``age``."""
        self.recycles[reason] += 1

    def task_failed(
        self,
        slot: Any,
        worker: Any,
        error: ExcPayload | None,
        summary: str,
        backend: str,
        exc_type: str = "runtime.WorkerCrashed",
    ) -> None:
        """After ``Pool._on_failure`` decided; ``error`` is None when the worker died
        (``exc_type`` then names what happened, e.g. ``runtime.BootstrapError``)."""
        if error is not None:
            exc_type, message, tb = exception_name(error[1]), error[2], error[3]
        else:
            message, tb = summary, ""
        kind = slot.kind.label
        self.failures[(kind, exc_type)] += 1
        if self.reports.hook is None:
            return
        from .._task import WorkerInfo

        info = None
        if worker is not None:
            info = WorkerInfo(
                id=worker.id,
                backend=backend,
                attempt=slot.attempt,
                slot=slot.id,
                kind=kind,
                pid=worker.pid,
            )
        self.reports.report(
            Failure(
                source="pool",
                task=kind,
                exception_type=exc_type,
                message=message,
                traceback=tb,
                attempt=slot.attempt,
                action=_ACTIONS.get(slot.state.value, slot.state.value),
                time=time.time(),
                worker=info,
            )
        )

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        for (what, kind), n in list(self.by_kind.items()):
            out.append(Sample(_COUNTERS[what], (kind,), n))
        for (kind, exc_type), n in list(self.failures.items()):
            out.append(Sample(P + "task_failures_total", (kind, exc_type), n))
        for reason, n in list(self.recycles.items()):
            out.append(Sample(P + "workers_recycled_total", (reason,), n))
        return out

    def gauges(self) -> list[Sample]:
        pool = self.owner()
        if pool is None:
            return []
        stats = pool.statistics()
        out = [
            Sample(P + "pool_workers_target", (), stats.target_workers),
            Sample(P + "pool_workers_alive", (), stats.workers_alive),
            Sample(P + "pool_workers_booting", (), stats.booting),
        ]
        now = time.monotonic()
        backoff: dict[str, float] = {k.label: 0.0 for k in pool._kinds}
        with pool._lock:
            for slot in pool._slots.values():
                if slot.state.value == "waiting":
                    label = slot.kind.label
                    backoff[label] = max(backoff[label], slot.restart_at - now, 0.0)
        out.extend(Sample(P + "restart_backoff_seconds", (k,), v) for k, v in backoff.items())
        return out

    def not_ready(self) -> list[str]:
        pool = self.owner()
        if pool is None:
            return []
        stats = pool.statistics()
        if stats.state != "running":
            return [f"{self.name}: the pool is {stats.state}"]
        if stats.running < stats.target_workers:
            return [
                f"{self.name}: {stats.running} of {stats.target_workers} workers running "
                f"({stats.booting} booting, {stats.waiting_restart} waiting to restart)"
            ]
        return []
