"""The ops HTTP server: ``/healthz``, ``/readyz`` and ``/metrics`` for every component of the process.

Standard library only (``http.server``), so health and readiness work without the
``metrics`` extra; ``/metrics`` answers 501 naming the extra when prometheus-client is
missing. The accept loop waits in a selector on the listening socket and a wake-up
pipe, so it does not poll and :meth:`MetricsServer.close` returns at once; each request
is served on its own short-lived thread, so a slow scraper cannot hold up a probe.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import json
import logging
import os
import selectors
import socket
import threading
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["MetricsServer", "parse_port", "serve_metrics"]

log = logging.getLogger("runtime")

METRICS_EXTRA_HINT = (
    "/metrics needs prometheus-client: install the 'metrics' extra "
    "(pip install 'parallel-runtime[metrics]')\n"
)


def parse_port(value: Any) -> int:
    """A TCP port number 0..65535 (0: pick a free one) from an int or a decimal string."""
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 65535:
        raise ConfigurationError(
            f"the metrics port must be a number 0..65535 (0: any free port), got {value!r}"
        )
    return number


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 10  # a client that connects and says nothing does not keep its thread forever
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        stale_after = self.server.stale_after
        if path in ("/healthz", "/livez"):
            from ._health import health

            self._json(*health(stale_after))
        elif path == "/readyz":
            from ._health import readiness

            self._json(*readiness(stale_after))
        elif path == "/metrics":
            try:
                from ._collector import exposition

                body, content_type = exposition(self.headers.get("Accept"))
            except ImportError:
                self._send(501, METRICS_EXTRA_HINT.encode(), "text/plain; charset=utf-8")
                return
            self._send(200, body, content_type)
        else:
            self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain")

    def _json(self, ok: bool, body: dict[str, Any]) -> None:
        data = (json.dumps(body, indent=2, default=str) + "\n").encode()
        self._send(200 if ok else 503, data, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("runtime: ops server: " + format, *args)


class _HTTPServer(http.server.ThreadingHTTPServer):
    stale_after = 30.0


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running ops server; ``.port`` is the bound port, ``.close()`` stops it (idempotent)."""

    def __init__(self, port: Any = 0, host: str = "0.0.0.0", *, stale_after: float = 30.0) -> None:
        number = parse_port(port)
        if not isinstance(host, str) or not host:
            raise ConfigurationError(
                f"the metrics host must be an address like 0.0.0.0, got {host!r}"
            )
        if not isinstance(stale_after, (int, float)) or stale_after <= 0:
            raise ConfigurationError(
                f"stale_after must be a number of seconds > 0, got {stale_after!r}"
            )
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        try:
            self._server = cls((host, number), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"cannot serve metrics on {host}:{number}: the port is already in use; choose "
                    "another --metrics-port (0 picks a free one)"
                ) from None
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{number}: {exc.strerror or exc}"
            ) from None
        self._server.stale_after = float(stale_after)
        # A client that connects and resets before accept() must not block the accept loop.
        self._server.socket.setblocking(False)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(
            target=self._loop, name="runtime-metrics-server", daemon=True
        )
        self._thread.start()
        log.info(
            "runtime: serving /healthz, /readyz and /metrics on http://%s:%d",
            f"[{host}]" if ":" in host else host,
            self.port,
        )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.port}"

    def _loop(self) -> None:
        from .._early import block_signals_in_this_thread

        block_signals_in_this_thread()
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self._server.socket and not self._closing:
                        self._accept()

    def _accept(self) -> None:
        """Accept one connection and hand it to a request thread (what socketserver's
        ``handle_request`` does once the socket is readable, through its public steps)."""
        server = self._server
        try:
            request, address = server.get_request()
        except OSError:  # the client reset before accept(), or nothing to accept after all
            return
        if not server.verify_request(request, address):
            server.shutdown_request(request)
            return
        try:
            server.process_request(request, address)
        except Exception:
            server.handle_error(request, address)
            server.shutdown_request(request)
        except BaseException:
            server.shutdown_request(request)
            raise

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        self._thread.join(5)
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<runtime.MetricsServer {self.url} closed={self._closing}>"


def serve_metrics(
    port: Any = 0, host: str = "0.0.0.0", *, stale_after: float = 30.0
) -> MetricsServer:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` for every pool, executor and consumer of the process.

    ``port`` 0 picks a free port (logged, and in ``.port``). ``stale_after``: a supervising
    thread busy that long without reaching one of its waits makes ``/healthz`` answer 503.
    Raises :class:`runtime.ConfigurationError` for a bad port or host, or a port in use.
    """
    return MetricsServer(port, host, stale_after=stale_after)
