"""Settling deliveries: ack, reject/requeue, and dropping what a lost connection made stale.

Concurrency decisions, and the failures they prevent:

* **Only the broker I/O thread touches the channel.** Handler outcomes arrive on the
  executor's completion thread, but a pika connection belongs to one thread: frames
  written from two threads interleave on the socket and corrupt the connection. So the
  completion thread only appends ``(generation, tag, outcome)`` to a deque under a
  small lock and, once per burst (the ``wake_pending`` flag coalesces a burst into one
  call), asks the connection to run :meth:`Settlement.drain` on the I/O thread through
  ``add_callback_threadsafe``, pika's one thread-safe entry point (dramatiq does the
  same). That lock guards only the deque, the flag, the connection to wake and the
  generation; it is never held across pika I/O.
* **Delivery tags are only meaningful on the channel that delivered them.** Every
  connect and every loss starts a new *generation* (the session calls :meth:`bind` and
  :meth:`unbind`). An outcome from an older generation is dropped, never acked: the
  broker has already requeued that message, and acking its tag on the new channel
  would ack another message or close the channel with PRECONDITION_FAILED.
* **No settlement runs nested inside another.** An ack flushes the socket, and pika
  hands publisher confirms over in the middle of any flush; confirms are therefore
  only recorded by :meth:`on_confirmed` and settled by the drain loop.

A delivery is settled exactly once, and each settlement is one ``delivery_settled``
event for the consumer's observers (``ack``, ``retry``, ``dead_letter``, ``requeue``
or ``stale``), emitted on the I/O thread only when someone listens.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING, Any

from .._events import DeliverySettled
from ._message import HandlerFailure

if TYPE_CHECKING:
    import concurrent.futures as cf

    from .._events import Hooks
    from ._confirms import Confirms
    from ._message import Message
    from ._retries import Retries

__all__ = ["Delivery", "Settlement"]

log = logging.getLogger("runtime.amqp")

_CANCELLED = "cancelled"
_ACK = "ack"
_REQUEUE = "requeue"
_STALE = "stale"


class Delivery:
    """One unsettled delivery of the current connection."""

    __slots__ = ("failure", "future", "message", "outcome", "seconds", "tag")

    def __init__(self, tag: int, message: Message) -> None:
        self.tag = tag
        self.message = message
        self.future: cf.Future[Any] | None = None
        # Set once the handler failed and its retry/dead-letter copy awaits its confirm.
        self.outcome: str | None = None
        self.failure: HandlerFailure | None = None
        self.seconds: float | None = None  # the handler's time, once it returned


class Settlement:
    """The in-flight deliveries of one consumer and everything that settles them.

    ``owner`` and ``queue`` go into the events; ``counts`` is the consumer's counter
    (``succeeded``, ``acked``, ``requeued``, ``stale_dropped`` are counted here).
    """

    def __init__(
        self,
        owner: Any,
        queue: str,
        retries: Retries,
        counts: collections.Counter[str],
        hooks: Hooks,
    ) -> None:
        self._owner = owner
        self._queue = queue
        self._retries = retries
        self._counts = counts
        self._hooks = hooks
        self.thread: threading.Thread | None = None  # the broker I/O thread, set at start

        # Shared between the I/O thread and the executor's completion thread.
        self._lock = threading.Lock()
        self._completed: collections.deque[tuple[int, int, Any]] = collections.deque()
        self._wake_pending = False
        self._connection: Any = None
        self._generation = 0

        # Owned by the I/O thread (others only read ``len(inflight)``).
        self.inflight: dict[int, Delivery] = {}
        self._channel: Any = None
        self._confirms: Confirms | None = None
        self._confirm_tags: dict[int, int] = {}  # publish sequence number -> delivery tag
        self._confirmed: list[tuple[list[int], bool]] = []
        self._draining = False

    # ------------------------------------------------------------------ generations (I/O thread)
    def bind(self, connection: Any, channel: Any, confirms: Confirms) -> None:
        """A new connection consumes from now on: a new generation of delivery tags."""
        with self._lock:
            self._generation += 1
            self._connection = connection
            self._wake_pending = False
        self._channel = channel
        self._confirms = confirms

    def unbind(self) -> None:
        """The connection is gone: its deliveries are stale (the broker redelivers them)."""
        with self._lock:
            self._generation += 1
            self._connection = None
            self._wake_pending = False
        deliveries = list(self.inflight.values())
        self.inflight.clear()
        self._confirm_tags.clear()
        self._confirmed = []
        self._channel = self._confirms = None
        for delivery in deliveries:
            if delivery.future is not None:
                delivery.future.cancel()
        if self._hooks.delivery_settled:
            for delivery in deliveries:
                self._settled(delivery.tag, delivery.message, _STALE, delivery)

    # ------------------------------------------------------------------ deliveries (I/O thread)
    def track(self, tag: int, message: Message, future: cf.Future[Any]) -> None:
        """Watch the handler's ``future`` for the delivery ``tag``."""
        delivery = Delivery(tag, message)
        delivery.future = future
        self.inflight[tag] = delivery
        generation = self._generation
        future.add_done_callback(lambda f: self._on_done(generation, tag, f))

    def requeue(self, tag: int, message: Message, delivery: Delivery | None = None) -> None:
        """Give ``tag`` back to the broker unhandled (``basic_reject(requeue=True)``)."""
        self.inflight.pop(tag, None)
        self._channel.basic_reject(tag, requeue=True)
        self._counts["requeued"] += 1
        if self._hooks.delivery_settled:
            self._settled(tag, message, _REQUEUE, delivery)

    def requeue_unfinished(self) -> int:
        """Requeue every delivery still in flight (a drain ran out of time); returns how many."""
        unfinished = sorted(self.inflight)
        for tag in unfinished:
            delivery = self.inflight[tag]
            if delivery.future is not None:
                delivery.future.cancel()
            self.requeue(tag, delivery.message, delivery)
        return len(unfinished)

    # ------------------------------------------------------------------ any thread
    def wake(self) -> None:
        """Make the I/O thread run :meth:`drain` soon (coalesced: one wake-up per burst)."""
        with self._lock:
            if self._wake_pending:
                return
            connection = self._connection
            if connection is None:
                return  # the I/O loop drains when it comes back
            self._wake_pending = True
        try:
            connection.add_callback_threadsafe(self.drain)
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
        if threading.current_thread() is not self.thread:
            # On the I/O thread itself (an executor that completes inline) the serve loop
            # drains right after the current pika callback; no wake-up round trip needed.
            self.wake()

    def on_confirmed(self, seqs: list[int], ok: bool) -> None:
        """The broker confirmed (or nacked) retry/dead-letter publishes ``seqs``."""
        # Called by pika in the middle of any socket flush: only record, drain() settles.
        self._confirmed.append((seqs, ok))
        self.wake()

    # ------------------------------------------------------------------ settling (I/O thread)
    def drain(self) -> None:
        """Settle every finished delivery of the current connection (I/O thread only)."""
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
            delivery = self.inflight.get(tag)
            if delivery is None or delivery.outcome is not None:
                continue
            if outcome is None or type(outcome) is float:  # float: the handler's duration
                delivery.seconds = outcome
                succeeded.append(tag)
            elif outcome == _CANCELLED:
                self.requeue(tag, delivery.message, delivery)
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
                if tag not in self.inflight:
                    continue
                (succeeded if ok else nacked).append(tag)
        for tag in nacked:
            delivery = self.inflight[tag]
            self.requeue(tag, delivery.message, delivery)
        if nacked:
            log.error(
                "runtime.amqp: the broker nacked %d retry/dead-letter publish(es); originals requeued",
                len(nacked),
            )
        if succeeded:
            self._ack(succeeded)
        return True

    def _fail(self, delivery: Delivery, failure: HandlerFailure) -> None:
        confirms = self._confirms
        assert confirms is not None
        delivery.failure = failure
        delivery.seconds = failure.duration
        seq, delivery.outcome = self._retries.republish(delivery.message, failure, confirms)
        self._confirm_tags[seq] = delivery.tag

    def _ack(self, tags: list[int]) -> None:
        """Ack ``tags``; one ``multiple`` ack covers every tag below the oldest unsettled delivery."""
        # The channel underneath the BlockingChannel: its basic_ack only queues the frame,
        # where BlockingChannel.basic_ack also runs an I/O pass per call. The serve loop's
        # next process_data_events writes the queued acks out in one go.
        impl = self._channel._impl
        self._counts["acked"] += len(tags)
        inflight = self.inflight
        settled = [inflight.pop(tag) for tag in tags]
        oldest = min(inflight) if inflight else None
        below = [t for t in tags if oldest is None or t < oldest]
        if below:
            impl.basic_ack(max(below), multiple=True)
        for tag in tags:
            if oldest is not None and tag > oldest:
                impl.basic_ack(tag)
        if self._hooks.delivery_settled:
            for delivery in settled:
                self._settled(delivery.tag, delivery.message, delivery.outcome or _ACK, delivery)

    def _settled(self, tag: int, message: Message, outcome: str, delivery: Delivery | None) -> None:
        failure = None if delivery is None else delivery.failure
        self._hooks.delivery_settled(
            DeliverySettled(
                owner=self._owner,
                queue=self._queue,
                delivery_tag=tag,
                message_id=message.message_id,
                outcome=outcome,
                attempt=message.attempt,
                exception_type=None if failure is None else failure.type,
                seconds=None if delivery is None else delivery.seconds,
            )
        )
