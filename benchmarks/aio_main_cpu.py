"""Main-side CPU per call of ``runtime.aio.run_sync`` against ``anyio.to_process.run_sync``.

Usage: python benchmarks/aio_main_cpu.py [TASKS] [CALLS] [ROUNDS]
(defaults: 16 tasks, 300 calls per task for runtime, half as many for anyio, 5 rounds).

The shape of a server that offloads one job per request: TASKS asyncio tasks, each
awaiting tiny calls one after the other. Measured per thread (``runtime.bench.cpu``: every
thread in ``/proc/self/task``, each by its own CPU-time clock, in nanoseconds):
the CPU of every thread of this process except the workers (runtime's worker threads,
anyio's worker threads), that is the event loop plus any helper thread, divided by the
calls made. Median of ROUNDS; both peers in one process, on one loop.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import threading
import time

import anyio.to_process

import runtime.aio
from runtime.bench.cpu import main_side_us, thread_cpu_ns
from runtime.bench.workloads import tiny

_WORKERS = ("runtime-interp-worker-", "runtime-thread-worker-", "AnyIO worker thread")


def _worker_tids() -> set[int]:
    return {
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith(_WORKERS) and t.native_id is not None
    }


async def _run(call: object, tasks: int, calls: int) -> None:
    async def one() -> None:
        for i in range(calls):
            await call(tiny, i)  # type: ignore[operator]

    await asyncio.gather(*[one() for _ in range(tasks)])


async def _measure(call: object, tasks: int, calls: int, rounds: int) -> tuple[float, float]:
    await _run(call, tasks, 20)  # warm up: workers started, workload imported
    cpu, wall = [], []
    for _ in range(rounds):
        workers = _worker_tids()
        before = thread_cpu_ns()
        start = time.perf_counter()
        await _run(call, tasks, calls)
        elapsed = time.perf_counter() - start
        used = main_side_us(before, thread_cpu_ns(), workers, tasks * calls)
        if used is None:
            raise SystemExit("this system does not show its threads' CPU time (/proc/self/task)")
        cpu.append(used)
        wall.append(elapsed / (tasks * calls) * 1e6)
    return statistics.median(cpu), statistics.median(wall)


async def main() -> None:
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    theirs = await _measure(anyio.to_process.run_sync, tasks, max(1, calls // 2), rounds)
    ours = await _measure(runtime.aio.run_sync, tasks, calls, rounds)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {tasks} tasks awaiting tiny calls, "
        f"median of {rounds}"
    )
    print(
        f"  anyio.to_process.run_sync  main CPU {theirs[0]:6.1f} µs/call  wall {theirs[1]:6.1f} µs/call"
    )
    print(
        f"  runtime.aio.run_sync       main CPU {ours[0]:6.1f} µs/call  wall {ours[1]:6.1f} µs/call"
    )
    # The kernel counts thread CPU in clock ticks (10 ms): too few calls may measure none.
    ratio = (
        f"{ours[0] / theirs[0]:.2f}" if theirs[0] else "n/a (too few calls to measure; raise CALLS)"
    )
    print(f"  main CPU per call, runtime / anyio.to_process: {ratio}")


if __name__ == "__main__":
    asyncio.run(main())
