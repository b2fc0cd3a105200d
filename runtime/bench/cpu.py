"""CPU time per thread of this process: the caller's side of a call, apart from the workers'.

A pool in this process (threads, subinterpreters) spends CPU in two places: the worker
threads that run the jobs, and the *main side* — the calling thread, an event loop, the
pool's helper threads (hub, management, result handler) — that submits, pickles and
completes. For an async server the main side is the bottleneck: it competes with the
event loop. The figure here is the main side's CPU per call: every thread of this
process except the session's workers, identified by native thread id (their names are
cut to 15 characters by the kernel, so names cannot tell them apart reliably).

Linux only. The threads are listed from ``/proc/self/task``; each one's CPU time is read
from its own CPU-time clock (``clock_gettime`` on the clock id Linux derives from a thread
id, as glibc's ``pthread_getcpuclockid`` does: nanoseconds), else from
``/proc/self/task/<tid>/schedstat`` (nanoseconds, where the kernel keeps it), else from
``/proc/self/task/<tid>/stat`` (clock ticks: 10 ms, so a figure per call is only as good as
10 ms divided by the calls made). Threads that end during the measurement take their CPU
time with them; the sessions measured keep theirs alive.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["main_side_us", "thread_cpu_ns"]

_TASKS = "/proc/self/task"


def _thread_clock(tid: int) -> int:
    """The CPU-time clock id of thread ``tid`` of this process (Linux's MAKE_THREAD_CPUCLOCK)."""
    return ((~tid) << 3) | 6  # CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED


def _read_ns(tid: str) -> int | None:
    try:
        return time.clock_gettime_ns(_thread_clock(int(tid)))
    except (OSError, ValueError, OverflowError, AttributeError):
        pass  # the thread ended, or no such clock here
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
