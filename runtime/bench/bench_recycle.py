"""Recycling under a steady stream: does replacing workers every N jobs cost throughput?

    python -m runtime.bench.bench_recycle [--quick] [--jobs 4000] [--every 200] [--json PATH]

A steady stream of small CPU jobs (``fib`` calibrated to about ``--job-ms`` ms) goes
through ``Executor(--workers)`` as a lazy ``map`` (one job per item, ``buffersize``
items in flight), once on an executor without limits and once with
``max_tasks_per_worker=--every``, so that its workers are recycled many times during
the run. Each run uses a fresh executor, warmed before the clock starts; the two
variants alternate within each repeat so that drift on a shared machine hits both.

Reported, as the median of ``--repeats`` runs: jobs per second of each variant, their
ratio (recycling / plain; the target is >= 0.9), and the recycles performed per run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from typing import Any

import runtime
from runtime.bench.workloads import fib

__all__ = ["calibrate", "main", "run"]


def calibrate(job_ms: float) -> int:
    """The ``fib`` argument whose call takes closest to ``job_ms`` milliseconds here."""
    best, best_gap = 10, float("inf")
    for n in range(10, 30):
        start = time.perf_counter()
        for _ in range(3):
            fib(n)
        took = (time.perf_counter() - start) / 3 * 1e3
        gap = abs(took - job_ms)
        if gap < best_gap:
            best, best_gap = n, gap
        if took > job_ms:
            break
    return best


def _one_run(
    backend: str, workers: int, jobs: int, n: int, every: int | None, buffer: int
) -> tuple[float, int]:
    """Jobs per second of one stream, and the recycles it caused."""
    with runtime.Executor(workers, backend=backend, max_tasks_per_worker=every) as ex:
        ex.wait_ready(timeout=60)
        list(ex.map(fib, [n] * (4 * workers)))  # warm: imports done, caches hot
        recycled_before = sum(ex.statistics().recycled.values())
        start = time.perf_counter()
        for _ in ex.map(fib, itertools.repeat(n, jobs), chunksize=1, buffersize=buffer):
            pass
        took = time.perf_counter() - start
        recycled = sum(ex.statistics().recycled.values()) - recycled_before
    return jobs / took, recycled


def run(
    backend: str = "auto",
    workers: int = 2,
    jobs: int = 4000,
    every: int = 200,
    repeats: int = 5,
    job_ms: float = 1.0,
    buffer: int | None = None,
) -> dict[str, Any]:
    """Measure both variants; returns the figures (see the module's doc)."""
    n = calibrate(job_ms)
    buffer = buffer or 8 * workers
    plain: list[float] = []
    recycling: list[float] = []
    recycles: list[int] = []
    for _ in range(repeats):
        plain.append(_one_run(backend, workers, jobs, n, None, buffer)[0])
        rate, count = _one_run(backend, workers, jobs, n, every, buffer)
        recycling.append(rate)
        recycles.append(count)
    plain_median = statistics.median(plain)
    recycling_median = statistics.median(recycling)
    with runtime.Executor(1, backend=backend) as ex:
        chosen = ex.backend
    return {
        "python": platform.python_version(),
        "backend": chosen,
        "workers": workers,
        "jobs": jobs,
        "max_tasks_per_worker": every,
        "fib_n": n,
        "job_ms": job_ms,
        "repeats": repeats,
        "plain_jobs_per_s": plain,
        "recycling_jobs_per_s": recycling,
        "recycles_per_run": recycles,
        "plain_median": plain_median,
        "recycling_median": recycling_median,
        "ratio": recycling_median / plain_median,
        "recycles_median": statistics.median(recycles),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.bench.bench_recycle")
    parser.add_argument("--quick", action="store_true", help="1000 jobs, 3 repeats")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (default 4000)")
    parser.add_argument("--every", type=int, default=200, help="max_tasks_per_worker")
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant (default 5)")
    parser.add_argument("--job-ms", type=float, default=1.0, help="milliseconds per job")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = run(
        backend=args.backend,
        workers=args.workers,
        jobs=args.jobs or (1000 if args.quick else 4000),
        every=args.every,
        repeats=args.repeats or (3 if args.quick else 5),
        job_ms=args.job_ms,
    )
    print(
        f"Python {result['python']}, {result['backend']} x{result['workers']}, "
        f"{result['jobs']} jobs of ~{result['job_ms']} ms (fib({result['fib_n']})), "
        f"median of {result['repeats']}:\n"
        f"  plain                          {result['plain_median']:9.0f} jobs/s\n"
        f"  max_tasks_per_worker={result['max_tasks_per_worker']:<9} "
        f"{result['recycling_median']:9.0f} jobs/s, {result['recycles_median']:.0f} recycles/run\n"
        f"  ratio {result['ratio']:.3f} (target >= 0.90)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
