"""Queue layout of one consumer queue: work queue, retry delay queues, dead-letter exchange/queue.

::

    work queue  Q            (durable; x-dead-letter-exchange=Q.dlx; quorum: x-queue-type, x-delivery-limit)
    retry       Q.retry.<ms>  one per distinct delay; x-message-ttl=<ms>, dead-letters back to Q
    dead letter Q.dlx (fanout) -> Q.dead

A failed attempt is republished to the retry queue of its delay; when the TTL runs
out the broker dead-letters it back to ``Q``. After the last attempt the consumer
publishes to ``Q.dlx``. Broker-side dead-lettering of ``Q`` (a quorum queue's
delivery limit, a reject without requeue) lands in the same ``Q.dead``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._errors import ConfigurationError

__all__ = ["Topology", "retry_delays"]


def retry_delays(
    max_attempts: int, base: float, cap: float, factor: float = 2.0
) -> tuple[float, ...]:
    """Delay after failed attempt 1, 2, ... ``max_attempts - 1``: exponential from ``base``, capped."""
    if max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be >= 1, got {max_attempts}")
    if base < 0 or cap < 0:
        raise ConfigurationError(f"retry delays must be >= 0, got base={base} cap={cap}")
    return tuple(min(base * factor**i, cap) for i in range(max_attempts - 1))


@dataclasses.dataclass(frozen=True)
class Topology:
    """Names and arguments of the queues behind one consumer queue; :meth:`declare` is idempotent."""

    queue: str
    quorum: bool = False
    retry_delays: tuple[float, ...] = ()
    delivery_limit: int | None = None

    def __post_init__(self) -> None:
        if not self.queue or not isinstance(self.queue, str):
            raise ConfigurationError(f"a queue name is required, got {self.queue!r}")
        if len(self.queue) > 200:
            raise ConfigurationError("queue names are limited to 255 bytes; keep yours under 200")
        if self.delivery_limit is not None and not self.quorum:
            raise ConfigurationError("delivery_limit needs a quorum queue (quorum=True)")

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    def retry_queue(self, delay: float) -> str:
        return f"{self.queue}.retry.{round(delay * 1000)}ms"

    def delay_after(self, attempt: int) -> float:
        """The delay before the attempt that follows failed attempt ``attempt`` (1-based)."""
        if not self.retry_delays:
            return 0.0
        return self.retry_delays[min(max(attempt, 1), len(self.retry_delays)) - 1]

    def queue_names(self) -> list[str]:
        names = [self.queue, self.dead_letter_queue]
        for delay in self.retry_delays:
            name = self.retry_queue(delay)
            if name not in names:
                names.append(name)
        return names

    def _type_args(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self.quorum else {}

    def declare(self, channel: Any) -> None:
        """Declare everything on a pika ``BlockingChannel`` (same arguments each time: idempotent)."""
        channel.exchange_declare(self.dead_letter_exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(self.dead_letter_queue, durable=True, arguments=self._type_args())
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange)
        work_args = {**self._type_args(), "x-dead-letter-exchange": self.dead_letter_exchange}
        if self.delivery_limit is not None:
            work_args["x-delivery-limit"] = self.delivery_limit
        channel.queue_declare(self.queue, durable=True, arguments=work_args)
        declared: set[str] = set()
        for delay in self.retry_delays:
            name = self.retry_queue(delay)
            if name in declared:
                continue
            declared.add(name)
            channel.queue_declare(
                name,
                durable=True,
                arguments={
                    **self._type_args(),
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue,
                },
            )

    def delete(self, channel: Any) -> None:
        """Delete every queue and the exchange (tests, teardown)."""
        for name in self.queue_names():
            channel.queue_delete(name)
        channel.exchange_delete(self.dead_letter_exchange)
