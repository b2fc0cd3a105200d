"""runtime.aio against anyio's own worker verbs, in one run on one event loop.

    python -m runtime.bench.bench_aio [--quick] [--loop asyncio|trio] [--workers N] [--json PATH]

Measurements per peer, each the median of ``--repeats`` runs:

* ``seq``: per-call time of ``await run(tiny, i)`` awaited one after the other
  (the full round trip: submit, worker, result, event-loop wake-up), and the **main
  side's CPU per call** meanwhile (every thread of this process but the workers':
  the event loop and helper threads; ``runtime.bench.cpu``);
* ``conc``: per-call time (and main-side CPU) when ``--conc`` such calls are in flight
  at once (one task each; the overhead that remains when the pipeline is full);
* ``map``: per-item time of the batch helper over ``--conc`` tiny items (``ex.map`` for
  runtime, which ships items in chunks; a task group of ``run_sync`` calls for anyio);
* ``cpu``: wall time of a CPU-bound batch (``fib(n)`` x count) through the batch helper
  (``ex.map`` for runtime, a task group of ``run_sync`` calls for anyio).

Peers: ``runtime.aio`` on each available backend (an ``open_executor`` and the
default executor of ``runtime.aio.run_sync``), ``anyio.to_interpreter.run_sync``
(Python 3.13+), ``anyio.to_process.run_sync`` and ``anyio.to_thread.run_sync``, all
limited to ``--workers`` workers.
``anyio.to_interpreter`` polls its result queue, so it gets fewer calls (its per-call
figure is still a per-call figure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

import runtime
import runtime.aio
from runtime.bench.cpu import main_side_us, thread_cpu_ns
from runtime.bench.workloads import fib, tiny

# Threads that run the jobs (runtime's workers, anyio's worker threads); the rest of the
# process is the main side. Names as set in Python (the kernel's copies are cut short).
_WORKER_THREADS = ("runtime-interp-worker-", "runtime-thread-worker-", "AnyIO worker thread")


def _worker_tids() -> set[int]:
    return {
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith(_WORKER_THREADS) and t.native_id is not None
    }


Call = Callable[[Callable[..., Any], Any], Awaitable[Any]]
Batch = Callable[[Callable[..., Any], Sequence[Any]], Awaitable[list[Any]]]


@dataclass(frozen=True)
class Sizes:
    seq: int
    conc: int
    fib_n: int
    fib_count: int
    repeats: int
    slow_divisor: int  # fewer calls for a peer that polls


QUICK = Sizes(seq=300, conc=1000, fib_n=25, fib_count=8, repeats=3, slow_divisor=20)
FULL = Sizes(seq=3000, conc=10000, fib_n=27, fib_count=16, repeats=5, slow_divisor=40)


@dataclass
class Peer:
    name: str
    open: Callable[[int], contextlib.AbstractAsyncContextManager[tuple[Call, Batch]]]
    slow: bool = False


# ---------------------------------------------------------------------- peers
def _runtime_peer(backend: str) -> Peer:
    @contextlib.asynccontextmanager
    async def open_(workers: int) -> AsyncIterator[tuple[Call, Batch]]:
        async with runtime.aio.open_executor(workers=workers, backend=backend) as ex:
            yield ex.run, ex.map

    return Peer(f"runtime.aio[{backend}]", open_)


def _run_sync_peer(backend: str) -> Peer:
    @contextlib.asynccontextmanager
    async def open_(workers: int) -> AsyncIterator[tuple[Call, Batch]]:
        runtime.aio.configure_default_executor(workers=workers, backend=backend)
        limiter = anyio.CapacityLimiter(workers)

        async def call(fn: Callable[..., Any], arg: Any) -> Any:
            return await runtime.aio.run_sync(fn, arg, limiter=limiter)

        async def batch(fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
            return await _task_group_map(call, fn, items)

        try:
            yield call, batch
        finally:
            await runtime.aio.aclose_default_executor()

    return Peer(f"runtime.aio.run_sync[{backend}]", open_)


async def _task_group_map(call: Call, fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
    results: list[Any] = [None] * len(items)

    async def one(index: int, item: Any) -> None:
        results[index] = await call(fn, item)

    async with anyio.create_task_group() as tg:
        for index, item in enumerate(items):
            tg.start_soon(one, index, item)
    return results


def _anyio_peer(module: str) -> Peer:
    @contextlib.asynccontextmanager
    async def open_(workers: int) -> AsyncIterator[tuple[Call, Batch]]:
        import importlib

        run_sync = importlib.import_module(f"anyio.{module}").run_sync
        limiter = anyio.CapacityLimiter(workers)

        async def call(fn: Callable[..., Any], arg: Any) -> Any:
            return await run_sync(fn, arg, limiter=limiter)

        async def batch(fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
            return await _task_group_map(call, fn, items)

        try:
            yield call, batch
        finally:
            await _release_anyio_workers(module)

    return Peer(f"anyio.{module}", open_, slow=module == "to_interpreter")


async def _release_anyio_workers(module: str) -> None:
    """Stop anyio's cached workers now, so the next peer runs on a quiet machine."""
    if module == "to_process":
        from anyio import to_process

        with contextlib.suppress(LookupError, AttributeError):
            processes = to_process._process_pool_workers.get()
            for process in list(processes):
                with contextlib.suppress(Exception):
                    process.kill()
                    await process.aclose()
                processes.discard(process)
            to_process._process_pool_idle_workers.get().clear()
    elif module == "to_interpreter":
        from anyio import to_interpreter

        with contextlib.suppress(LookupError, AttributeError):
            to_interpreter._stop_workers(to_interpreter._idle_workers.get())


def build_peers() -> tuple[list[Peer], dict[str, str]]:
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    caps = runtime.capabilities()
    for backend in ("subinterpreter", "thread", "process"):
        if backend == "subinterpreter" and (not caps.subinterpreters or sys.version_info < (3, 13)):
            skipped["runtime.aio[subinterpreter]"] = "needs Python 3.13+ own-GIL interpreters"
            continue
        peers.append(_runtime_peer(backend))
        peers.append(_run_sync_peer(backend))
    if sys.version_info >= (3, 13):
        peers.append(_anyio_peer("to_interpreter"))
    else:
        skipped["anyio.to_interpreter"] = "needs Python 3.13+"
    peers.append(_anyio_peer("to_process"))
    peers.append(_anyio_peer("to_thread"))
    return peers, skipped


# ---------------------------------------------------------------------- measurements
async def _seq(call: Call, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        await call(tiny, i)
    return (time.perf_counter() - start) / count


async def _conc(call: Call, count: int) -> float:
    async def one(i: int) -> None:
        await call(tiny, i)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return (time.perf_counter() - start) / count


async def _map(batch: Batch, count: int) -> float:
    start = time.perf_counter()
    results = await batch(tiny, range(count))
    elapsed = time.perf_counter() - start
    if results != list(range(1, count + 1)):
        raise AssertionError("wrong map results")
    return elapsed / count


async def _cpu(batch: Batch, n: int, count: int) -> float:
    start = time.perf_counter()
    results = await batch(fib, [n] * count)
    elapsed = time.perf_counter() - start
    if results != [fib(n)] * count:
        raise AssertionError("wrong fib results")
    return elapsed


async def _with_cpu(run: Callable[[], Awaitable[float]], calls: int, cpu: list[float]) -> float:
    """``await run()``, appending the main side's CPU µs per call to ``cpu``."""
    workers = _worker_tids()
    before = thread_cpu_ns()
    per_call = await run()
    spent = main_side_us(before, thread_cpu_ns(), workers, calls)
    if spent is not None:
        cpu.append(spent)
    return per_call


async def measure(peer: Peer, workers: int, sizes: Sizes) -> dict[str, Any]:
    div = sizes.slow_divisor if peer.slow else 1
    seq_n = max(5, sizes.seq // div)
    conc_n = max(10, sizes.conc // div)
    seq_cpu: list[float] = []
    conc_cpu: list[float] = []
    async with peer.open(workers) as (call, batch):
        # Warm up: every worker started and imported the workloads.
        await _conc(call, workers * 4)
        seq = [
            await _with_cpu(lambda: _seq(call, seq_n), seq_n, seq_cpu) for _ in range(sizes.repeats)
        ]
        conc = [
            await _with_cpu(lambda: _conc(call, conc_n), conc_n, conc_cpu)
            for _ in range(sizes.repeats)
        ]
        mapped = [await _map(batch, conc_n) for _ in range(sizes.repeats)]
        cpu = [await _cpu(batch, sizes.fib_n, sizes.fib_count) for _ in range(sizes.repeats)]
    return {
        "seq_us": statistics.median(seq) * 1e6,
        "conc_us": statistics.median(conc) * 1e6,
        "seq_main_cpu_us": statistics.median(seq_cpu) if seq_cpu else None,
        "conc_main_cpu_us": statistics.median(conc_cpu) if conc_cpu else None,
        "map_us": statistics.median(mapped) * 1e6,
        "cpu_s": statistics.median(cpu),
        "calls": {"seq": seq_n, "conc": conc_n},
    }


async def _serial_cpu(sizes: Sizes) -> float:
    await anyio.lowlevel.checkpoint()
    start = time.perf_counter()
    for _ in range(sizes.fib_count):
        fib(sizes.fib_n)
    return time.perf_counter() - start


async def run_all(workers: int, sizes: Sizes, only: Sequence[str] | None) -> dict[str, Any]:
    peers, skipped = build_peers()
    if only:
        peers = [p for p in peers if any(token in p.name for token in only)]
    results: dict[str, Any] = {}
    for peer in peers:
        print(f"  {peer.name} ...", file=sys.stderr, flush=True)
        results[peer.name] = await measure(peer, workers, sizes)
    serial = statistics.median([await _serial_cpu(sizes) for _ in range(sizes.repeats)])
    return {"results": results, "skipped": skipped, "serial_cpu_s": serial}


# ---------------------------------------------------------------------- report
def _ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    base = results.get("anyio.to_process")
    if base is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, row in results.items():
        if not name.startswith("runtime.aio"):
            continue
        out[name] = {
            "seq_vs_to_process": base["seq_us"] / row["seq_us"],
            "conc_vs_to_process": base["conc_us"] / row["conc_us"],
            # anyio has no batch verb: its best per-call figure is a full task group.
            "map_vs_to_process": min(base["conc_us"], base["map_us"]) / row["map_us"],
            "cpu_vs_to_process": base["cpu_s"] / row["cpu_s"],
        }
        # Main-side CPU per call, as a fraction of anyio.to_process's (lower is better).
        for phase in ("seq", "conc"):
            mine, theirs = row.get(f"{phase}_main_cpu_us"), base.get(f"{phase}_main_cpu_us")
            if mine is not None and theirs:
                out[name][f"{phase}_main_cpu_over_to_process"] = mine / theirs
    return out


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"runtime.aio benchmark — Python {doc['python']}, loop {doc['loop']}, "
        f"{doc['workers']} workers, {doc['cpu_count']} CPUs, {doc['mode']}",
        "",
        f"{'peer':<34} {'seq µs/call':>12} {'conc µs/call':>13} {'map µs/item':>12} {'cpu batch s':>12}"
        f" {'main CPU µs seq':>16} {'conc':>6}",
    ]

    def cpu(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for name, row in doc["results"].items():
        lines.append(
            f"{name:<34} {row['seq_us']:>12.1f} {row['conc_us']:>13.1f} {row['map_us']:>12.1f}"
            f" {row['cpu_s']:>12.3f} {cpu(row.get('seq_main_cpu_us')):>16}"
            f" {cpu(row.get('conc_main_cpu_us')):>6}"
        )
    lines.append(
        f"{'serial (no workers)':<34} {'':>12} {'':>13} {'':>12} {doc['serial_cpu_s']:>12.3f}"
    )
    if doc["ratios"]:
        lines += ["", "speed-up over anyio.to_process (higher is better; target ≥ 10x per call):"]
        for name, r in doc["ratios"].items():
            lines.append(
                f"  {name:<32} seq {r['seq_vs_to_process']:6.1f}x   conc {r['conc_vs_to_process']:6.1f}x"
                f"   map {r['map_vs_to_process']:6.1f}x   cpu batch {r['cpu_vs_to_process']:5.2f}x"
            )
        lines += [
            "",
            "main-side CPU per call over anyio.to_process's (lower is better; target <= 0.5):",
        ]
        for name, r in doc["ratios"].items():
            if "seq_main_cpu_over_to_process" in r:
                lines.append(
                    f"  {name:<32} seq {r['seq_main_cpu_over_to_process']:5.2f}"
                    f"   conc {r.get('conc_main_cpu_over_to_process', float('nan')):5.2f}"
                )
    for name, why in doc["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.bench.bench_aio", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="override the number of repeats")
    parser.add_argument("--only", nargs="*", help="run only peers whose name contains one of these")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    doc: dict[str, Any] = {
        "python": platform.python_version(),
        "loop": args.loop,
        "workers": args.workers,
        "cpu_count": runtime.capabilities().cpu_count,
        "mode": "quick" if args.quick else "full",
        "sizes": sizes.__dict__,
    }
    doc.update(anyio.run(run_all, args.workers, sizes, args.only, backend=args.loop))
    doc["ratios"] = _ratios(doc["results"])
    print(render(doc))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
