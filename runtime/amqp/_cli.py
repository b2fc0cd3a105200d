"""``parallel-runtime consume``: run a :class:`~runtime.amqp.Consumer` from the command line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._cli_args import BACKENDS, workers_arg
from .._lifecycle import positive_int

if TYPE_CHECKING:
    import argparse

__all__ = ["configure_parser"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``consume`` arguments to ``parser``."""
    from ._connection import DEFAULT_URL

    parser.add_argument(
        "handler", help="pkg.mod:func called with each message, or pkg.mod:TaskClass with handle()"
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="broker URL (default: %(default)s)")
    parser.add_argument(
        "--queue", required=True, help="queue to consume (declared durable if missing)"
    )
    parser.add_argument(
        "--workers", type=workers_arg, default=None, help="count or fraction of CPUs (default: all)"
    )
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument(
        "--bootstrap", default=None, help="pkg.mod:init run once in each fresh worker"
    )
    parser.add_argument(
        "--prefetch",
        type=positive_int,
        default=None,
        help="unacked messages (default: 4 x workers)",
    )
    parser.add_argument(
        "--max-attempts", type=positive_int, default=5, help="attempts before dead-lettering"
    )
    parser.add_argument(
        "--retry-delay", type=float, default=1.0, help="seconds before the first retry (doubles)"
    )
    parser.add_argument(
        "--max-retry-delay", type=float, default=300.0, help="cap on the retry delay in seconds"
    )
    parser.add_argument(
        "--quorum", action="store_true", help="declare quorum queues (x-queue-type: quorum)"
    )
    parser.add_argument(
        "--delivery-limit",
        type=positive_int,
        default=None,
        help="quorum x-delivery-limit: dead-letter messages redelivered this often (crash loops)",
    )
    parser.add_argument("--heartbeat", type=float, default=60.0, help="AMQP heartbeat in seconds")
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds to finish in-flight work on SIGTERM",
    )
    parser.add_argument(
        "--connect-attempts", type=positive_int, default=5, help="tries at start before giving up"
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=10.0,
        help="seconds between throughput lines (0: off)",
    )
    from .._lifecycle import add_arguments as add_lifecycle_arguments
    from ..ops._cli import add_arguments

    add_lifecycle_arguments(parser)
    add_arguments(parser).add_argument(
        "--failure-queue",
        default=None,
        metavar="NAME",
        help="publish every failure as JSON (publisher confirms) to this durable queue",
    )
    parser.set_defaults(func=_cmd_consume)


def _limit_kwargs(limits: Any) -> dict[str, Any]:
    return {
        "max_tasks_per_worker": limits.max_tasks_per_worker,
        "max_worker_memory": limits.max_worker_memory,
        "max_worker_age": limits.max_worker_age,
        "boot_timeout": limits.boot_timeout,
    }


def _cmd_consume(args: argparse.Namespace) -> int:
    import logging

    from .._errors import ConfigurationError, Error

    if not args.verbose:
        # pika logs every connection step at INFO; our own lines say what matters.
        logging.getLogger("pika").setLevel(logging.WARNING)

    failure_queue = None
    try:
        from .._lifecycle import from_args
        from ..ops import _cli as ops_cli
        from ..ops._failure import combine_hooks
        from ._consumer import Consumer
        from ._failure_queue import FailureQueue

        ops_cli.check(args)
        if args.failure_queue is not None:
            failure_queue = FailureQueue(args.failure_queue, args.url)
        consumer = Consumer(
            args.handler,
            args.queue,
            url=args.url,
            workers=args.workers,
            backend=args.backend,
            bootstrap=args.bootstrap,
            prefetch=args.prefetch,
            max_attempts=args.max_attempts,
            retry_delay=args.retry_delay,
            max_retry_delay=args.max_retry_delay,
            quorum=args.quorum,
            delivery_limit=args.delivery_limit,
            heartbeat=args.heartbeat,
            stop_timeout=args.stop_timeout,
            connect_attempts=args.connect_attempts,
            stats_interval=args.stats_interval or None,
            on_failure=combine_hooks(args.on_failure, failure_queue),
            **_limit_kwargs(from_args(args)),
        )
        with ops_cli.serving(args):
            if failure_queue is not None:
                failure_queue.declare()
            consumer.run()
    except ConfigurationError as exc:
        print(f"parallel-runtime consume: error: {exc}", file=sys.stderr)
        return 2
    except Error as exc:
        print(f"parallel-runtime consume: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if failure_queue is not None:
            failure_queue.close()
    return 0
