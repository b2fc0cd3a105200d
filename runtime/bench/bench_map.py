"""Lazy ``Executor.map(buffersize=...)``: resident memory and per-item cost over millions of items.

    python -m runtime.bench.bench_map [--quick] [--n 10000000] [--workers 2] [--json PATH]

Each measurement runs in a fresh child process (so one run's heap cannot hide or
inflate another's) and maps the cheap ``tiny`` workload over a generator, summing
the results as they come. It reports, as the median of ``--repeats`` runs:

* ``µs/item``: wall time of the whole map divided by the item count;
* ``RSS growth``: the calling process's peak resident memory while mapping, minus
  its resident memory just before (executor started, workers warm). Workers of the
  process backend and of ProcessPoolExecutor live in other processes; their memory
  is not counted (it does not grow with the input either way).

Rows:

* ``runtime lazy`` at ``--n`` (10 million) and at ``--small-n``: ``chunksize`` x
  ``buffersize`` items in flight, the input read as results are taken. Its RSS
  growth should not change with N: that is the point.
* ``runtime eager`` at ``--small-n`` (the whole input read first, auto chunking):
  today's default, the per-item cost the lazy map should keep.
* ``ProcessPoolExecutor`` (Python 3.14: ``map(..., chunksize, buffersize)``) at
  ``--small-n``, and ``InterpreterPoolExecutor`` (3.14; its map ignores
  ``chunksize``: one future per item) at ``--peer-n``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from runtime.bench.workloads import tiny

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_SAMPLE_EVERY = 1 << 15  # items between RSS samples


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(make: Callable[[], Iterator[int]], n: int) -> tuple[float, int]:
    """Call ``make()`` (the map call: eager maps submit everything there) and sum its results.

    Returns (seconds for the whole map, peak RSS growth in bytes), sampling RSS as it goes.
    """
    base = rss_bytes()
    start = time.perf_counter()
    results = make()
    peak = max(base, rss_bytes())
    total = count = 0
    for value in results:
        total += value
        count += 1
        if count % _SAMPLE_EVERY == 0:
            peak = max(peak, rss_bytes())
    seconds = time.perf_counter() - start
    peak = max(peak, rss_bytes())
    if count != n or total != n * (n + 1) // 2:
        raise AssertionError(f"wrong results: {count} items, sum {total}")
    return seconds, peak - base


def run_variant(
    variant: str, n: int, workers: int, backend: str, chunksize: int, buffersize: int
) -> dict[str, Any]:
    """One measurement in this process (called in a child by :func:`main`)."""
    if variant in ("runtime-lazy", "runtime-eager"):
        import runtime

        ex: Any = runtime.Executor(workers, backend=backend)
    elif variant == "ProcessPoolExecutor":
        import concurrent.futures as cf

        ex = cf.ProcessPoolExecutor(workers)
    elif variant == "InterpreterPoolExecutor":
        import concurrent.futures as cf

        ex = cf.InterpreterPoolExecutor(workers)  # type: ignore[attr-defined]
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    with ex:
        list(ex.map(tiny, range(workers * 64)))  # warm: every worker up and importing tiny
        if variant == "runtime-eager":
            seconds, growth = _measure(lambda: ex.map(tiny, range(n)), n)
        elif variant == "InterpreterPoolExecutor":
            seconds, growth = _measure(
                lambda: ex.map(tiny, iter(range(n)), buffersize=buffersize), n
            )
        else:
            seconds, growth = _measure(
                lambda: ex.map(tiny, iter(range(n)), chunksize=chunksize, buffersize=buffersize), n
            )
    return {
        "variant": variant,
        "n": n,
        "us_per_item": seconds / n * 1e6,
        "rss_growth_mb": growth / 2**20,
    }


def _child(args: argparse.Namespace, variant: str, n: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "runtime.bench.bench_map",
        "--one",
        variant,
        "--n",
        str(n),
        "--workers",
        str(args.workers),
        "--backend",
        args.backend,
        "--chunksize",
        str(args.chunksize),
        "--buffersize",
        str(args.buffersize),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} (n={n}) failed:\n{out.stderr}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def _median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        **rows[0],
        "us_per_item": statistics.median(r["us_per_item"] for r in rows),
        "rss_growth_mb": statistics.median(r["rss_growth_mb"] for r in rows),
        "repeats": len(rows),
    }


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(label, variant, n) rows to measure."""
    rows = [
        (f"runtime lazy [{args.backend}]", "runtime-lazy", args.n),
        (f"runtime lazy [{args.backend}]", "runtime-lazy", args.small_n),
        (f"runtime eager [{args.backend}]", "runtime-eager", args.small_n),
    ]
    if sys.version_info >= (3, 14):
        rows.append(("ProcessPoolExecutor", "ProcessPoolExecutor", args.small_n))
        rows.append(("InterpreterPoolExecutor", "InterpreterPoolExecutor", args.peer_n))
    return rows


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"lazy map benchmark — Python {doc['python']}, {doc['workers']} workers, "
        f"chunksize {doc['chunksize']}, buffersize {doc['buffersize']}, workload tiny(x) = x + 1",
        "",
        f"{'peer':<34} {'items':>11} {'µs/item':>9} {'RSS growth MB':>14}",
    ]
    for row in doc["rows"]:
        lines.append(
            f"{row['label']:<34} {row['n']:>11,} {row['us_per_item']:>9.3f} {row['rss_growth_mb']:>14.1f}"
        )
    r = doc["ratios"]
    lines += [
        "",
        f"lazy vs eager per item (same N, lower is better): {r['lazy_vs_eager_us']:.2f}x",
        f"lazy RSS growth, {doc['n']:,} vs {doc['small_n']:,} items: "
        f"{r['lazy_rss_big_mb']:.1f} MB vs {r['lazy_rss_small_mb']:.1f} MB",
        f"eager RSS growth at {doc['small_n']:,} items: {r['eager_rss_mb']:.1f} MB",
    ]
    if "lazy_vs_processpool_us" in r:
        lines.append(
            f"runtime lazy vs ProcessPoolExecutor(buffersize) per item: {r['lazy_vs_processpool_us']:.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.bench.bench_map", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1M/200k/20k items, 1 repeat")
    parser.add_argument("--n", type=int, default=None, help="items of the big lazy run (10M)")
    parser.add_argument(
        "--small-n", type=int, default=None, help="items of the eager/peer runs (1M)"
    )
    parser.add_argument(
        "--peer-n", type=int, default=None, help="items for InterpreterPoolExecutor (100k)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--chunksize", type=int, default=1024)
    parser.add_argument("--buffersize", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="child runs per row (3; 1 quick)")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one variant here
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (1_000_000 if quick else 10_000_000)
    args.small_n = args.small_n or (200_000 if quick else 1_000_000)
    args.peer_n = args.peer_n or (20_000 if quick else 100_000)
    repeats = args.repeats or (1 if quick else 3)
    if args.one:
        row = run_variant(
            args.one, args.n, args.workers, args.backend, args.chunksize, args.buffersize
        )
        print(json.dumps(row))
        return 0
    rows = []
    for label, variant, n in plan(args):
        print(f"  {label} n={n:,} ...", file=sys.stderr, flush=True)
        rows.append(
            {**_median_row([_child(args, variant, n) for _ in range(repeats)]), "label": label}
        )
    by = {(r["variant"], r["n"]): r for r in rows}
    lazy_big, lazy_small = by[("runtime-lazy", args.n)], by[("runtime-lazy", args.small_n)]
    eager = by[("runtime-eager", args.small_n)]
    ratios = {
        "lazy_vs_eager_us": lazy_small["us_per_item"] / eager["us_per_item"],
        "lazy_rss_big_mb": lazy_big["rss_growth_mb"],
        "lazy_rss_small_mb": lazy_small["rss_growth_mb"],
        "eager_rss_mb": eager["rss_growth_mb"],
    }
    pool = by.get(("ProcessPoolExecutor", args.small_n))
    if pool is not None:
        ratios["lazy_vs_processpool_us"] = lazy_small["us_per_item"] / pool["us_per_item"]
    doc = {
        "python": platform.python_version(),
        "workers": args.workers,
        "backend": args.backend,
        "chunksize": args.chunksize,
        "buffersize": args.buffersize,
        "n": args.n,
        "small_n": args.small_n,
        "repeats": repeats,
        "rows": rows,
        "ratios": ratios,
    }
    print(render(doc))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
