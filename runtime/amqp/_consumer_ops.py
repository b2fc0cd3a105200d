"""What a :class:`~runtime.amqp.Consumer` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

An observer of the consumer (see :class:`~runtime.ops._registry.ObservingOps` for the
contract). Message counters, the connection state and the time of the broker's last
frame are read from ``consumer.statistics()`` when an endpoint asks; the handler
duration histogram is this object's own, fed by ``delivery_settled`` events (the
duration is measured in the worker and rides back on the handler's result). The broker
I/O thread's heartbeat is the consumer's, handed over in ``attach``.

Failure reports come from ``delivery_failed`` events: one per failed attempt, with the
worker-side traceback, the worker and what the consumer decided (retry or dead-letter).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..ops._failure_record import Failure
from ..ops._registry import Histogram, ObservingOps, Sample

if TYPE_CHECKING:
    from .._events import DeliveryFailed, DeliverySettled
    from ._consumer import ConsumerStatistics

__all__ = ["ConsumerOps"]

P = "parallel_runtime_"

# Metric name -> field of ConsumerStatistics.
_COUNTERS = {
    P + "messages_delivered_total": "received",
    P + "messages_acked_total": "acked",
    P + "messages_failed_total": "failed",
    P + "messages_retried_total": "retried",
    P + "messages_dead_lettered_total": "dead_lettered",
    P + "messages_requeued_total": "requeued",
    P + "broker_reconnects_total": "reconnects",
}


def _not_consuming(stats: ConsumerStatistics) -> str | None:
    """Why the consumer is not ready, or None while it consumes."""
    if stats.stopping:
        return "draining after a stop request (SIGTERM/SIGINT or stop())"
    if not stats.connected:
        return "not connected to the broker (connecting or reconnecting)"
    if stats.cancelled_by_broker:
        return "the broker cancelled the consumer; re-subscribing"
    if not stats.consuming:
        return "connected but not consuming yet"
    return None


class ConsumerOps(ObservingOps):
    kind = "consumer"

    def __init__(self, consumer: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(consumer, on_failure, metrics)
        self.queue: str = consumer.queue
        self.duration = Histogram()

    # -------------------------------------------------------------- events (broker I/O thread)
    def delivery_settled(self, event: DeliverySettled) -> None:
        if not self.metrics:
            return
        seconds = event.seconds
        if seconds is not None:
            with self._lock:
                self.duration.observe(seconds)

    def delivery_failed(self, event: DeliveryFailed) -> None:
        """One failed attempt, and what happens next (``retry`` or ``dead_letter``)."""
        if self.reports.hook is None:
            return
        self.reports.report(
            Failure(
                source="consumer",
                task=event.handler,
                exception_type=event.exception_type,
                message=event.message,
                traceback=event.traceback,
                attempt=event.attempt,
                action=event.action,
                time=time.time(),
                worker=event.worker,
                queue=event.queue,
                message_id=event.message_id,
                delivery_attempt=event.attempt,
            )
        )

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        labels = (self.queue,)
        stats = self.counted()
        if stats is not None:
            out += [Sample(name, labels, getattr(stats, key)) for name, key in _COUNTERS.items()]
        with self._lock:
            duration = self.duration.snapshot()
        out.append(Sample(P + "handler_duration_seconds", labels, duration))
        return out

    def gauges(self) -> list[Sample]:
        stats = self.statistics()
        if stats is None:
            return []
        labels = (self.queue,)
        out = [
            Sample(P + "broker_connected", labels, 0 if _not_consuming(stats) else 1),
            Sample(P + "prefetch_in_use", labels, stats.inflight),
            Sample(P + "prefetch_limit", labels, stats.prefetch),
        ]
        if stats.last_frame_age is not None:
            out.append(Sample(P + "broker_last_frame_age_seconds", labels, stats.last_frame_age))
        return out

    def not_ready(self) -> list[str]:
        stats = self.statistics()
        if stats is None:
            return []
        why = _not_consuming(stats)
        return [] if why is None else [f"{self.name} (queue {self.queue!r}): {why}"]

    def describe(self, now: float) -> dict[str, Any]:
        out = super().describe(now)
        out["queue"] = self.queue
        return out
