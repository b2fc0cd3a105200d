"""Connecting to the broker: URL validation, bounded retries, pika errors translated."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import Any

from ._errors import BrokerUnreachable, InvalidURL

__all__ = ["DEFAULT_URL", "connect", "parameters", "redact"]

log = logging.getLogger("runtime.amqp")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def parameters(
    url: str, *, heartbeat: float | None = None, connection_name: str | None = None
) -> Any:
    """pika ``URLParameters`` for ``url``; :class:`InvalidURL` when it cannot be used.

    ``connection_name`` is shown by the broker (management UI, ``rabbitmqctl
    list_connections client_properties``) so an operator can tell connections apart;
    the process id is appended.
    """
    import pika

    if not isinstance(url, str):
        raise InvalidURL(f"the broker URL must be a string, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidURL(f"cannot parse broker URL {redact(url)!r}: {exc}") from None
    if parts.scheme not in ("amqp", "amqps"):
        raise InvalidURL(
            f"broker URL {redact(url)!r} must start with amqp:// or amqps:// "
            "(e.g. amqp://guest:guest@127.0.0.1:5672/%2F)"
        )
    if not parts.hostname:
        raise InvalidURL(f"broker URL {redact(url)!r} names no host")
    try:
        params = pika.URLParameters(url)
    except Exception as exc:
        raise InvalidURL(f"bad broker URL {redact(url)!r}: {exc}") from None
    params.connection_attempts = 1
    params.retry_delay = 0
    if connection_name:
        import os

        params.client_properties = {"connection_name": f"{connection_name} (pid {os.getpid()})"}
    if heartbeat is not None:
        if heartbeat < 0:
            raise InvalidURL(f"heartbeat must be >= 0 seconds, got {heartbeat}")
        params.heartbeat = round(heartbeat) if heartbeat >= 1 or heartbeat == 0 else 1
    return params


def connect(
    url: str,
    params: Any,
    *,
    attempts: int | None,
    delay: float,
    max_delay: float,
    stop: threading.Event | None = None,
) -> Any:
    """Open a ``BlockingConnection``, retrying with exponential backoff.

    ``attempts=None`` retries until ``stop`` is set (then returns None). Authentication
    failures are not retried: another try cannot fix them.
    """
    import pika
    import pika.exceptions as pe

    attempt = 0
    wait = delay
    while True:
        attempt += 1
        try:
            return pika.BlockingConnection(params)
        except (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError) as exc:
            raise BrokerUnreachable(
                f"the broker at {redact(url)} refused the login: {exc!r}"
            ) from None
        except (pe.AMQPError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempts is not None and attempt >= attempts:
                raise BrokerUnreachable(
                    f"cannot reach the broker at {redact(url)} after {attempt} attempt(s): {reason}"
                ) from None
            log.warning(
                "runtime.amqp: connecting to %s failed (attempt %d%s): %s; retrying in %.1fs",
                redact(url),
                attempt,
                f"/{attempts}" if attempts else "",
                reason,
                wait,
            )
        if stop is not None:
            if stop.wait(wait):
                return None
        else:
            threading.Event().wait(wait)
        wait = min(wait * 2, max_delay)
