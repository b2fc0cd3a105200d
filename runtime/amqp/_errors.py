"""Errors raised by :mod:`runtime.amqp`, all under :class:`runtime.Error`."""

from __future__ import annotations

from .._errors import ConfigurationError, Error

__all__ = [
    "AmqpError",
    "BrokerUnreachable",
    "ConnectionLost",
    "InvalidURL",
    "MessageDecodeError",
    "PublishFailed",
    "TopologyMismatch",
]


class AmqpError(Error):
    """Root of the RabbitMQ errors."""


class InvalidURL(AmqpError, ConfigurationError):
    """The broker URL cannot be parsed (wrong scheme, bad port, unknown query option)."""


class BrokerUnreachable(AmqpError, ConnectionError):
    """No connection to the broker after the bounded start-up retries (refused, DNS, auth)."""


class ConnectionLost(AmqpError, ConnectionError):
    """The connection dropped and could not be re-established within the allowed attempts."""


class TopologyMismatch(AmqpError):
    """A queue or exchange exists with other arguments than the ones declared (PRECONDITION_FAILED)."""


class PublishFailed(AmqpError):
    """The broker nacked a publish, returned it as unroutable, or did not confirm it in time."""


class MessageDecodeError(AmqpError, ValueError):
    """A message body is not what the handler expects (bad encoding, invalid JSON).

    Raised inside a handler it counts as a failed attempt like any other exception.
    """
