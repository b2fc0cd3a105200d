"""Publisher with publisher confirms, batched: publish many, wait for the broker once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._confirms import Confirms
from ._connection import DEFAULT_URL, connect, parameters
from ._errors import AmqpError, ConnectionLost, PublishFailed, TopologyMismatch

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from ._topology import Topology

__all__ = ["Publisher"]

log = logging.getLogger("runtime.amqp")


def _properties(
    headers: Mapping[str, Any] | None, properties: Mapping[str, Any] | None, persistent: bool
) -> Any:
    import pika

    props = dict(properties or {})
    if headers:
        props["headers"] = dict(headers)
    if persistent:
        props.setdefault("delivery_mode", 2)
    return pika.BasicProperties(**props)


def _encode(body: bytes | str) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a message body must be bytes or str, got {type(body).__name__}")


class Publisher:
    """Publish to RabbitMQ with publisher confirms. Not thread-safe: one per thread.

    ``publish`` waits for the broker's confirm of that one message;
    ``publish_batch`` writes a whole batch and waits for the confirms once.
    Both raise :class:`PublishFailed` if the broker nacks or returns (unroutable,
    with ``mandatory=True``) any message, or does not confirm within ``timeout``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        connect_attempts: int = 3,
        timeout: float = 30.0,
        connection_name: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._connection = connect(
            url,
            parameters(url, connection_name=connection_name),
            attempts=connect_attempts,
            delay=0.5,
            max_delay=5.0,
        )
        try:
            self._channel = self._connection.channel()
            self._confirms = Confirms(self._connection, self._channel, timeout=timeout)
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ publishing
    def publish(
        self,
        routing_key: str,
        body: bytes | str,
        *,
        exchange: str = "",
        headers: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        persistent: bool = True,
        mandatory: bool = True,
    ) -> None:
        """Publish one message and wait for its confirm."""
        self.publish_batch(
            [body],
            routing_key,
            exchange=exchange,
            headers=headers,
            properties=properties,
            persistent=persistent,
            mandatory=mandatory,
        )

    def publish_batch(
        self,
        bodies: Iterable[bytes | str],
        routing_key: str,
        *,
        exchange: str = "",
        headers: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        persistent: bool = True,
        mandatory: bool = True,
    ) -> int:
        """Publish every body, then wait once for all confirms; returns how many were published."""
        import pika.exceptions as pe

        props = _properties(headers, properties, persistent)
        confirms = self._confirms
        confirms.nacked.clear()
        returned_before = confirms.returned
        count = 0
        try:
            for body in bodies:
                confirms.publish(exchange, routing_key, _encode(body), props, mandatory)
                count += 1
                if count % 2048 == 0:
                    # Let the socket drain now and then so a huge batch does not sit in memory.
                    self._connection.process_data_events(time_limit=0)
            done = confirms.wait(lambda: not confirms.outstanding, self.timeout)
        except pe.UnsupportedAMQPFieldException as exc:
            raise PublishFailed(f"cannot encode the message properties/headers: {exc!r}") from None
        except pe.AMQPError as exc:
            raise ConnectionLost(f"the connection failed while publishing: {exc!r}") from None
        if not done:
            raise PublishFailed(
                f"{len(confirms.outstanding)} of {count} message(s) not confirmed within {self.timeout}s"
            )
        if confirms.nacked:
            raise PublishFailed(f"the broker nacked {len(confirms.nacked)} of {count} message(s)")
        returned = confirms.returned - returned_before
        if returned:
            raise PublishFailed(
                f"{returned} of {count} message(s) were unroutable (exchange={exchange!r}, "
                f"routing_key={routing_key!r}): no queue is bound for them"
            )
        return count

    # ------------------------------------------------------------------ topology helpers
    def declare(self, topology: Topology) -> None:
        """Declare a consumer queue's topology (idempotent)."""
        self._topology_call(topology.declare, topology.queue)

    def declare_queue(self, name: str) -> None:
        """Declare one plain durable queue (idempotent; :class:`TopologyMismatch` if it differs)."""
        self._topology_call(lambda channel: channel.queue_declare(name, durable=True), name)

    def delete(self, topology: Topology) -> None:
        """Delete a consumer queue's queues and dead-letter exchange."""
        self._topology_call(topology.delete, topology.queue)

    def _topology_call(self, fn: Any, queue: str) -> None:
        import pika.exceptions as pe

        try:
            fn(self._channel)
        except pe.ChannelClosedByBroker as exc:
            self._reopen_channel()
            if exc.reply_code == 406:
                raise TopologyMismatch(
                    f"queue {queue!r} exists with other arguments: {exc.reply_text}"
                ) from None
            raise AmqpError(f"declaring {queue!r} failed: {exc.reply_text}") from None

    def _reopen_channel(self) -> None:
        self._channel = self._connection.channel()
        self._confirms = Confirms(self._connection, self._channel, timeout=self.timeout)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        connection = getattr(self, "_connection", None)
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as exc:  # closing is best effort
                log.debug("runtime.amqp: closing the publisher connection: %r", exc)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
