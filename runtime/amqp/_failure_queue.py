"""``--failure-queue``: an ``on_failure`` hook that publishes each failure to a durable queue.

It runs on the consumer's failure-report thread (see :mod:`runtime.ops._failure`),
never on the broker I/O thread, so waiting for a publisher confirm cannot delay the
consumer's acks or heartbeats. Its connection is its own (pika connections belong to
one thread at a time) and is opened on first use; an idle connection that the broker
dropped is noticed at the next publish, which reconnects and tries once more.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, Error
from ._connection import DEFAULT_URL

if TYPE_CHECKING:
    from ..ops._failure_record import Failure
    from ._publisher import Publisher

__all__ = ["FailureQueue"]

log = logging.getLogger("runtime.amqp")


class FailureQueue:
    """Publish every :class:`runtime.Failure` as a JSON document to the durable queue ``name``.

    Publisher confirms: a call returns once the broker has the document, and raises
    (:class:`runtime.amqp.AmqpError`) if it could not be stored after one reconnect.
    Use it as ``on_failure=FailureQueue("failures")``; :meth:`declare` creates the queue
    up front, :meth:`close` closes the connection.
    """

    def __init__(
        self, name: str, url: str = DEFAULT_URL, *, connect_attempts: int = 3, timeout: float = 10.0
    ) -> None:
        from ._connection import parameters

        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ConfigurationError(
                f"the failure queue needs a name of 1 to 200 characters, got {name!r}"
            )
        parameters(url)  # InvalidURL now, not at the first failure
        self.name = name
        self.url = url
        self._connect_attempts = connect_attempts
        self._timeout = timeout
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None

    def _open(self) -> Publisher:
        from ._publisher import Publisher

        publisher = Publisher(
            self.url,
            connect_attempts=self._connect_attempts,
            timeout=self._timeout,
            connection_name=f"parallel-runtime failure-queue {self.name}",
        )
        try:
            publisher.declare_queue(self.name)
        except BaseException:
            publisher.close()
            raise
        return publisher

    def declare(self) -> None:
        """Connect, declare the queue (durable, if missing), disconnect."""
        with self._lock:
            self._open().close()

    def __call__(self, failure: Failure) -> None:
        body = failure.to_json()
        properties: dict[str, Any] = {
            "content_type": "application/json",
            "type": "runtime.failure",
            "app_id": "parallel-runtime",
            "timestamp": int(failure.time),
        }
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None:
                        self._publisher = self._open()
                    self._publisher.publish(self.name, body, properties=properties)
                    return
                except Error as exc:
                    self._drop()
                    if attempt == 2:
                        raise
                    log.info("runtime.amqp: failure queue %r: %s; reconnecting", self.name, exc)

    def _drop(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"<runtime.amqp.FailureQueue {self.name!r}>"
