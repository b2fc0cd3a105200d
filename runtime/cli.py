"""``parallel-runtime`` (also ``python -m runtime``): info, run, consume, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from ._cli_args import BACKENDS, workers_arg

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import runtime

    caps = runtime.capabilities()
    data = caps.as_dict()
    data["python"] = platform.python_version()
    data["implementation"] = sys.implementation.name
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key:22} {value}")
    return 0


def _from_source(source: str, weights: dict[str, float], bootstrap: str | None) -> tuple[Any, Any]:
    """Run ``--source`` once as __main__; bare names (no colon) then refer to its objects."""
    from ._main_source import load_main_source, lookup

    main = load_main_source(source, sys.stdin)
    tasks = {(ref if ":" in ref else lookup(main, ref)): w for ref, w in weights.items()}
    if bootstrap is not None and ":" not in bootstrap:
        return tasks, lookup(main, bootstrap)
    return tasks, bootstrap


def _cmd_run(args: argparse.Namespace) -> int:
    import runtime

    weights: dict[str, float] = {}
    for item in args.tasks:
        ref, _, weight = item.partition("=")
        weights[ref] = float(weight or 1)
    from .ops import _cli as ops_cli

    try:
        ops_cli.check(args)
        tasks: Any = weights
        bootstrap: Any = args.bootstrap
        if args.source is not None:
            tasks, bootstrap = _from_source(args.source, weights, bootstrap)
        if len(args.tasks) == 1 and "=" not in args.tasks[0]:
            tasks = next(iter(tasks))
        from ._lifecycle import from_args

        limits = from_args(args)
        pool = runtime.Pool(
            tasks,
            workers=args.workers,
            backend=args.backend,
            bootstrap=bootstrap,
            restart=runtime.RestartPolicy(max_restarts=args.max_restarts),
            stop_timeout=args.stop_timeout,
            on_failure=args.on_failure,
            boot_timeout=limits.boot_timeout,
            max_tasks_per_worker=limits.max_tasks_per_worker,
            max_worker_memory=limits.max_worker_memory,
            max_worker_age=limits.max_worker_age,
        )
        with ops_cli.serving(args):
            report = pool.run()
    except runtime.Error as exc:
        print(f"parallel-runtime: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"completed={report.completed} restarts={report.restarts} gave_up={report.gave_up} "
        f"replaced={report.replaced} recycled={report.recycled} unfinished={report.unfinished}"
    )
    return 1 if report.gave_up else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parallel-runtime",
        description="Parallel workers inside one process: pools, executors, RabbitMQ consumers.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser(
        "info", help="what this Python can do (free-threading, GIL, subinterpreters)"
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    run = sub.add_parser("run", help="run a pool of tasks until they finish or SIGTERM/SIGINT")
    run.add_argument(
        "tasks",
        nargs="+",
        help="pkg.mod:TaskClass (or TaskClass with --source), or several as REF=WEIGHT",
    )
    run.add_argument(
        "--source",
        metavar="FILE|-",
        default=None,
        help="run this .py file (or the code on stdin: -) once as __main__ first; bare names "
        "then refer to it. Code from stdin travels to the workers by value, as a REPL's would",
    )
    run.add_argument("--workers", type=workers_arg, default=1, help="count or fraction of CPUs")
    run.add_argument("--backend", default="auto", choices=BACKENDS)
    run.add_argument(
        "--bootstrap",
        default=None,
        help="pkg.mod:init (or init with --source), run once per worker",
    )
    run.add_argument(
        "--max-restarts", type=int, default=None, help="per slot within 60 s (default: unlimited)"
    )
    run.add_argument("--stop-timeout", type=float, default=30.0, help="seconds to drain on stop")
    from ._lifecycle import add_arguments as add_lifecycle_arguments

    add_lifecycle_arguments(run)
    from .ops._cli import add_arguments as add_ops_arguments

    add_ops_arguments(run)
    run.set_defaults(func=_cmd_run)

    from .amqp._cli import configure_parser as configure_consume

    configure_consume(sub.add_parser("consume", help="consume a RabbitMQ queue on the pool"))

    bench = sub.add_parser("bench", help="compare against process pools and friends")
    from .bench.cli import configure_parser as configure_bench

    configure_bench(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command in ("consume", "run"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
