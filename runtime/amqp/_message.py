"""The message a handler receives, and the failure record a worker sends back.

This module must stay free of pika (and of ssl/asyncio): workers unpickle
:class:`Message` inside own-GIL subinterpreters, where on Python 3.12 importing
``ssl`` crashes the process.
"""

from __future__ import annotations

import dataclasses
import json as _json
from typing import TYPE_CHECKING, Any

from ._errors import MessageDecodeError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ATTEMPT_HEADER",
    "ERROR_MESSAGE_HEADER",
    "ERROR_TRACEBACK_HEADER",
    "ERROR_TYPE_HEADER",
    "FAILED_QUEUE_HEADER",
    "ORIGINAL_EXCHANGE_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "HandlerFailure",
    "Message",
]

ATTEMPT_HEADER = "x-runtime-attempt"
ERROR_TYPE_HEADER = "x-runtime-error-type"
ERROR_MESSAGE_HEADER = "x-runtime-error-message"
ERROR_TRACEBACK_HEADER = "x-runtime-error-traceback"
FAILED_QUEUE_HEADER = "x-runtime-failed-queue"
ORIGINAL_EXCHANGE_HEADER = "x-runtime-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-runtime-original-routing-key"

_MESSAGE_LIMIT = 1_000
_TRACEBACK_LIMIT = 4_000


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One delivery, as a handler sees it.

    ``attempt`` is 1 on the first delivery and grows with each retry the consumer
    schedules after a handler failure (it does not grow when the broker redelivers
    a message whose consumer died: ``redelivered`` tells that case).
    ``properties`` holds the AMQP basic properties that were set (``content_type``,
    ``message_id``, ``correlation_id``, ``timestamp`` ...), headers excluded.
    """

    body: bytes
    routing_key: str = ""
    exchange: str = ""
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    redelivered: bool = False
    attempt: int = 1
    queue: str = ""

    @property
    def content_type(self) -> str | None:
        value = self.properties.get("content_type")
        return value if isinstance(value, str) else None

    @property
    def message_id(self) -> str | None:
        value = self.properties.get("message_id")
        return value if isinstance(value, str) else None

    @property
    def correlation_id(self) -> str | None:
        value = self.properties.get("correlation_id")
        return value if isinstance(value, str) else None

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional and flat: cheaper than the generic slots-dataclass state (one per delivery).
        return (
            Message,
            (
                self.body,
                self.routing_key,
                self.exchange,
                self.headers,
                self.properties,
                self.redelivered,
                self.attempt,
                self.queue,
            ),
        )

    def text(self, encoding: str | None = None) -> str:
        """The body decoded as text (``content_encoding`` or UTF-8); :class:`MessageDecodeError` if it is not."""
        codec = encoding or self.properties.get("content_encoding") or "utf-8"
        try:
            return self.body.decode(codec)
        except (UnicodeDecodeError, LookupError) as exc:
            raise MessageDecodeError(f"message body is not valid {codec} text: {exc}") from exc

    def json(self) -> Any:
        """The body parsed as JSON; :class:`MessageDecodeError` if it is not."""
        text = self.text()
        try:
            return _json.loads(text)
        except ValueError as exc:
            raise MessageDecodeError(f"message body is not valid JSON: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerFailure:
    """Why a handler failed: what the consumer logs and puts in the retry/dead-letter headers.

    ``worker`` is the :class:`runtime.WorkerInfo` of the worker the handler failed in and
    ``duration`` how long it ran (seconds), when known.
    """

    type: str
    message: str
    traceback: str = ""
    worker: Any = None
    duration: float | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, duration: float | None = None) -> HandlerFailure:
        import traceback

        from .._worker import current_worker

        remote = getattr(exc, "remote_traceback", None)
        tb = remote or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable exception>"
        from .._wire import exception_name

        return cls(
            exception_name(f"{type(exc).__module__}.{type(exc).__qualname__}"),
            message[:_MESSAGE_LIMIT],
            tb[-_TRACEBACK_LIMIT:],
            current_worker(),
            duration,
        )

    def headers(self) -> dict[str, str]:
        return {
            ERROR_TYPE_HEADER: self.type,
            ERROR_MESSAGE_HEADER: self.message,
            ERROR_TRACEBACK_HEADER: self.traceback,
        }

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"
