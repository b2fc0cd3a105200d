"""Asynchronous publisher confirms on a pika ``BlockingChannel``.

pika's ``BlockingChannel.confirm_delivery()`` waits for the broker after every
publish (one round trip per message: ~1,200 msg/s here). The channel object it
wraps supports the asynchronous form — publish many, collect ``Basic.Ack``/``Nack``
frames (often ``multiple``) as they arrive — which is what this class drives.
It is used from the connection's own thread only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Confirms"]


def _nothing() -> None:
    pass


class Confirms:
    """Sequence numbers for publishes on one channel and their confirmations."""

    def __init__(
        self,
        connection: Any,
        channel: Any,
        on_settled: Callable[[list[int], bool], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._impl = channel._impl  # the asynchronous pika Channel behind the BlockingChannel
        self._on_settled = on_settled
        self._next = 0
        self.outstanding: dict[int, None] = {}  # ordered by sequence number
        self.nacked: list[int] = []
        self.returned = 0
        selected: list[bool] = []
        self._impl.add_on_return_callback(self._on_return)
        self._impl.confirm_delivery(
            ack_nack_callback=self._on_frame, callback=lambda _frame: selected.append(True)
        )
        if not self.wait(lambda: bool(selected), timeout):
            raise TimeoutError(f"the broker did not enable publisher confirms within {timeout}s")

    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, mandatory: bool = False
    ) -> int:
        """Queue one publish (written out by the next I/O pass); returns its sequence number."""
        self._impl.basic_publish(
            exchange, routing_key, body, properties=properties, mandatory=mandatory
        )
        self._next += 1
        self.outstanding[self._next] = None
        return self._next

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Run the connection's I/O until ``done()`` or ``timeout``; True if done.

        ``process_data_events`` only returns early for events it dispatches itself,
        not for frames the channel underneath handles (confirms), so this drives the
        channel's flush loop, which re-checks ``done`` after every I/O wake-up.
        """
        end = time.monotonic() + timeout
        timer = self._connection.call_later(timeout, _nothing)  # wakes the poll at the deadline
        try:
            self._channel._flush_output(lambda: done() or time.monotonic() >= end)
        finally:
            self._connection.remove_timeout(timer)
        return done()

    def _on_return(self, _channel: Any, _method: Any, _properties: Any, _body: bytes) -> None:
        # A Basic.Return always precedes the Basic.Ack of the same publish.
        self.returned += 1

    def _on_frame(self, frame: Any) -> None:
        method = frame.method
        ok = type(method).__name__ == "Ack"
        tag: int = method.delivery_tag
        if method.multiple:
            settled = []
            for seq in self.outstanding:
                if seq > tag:
                    break
                settled.append(seq)
        else:
            settled = [tag] if tag in self.outstanding else []
        for seq in settled:
            del self.outstanding[seq]
        if not ok:
            self.nacked.extend(settled)
        if self._on_settled is not None and settled:
            self._on_settled(settled, ok)
