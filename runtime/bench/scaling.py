"""The scaling curve, meant to run once on a many-core machine (no network needed).

    python -m runtime.bench.scaling OUTDIR [--workers 1,2,4,8,16] [--budget 330]

Measures ``runtime.Executor`` (subinterpreter, thread, process) against ``ProcessPoolExecutor``
(fork, forkserver, spawn) and ``InterpreterPoolExecutor`` at each worker count: a pure-Python
CPU-bound workload (fib), a GIL-releasing one (zlib), tiny tasks, start-up, memory and latency.
Writes ``OUTDIR/scaling.json`` (the same schema as ``parallel-runtime bench --json``) and
``OUTDIR/scaling.png`` (when matplotlib is installed; otherwise re-draw it anywhere with
``python -m runtime.bench.scaling --replot OUTDIR/scaling.json``). Only the standard library,
``runtime`` and the interpreters backport are needed. A wall-clock budget (default 330 s) stops
starting new rounds, so the run stays under 6 minutes even on a slower machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .peers import select_peers
from .report import PlotUnavailable, plot, validate_document, write_json
from .runner import LATENCY, STARTUP, WORKLOADS, Config, count_steps, run

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "scaling_config"]

SCALING_PEERS = (
    "runtime-subinterpreter",
    "runtime-thread",
    "runtime-process",
    "process-fork",
    "process-forkserver",
    "process-spawn",
    "interp-pool",
)
# Enough tasks that 16 workers each get several (load balance), few enough for the budget.
SCALING_COUNTS = {"fib": 128, "zlib": 64, "tiny": 5000}


def scaling_config(workers: Sequence[int], repeats: int, budget_s: float | None) -> Config:
    by_name = {w.name: w for w in WORKLOADS}
    batch = [dataclasses.replace(by_name[name], count=n) for name, n in SCALING_COUNTS.items()]
    return Config(
        workers=sorted(set(workers)),
        peers=select_peers(list(SCALING_PEERS)),
        workloads=batch,
        special=[STARTUP, LATENCY],
        repeats=repeats,
        scale=1.0,
        latency_samples=300,
        budget_s=budget_s,
    )


def _replot(json_path: Path) -> int:
    doc = json.loads(json_path.read_text())
    validate_document(doc)
    target = json_path.with_suffix(".png")
    print(f"plot written to {plot(doc, target, title=_title(doc))}")
    return 0


def _title(doc: dict[str, object]) -> str:
    env = doc["environment"]
    assert isinstance(env, dict)
    cpus = env.get("usable_cpus") or env.get("cpu_count")
    return f"Scaling · Python {env.get('python')} · {cpus} CPUs · {env.get('cpu_model') or env.get('machine')}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.bench.scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("outdir", type=Path, help="directory for scaling.json and scaling.png")
    parser.add_argument("--workers", default="1,2,4,8,16", help="comma-separated worker counts")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, if the budget allows")
    parser.add_argument(
        "--budget", type=float, default=330.0, help="seconds; no new round after it"
    )
    parser.add_argument(
        "--replot", action="store_true", help="OUTDIR is a scaling.json: draw its PNG"
    )
    args = parser.parse_args(argv)
    if args.replot:
        return _replot(args.outdir)

    config = scaling_config(
        [int(w) for w in args.workers.split(",") if w], args.repeats, args.budget
    )
    total = count_steps(config)
    done = 0
    started = time.perf_counter()

    def step(label: str) -> None:
        nonlocal done
        done += 1
        if done % 10 == 0 or done == total:
            print(f"[{time.perf_counter() - started:6.1f} s] {done}/{total} {label}", flush=True)

    doc = run(config, step)
    args.outdir.mkdir(parents=True, exist_ok=True)
    print(f"JSON written to {write_json(doc, args.outdir / 'scaling.json')}")
    try:
        print(f"plot written to {plot(doc, args.outdir / 'scaling.png', title=_title(doc))}")
    except PlotUnavailable as exc:
        print(
            f"no plot here ({exc}); later: python -m runtime.bench.scaling --replot {args.outdir / 'scaling.json'}"
        )
    try:
        from .report import render_table

        render_table(doc)
    except ImportError:
        pass
    suite = doc["environment"]["suite"]
    for err in suite["errors"]:
        print(
            f"FAILED {err['peer']} [{err['backend']}] x{err['workers']}: {err['error']}",
            file=sys.stderr,
        )
    print(f"done in {time.perf_counter() - started:.0f} s, {suite['repeats']} rounds")
    return 1 if suite["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
