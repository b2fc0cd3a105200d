"""The operations flags of ``parallel-runtime run`` and ``consume``: one place for both commands."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["add_arguments", "check", "serving"]


def add_arguments(parser: argparse.ArgumentParser) -> Any:
    """Add the operations flags in their own help group; returns the group (for more flags)."""
    group = parser.add_argument_group("operations")
    group.add_argument(
        "--metrics-port",
        default=None,
        metavar="PORT",
        help="serve /healthz, /readyz and /metrics on this port (0: any free port, logged)",
    )
    group.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the metrics port binds to (default: %(default)s, for containers)",
    )
    group.add_argument(
        "--on-failure",
        default=None,
        metavar="pkg.mod:fn",
        help="called in the main process with a runtime.Failure for every failure",
    )
    return group


def check(args: argparse.Namespace) -> None:
    """Validate the operations flags before anything starts (raises runtime.ConfigurationError)."""
    from ._failure import resolve_hook
    from ._server import parse_port

    if args.metrics_port is not None:
        args.metrics_port = parse_port(args.metrics_port)
    resolve_hook(args.on_failure)


@contextlib.contextmanager
def serving(args: argparse.Namespace) -> Iterator[Any]:
    """Run the ops server (if ``--metrics-port`` was given) around the command's main loop."""
    if args.metrics_port is None:
        yield None
        return
    from ._server import serve_metrics

    server = serve_metrics(args.metrics_port, args.metrics_host)
    try:
        yield server
    finally:
        server.close()
