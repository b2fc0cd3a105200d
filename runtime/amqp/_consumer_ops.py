"""What a :class:`~runtime.amqp.Consumer` reports to ``/metrics``, ``/healthz``, ``/readyz`` and ``on_failure``.

Message counters are the consumer's own ``_counts`` (kept on the broker I/O thread
already); this adds the handler duration histogram (the duration is measured in the
worker and rides back on the handler's result), the time of the last frame from the
broker, and the I/O thread's heartbeat. The I/O thread is *parked* while it connects
or waits to reconnect (pika bounds each attempt itself; the loop may retry for as long
as the broker is away, which is a readiness problem, not a liveness one) and *busy*
otherwise, stamping after every ``process_data_events`` pass, which returns at least
once a second.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..ops._failure import exception_name
from ..ops._failure_record import Failure
from ..ops._heartbeat import Heartbeat
from ..ops._registry import ComponentOps, Histogram, Sample

if TYPE_CHECKING:
    import threading

    from ._message import HandlerFailure, Message

__all__ = ["ConsumerOps"]

P = "parallel_runtime_"
_monotonic = time.monotonic

# Metric name -> key of Consumer._counts.
_COUNTERS = {
    P + "messages_delivered_total": "received",
    P + "messages_acked_total": "acked",
    P + "messages_failed_total": "failed",
    P + "messages_retried_total": "retried",
    P + "messages_dead_lettered_total": "dead_lettered",
    P + "messages_requeued_total": "requeued",
    P + "broker_reconnects_total": "reconnects",
}


class ConsumerOps(ComponentOps):
    kind = "consumer"

    def __init__(self, consumer: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(consumer, on_failure, metrics)
        self.queue: str = consumer.queue
        self.counts = consumer._counts  # held directly: the totals outlive the consumer
        self.duration = Histogram()
        self.io = Heartbeat("broker I/O")
        self._frames = -1
        self._last_frame: float | None = None

    def attach(self, thread: threading.Thread) -> None:
        self.io.thread = thread
        self.heartbeats = [self.io]
        self.register()

    # -------------------------------------------------------------- events (I/O thread)
    def connecting(self) -> None:
        self.io.park("connecting to the broker")

    def io_pass(self, connection: Any) -> None:
        """After each ``process_data_events``: stamp the heartbeat, notice broker frames."""
        now = _monotonic()
        self.io.beat()
        if self.metrics:
            frames = connection._impl.frames_received
            if frames != self._frames:
                self._frames = frames
                self._last_frame = now

    def handled(self, duration: Any) -> None:
        if self.metrics and duration is not None:
            self.duration.observe(duration)

    def failed(self, message: Message, failure: HandlerFailure, action: str, handler: str) -> None:
        if self.metrics and failure.duration is not None:
            self.duration.observe(failure.duration)
        if self.reports.hook is None:
            return
        self.reports.report(
            Failure(
                source="consumer",
                task=handler,
                exception_type=exception_name(failure.type),
                message=failure.message,
                traceback=failure.traceback,
                attempt=message.attempt,
                action=action,
                time=time.time(),
                worker=failure.worker,
                queue=self.queue,
                message_id=message.message_id,
                delivery_attempt=message.attempt,
            )
        )

    # -------------------------------------------------------------- endpoints
    def counters(self) -> list[Sample]:
        out = super().counters()
        labels = (self.queue,)
        counts = self.counts
        out += [Sample(name, labels, counts[key]) for name, key in _COUNTERS.items()]
        out.append(Sample(P + "handler_duration_seconds", labels, self.duration.snapshot()))
        return out

    def gauges(self) -> list[Sample]:
        consumer = self.owner()
        if consumer is None:
            return []
        labels = (self.queue,)
        out = [
            Sample(P + "broker_connected", labels, 0 if self._not_consuming(consumer) else 1),
            Sample(P + "prefetch_in_use", labels, len(consumer._inflight)),
            Sample(P + "prefetch_limit", labels, consumer.prefetch),
        ]
        if self._last_frame is not None:
            age = max(0.0, _monotonic() - self._last_frame)
            out.append(Sample(P + "broker_last_frame_age_seconds", labels, age))
        return out

    @staticmethod
    def _not_consuming(consumer: Any) -> str | None:
        connection = consumer._connection
        if consumer._stop.is_set():
            return "draining after a stop request (SIGTERM/SIGINT or stop())"
        if connection is None or not connection.is_open:
            return "not connected to the broker (connecting or reconnecting)"
        if consumer._cancelled_by_broker:
            return "the broker cancelled the consumer; re-subscribing"
        if consumer._consumer_tag is None:
            return "connected but not consuming yet"
        return None

    def not_ready(self) -> list[str]:
        consumer = self.owner()
        if consumer is None:
            return []
        why = self._not_consuming(consumer)
        return [] if why is None else [f"{self.name} (queue {self.queue!r}): {why}"]

    def describe(self, now: float) -> dict[str, Any]:
        out = super().describe(now)
        out["queue"] = self.queue
        return out
