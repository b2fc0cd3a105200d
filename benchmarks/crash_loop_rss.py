"""Resident memory of a crash loop: a Pool whose task always raises, restarted N times.

Usage: python benchmarks/crash_loop_rss.py [RESTARTS] [BACKEND] [FRESH_WORKERS]
(defaults: 10000, subinterpreter, auto). Prints one line: Python, backend, the
policy's fresh-worker budget, restarts, distinct workers used, RSS growth and time.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
import warnings

import runtime


class AlwaysFails(runtime.Task):
    def run(self) -> None:
        raise ValueError("always")


WORKERS: set[int] = set()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    restarts = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    backend = sys.argv[2] if len(sys.argv) > 2 else "subinterpreter"
    fresh: int | str | None = sys.argv[3] if len(sys.argv) > 3 else "auto"
    if fresh not in ("auto", "none"):
        fresh = int(fresh)  # type: ignore[arg-type]
    elif fresh == "none":
        fresh = None
    logging.basicConfig(level=logging.CRITICAL)  # one traceback per restart otherwise
    warnings.simplefilter("ignore")
    policy = runtime.RestartPolicy(
        max_restarts=restarts // 2, within=10**9, backoff=0, fresh_workers=fresh
    )  # type: ignore[arg-type]
    before = _rss_mb()
    started = time.perf_counter()
    report = runtime.Pool(AlwaysFails(), workers=2, backend=backend, restart=policy).run()
    elapsed = time.perf_counter() - started
    from runtime._common import next_worker_id

    used = next_worker_id() - 1
    print(
        f"python={platform.python_version()} backend={backend} "
        f"fresh_workers={policy.fresh_worker_budget(backend)} restarts={report.restarts} "
        f"workers_started={used} rss_growth_mb={_rss_mb() - before:.1f} seconds={elapsed:.1f}"
    )


if __name__ == "__main__":
    main()
