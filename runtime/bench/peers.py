"""Who runs the work: every executor we compare, behind one small interface.

A :class:`Peer` describes a contender (``ProcessPoolExecutor`` with ``spawn``, ``runtime.Executor``
on subinterpreters, ...). ``peer.open(workers)`` returns a :class:`Session`, a context manager with
the three operations the runner needs:

* ``map(fn, items, chunksize)`` - run ``fn`` over ``items``, results in order;
* ``latencies(fn, arg, count)`` - ``count`` sequential submit -> result round trips, in seconds;
* ``warm(count, delay)`` - occupy ``count`` workers at once and return the process ids that ran them;
* ``worker_tids()`` - native ids of the threads that run jobs here (none for process workers), so
  the runner can tell the caller's side's CPU from the workers'.

Each session is opened and closed by the runner, so start-up and shutdown are never shared.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.pool
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["PEERS", "Peer", "Session", "available_peers", "select_peers"]


class Session:
    """An open pool of ``workers`` workers (or none, for the serial baseline)."""

    in_process = True  # workers share this process (threads, subinterpreters)

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def latencies(self, fn: Callable[[Any], Any], arg: Any, count: int) -> list[float]:
        clock = time.perf_counter
        samples = []
        for _ in range(count):
            start = clock()
            self.call(fn, arg)
            samples.append(clock() - start)
        return samples

    def warm(self, count: int, delay: float) -> list[tuple[int, int]]:
        from .workloads import warm

        return self.map(warm, [delay] * count, 1)

    def worker_tids(self) -> set[int]:
        """Native ids of this process's threads that run jobs (not the caller's side)."""
        return set()

    def close(self) -> None:
        pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialSession(Session):
    """The baseline: a plain loop in the calling thread."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return [fn(item) for item in items]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def warm(self, count: int, delay: float) -> list[tuple[int, int]]:
        return []


class ExecutorSession(Session):
    """Any ``concurrent.futures.Executor``."""

    def __init__(
        self, workers: int, executor: concurrent.futures.Executor, in_process: bool
    ) -> None:
        super().__init__(workers)
        self.executor = executor
        self.in_process = in_process

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return list(self.executor.map(fn, items, chunksize=chunksize))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args).result()

    def warm(self, count: int, delay: float) -> list[tuple[int, int]]:
        from .workloads import warm

        futures = [self.executor.submit(warm, delay) for _ in range(count)]
        return [f.result() for f in futures]

    def worker_tids(self) -> set[int]:
        threads = getattr(self.executor, "_threads", None)  # Thread/InterpreterPoolExecutor
        if threads is None:  # runtime.Executor: each thread or subinterpreter worker's thread
            from ..backends import live_workers  # the only runtime workers of this process

            ids = {h.native_thread_id for h in live_workers()}
            return {i for i in ids if i is not None}
        return {t.native_id for t in threads if t.native_id is not None}

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class MultiprocessingPoolSession(Session):
    """``multiprocessing.Pool`` (its own API: ``map``/``apply_async``)."""

    in_process = False

    def __init__(self, workers: int, pool: multiprocessing.pool.Pool) -> None:
        super().__init__(workers)
        self.pool = pool

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return self.pool.map(fn, items, chunksize=chunksize)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args).get()

    def warm(self, count: int, delay: float) -> list[tuple[int, int]]:
        from .workloads import warm

        results = [self.pool.apply_async(warm, (delay,)) for _ in range(count)]
        return [r.get() for r in results]

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class AnyioSession(Session):
    """``anyio.to_interpreter.run_sync`` / ``anyio.to_process.run_sync`` driven from a blocking portal.

    The event loop runs in a portal thread; whole batches (a map, a latency loop) run inside it so
    the portal hop is paid once per batch, not once per task.
    """

    def __init__(self, workers: int, module: str) -> None:
        super().__init__(workers)
        import importlib

        from anyio.from_thread import start_blocking_portal

        self.module_name = module
        self.in_process = module == "to_interpreter"
        self._run_sync = importlib.import_module(f"anyio.{module}").run_sync
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.limiter = self.portal.call(self._make_limiter, workers)

    @staticmethod
    def _make_limiter(workers: int) -> Any:
        import anyio

        return anyio.CapacityLimiter(workers)

    async def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        import anyio

        results: list[Any] = [None] * len(items)

        async def one(index: int, item: Any) -> None:
            results[index] = await self._run_sync(fn, item, limiter=self.limiter)

        async with anyio.create_task_group() as tg:
            for index, item in enumerate(items):
                tg.start_soon(one, index, item)
        return results

    async def _latencies(self, fn: Callable[[Any], Any], arg: Any, count: int) -> list[float]:
        clock = time.perf_counter
        samples = []
        for _ in range(count):
            start = clock()
            await self._run_sync(fn, arg, limiter=self.limiter)
            samples.append(clock() - start)
        return samples

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return self.portal.call(self._map, fn, items)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(self._map, fn, [args[0]])[0]

    def latencies(self, fn: Callable[[Any], Any], arg: Any, count: int) -> list[float]:
        return self.portal.call(self._latencies, fn, arg, count)

    def worker_tids(self) -> set[int]:
        # anyio.to_interpreter runs each interpreter from one of anyio's worker threads;
        # anyio.to_process has none here. The portal's event loop is the caller's side.
        return {
            t.native_id
            for t in threading.enumerate()
            if t.name.startswith("AnyIO worker thread") and t.native_id is not None
        }

    def _release_interpreters(self) -> None:
        # anyio keeps idle subinterpreters until interpreter exit (atexit); destroy them now so a
        # later peer's memory figure is not inflated by ours.
        from anyio import to_interpreter

        with contextlib.suppress(LookupError, AttributeError):
            to_interpreter._stop_workers(to_interpreter._idle_workers.get())

    async def _release_processes(self) -> None:
        # Close anyio's worker processes while the loop still runs; left to loop shutdown, their
        # transports are collected after the loop closed and print "Event loop is closed".
        from anyio import to_process

        try:
            workers = to_process._process_pool_workers.get()
        except (LookupError, AttributeError):
            return
        for process in list(workers):
            with contextlib.suppress(Exception):
                process.kill()
                await process.aclose()
            workers.discard(process)
        with contextlib.suppress(LookupError, AttributeError):
            to_process._process_pool_idle_workers.get().clear()

    def close(self) -> None:
        try:
            if self.module_name == "to_interpreter":
                self.portal.call(self._release_interpreters)
            else:
                self.portal.call(self._release_processes)
        finally:
            self._portal_cm.__exit__(None, None, None)


@dataclass(frozen=True)
class Peer:
    """One contender. ``key`` is what ``--peers`` selects; ``name``/``backend`` go into the JSON."""

    key: str
    name: str
    backend: str
    factory: Callable[[int], Session]
    check: Callable[[], str | None]  # None when usable here, else the reason it is not
    # Peers whose dispatch costs milliseconds get fewer tiny tasks (the figure is per task anyway).
    slow_dispatch: bool = False
    # Own-GIL subinterpreters on 3.12 crash the process when they import hashlib.
    subinterpreter_workers: bool = False
    serial: bool = False
    # Not a pool: bare interpreters measured for first_result only (runtime.bench.floor).
    floor: bool = False

    def unavailable_reason(self) -> str | None:
        try:
            return self.check()
        except Exception as exc:  # an import that fails in an unexpected way
            return f"{type(exc).__name__}: {exc}"

    def open(self, workers: int) -> Session:
        return self.factory(workers)


def _always() -> str | None:
    return None


# --- factories ----------------------------------------------------------------------------------


def _serial(workers: int) -> Session:
    return SerialSession(1)


def _no_session(workers: int) -> Session:
    raise RuntimeError("the floor is not a pool: the runner measures it with runtime.bench.floor")


def _floor_check() -> str | None:
    from .floor import available

    return available()


def _thread_pool(workers: int) -> Session:
    return ExecutorSession(
        workers, concurrent.futures.ThreadPoolExecutor(max_workers=workers), in_process=True
    )


def _process_pool(method: str) -> Callable[[int], Session]:
    def factory(workers: int) -> Session:
        context = multiprocessing.get_context(method)
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
        return ExecutorSession(workers, executor, in_process=False)

    return factory


def _start_method_check(method: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if method not in multiprocessing.get_all_start_methods():
            return f"start method {method!r} is not available on this platform"
        return None

    return check


def _mp_pool(workers: int) -> Session:
    return MultiprocessingPoolSession(workers, multiprocessing.get_context().Pool(workers))


def _interpreter_pool_class() -> type[concurrent.futures.ThreadPoolExecutor]:
    if sys.version_info >= (3, 14):
        from concurrent.futures import InterpreterPoolExecutor  # type: ignore[attr-defined]
    else:
        from interpreters_backport.concurrent.futures import InterpreterPoolExecutor
    cls: type[concurrent.futures.ThreadPoolExecutor] = InterpreterPoolExecutor  # a subclass
    return cls


def _interpreter_pool_check() -> str | None:
    if sys.version_info < (3, 13):
        # The compiled 3.12 backport segfaults at import: never try it.
        return "needs Python 3.13+ (stdlib on 3.14, interpreters-pep-734 backport on 3.13)"
    try:
        _interpreter_pool_class()
    except ImportError as exc:
        return f"not importable: {exc}"
    return None


def _interpreter_pool(workers: int) -> Session:
    return ExecutorSession(workers, _interpreter_pool_class()(max_workers=workers), in_process=True)


def _interpreter_pool_label() -> str:
    return "stdlib" if sys.version_info >= (3, 14) else "backport"


def _anyio_check(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if module == "to_interpreter" and sys.version_info < (3, 13):
            return "anyio.to_interpreter needs Python 3.13+"
        try:
            import anyio  # noqa: F401
        except ImportError:
            return "anyio is not installed"
        return None

    return check


def _anyio(module: str) -> Callable[[int], Session]:
    def factory(workers: int) -> Session:
        return AnyioSession(workers, module)

    return factory


def _runtime_check(backend: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            import runtime
        except ImportError as exc:
            return f"runtime is not importable: {exc}"
        try:
            runtime.Executor  # noqa: B018 - lazy attribute: is the Executor there yet?
        except (AttributeError, ImportError) as exc:
            return f"runtime.Executor is not available: {exc}"
        if backend == "subinterpreter" and not runtime.capabilities().subinterpreters:
            return "this Python has no subinterpreter API"
        return None

    return check


def _runtime(backend: str) -> Callable[[int], Session]:
    def factory(workers: int) -> Session:
        import runtime

        with warnings.catch_warnings():
            # An explicit subinterpreter backend on 3.12 warns loudly by design; we know.
            warnings.simplefilter("ignore")
            executor = runtime.Executor(workers=workers, backend=backend)
        return ExecutorSession(workers, executor, in_process=backend != "process")

    return factory


def _build_peers() -> tuple[Peer, ...]:
    peers = [
        Peer("serial", "serial", "serial", _serial, _always, serial=True),
        Peer(
            "floor",
            "floor",
            "subinterpreter/bare",
            _no_session,
            _floor_check,
            subinterpreter_workers=True,
            floor=True,
        ),
        Peer("thread", "ThreadPoolExecutor", "thread", _thread_pool, _always),
    ]
    for method in ("fork", "forkserver", "spawn"):
        peers.append(
            Peer(
                f"process-{method}",
                "ProcessPoolExecutor",
                f"process/{method}",
                _process_pool(method),
                _start_method_check(method),
            )
        )
    peers += [
        Peer(
            "mp-pool",
            "multiprocessing.Pool",
            f"process/{multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_context().get_start_method()}",
            _mp_pool,
            _always,
        ),
        Peer(
            "interp-pool",
            "InterpreterPoolExecutor",
            f"subinterpreter/{_interpreter_pool_label()}",
            _interpreter_pool,
            _interpreter_pool_check,
            subinterpreter_workers=True,
        ),
        Peer(
            "anyio-interp",
            "anyio.to_interpreter",
            "subinterpreter",
            _anyio("to_interpreter"),
            _anyio_check("to_interpreter"),
            slow_dispatch=True,
            subinterpreter_workers=True,
        ),
        Peer(
            "anyio-process",
            "anyio.to_process",
            "process/exec",
            _anyio("to_process"),
            _anyio_check("to_process"),
        ),
    ]
    for backend in ("subinterpreter", "thread", "process"):
        peers.append(
            Peer(
                f"runtime-{backend}",
                "runtime.Executor",
                backend,
                _runtime(backend),
                _runtime_check(backend),
                subinterpreter_workers=backend == "subinterpreter",
            )
        )
    return tuple(peers)


PEERS: tuple[Peer, ...] = _build_peers()


def select_peers(tokens: Sequence[str] | None) -> list[Peer]:
    """Peers named by ``--peers``: a key (``process-spawn``) or a prefix group (``process``, ``runtime``).

    The serial baseline is always included: every speedup is measured against it.
    """
    if not tokens:
        return list(PEERS)
    known = {p.key for p in PEERS}
    chosen: list[Peer] = []
    for token in tokens:
        matches = [p for p in PEERS if p.key == token or p.key.startswith(token + "-")]
        if not matches:
            raise ValueError(f"unknown peer {token!r}; choose from: {', '.join(sorted(known))}")
        chosen += [p for p in matches if p not in chosen]
    if not any(p.serial for p in chosen):
        chosen.insert(0, PEERS[0])
    return [p for p in PEERS if p in chosen]  # stable, documented order


def available_peers(peers: Sequence[Peer]) -> tuple[list[Peer], dict[str, str]]:
    """Split ``peers`` into those usable here and ``{key: reason}`` for the others."""
    usable: list[Peer] = []
    skipped: dict[str, str] = {}
    for peer in peers:
        reason = peer.unavailable_reason()
        if reason is None:
            usable.append(peer)
        else:
            skipped[peer.key] = reason
    return usable, skipped


@contextlib.contextmanager
def quiet_fork_warnings() -> Iterator[None]:
    """Silence the 3.12+ "use of fork() may lead to deadlocks" warning while the fork peers run.

    The benchmark knowingly forks from a process with threads (progress bar, other pools'
    management threads); the warning is about that, and it must not abort the run under
    ``-W error``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
        yield
