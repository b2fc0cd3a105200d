"""How it is measured: sessions interleaved across repeats, medians with min/max.

One *session* is one peer opened with N workers. Every session measures, in this order:

0. **first result** (a session of its own, opened just for it): the time from the constructor
   to the result of one tiny call. The ``floor`` row is what that costs with nothing but N bare
   interpreters created in parallel, one pipe round trip each (``runtime.bench.floor``);
1. **start-up**: the pool is constructed and N tasks that each hold a worker for ``WARM_DELAY``
   seconds are submitted at once; start-up is the time until all N came back, minus that delay;
2. **memory per worker**: ``(RSS growth of this process + USS of every worker process) / N``,
   read from ``/proc/<pid>/smaps_rollup`` right after start-up (heap trimmed before and after,
   so memory freed by an earlier peer is not silently reused by this one);
3. each **batch workload** (a ``map`` over its items): wall time, per-task time;
4. **latency**: sequential submit -> result round trips of a tiny task (p50/p99), and the
   **main side's CPU per call** meanwhile: every thread of this process but the session's
   workers (``runtime.bench.cpu``) — the calling thread, event loop and helper threads.

Repeats run every (workers, peer) session once per round, peers in a fresh random order each
round, so slow drift of a noisy machine spreads over all of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import SCHEMA_VERSION, workloads
from .cpu import main_side_us, thread_cpu_ns
from .peers import Peer, Session, available_peers, quiet_fork_warnings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "RESULT_FIELDS",
    "WORKLOADS",
    "Config",
    "Workload",
    "environment",
    "run",
    "select_workloads",
]

WARM_DELAY = 0.02  # seconds each start-up probe task holds its worker
PAYLOAD_BYTES = 1 << 20

RESULT_FIELDS = (
    "peer",
    "backend",
    "workload",
    "workers",
    "median_s",
    "min_s",
    "max_s",
    "speedup_vs_serial",
    "per_task_us",
    "p50_us",
    "p99_us",
    "startup_ms",
    "mem_mb_per_worker",
    "first_result_ms",
    "main_cpu_us",
)


@dataclass(frozen=True)
class Workload:
    """A batch: ``fn`` mapped over ``count(scale)`` copies of ``arg`` (or ``range`` for tiny tasks)."""

    name: str
    kind: str  # "cpu" (pure Python), "gil-free" (C code releasing the GIL), "dispatch", "payload"
    fn: Callable[[Any], Any]
    arg: Any
    count: int  # tasks at scale 1 (--quick)
    description: str
    chunksize: int = 1
    uses_hashlib: bool = False
    quick: bool = True  # part of the --quick default set

    def items(self, scale: float, cap: int | None = None) -> list[Any]:
        n = max(1, round(self.count * scale))
        if cap is not None:
            n = min(n, cap)
        if self.arg is None:
            return list(range(n))
        return [self.arg] * n


# Special, per-session measurements that are not batches; they share the --workloads namespace.
STARTUP = "startup"
LATENCY = "latency"
FIRST_RESULT = "first_result"

WORKLOADS: tuple[Workload, ...] = (
    Workload("fib", "cpu", workloads.fib, 25, 24, "recursive fib(25), pure Python"),
    Workload("nbody", "cpu", workloads.nbody, 3000, 16, "n-body, 3000 steps, pure Python"),
    Workload(
        "zlib",
        "gil-free",
        workloads.zlib_compress,
        1024,
        16,
        "zlib level 6 on 1 MiB (releases the GIL)",
    ),
    Workload(
        "sha256",
        "gil-free",
        workloads.sha256_rounds,
        16,
        16,
        "SHA-256 over 1 MiB x16 (releases the GIL)",
        uses_hashlib=True,
    ),
    Workload("tiny", "dispatch", workloads.tiny, None, 2000, "x + 1 via map(chunksize=1)"),
    Workload(
        "tiny_chunked",
        "dispatch",
        workloads.tiny,
        None,
        20000,
        "x + 1 via map(chunksize=256)",
        chunksize=256,
        quick=False,
    ),
    Workload(
        "payload", "payload", workloads.payload_echo, b"", 16, "1 MB bytes in, 1 MB bytes out"
    ),
)
SPECIAL = (STARTUP, LATENCY, FIRST_RESULT)
ALL_WORKLOAD_NAMES = (*(w.name for w in WORKLOADS), *SPECIAL)

# Peers that dispatch in milliseconds (anyio.to_interpreter polls its queue) get at most this
# many dispatch-bound tasks and latency samples; their per-task figure is still per task.
SLOW_DISPATCH_CAP = 48


def select_workloads(names: Sequence[str] | None, quick: bool) -> tuple[list[Workload], list[str]]:
    """``--workloads`` -> (batch workloads, special measurements among "startup"/"latency")."""
    if not names:
        return [w for w in WORKLOADS if w.quick or not quick], list(SPECIAL)
    unknown = [n for n in names if n not in ALL_WORKLOAD_NAMES]
    if unknown:
        raise ValueError(
            f"unknown workload(s) {', '.join(unknown)}; choose from: {', '.join(ALL_WORKLOAD_NAMES)}"
        )
    return [w for w in WORKLOADS if w.name in names], [s for s in SPECIAL if s in names]


@dataclass
class Config:
    workers: list[int]
    peers: list[Peer]
    workloads: list[Workload]
    special: list[str]
    repeats: int = 3
    scale: float = 1.0
    latency_samples: int = 300
    seed: int = 0
    quick: bool = False
    # Wall-clock budget in seconds: no new round starts when it would likely overrun (None: no limit).
    budget_s: float | None = None


@dataclass
class _Samples:
    wall: list[float] = field(default_factory=list)
    tasks: int = 0
    latency: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)
    # per start-up: (parent RSS growth, workers' USS, workers' PSS) in bytes, constructor seconds
    memory_parts: list[tuple[float, float, float, float]] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # seconds to the first result
    main_cpu: list[float] = field(default_factory=list)  # µs of main-side CPU per latency call


# --- memory ---------------------------------------------------------------------------------------


def _smaps_rollup(pid: int | str) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` as {field: bytes}; empty when unreadable (not Linux, gone)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def uss_bytes(pid: int) -> int:
    """Unique set size: memory that goes away when the process exits."""
    v = _smaps_rollup(pid)
    return v.get("Private_Clean", 0) + v.get("Private_Dirty", 0)


def pss_bytes(pid: int) -> int:
    return _smaps_rollup(pid).get("Pss", 0)


def rss_bytes(pid: int | str = "self") -> int:
    v = _smaps_rollup(pid)
    if "Rss" in v:
        return v["Rss"]
    try:  # kernels without smaps_rollup
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except ImportError:  # pragma: no cover - non-Unix
        return 0


_libc: Any = None


def _trim_heap() -> None:
    """Collect garbage and hand free malloc arenas back to the OS (glibc), so RSS deltas are real."""
    global _libc
    gc.collect()
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None)
            _libc.malloc_trim  # noqa: B018 - probe: glibc only
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


# --- environment ----------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def environment() -> dict[str, Any]:
    """What the figures depend on: Python build and GIL state, CPUs, versions, machine."""
    import multiprocessing
    import sysconfig

    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if is_gil_enabled is None else bool(is_gil_enabled()),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_total_gb(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "default_start_method": multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_context().get_start_method(),
        "versions": {
            dist: _version(dist)
            for dist in (
                "parallel-runtime",
                "anyio",
                "interpreters-pep-734",
                "rich",
                "matplotlib",
            )
        },
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if hasattr(os, "getloadavg"):
        # Other work on the machine skews every figure; the load says how much there was.
        env["load_average_1m"] = round(os.getloadavg()[0], 2)
    with contextlib.suppress(Exception):
        import runtime

        caps = runtime.capabilities()
        env["usable_cpus"] = caps.cpu_count
        env["interpreters_api"] = caps.interpreters_api
        env["runtime_default_backend"] = caps.default_backend
    return env


# --- the run --------------------------------------------------------------------------------------


def _applies(peer: Peer, workload: Workload) -> str | None:
    """None when ``peer`` runs ``workload``, else why not."""
    if peer.floor:
        return "the floor runs no jobs: it measures first_result only"
    if workload.uses_hashlib and peer.subinterpreter_workers and sys.version_info < (3, 13):
        return "hashlib crashes own-GIL subinterpreters on Python 3.12"
    if workload.chunksize > 1 and peer.key.startswith("anyio-"):
        return "anyio.run_sync has no chunked map"
    return None


def _sessions(config: Config) -> list[tuple[int, Peer]]:
    """One round: the serial baseline once, every other peer at every worker count."""
    pairs: list[tuple[int, Peer]] = []
    for peer in config.peers:
        if peer.serial:
            pairs.append((1, peer))
        else:
            pairs += [(w, peer) for w in config.workers]
    return pairs


def count_steps(config: Config) -> int:
    """How many progress steps :func:`run` reports (one per measurement)."""
    steps = 0
    usable, _ = available_peers(config.peers)
    for _, peer in _sessions(Config(**{**config.__dict__, "peers": usable})):
        steps += sum(1 for w in config.workloads if _applies(peer, w) is None)
        if peer.floor:
            steps += FIRST_RESULT in config.special
        elif not peer.serial:
            steps += len(config.special)
    return steps * config.repeats


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with quiet_fork_warnings(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="runtime: own-GIL subinterpreters on Python 3.12")
        yield


def _measure_session(
    peer: Peer,
    workers: int,
    config: Config,
    samples: dict[tuple[str, str, int], _Samples],
    payload: bytes,
    step: Callable[[str], None],
) -> None:
    def bucket(name: str) -> _Samples:
        return samples.setdefault((peer.key, name, workers), _Samples())

    clock = time.perf_counter
    cap = SLOW_DISPATCH_CAP if peer.slow_dispatch else None
    measure_startup = STARTUP in config.special and not peer.serial

    if FIRST_RESULT in config.special and not peer.serial:
        bucket(FIRST_RESULT).first.append(_first_result(peer, workers))
        step(f"{peer.key} x{workers}: first result")
    if peer.floor:
        return

    if measure_startup:
        _trim_heap()
        rss_before = rss_bytes()
    start = clock()
    session: Session = peer.open(workers)
    opened = clock() - start
    with session:
        if measure_startup:
            ran_on = session.warm(workers, WARM_DELAY)
            startup = max(0.0, clock() - start - WARM_DELAY)
            _trim_heap()
            grown = max(0, rss_bytes() - rss_before)
            pids = {pid for pid, _ in ran_on if pid != os.getpid()} | set(_worker_pids(session))
            child = sum(uss_bytes(pid) for pid in pids)
            child_pss = sum(pss_bytes(pid) for pid in pids)
            bucket(STARTUP).startup.append(startup)
            bucket(STARTUP).memory.append((grown + child) / workers / 1e6)
            bucket(STARTUP).memory_parts.append((grown, child, child_pss, opened))
            step(f"{peer.key} x{workers}: start-up")

        for workload in config.workloads:
            if _applies(peer, workload) is not None:
                continue
            items = workload.items(
                config.scale, cap if workload.kind in ("dispatch", "payload") else None
            )
            if workload.kind == "payload":
                items = [payload] * len(items)
            t0 = clock()
            results = session.map(workload.fn, items, workload.chunksize)
            elapsed = clock() - t0
            if len(results) != len(items):
                raise RuntimeError(
                    f"{workload.name}: {len(results)} results for {len(items)} tasks"
                )
            b = bucket(workload.name)
            b.wall.append(elapsed)
            b.tasks = len(items)
            step(f"{peer.key} x{workers}: {workload.name}")

        if LATENCY in config.special and not peer.serial:
            count = config.latency_samples if cap is None else min(cap, config.latency_samples)
            session.call(workloads.tiny, 0)  # the first call may import the function's module
            workers_here = session.worker_tids()
            before = thread_cpu_ns()
            bucket(LATENCY).latency += session.latencies(workloads.tiny, 1, count)
            cpu = main_side_us(before, thread_cpu_ns(), workers_here, count)
            if cpu is not None:
                bucket(LATENCY).main_cpu.append(cpu)
            step(f"{peer.key} x{workers}: latency")


def _first_result(peer: Peer, workers: int) -> float:
    """Seconds from opening ``peer`` (a fresh session) to the result of one tiny call."""
    if peer.floor:
        from .floor import first_result_s

        return first_result_s(workers)
    start = time.perf_counter()
    with peer.open(workers) as session:
        session.call(workloads.tiny, 0)
        return time.perf_counter() - start


def _describe(exc: BaseException) -> str:
    """One line naming the real failure (anyio wraps it in exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}".strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and not isinstance(cause, BaseExceptionGroup):
        text += f" (from {type(cause).__name__}: {cause})"
    return text


def _worker_pids(session: Session) -> list[int]:
    """Worker process ids the peer itself knows about (the start-up probe may miss a slow one)."""
    executor = getattr(session, "executor", None)
    processes = getattr(executor, "_processes", None)  # ProcessPoolExecutor
    if isinstance(processes, dict):
        return [int(pid) for pid in processes]
    pool = getattr(getattr(session, "pool", None), "_pool", None)  # multiprocessing.Pool
    if isinstance(pool, list):
        return [p.pid for p in pool if p.pid is not None]
    return []


def _spread(values: list[float]) -> dict[str, float]:
    """The median with its range, as the ``median_s``/``min_s``/``max_s`` fields of a row."""
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _row(peer: Peer, workload: str, workers: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_FIELDS)
    row.update(peer=peer.name, backend=peer.backend, workload=workload, workers=workers)
    row.update(values)
    return row


def _results(config: Config, samples: dict[tuple[str, str, int], _Samples]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    serial = next((p for p in config.peers if p.serial), None)
    names = [w.name for w in config.workloads] + list(config.special)
    for workers in sorted({1, *config.workers}):
        for name in names:
            base = samples.get((serial.key, name, 1)) if serial else None
            base_median = statistics.median(base.wall) if base and base.wall else None
            for peer in config.peers:
                s = samples.get((peer.key, name, workers))
                if s is None:
                    continue
                if s.wall:
                    spread = _spread(s.wall)
                    median = spread["median_s"]
                    rows.append(
                        _row(
                            peer,
                            name,
                            workers,
                            **spread,
                            speedup_vs_serial=(base_median / median) if base_median else None,
                            per_task_us=median / s.tasks * 1e6,
                        )
                    )
                elif s.latency:
                    rows.append(
                        _row(
                            peer,
                            name,
                            workers,
                            **_spread(s.latency),
                            p50_us=_percentile(s.latency, 50) * 1e6,
                            p99_us=_percentile(s.latency, 99) * 1e6,
                            main_cpu_us=statistics.median(s.main_cpu) if s.main_cpu else None,
                        )
                    )
                elif s.first:
                    spread = _spread(s.first)
                    rows.append(
                        _row(
                            peer, name, workers, **spread, first_result_ms=spread["median_s"] * 1e3
                        )
                    )
                elif s.startup:
                    spread = _spread(s.startup)
                    rows.append(
                        _row(
                            peer,
                            name,
                            workers,
                            **spread,
                            startup_ms=spread["median_s"] * 1e3,
                            mem_mb_per_worker=statistics.median(s.memory),
                        )
                    )
    return rows


def run(config: Config, step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole plan and return the JSON document ``{"environment": ..., "results": [...]}``."""
    report = step or (lambda _label: None)
    usable, skipped = available_peers(config.peers)
    config = Config(**{**config.__dict__, "peers": usable})
    samples: dict[tuple[str, str, int], _Samples] = {}
    errors: list[dict[str, Any]] = []
    failed: set[tuple[str, int]] = set()
    payload = os.urandom(PAYLOAD_BYTES)
    rng = random.Random(config.seed)
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    rounds_done = 0
    with _quiet():
        for _ in range(config.repeats):
            elapsed = time.perf_counter() - started
            if (
                config.budget_s is not None
                and rounds_done
                and elapsed + elapsed / rounds_done > config.budget_s
            ):
                break
            rounds_done += 1
            order = _sessions(config)
            rng.shuffle(order)
            for workers, peer in order:
                if (peer.key, workers) in failed:
                    continue
                try:
                    _measure_session(peer, workers, config, samples, payload, report)
                except Exception as exc:
                    # One broken peer must not sink the comparison: record it and move on.
                    failed.add((peer.key, workers))
                    errors.append(
                        {
                            "peer": peer.name,
                            "backend": peer.backend,
                            "workers": workers,
                            "error": _describe(exc),
                        }
                    )

    startup_detail = []
    for (key, name, workers), s in sorted(samples.items()):
        if name == STARTUP and s.memory_parts:
            peer = next(p for p in config.peers if p.key == key)
            grown, uss, pss, opened = (
                statistics.median(part) for part in zip(*s.memory_parts, strict=True)
            )
            startup_detail.append(
                {
                    "peer": peer.name,
                    "backend": peer.backend,
                    "workers": workers,
                    "constructor_ms": round(opened * 1e3, 3),
                    "parent_rss_growth_mb_per_worker": round(grown / workers / 1e6, 3),
                    "worker_uss_mb": round(uss / workers / 1e6, 3),
                    "worker_pss_mb": round(pss / workers / 1e6, 3),
                }
            )
    env = environment()
    env["load_average_1m_before"] = None if load_before is None else round(load_before, 2)
    env["suite"] = {
        "schema_version": SCHEMA_VERSION,
        "quick": config.quick,
        "repeats": rounds_done,
        "repeats_requested": config.repeats,
        "budget_s": config.budget_s,
        "scale": config.scale,
        "workers": config.workers,
        "seed": config.seed,
        "latency_samples": config.latency_samples,
        "duration_s": round(time.perf_counter() - started, 2),
        "workloads": {
            w.name: {
                "kind": w.kind,
                "description": w.description,
                "tasks": len(w.items(config.scale)),
                "chunksize": w.chunksize,
            }
            for w in config.workloads
        },
        "peers": {p.key: {"peer": p.name, "backend": p.backend} for p in usable},
        "skipped_peers": skipped,
        "errors": errors,
        "startup_detail": startup_detail,
        "method": {
            "startup": f"constructor to N concurrent {WARM_DELAY * 1e3:.0f} ms probe tasks done, minus {WARM_DELAY * 1e3:.0f} ms",
            "mem_mb_per_worker": "(RSS growth of this process + USS of worker processes) / N, after start-up, heap trimmed; USS/PSS split in startup_detail",
            "latency": "sequential submit -> result of a tiny task in a warm pool; nearest-rank p50/p99",
            "main_cpu_us": "CPU of this process's threads except the workers' (by native thread id, /proc/self/task) during the latency calls, per call: the caller's side",
            "first_result_ms": "a fresh session: constructor to the result of one tiny call; the floor row: N bare interpreters created in parallel, one pipe round trip each",
            "per_task_us": "median wall time of the batch / tasks",
            "speedup_vs_serial": "serial median / peer median, same workload",
            "slow_dispatch_cap": f"peers that dispatch in milliseconds run at most {SLOW_DISPATCH_CAP} dispatch/payload tasks and latency samples",
        },
    }
    return {"environment": env, "results": _results(config, samples)}
