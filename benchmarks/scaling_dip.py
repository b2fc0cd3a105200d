"""Why did subinterpreters dip at 8 workers on 16 CPUs? A focused re-measurement.

    python benchmarks/scaling_dip.py OUT.json [--workers 4,6,8,10,12,16] [--repeats 5] [--budget 150]

The scaling run of an earlier round (``benchmarks/results/scaling-16cpu-py3.12.3.*``) measured
recursive fib(25) x 128 at 6.1x serial for ``runtime.Executor`` on subinterpreters at 8 workers,
against 6.8-7.9x for process pools, while 4 and 16 workers were level. Three explanations are
told apart here, each by a variant measured in the same interleaved rounds:

* **chunk granularity**: the executor's ``map`` chunks 128 items into 2-item chunks at 8
  workers, ProcessPoolExecutor sends single items. Variant ``subinterp-chunk1`` maps with
  ``chunksize=1`` and ``buffersize`` (no auto-chunking); ``-x512`` variants use 4x more items.
* **placement on SMT siblings**: subinterpreter workers are threads of one process; if the
  scheduler packs them onto hyperthread siblings while it spreads processes, 8 threads on
  16 logical CPUs (8 cores x 2) run at SMT speed. Variant ``subinterp-pinned`` pins each
  worker to its own physical core in its bootstrap.
* **noise**: every variant runs in every round, interleaved; the JSON keeps every sample, and
  the table prints median and min-max.

Only the standard library and ``runtime`` are needed (no network), so it runs on a bare machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runtime
from runtime.bench.workloads import fib

N = 25


def topology() -> dict[str, Any]:
    """Logical CPUs usable here, grouped by physical core (from /sys)."""
    cores: dict[tuple[str, str], list[int]] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = (
                (base / "physical_package_id").read_text().strip(),
                (base / "core_id").read_text().strip(),
            )
        except OSError:
            key = ("0", str(cpu))
        cores.setdefault(key, []).append(cpu)
    groups = list(cores.values())
    # One logical CPU per physical core first, then the siblings.
    order = [g[0] for g in groups] + [c for g in groups for c in g[1:]]
    return {"logical": len(order), "physical": len(groups), "order": order, "groups": groups}


def pin(worker: Any) -> None:
    """Bootstrap: pin this worker's thread to one CPU, physical cores first (order in DIP_CPUS)."""
    cpus = [int(c) for c in os.environ["DIP_CPUS"].split(",")]
    os.sched_setaffinity(0, {cpus[worker.id % len(cpus)]})


def _serial_seconds(repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fib(N)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _run_runtime(workers: int, count: int, backend: str, chunk1: bool, bootstrap: Any) -> float:
    with runtime.Executor(workers, backend=backend, bootstrap=bootstrap) as ex:
        list(ex.map(fib, [20] * workers * 2))  # warm: every worker booted and has fib loaded
        t = time.perf_counter()
        if chunk1:
            out = list(ex.map(fib, [N] * count, chunksize=1, buffersize=workers * 4))
        else:
            out = list(ex.map(fib, [N] * count))
        elapsed = time.perf_counter() - t
    assert len(out) == count
    return elapsed


def _run_pool(workers: int, count: int, method: str) -> float:
    ctx = multiprocessing.get_context(method)
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        list(ex.map(fib, [20] * workers * 2))
        t = time.perf_counter()
        out = list(ex.map(fib, [N] * count))
        elapsed = time.perf_counter() - t
    assert len(out) == count
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", default="4,6,8,10,12,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds; no new round after")
    args = parser.parse_args()
    topo = topology()
    counts = [int(w) for w in args.workers.split(",") if w and int(w) <= topo["logical"]]
    sub = "subinterpreter" if runtime.capabilities().subinterpreters else None
    variants: dict[str, Any] = {
        "process-fork": lambda w, c: _run_pool(w, c, "fork"),
        "runtime-process": lambda w, c: _run_runtime(w, c, "process", False, None),
    }
    if sub:
        os.environ["DIP_CPUS"] = ",".join(map(str, topo["order"]))
        pinned = pin
        variants |= {
            "subinterp": lambda w, c: _run_runtime(w, c, sub, False, None),
            "subinterp-chunk1": lambda w, c: _run_runtime(w, c, sub, True, None),
            "subinterp-pinned": lambda w, c: _run_runtime(w, c, sub, False, pinned),
        }
    samples: dict[str, list[float]] = {}
    serial: list[float] = []
    started = time.perf_counter()
    rounds = 0
    while rounds < args.repeats and (rounds == 0 or time.perf_counter() - started < args.budget):
        serial.append(_serial_seconds())
        for workers in counts:
            for count in (128, 512) if workers == 8 else (128,):
                for name, fn in variants.items():
                    key = f"{name} x{workers} n{count}"
                    elapsed = fn(workers, count)
                    samples.setdefault(key, []).append(elapsed)
        rounds += 1
        print(f"[{time.perf_counter() - started:6.1f} s] round {rounds} done", flush=True)
    one = statistics.median(serial)
    rows = []
    for key, values in samples.items():
        name, workers_s, count_s = key.split()
        count = int(count_s[1:])
        speedups = sorted(one * count / v for v in values)
        rows.append(
            {
                "variant": name,
                "workers": int(workers_s[1:]),
                "items": count,
                "speedup_median": statistics.median(speedups),
                "speedup_min": speedups[0],
                "speedup_max": speedups[-1],
                "seconds": values,
            }
        )
    doc = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "topology": topo,
        "fib_n": N,
        "serial_seconds_median": one,
        "rounds": rounds,
        "rows": rows,
    }
    args.out.write_text(json.dumps(doc, indent=1))
    print(
        f"Python {doc['python']}: {topo['logical']} logical CPUs on {topo['physical']} cores; fib({N}) = {one * 1e3:.1f} ms"
    )
    print(f"{'variant':18} {'workers':>7} {'items':>6} {'speedup':>8}  (min-max)")
    for row in sorted(rows, key=lambda r: (r["workers"], r["items"], r["variant"])):
        print(
            f"{row['variant']:18} {row['workers']:7} {row['items']:6} {row['speedup_median']:8.2f}"
            f"  ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
