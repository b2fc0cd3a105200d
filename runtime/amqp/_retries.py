"""What happens to a failed delivery: a delayed retry, or the dead-letter queue after the last attempt.

The policy (dramatiq's ``Retries`` middleware, with the delay kept by the broker): a
failed attempt ``n`` of ``max_attempts`` is republished, with the error in its headers
and the attempt header set to ``n + 1``, to the retry queue of its delay (exponential
from ``retry_delay``, capped at ``max_retry_delay``; see :mod:`._topology`). That
queue's TTL dead-letters it back to the work queue, so a delayed message never waits
unacked in our memory, where RabbitMQ's ``consumer_timeout`` would kill the channel
(Celery #6760, Dramatiq #827). The last failed attempt goes to ``<queue>.dlx``, which
routes it to ``<queue>.dead``.

The copy is published on the confirming channel and the original is acked only once
the broker confirmed the copy (:mod:`._settlement` does that part), so a failure is
never lost between the two; a nacked copy gets its original requeued instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._events import DeliveryFailed
from ._message import (
    ATTEMPT_HEADER,
    FAILED_QUEUE_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
)

if TYPE_CHECKING:
    import collections

    from .._events import Hooks
    from ._confirms import Confirms
    from ._message import HandlerFailure, Message
    from ._topology import Topology

__all__ = ["DEAD_LETTER", "RETRY", "Retries"]

log = logging.getLogger("runtime.amqp")

#: What :meth:`Retries.republish` did with a failed delivery (also the ``action`` of the
#: :class:`runtime.Failure` report and the ``outcome`` of its ``DeliverySettled`` event).
RETRY = "retry"
DEAD_LETTER = "dead_letter"


class Retries:
    """The retry / dead-letter decision for one consumer queue (broker I/O thread only).

    ``counts`` is the consumer's counter (``failed``, ``retried``, ``dead_lettered`` are
    counted here); observers (``hooks``) hear each failed attempt as ``delivery_failed``,
    with the decision (``runtime.ops`` turns it into the ``on_failure`` report).
    """

    def __init__(
        self,
        topology: Topology,
        max_attempts: int,
        handler: str,
        counts: collections.Counter[str],
        hooks: Hooks,
        owner: Any,
    ) -> None:
        self.topology = topology
        self.max_attempts = max_attempts
        self._handler = handler
        self._counts = counts
        self._hooks = hooks
        self._owner = owner

    def headers(self, message: Message, failure: HandlerFailure) -> dict[str, Any]:
        """The copy's headers: the original's, the error, and where it came from."""
        headers = dict(message.headers)
        headers.update(failure.headers())
        headers[FAILED_QUEUE_HEADER] = self.topology.queue
        headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key)
        headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange)
        return headers

    def republish(
        self, message: Message, failure: HandlerFailure, confirms: Confirms
    ) -> tuple[int, str]:
        """Publish the next step of a failed ``message``; returns (sequence number, action).

        The action is :data:`RETRY` while attempts are left, else :data:`DEAD_LETTER`.
        """
        import pika

        self._counts["failed"] += 1
        topology = self.topology
        queue = topology.queue
        headers = self.headers(message, failure)
        props = dict(message.properties)
        props.pop("expiration", None)  # a per-message TTL would fight the retry queue's TTL
        if message.attempt < self.max_attempts:
            delay = topology.delay_after(message.attempt)
            headers[ATTEMPT_HEADER] = message.attempt + 1
            exchange, routing_key, action = "", topology.retry_queue(delay), RETRY
            log.warning(
                "runtime.amqp: %s attempt %d/%d failed: %s; retrying in %.1fs",
                queue,
                message.attempt,
                self.max_attempts,
                failure,
                delay,
            )
            self._counts["retried"] += 1
        else:
            headers[ATTEMPT_HEADER] = message.attempt
            exchange, routing_key = topology.dead_letter_exchange, topology.dead_letter_queue
            action = DEAD_LETTER
            log.error(
                "runtime.amqp: %s attempt %d/%d failed: %s; dead-lettered to %r",
                queue,
                message.attempt,
                self.max_attempts,
                failure,
                routing_key,
            )
            self._counts["dead_lettered"] += 1
        seq = confirms.publish(
            exchange, routing_key, message.body, pika.BasicProperties(headers=headers, **props)
        )
        if self._hooks.delivery_failed:
            self._hooks.delivery_failed(
                DeliveryFailed(
                    owner=self._owner,
                    queue=queue,
                    handler=self._handler,
                    message_id=message.message_id,
                    attempt=message.attempt,
                    action=action,
                    exception_type=failure.type,  # named as runtime.Failure names it
                    message=failure.message,
                    traceback=failure.traceback,
                    worker=failure.worker,
                )
            )
        return seq, action
