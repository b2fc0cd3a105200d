"""The consumer: broker I/O on one thread of the main interpreter, handlers on the workers.

Why a ``BlockingConnection`` on a dedicated thread (not ``SelectConnection``):
the I/O thread does nothing but drive one connection, so the blocking adapter's
``process_data_events`` *is* the event loop, declarations and cancels read as
straight-line code with their errors raised where they happen, and the one
thread-safe entry point we need, ``add_callback_threadsafe``, exists on it.
Handlers never run on this thread, so heartbeats keep flowing while they burn CPU
in other interpreters or processes (the classic pika starvation cannot happen).

Per delivery: the I/O thread submits ``invoke(handler, message)`` to the executor;
the future's done callback (on the executor's hub thread) queues the outcome and,
once per burst, asks the connection to run :meth:`Consumer._drain` on the I/O
thread. Outcomes carry the connection *generation* they came from: after a
reconnect the old delivery tags mean nothing (the broker has requeued those
messages), so their outcomes are dropped, never acked.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, Error
from .._lifecycle import DEFAULT_BOOT_TIMEOUT, Limits
from ._confirms import Confirms
from ._connection import DEFAULT_URL, connect, parameters, redact
from ._consumer_ops import ConsumerOps
from ._errors import AmqpError, ConnectionLost, TopologyMismatch
from ._handler import handler_reference, invoke
from ._message import (
    ATTEMPT_HEADER,
    FAILED_QUEUE_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    HandlerFailure,
    Message,
)
from ._topology import Topology, retry_delays

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable
    from types import FrameType, TracebackType

    from .._task import Task

__all__ = ["Consumer", "ConsumerStatistics"]

log = logging.getLogger("runtime.amqp")

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
_CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True)
class ConsumerStatistics:
    """An immutable snapshot of a consumer (``consumer.statistics()``)."""

    received: int
    succeeded: int
    failed: int
    retried: int
    dead_lettered: int
    requeued: int
    stale_dropped: int
    reconnects: int
    inflight: int
    connected: bool
    prefetch: int
    workers: int


class _Reconnect(Exception):
    """Internal: leave the serve loop and reconnect (the broker cancelled our consumer)."""


class _Delivery:
    __slots__ = ("future", "message", "publishing", "tag")

    def __init__(self, tag: int, message: Message) -> None:
        self.tag = tag
        self.message = message
        self.future: cf.Future[Any] | None = None
        self.publishing = False  # a retry/dead-letter copy awaits its confirm


class Consumer:
    """Consume ``queue`` with ``handler`` running on a pool of workers; at-least-once.

    ``handler`` is a ``"pkg.mod:func"`` reference (or the function itself) called with a
    :class:`Message`, or a :class:`runtime.Task` subclass whose ``handle(message)`` runs
    on one instance per worker. A handler that returns gets its message acked; one that
    raises gets it retried after ``retry_delay`` seconds (doubling, capped at
    ``max_retry_delay``) until ``max_attempts``, then dead-lettered to ``<queue>.dead``
    with the error in its headers.

    ``run()`` blocks until :meth:`stop`, SIGTERM or SIGINT, then drains gracefully.
    ``start()``/``stop()`` and ``with Consumer(...)`` run it in the background.
    ``executor`` replaces the built-in :class:`runtime.Executor` (it is then not shut down).
    ``max_tasks_per_worker`` (handler calls), ``max_worker_memory`` (bytes or ``"512M"``),
    ``max_worker_age`` (seconds) and ``boot_timeout`` (seconds, default 60) go to the
    built-in executor (see :class:`runtime.Executor`); with ``executor=`` set them there.
    ``on_failure`` (a callable or reference) receives a :class:`runtime.Failure` for every
    failed attempt; ``metrics=False`` keeps this consumer out of ``/metrics``.
    """

    def __init__(
        self,
        handler: str | Callable[..., Any] | type[Task],
        queue: str,
        *,
        url: str = DEFAULT_URL,
        workers: int | float | None = None,
        backend: str = "auto",
        bootstrap: Any = None,
        prefetch: int | None = None,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        quorum: bool = False,
        delivery_limit: int | None = None,
        heartbeat: float | None = 60,
        stop_timeout: float = 30.0,
        connect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
        max_reconnect_attempts: int | None = None,
        stats_interval: float | None = None,
        executor: cf.Executor | None = None,
        on_failure: Any = None,
        metrics: bool = True,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
    ) -> None:
        from .._capabilities import capabilities
        from .._policy import resolve_workers

        # Everything that can be wrong with the arguments fails here, before any connection.
        self._handler_ref = handler_reference(handler)
        self._limits = Limits(max_tasks_per_worker, max_worker_memory, max_worker_age, boot_timeout)
        if executor is not None and self._limits != Limits():
            raise ConfigurationError(
                "max_tasks_per_worker, max_worker_memory, max_worker_age and boot_timeout "
                "configure the consumer's own executor; with executor= pass them to that "
                "executor instead"
            )
        self._params = parameters(
            url, heartbeat=heartbeat, connection_name=f"parallel-runtime consume {queue}"
        )
        self.url = url
        self.queue = queue
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.topology = Topology(
            queue,
            quorum=quorum,
            retry_delays=retry_delays(max_attempts, retry_delay, max_retry_delay),
            delivery_limit=delivery_limit,
        )
        cpus = capabilities().cpu_count
        if executor is not None:
            count = int(
                getattr(executor, "workers", None) or getattr(executor, "_max_workers", 0) or 1
            )
        else:
            count = resolve_workers(cpus if workers is None else workers, cpus)
        self.workers = count
        if prefetch is None:
            # Enough to keep every worker busy while acks travel, small enough that a busy
            # process does not sit on messages other processes could take.
            prefetch = 4 * count
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigurationError(f"prefetch must be an int >= 1, got {prefetch!r}")
        self.prefetch = prefetch
        if stop_timeout < 0:
            raise ConfigurationError(f"stop_timeout must be >= 0, got {stop_timeout}")
        self.stop_timeout = stop_timeout
        self._connect_attempts = max(1, connect_attempts)
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._max_reconnect_attempts = max_reconnect_attempts
        self._stats_interval = stats_interval
        self._executor_spec = (workers if workers is not None else count, backend, bootstrap)
        self._executor: cf.Executor | None = executor
        self._owns_executor = executor is None

        # Shared between the I/O thread and the executor's completion thread.
        self._lock = threading.Lock()
        self._completed: collections.deque[tuple[int, int, Any]] = collections.deque()
        self._wake_pending = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

        # Owned by the I/O thread.
        self._generation = 0
        self._connection: Any = None
        self._channel: Any = None
        self._confirms: Confirms | None = None
        self._consumer_tag: str | None = None
        self._inflight: dict[int, _Delivery] = {}
        self._confirm_tags: dict[int, int] = {}  # publish sequence number -> delivery tag
        self._confirmed: list[tuple[list[int], bool]] = []
        self._draining = False
        self._cancelled_by_broker = False
        self._counts = collections.Counter[str]()
        self._last_stats = (time.monotonic(), 0)
        self._ops = ConsumerOps(self, on_failure, metrics)

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Boot the workers, connect, declare the topology and start consuming.

        Raises :class:`BrokerUnreachable` / :class:`InvalidURL` / :class:`TopologyMismatch`
        if the consumer cannot get going (after ``connect_attempts`` tries).
        """
        if self._thread is not None:
            raise AmqpError("this consumer was already started")
        if self._executor is None:
            from .._executor import Executor

            workers, backend, bootstrap = self._executor_spec
            limits = self._limits
            self._executor = Executor(
                workers=workers,
                backend=backend,
                bootstrap=bootstrap,
                metrics=self._ops.metrics,
                max_tasks_per_worker=limits.max_tasks_per_worker,
                max_worker_memory=limits.max_worker_memory,
                max_worker_age=limits.max_worker_age,
                boot_timeout=limits.boot_timeout,
            )
        self._thread = threading.Thread(
            target=self._io_main, name=f"runtime-amqp-{self.queue}", daemon=True
        )
        self._ops.attach(self._thread)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._shutdown_executor()
            raise self._error

    def stop(self, timeout: float | None = None) -> ConsumerStatistics:
        """Cancel consuming, let in-flight handlers finish (up to ``stop_timeout``), ack what
        finished, requeue what did not, close the connection and shut the workers down."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._shutdown_executor()
        return self.statistics()

    def request_stop(self) -> None:
        """Ask for a graceful stop without waiting (safe from signal handlers and any thread)."""
        self._stop.set()
        self._wake()

    def run(self, *, install_signal_handlers: bool = True) -> ConsumerStatistics:
        """Consume until :meth:`stop`, SIGTERM or SIGINT; returns the final statistics.

        Raises if the consumer cannot start, or if the connection is lost for good.
        """
        previous: dict[signal.Signals, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self.start()
            assert self._thread is not None
            while self._thread.is_alive():
                self._thread.join(1.0)
            self._shutdown_executor()
            if isinstance(self._error, Error):
                raise self._error
            return self.statistics()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._thread is not None and self._thread.is_alive():
                self.stop()

    def statistics(self) -> ConsumerStatistics:
        counts = self._counts
        return ConsumerStatistics(
            received=counts["received"],
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            retried=counts["retried"],
            dead_lettered=counts["dead_lettered"],
            requeued=counts["requeued"],
            stale_dropped=counts["stale_dropped"],
            reconnects=counts["reconnects"],
            inflight=len(self._inflight),
            connected=bool(self._connection is not None and self._connection.is_open),
            prefetch=self.prefetch,
            workers=self.workers,
        )

    def __enter__(self) -> Consumer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<runtime.amqp.Consumer queue={self.queue!r} handler={self._handler_ref!r} "
            f"workers={self.workers} prefetch={self.prefetch}>"
        )

    # ------------------------------------------------------------------ helpers (any thread)
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("runtime.amqp: %s received; draining", signal.Signals(signum).name)
        self.request_stop()

    def _shutdown_executor(self) -> None:
        executor = self._executor
        if executor is not None and self._owns_executor:
            self._executor = None
            # Handlers still running after the drain deadline had their messages requeued;
            # their results are dropped. Waiting here lets them return (nothing can pre-empt them).
            executor.shutdown(wait=True, cancel_futures=True)

    def _wake(self) -> None:
        """Make the I/O thread run :meth:`_drain` soon (coalesced: one wake-up per burst)."""
        with self._lock:
            if self._wake_pending:
                return
            connection = self._connection
            if connection is None:
                return  # the I/O loop drains when it comes back
            self._wake_pending = True
        try:
            connection.add_callback_threadsafe(self._drain)
        except Exception:
            # The connection is closing; the I/O loop drains after its next pass anyway.
            with self._lock:
                self._wake_pending = False

    def _on_done(self, generation: int, tag: int, future: cf.Future[Any]) -> None:
        # Runs on the executor's completion thread: record the outcome, wake the I/O thread.
        if future.cancelled():
            outcome: Any = _CANCELLED
        else:
            exc = future.exception()
            outcome = HandlerFailure.from_exception(exc) if exc is not None else future.result()
        with self._lock:
            self._completed.append((generation, tag, outcome))
        if threading.current_thread() is not self._thread:
            # On the I/O thread itself (an executor that completes inline) the serve loop
            # drains right after the current pika callback; no wake-up round trip needed.
            self._wake()

    # ------------------------------------------------------------------ I/O thread
    def _io_main(self) -> None:
        attempts: int | None = self._connect_attempts
        lost_since: float | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                self._ops.connecting()
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
                            f"gave up reconnecting to {redact(self.url)}: {exc}"
                        ) from None
                    log.warning("runtime.amqp: %s", exc)
                    self._stop.wait(
                        min(self._reconnect_delay * 2**failures, self._max_reconnect_delay)
                    )
                    continue
                if self._connection is None:
                    break  # stop requested while reconnecting
                if lost_since is not None:
                    self._counts["reconnects"] += 1
                    log.warning(
                        "runtime.amqp: reconnected to %s after %.1fs; consuming %r again",
                        redact(self.url),
                        time.monotonic() - lost_since,
                        self.queue,
                    )
                failures = 0
                self._ready.set()
                try:
                    self._serve()
                    return
                except Exception as exc:
                    if not self._is_connection_error(exc):
                        raise
                    lost_since = time.monotonic()
                    log.warning(
                        "runtime.amqp: lost the connection to %s (%s); %d in-flight message(s) "
                        "will be redelivered by the broker; reconnecting",
                        redact(self.url),
                        exc,
                        len(self._inflight),
                    )
                    self._discard_connection()
                    attempts = None  # after a successful start, keep trying (with backoff)
        except BaseException as exc:
            self._error = exc
            if self._ready.is_set():
                log.error("runtime.amqp: consumer of %r stopped: %s", self.queue, exc)
        finally:
            self._discard_connection(close=True)
            self._ops.close()
            self._ready.set()

    @staticmethod
    def _is_connection_error(exc: BaseException) -> bool:
        import pika.exceptions as pe

        return isinstance(exc, (pe.AMQPError, OSError, _Reconnect))

    def _open(self, attempts: int | None) -> None:
        import pika.exceptions as pe

        connection = connect(
            self.url,
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
                self.topology.declare(channel)
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code == 406:
                    raise TopologyMismatch(
                        f"queue {self.queue!r} (or its retry/dead-letter queues) exists with other "
                        f"arguments: {exc.reply_text}. Delete it or declare it the same way "
                        "(quorum/classic, delivery limit, retry delays)."
                    ) from None
                raise AmqpError(f"declaring {self.queue!r} failed: {exc.reply_text}") from None
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.add_on_cancel_callback(self._on_broker_cancel)
            publish_channel = connection.channel()
            confirms = Confirms(connection, publish_channel, on_settled=self._on_confirmed)
        except pe.AMQPError as exc:
            with contextlib.suppress(Exception):
                connection.close()
            raise AmqpError(
                f"setting up the channel on {redact(self.url)} failed: {exc!r}"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        with self._lock:
            self._generation += 1
            self._connection = connection
            self._wake_pending = False
        self._channel = channel
        self._confirms = confirms
        self._cancelled_by_broker = False
        self._consumer_tag = channel.basic_consume(self.queue, self._on_message, auto_ack=False)
        log.info(
            "runtime.amqp: consuming %r on %s (workers=%d, prefetch=%d, max_attempts=%d%s)",
            self.queue,
            redact(self.url),
            self.workers,
            self.prefetch,
            self.max_attempts,
            ", quorum" if self.topology.quorum else "",
        )

    def _discard_connection(self, close: bool = False) -> None:
        """Forget the current connection; its delivery tags become stale."""
        with self._lock:
            self._generation += 1
            connection, self._connection = self._connection, None
            self._wake_pending = False
        for delivery in self._inflight.values():
            if delivery.future is not None:
                delivery.future.cancel()
        self._inflight.clear()
        self._confirm_tags.clear()
        self._confirmed = []
        self._channel = self._confirms = self._consumer_tag = None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception as exc:
                log.debug("runtime.amqp: closing a broken connection: %r", exc)

    def _on_broker_cancel(self, _frame: Any) -> None:
        self._cancelled_by_broker = True

    def _serve(self) -> None:
        connection = self._connection
        while not self._stop.is_set():
            connection.process_data_events(time_limit=1.0)
            self._ops.io_pass(connection)
            self._drain()
            if self._cancelled_by_broker:
                raise _Reconnect(
                    f"the broker cancelled the consumer of {self.queue!r} (queue deleted?)"
                )
            self._maybe_log_stats()
        self._graceful_stop()

    def _graceful_stop(self) -> None:
        connection, channel = self._connection, self._channel
        if self._consumer_tag is not None and not self._cancelled_by_broker:
            # Unacked deliveries pika received but had not dispatched are requeued by basic_cancel.
            channel.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        deadline = time.monotonic() + self.stop_timeout
        if self._inflight:
            log.info(
                "runtime.amqp: waiting up to %.1fs for %d in-flight message(s)",
                self.stop_timeout,
                len(self._inflight),
            )
        while self._inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connection.process_data_events(time_limit=min(remaining, 0.2))
            self._ops.io_pass(connection)
            self._drain()
        unfinished = sorted(self._inflight)
        for tag in unfinished:
            delivery = self._inflight.pop(tag)
            if delivery.future is not None:
                delivery.future.cancel()
            channel.basic_reject(tag, requeue=True)
            self._counts["requeued"] += 1
        if unfinished:
            log.warning(
                "runtime.amqp: %d message(s) not finished within %.1fs were requeued",
                len(unfinished),
                self.stop_timeout,
            )
        self._log_stats(final=True)
        connection.close()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tag: int = method.delivery_tag
        self._counts["received"] += 1
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
        message = Message(
            body=body,
            routing_key=str(headers.get(ORIGINAL_ROUTING_KEY_HEADER, method.routing_key)),
            exchange=str(headers.get(ORIGINAL_EXCHANGE_HEADER, method.exchange)),
            headers=headers,
            properties=props,
            redelivered=bool(method.redelivered),
            attempt=attempt,
            queue=self.queue,
        )
        delivery = _Delivery(tag, message)
        if self._stop.is_set():
            channel.basic_reject(tag, requeue=True)
            self._counts["requeued"] += 1
            return
        self._inflight[tag] = delivery
        executor = self._executor
        try:
            assert executor is not None
            future = executor.submit(invoke, self._handler_ref, message)
        except Exception as exc:
            del self._inflight[tag]
            log.error("runtime.amqp: cannot hand a message to the workers (%s); requeued", exc)
            channel.basic_reject(tag, requeue=True)
            self._counts["requeued"] += 1
            if isinstance(exc, Error):
                self._error = exc
                self._stop.set()
            return
        delivery.future = future
        generation = self._generation
        future.add_done_callback(lambda f: self._on_done(generation, tag, f))

    def _drain(self) -> None:
        """Settle every finished delivery of the current connection (I/O thread only).

        Acks flush the socket, and pika hands publisher confirms to us during that flush:
        confirms are therefore only queued by :meth:`_on_confirmed` and settled here, in a
        loop, so no settlement ever runs nested inside another.
        """
        if self._draining:
            return
        self._draining = True
        try:
            while self._drain_once():
                pass
        finally:
            self._draining = False

    def _drain_once(self) -> bool:
        with self._lock:
            self._wake_pending = False
            batch = list(self._completed)
            self._completed.clear()
            generation = self._generation
        confirmed, self._confirmed = self._confirmed, []
        if not batch and not confirmed:
            return False
        channel = self._channel
        succeeded: list[int] = []
        for gen, tag, outcome in batch:
            if gen != generation or channel is None:
                self._counts["stale_dropped"] += 1
                continue
            delivery = self._inflight.get(tag)
            if delivery is None or delivery.publishing:
                continue
            if outcome is None or type(outcome) is float:  # float: the handler's duration
                succeeded.append(tag)
                self._ops.handled(outcome)
            elif outcome == _CANCELLED:
                del self._inflight[tag]
                channel.basic_reject(tag, requeue=True)
                self._counts["requeued"] += 1
            else:
                if not isinstance(outcome, HandlerFailure):
                    outcome = HandlerFailure(
                        "TypeError", f"the handler wrapper returned {outcome!r}"
                    )
                self._fail(delivery, outcome)
        self._counts["succeeded"] += len(succeeded)
        nacked: list[int] = []
        for seqs, ok in confirmed:
            for seq in seqs:
                tag = self._confirm_tags.pop(seq, 0)
                if tag not in self._inflight:
                    continue
                (succeeded if ok else nacked).append(tag)
        for tag in nacked:
            del self._inflight[tag]
            channel.basic_reject(tag, requeue=True)
            self._counts["requeued"] += 1
        if nacked:
            log.error(
                "runtime.amqp: the broker nacked %d retry/dead-letter publish(es); originals requeued",
                len(nacked),
            )
        if succeeded:
            self._ack(succeeded)
        return True

    def _ack(self, tags: list[int]) -> None:
        """Ack ``tags``; one ``multiple`` ack covers every tag below the oldest unsettled delivery."""
        # The channel underneath the BlockingChannel: its basic_ack only queues the frame,
        # where BlockingChannel.basic_ack also runs an I/O pass per call. The serve loop's
        # next process_data_events writes the queued acks out in one go.
        impl = self._channel._impl
        self._counts["acked"] += len(tags)
        for tag in tags:
            del self._inflight[tag]
        oldest = min(self._inflight) if self._inflight else None
        below = [t for t in tags if oldest is None or t < oldest]
        if below:
            impl.basic_ack(max(below), multiple=True)
        for tag in tags:
            if oldest is not None and tag > oldest:
                impl.basic_ack(tag)

    def _fail(self, delivery: _Delivery, failure: HandlerFailure) -> None:
        import pika

        self._counts["failed"] += 1
        message = delivery.message
        headers = dict(message.headers)
        headers.update(failure.headers())
        headers[FAILED_QUEUE_HEADER] = self.queue
        headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key)
        headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange)
        props = dict(message.properties)
        props.pop("expiration", None)  # a per-message TTL would fight the retry queue's TTL
        if message.attempt < self.max_attempts:
            delay = self.topology.delay_after(message.attempt)
            headers[ATTEMPT_HEADER] = message.attempt + 1
            exchange, routing_key = "", self.topology.retry_queue(delay)
            log.warning(
                "runtime.amqp: %s attempt %d/%d failed: %s; retrying in %.1fs",
                self.queue,
                message.attempt,
                self.max_attempts,
                failure,
                delay,
            )
            self._counts["retried"] += 1
        else:
            headers[ATTEMPT_HEADER] = message.attempt
            exchange, routing_key = (
                self.topology.dead_letter_exchange,
                self.topology.dead_letter_queue,
            )
            log.error(
                "runtime.amqp: %s attempt %d/%d failed: %s; dead-lettered to %r",
                self.queue,
                message.attempt,
                self.max_attempts,
                failure,
                routing_key,
            )
            self._counts["dead_lettered"] += 1
        confirms = self._confirms
        assert confirms is not None
        seq = confirms.publish(
            exchange, routing_key, message.body, pika.BasicProperties(headers=headers, **props)
        )
        self._confirm_tags[seq] = delivery.tag
        delivery.publishing = True
        action = "retry" if exchange == "" else "dead_letter"
        self._ops.failed(message, failure, action, self._handler_ref)

    def _on_confirmed(self, seqs: list[int], ok: bool) -> None:
        # Called by pika in the middle of any socket flush: only record, _drain settles.
        self._confirmed.append((seqs, ok))
        self._wake()

    def _maybe_log_stats(self) -> None:
        if self._stats_interval and time.monotonic() - self._last_stats[0] >= self._stats_interval:
            self._log_stats()

    def _log_stats(self, final: bool = False) -> None:
        now = time.monotonic()
        since, done_before = self._last_stats
        done = self._counts["succeeded"] + self._counts["failed"]
        elapsed = max(now - since, 1e-9)
        self._last_stats = (now, done)
        if not (self._stats_interval or final):
            return
        log.info(
            "runtime.amqp: %s %s: %d handled in %.1fs (%.0f msg/s); total ok=%d failed=%d retried=%d "
            "dead=%d requeued=%d reconnects=%d inflight=%d",
            self.queue,
            "final" if final else "throughput",
            done - done_before,
            elapsed,
            (done - done_before) / elapsed,
            self._counts["succeeded"],
            self._counts["failed"],
            self._counts["retried"],
            self._counts["dead_lettered"],
            self._counts["requeued"],
            self._counts["reconnects"],
            len(self._inflight),
        )
