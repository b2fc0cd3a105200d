"""``parallel-runtime bench``: run the comparison, print the table, write JSON and a PNG."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["configure_parser", "main", "run_bench"]


def _int_list(value: str) -> list[int]:
    try:
        counts = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2,4, got {value!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {value!r}")
    return counts


def _name_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (the ``parallel-runtime bench`` subcommand)."""
    from .peers import PEERS
    from .runner import ALL_WORKLOAD_NAMES

    parser.description = (
        "Compare runtime.Executor (every backend) with ThreadPoolExecutor, ProcessPoolExecutor "
        "(fork/forkserver/spawn), multiprocessing.Pool, InterpreterPoolExecutor and anyio."
    )
    parser.add_argument(
        "--quick", action="store_true", help="about a minute on 2 cores: 2 workers, 3 repeats"
    )
    parser.add_argument(
        "--workers",
        type=_int_list,
        default=None,
        help="comma-separated worker counts (default: 2 with --quick, else 1,2,4)",
    )
    parser.add_argument(
        "--workloads",
        type=_name_list,
        default=None,
        help=f"comma-separated, from: {', '.join(ALL_WORKLOAD_NAMES)}",
    )
    parser.add_argument(
        "--peers",
        type=_name_list,
        default=None,
        help="comma-separated keys or groups (process, runtime, anyio) from: "
        + ", ".join(p.key for p in PEERS),
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds (default 3 quick, 5 full)"
    )
    parser.add_argument(
        "--scale", type=float, default=None, help="task-count multiplier (default 1 quick, 2 full)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round peer order")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the results as JSON")
    parser.add_argument(
        "--plot", metavar="PATH", default=None, help="write a PNG (needs matplotlib)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list peers and workloads, then exit")
    parser.set_defaults(func=run_bench)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        enabled = False
    if not enabled:
        yield lambda _label: None
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _label: None
        return
    with Progress(
        TextColumn("[bold]bench"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        yield step


def _list(console_print: Callable[[str], None]) -> int:
    from .peers import PEERS, available_peers
    from .runner import WORKLOADS

    _, skipped = available_peers(PEERS)
    for peer in PEERS:
        state = f"unavailable: {skipped[peer.key]}" if peer.key in skipped else "ok"
        console_print(f"peer  {peer.key:24} {peer.name} [{peer.backend}]  {state}")
    for w in WORKLOADS:
        console_print(
            f"work  {w.name:24} {w.kind:9} {w.description}{'' if w.quick else '  (not in --quick)'}"
        )
    console_print("work  startup                  (start-up time and memory per worker)")
    console_print(
        "work  latency                  (submit -> result p50/p99, main-side CPU per call)"
    )
    console_print(
        "work  first_result             (constructor to the first result; floor: bare interpreters)"
    )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """Entry point of ``parallel-runtime bench``; returns the exit status."""
    from .peers import select_peers
    from .runner import Config, count_steps, run, select_workloads

    if args.list:
        return _list(print)
    try:
        peers = select_peers(args.peers)
        batch, special = select_workloads(args.workloads, args.quick)
    except ValueError as exc:
        print(f"parallel-runtime bench: error: {exc}", file=sys.stderr)
        return 2
    config = Config(
        workers=args.workers or ([2] if args.quick else [1, 2, 4]),
        peers=peers,
        workloads=batch,
        special=special,
        repeats=args.repeats or (3 if args.quick else 5),
        scale=args.scale or (1.0 if args.quick else 2.0),
        latency_samples=300 if args.quick else 1000,
        seed=args.seed,
        quick=args.quick,
    )
    if config.repeats < 1 or config.scale <= 0:
        print(
            "parallel-runtime bench: error: --repeats and --scale must be positive", file=sys.stderr
        )
        return 2

    with _progress(count_steps(config), not args.no_progress) as step:
        doc = run(config, step)
    return finish(doc, args.json, args.plot)


def finish(doc: dict[str, Any], json_path: str | None, plot_path: str | None) -> int:
    """Print the table, write the JSON and the plot; 1 when a peer failed, else 0."""
    from .report import PlotUnavailable, plot, render_table, validate_document, write_json

    validate_document(doc)
    try:
        render_table(doc)
    except ImportError:  # rich missing: the JSON is still the record
        import json

        print(json.dumps(doc["results"], indent=1))
    if json_path:
        print(f"JSON written to {write_json(doc, json_path)}")
    status = 0
    if plot_path:
        try:
            print(f"plot written to {plot(doc, plot_path)}")
        except PlotUnavailable as exc:
            print(f"parallel-runtime bench: no plot: {exc}", file=sys.stderr)
            status = 3
    if doc["environment"]["suite"]["errors"]:
        status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.bench")
    configure_parser(parser)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
