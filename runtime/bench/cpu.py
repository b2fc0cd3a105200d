"""CPU time per thread of this process: the caller's side of a call, apart from the workers'.

A pool in this process (threads, subinterpreters) spends CPU in two places: the worker
threads that run the jobs, and the *main side* — the calling thread, an event loop, the
pool's helper threads (hub, management, result handler) — that submits, pickles and
completes. For an async server the main side is the bottleneck: it competes with the
event loop. The figure here is the main side's CPU per call: every thread of this
process except the session's workers, identified by native thread id (their names are
cut to 15 characters by the kernel, so names cannot tell them apart reliably).

Linux only: ``/proc/self/task/<tid>/schedstat`` (nanoseconds), falling back to
``/proc/self/task/<tid>/stat`` (clock ticks). Threads that end during the measurement
take their CPU time with them; the sessions measured keep theirs alive.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["main_side_us", "thread_cpu_ns"]

_TASKS = "/proc/self/task"


def _read_ns(tid: str) -> int | None:
    try:
        with open(f"{_TASKS}/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"{_TASKS}/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def thread_cpu_ns() -> dict[int, int] | None:
    """CPU time of every thread of this process, by native thread id; None where unknown."""
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return None
    times: dict[int, int] = {}
    for tid in tids:
        ns = _read_ns(tid)
        if ns is not None:
            times[int(tid)] = ns
    return times


def main_side_us(
    before: dict[int, int] | None,
    after: dict[int, int] | None,
    workers: Collection[int],
    calls: int,
) -> float | None:
    """CPU µs per call of the threads that are not ``workers``, between two snapshots."""
    if before is None or after is None or calls <= 0:
        return None
    spent = sum(ns - before.get(tid, 0) for tid, ns in after.items() if tid not in workers)
    return max(0.0, spent / calls / 1e3)
