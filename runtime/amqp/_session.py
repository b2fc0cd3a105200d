"""The broker I/O thread's session: connect, declare, consume, and reconnect with back-off.

Concurrency decision: one pika ``BlockingConnection`` driven by one dedicated thread of
the main interpreter, and handlers never on that thread. Its GIL is not the workers'
GILs, so heartbeats keep flowing while handlers burn CPU in other interpreters or
processes. This prevents the classic pika/dramatiq failure: a CPU-bound callback
starves the heartbeats, the broker drops the connection, the ack fails and the job
runs twice. The blocking adapter rather than ``SelectConnection``: the thread does
nothing but drive one connection, so ``process_data_events`` *is* the event loop,
declarations and cancels read as straight-line code with their errors raised where they
happen, and the one thread-safe entry point the other threads need,
``add_callback_threadsafe``, exists on it (see :mod:`._settlement`).

Reconnects: once the consumer has started, a lost connection (or the broker cancelling
our consumer: the queue was deleted) is retried with a back-off that doubles up to
``max_reconnect_delay``, for as long as it takes or ``max_reconnect_attempts`` times.
Each connection is a new generation of delivery tags (:meth:`Settlement.bind` /
:meth:`~Settlement.unbind`), so what the workers finish for a lost one is dropped,
never acked on its successor. A stop cancels consuming (the broker requeues what it
had prefetched), pumps I/O until the handlers in flight are settled or
``stop_timeout`` passes, requeues what is left and closes the connection.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from .._events import BrokerEvent
from .._heartbeat import Heartbeat
from ._confirms import Confirms
from ._connection import connect, redact
from ._errors import AmqpError, ConnectionLost, TopologyMismatch
from ._message import (
    ATTEMPT_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Message,
)

if TYPE_CHECKING:
    import collections
    import threading
    from collections.abc import Callable

    from .._events import Hooks
    from ._consumer import Consumer
    from ._settlement import Settlement

__all__ = ["Session"]

log = logging.getLogger("runtime.amqp")
_monotonic = time.monotonic

_PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class _Reconnect(Exception):
    """Internal: leave the serve loop and reconnect (the broker cancelled our consumer)."""


def _is_connection_error(exc: BaseException) -> bool:
    import pika.exceptions as pe

    return isinstance(exc, (pe.AMQPError, OSError, _Reconnect))


def message_of(queue: str, method: Any, properties: Any, body: bytes) -> Message:
    """The :class:`Message` a handler gets for one pika delivery."""
    headers = dict(properties.headers or {})
    props = {
        name: getattr(properties, name)
        for name in _PROPERTY_NAMES
        if getattr(properties, name) is not None
    }
    try:
        attempt = max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        attempt = 1
    return Message(
        body=body,
        routing_key=str(headers.get(ORIGINAL_ROUTING_KEY_HEADER, method.routing_key)),
        exchange=str(headers.get(ORIGINAL_EXCHANGE_HEADER, method.exchange)),
        headers=headers,
        properties=props,
        redelivered=bool(method.redelivered),
        attempt=attempt,
        queue=queue,
    )


class Session:
    """The broker side of one :class:`~runtime.amqp.Consumer`, run by its I/O thread.

    Reads the consumer's public configuration (``url``, ``queue``, ``topology``,
    ``prefetch``, ``stop_timeout``, ...). ``on_delivery(tag, message)`` hands each
    delivery over; ``tick()`` runs after every I/O pass. ``connection``,
    ``consumer_tag``, ``cancelled_by_broker`` and ``last_frame`` are written by the I/O
    thread only and read by ``statistics()`` from any thread. ``heartbeat`` tells
    ``/healthz`` what the I/O thread is doing: parked while it connects or waits to
    reconnect (pika bounds each attempt itself; a broker that stays away is a readiness
    problem, not a liveness one), busy otherwise, stamped after every
    ``process_data_events`` pass, which returns at least once a second.
    """

    def __init__(
        self,
        owner: Consumer,
        *,
        params: Any,
        settlement: Settlement,
        counts: collections.Counter[str],
        hooks: Hooks,
        stop: threading.Event,
        ready: threading.Event,
        on_delivery: Callable[[int, Message], None],
        tick: Callable[[], None],
        connect_attempts: int,
        reconnect_delay: float,
        max_reconnect_delay: float,
        max_reconnect_attempts: int | None,
    ) -> None:
        self._owner = owner
        self._params = params
        self._settlement = settlement
        self._counts = counts
        self._hooks = hooks
        self._stop = stop
        self._ready = ready
        self._on_delivery = on_delivery
        self._tick = tick
        self._connect_attempts = max(1, connect_attempts)
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._max_reconnect_attempts = max_reconnect_attempts
        self.heartbeat = Heartbeat("broker I/O")
        self.connection: Any = None
        self.consumer_tag: str | None = None
        self.cancelled_by_broker = False
        self.last_frame: float | None = None  # monotonic time of the last frame received
        self._channel: Any = None
        self._frames = -1
        self._announced = False  # broker_connected was emitted for self.connection

    # ------------------------------------------------------------------ the I/O thread's body
    def run(self) -> bool:
        """Connect and consume until a stop; reconnect whenever the connection is lost.

        Returns True after a graceful stop, False when the stop came while (re)connecting.
        Raises what the consumer cannot recover from: the first connect failing
        ``connect_attempts`` times, a topology mismatch, ``max_reconnect_attempts`` spent.
        """
        owner = self._owner
        attempts: int | None = self._connect_attempts
        lost_since: float | None = None
        failures = 0
        while not self._stop.is_set():
            self.heartbeat.park("connecting to the broker")
            try:
                self._open(attempts)
            except AmqpError as exc:
                if not self._ready.is_set() or isinstance(exc, TopologyMismatch):
                    raise
                failures += 1
                if (
                    self._max_reconnect_attempts is not None
                    and failures >= self._max_reconnect_attempts
                ):
                    raise ConnectionLost(
                        f"gave up reconnecting to {redact(owner.url)}: {exc}"
                    ) from None
                log.warning("runtime.amqp: %s", exc)
                self._stop.wait(min(self._reconnect_delay * 2**failures, self._max_reconnect_delay))
                continue
            if self.connection is None:
                return False  # stop requested while reconnecting
            if lost_since is not None:
                self._counts["reconnects"] += 1
                log.warning(
                    "runtime.amqp: reconnected to %s after %.1fs; consuming %r again",
                    redact(owner.url),
                    time.monotonic() - lost_since,
                    owner.queue,
                )
            failures = 0
            self._ready.set()
            try:
                self._serve()
                return True
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                lost_since = time.monotonic()
                log.warning(
                    "runtime.amqp: lost the connection to %s (%s); %d in-flight message(s) "
                    "will be redelivered by the broker; reconnecting",
                    redact(owner.url),
                    exc,
                    len(self._settlement.inflight),
                )
                self.discard(exc)
                attempts = None  # after a successful start, keep trying (with backoff)
        return False

    def _open(self, attempts: int | None) -> None:
        import pika.exceptions as pe

        owner = self._owner
        connection = connect(
            owner.url,
            self._params,
            attempts=attempts,
            delay=self._reconnect_delay,
            max_delay=self._max_reconnect_delay,
            stop=self._stop,
        )
        if connection is None:
            return
        try:
            channel = connection.channel()
            try:
                owner.topology.declare(channel)
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code == 406:
                    raise TopologyMismatch(
                        f"queue {owner.queue!r} (or its retry/dead-letter queues) exists with "
                        f"other arguments: {exc.reply_text}. Delete it or declare it the same "
                        "way (quorum/classic, delivery limit, retry delays)."
                    ) from None
                raise AmqpError(f"declaring {owner.queue!r} failed: {exc.reply_text}") from None
            channel.basic_qos(prefetch_count=owner.prefetch)
            channel.add_on_cancel_callback(self._on_broker_cancel)
            publish_channel = connection.channel()
            confirms = Confirms(
                connection, publish_channel, on_settled=self._settlement.on_confirmed
            )
        except pe.AMQPError as exc:
            with contextlib.suppress(Exception):
                connection.close()
            raise AmqpError(
                f"setting up the channel on {redact(owner.url)} failed: {exc!r}"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        self._settlement.bind(connection, channel, confirms)
        self.connection = connection
        self._channel = channel
        self.cancelled_by_broker = False
        self.consumer_tag = channel.basic_consume(owner.queue, self._deliver, auto_ack=False)
        log.info(
            "runtime.amqp: consuming %r on %s (workers=%d, prefetch=%d, max_attempts=%d%s)",
            owner.queue,
            redact(owner.url),
            owner.workers,
            owner.prefetch,
            owner.max_attempts,
            ", quorum" if owner.topology.quorum else "",
        )
        self._announced = True
        if self._hooks.broker_connected:
            self._hooks.broker_connected(
                BrokerEvent(owner=owner, queue=owner.queue, url=redact(owner.url), error=None)
            )

    def discard(self, error: BaseException | None = None) -> None:
        """Forget the current connection (lost, or closed at the end); its tags become stale."""
        self._settlement.unbind()
        connection, self.connection = self.connection, None
        self._channel = self.consumer_tag = None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception as exc:
                log.debug("runtime.amqp: closing a broken connection: %r", exc)
        if self._announced:
            self._announced = False
            if self._hooks.broker_disconnected:
                owner = self._owner
                self._hooks.broker_disconnected(
                    BrokerEvent(owner=owner, queue=owner.queue, url=redact(owner.url), error=error)
                )

    # ------------------------------------------------------------------ pika callbacks
    def _on_broker_cancel(self, _frame: Any) -> None:
        self.cancelled_by_broker = True

    def _deliver(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._counts["received"] += 1
        message = message_of(self._owner.queue, method, properties, body)
        self._on_delivery(method.delivery_tag, message)

    # ------------------------------------------------------------------ serving
    def _passed(self, connection: Any) -> None:
        """After each ``process_data_events``: stamp the heartbeat, notice broker frames."""
        self.heartbeat.beat()
        frames = connection._impl.frames_received
        if frames != self._frames:
            self._frames = frames
            self.last_frame = _monotonic()

    def _serve(self) -> None:
        connection, settlement = self.connection, self._settlement
        while not self._stop.is_set():
            connection.process_data_events(time_limit=1.0)
            self._passed(connection)
            settlement.drain()
            if self.cancelled_by_broker:
                raise _Reconnect(
                    f"the broker cancelled the consumer of {self._owner.queue!r} (queue deleted?)"
                )
            self._tick()
        self._graceful_stop()

    def _graceful_stop(self) -> None:
        connection, settlement = self.connection, self._settlement
        stop_timeout = self._owner.stop_timeout
        if self.consumer_tag is not None and not self.cancelled_by_broker:
            # Unacked deliveries pika received but had not dispatched are requeued by basic_cancel.
            self._channel.basic_cancel(self.consumer_tag)
        self.consumer_tag = None
        deadline = time.monotonic() + stop_timeout
        if settlement.inflight:
            log.info(
                "runtime.amqp: waiting up to %.1fs for %d in-flight message(s)",
                stop_timeout,
                len(settlement.inflight),
            )
        while settlement.inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connection.process_data_events(time_limit=min(remaining, 0.2))
            self._passed(connection)
            settlement.drain()
        unfinished = settlement.requeue_unfinished()
        if unfinished:
            log.warning(
                "runtime.amqp: %d message(s) not finished within %.1fs were requeued",
                unfinished,
                stop_timeout,
            )
        connection.close()
