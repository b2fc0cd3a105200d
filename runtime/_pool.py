"""The supervised pool: N workers, each running one long-lived Task, kept alive.

:class:`Pool` is the public face: configuration, the API, signals. Every decision is
taken on one supervisor thread (:class:`runtime._supervisor.Supervisor`) that handles
events from one queue; the deadlines are hub timers that post events, so nothing polls.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from ._capabilities import Capabilities, capabilities
from ._common import bootstrap_name, pack_bootstrap, pickled, resolve_backend
from ._early import guard_main_import
from ._errors import ConfigurationError, PoolError
from ._events import Hooks
from ._lifecycle import DEFAULT_BOOT_TIMEOUT, Limits
from ._pickling import mode_for
from ._policy import RestartPolicy, resolve_workers, split_by_weight
from ._slots import Kind, normalize_tasks
from ._statistics import PoolReport, PoolStatistics
from ._supervisor import Supervisor
from .ops._pool_ops import PoolOps

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FrameType, TracebackType

    from ._events import Observer

__all__ = ["Pool", "PoolReport", "PoolStatistics"]

log = logging.getLogger("runtime")


class Pool:
    """Keep ``workers`` workers busy running tasks, supervised.

    ``tasks`` is a :class:`Task` subclass, an instance (its constructor arguments
    travel to each worker), a ``"pkg.mod:Name"`` reference, or a mapping of those to
    weights (``{A: 3, B: 7}``) that splits the workers. ``workers`` is a count or a
    fraction of the usable CPUs. ``bootstrap`` (a callable or reference) runs once in
    every fresh worker; its return value is the task's ``self.context``.
    ``on_failure`` (a callable or reference) receives a :class:`runtime.Failure` for
    every task failure; ``metrics=False`` keeps this pool out of ``/metrics``;
    ``observers`` (a list of :class:`runtime.Observer`) hear this pool's events.

    ``boot_timeout`` (seconds, ``None``: no limit) bounds each worker's bootstrap. An
    initial worker that is not ready in time makes :meth:`start` raise
    :class:`runtime.BootstrapError` (naming the worker, the bootstrap and the elapsed
    time) and the pool stops; a replacement that is not ready in time is logged, killed
    (process) or abandoned (subinterpreter, thread: they cannot be pre-empted and keep
    running until their bootstrap returns), counted as a failure of its slot and retried
    with the restart policy's backoff.

    Lifecycle limits replace a worker by a fresh one instead of reusing it when a task
    run ends (the task raised and is restarted): after ``max_tasks_per_worker`` runs,
    when it is older than ``max_worker_age`` seconds, or when it reported holding more
    than ``max_worker_memory`` bytes (``"512M"`` works too). They matter where a slot
    keeps its worker across restarts (``RestartPolicy(fresh_worker=False)``, or past the
    policy's ``fresh_workers`` budget). On Python < 3.14 each recycled subinterpreter
    costs the interpreter leak (about 3-4 MB). A task still *running* when its worker
    passes ``max_worker_age`` gets a successor booted first, is then asked to stop
    (``self.stopping``), and once it returns runs again on the successor, counted as
    ``recycled`` rather than ``completed``; a task that ignores ``stopping`` keeps
    running in its old worker (and the booted successor waits).
    """

    def __init__(
        self,
        tasks: Any,
        *,
        workers: int | float = 1,
        backend: str = "auto",
        bootstrap: Any = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float = 30.0,
        handle_signals: bool = True,
        on_failure: Any = None,
        metrics: bool = True,
        observers: Iterable[Observer] = (),
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        _capabilities: Capabilities | None = None,
    ) -> None:
        guard_main_import("Pool")
        caps = _capabilities or capabilities()
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise ConfigurationError(f"restart must be a runtime.RestartPolicy, got {restart!r}")
        if not isinstance(stop_timeout, (int, float)) or stop_timeout < 0:
            raise ConfigurationError(f"stop_timeout must be a number >= 0, got {stop_timeout!r}")
        hooks = Hooks(observers)  # validates them before anything starts
        self._cpu_count = caps.cpu_count
        target = resolve_workers(workers, caps.cpu_count)
        self.backend = resolve_backend(backend, caps)
        self.policy = restart or RestartPolicy()
        self.limits = Limits(max_tasks_per_worker, max_worker_memory, max_worker_age, boot_timeout)
        self.stop_timeout = float(stop_timeout)
        self.handle_signals = handle_signals
        # Task classes from an interactive __main__ (REPL, notebook) travel by value.
        pickling = mode_for(self.backend)
        kinds = []
        for spec, weight in normalize_tasks(tasks):
            blob = pickled(spec, f"task {spec.label} with its constructor arguments", pickling)
            kinds.append(Kind(spec, blob, weight, spec.label))
        split_by_weight([(k, k.weight) for k in kinds], target)  # validates weights vs count
        self._sup = Supervisor(
            self,
            backend=self.backend,
            caps=caps,
            policy=self.policy,
            limits=self.limits,
            kinds=kinds,
            target=target,
            bootstrap=pack_bootstrap(bootstrap, self.backend),
            bootstrap_name=bootstrap_name(bootstrap),
            pickling=pickling,
            hooks=hooks,
            ops=PoolOps(self, on_failure, metrics),
        )

    # ------------------------------------------------------------------ public API
    def start(self) -> Pool:
        """Start every worker and wait until each has bootstrapped (raises BootstrapError if not)."""
        sup = self._sup
        sup.start()
        if sup.fatal is not None:
            sup.finished.wait()
            raise sup.fatal
        return self

    def run(self) -> PoolReport:
        """Run until every task returned, or stop()/SIGTERM/SIGINT; returns a :class:`PoolReport`."""
        sup = self._sup
        restore = self._install_signal_handlers()
        try:
            if sup.state == "new":
                self.start()
            sup.finished.wait()
        finally:
            restore()
        if sup.fatal is not None:
            raise sup.fatal
        assert sup.report is not None
        return sup.report

    def stop(self, timeout: float | None = None) -> PoolReport:
        """Ask tasks to finish (``self.stopping``), wait up to ``timeout``, report what did not."""
        sup = self._sup
        if sup.state == "new":
            raise PoolError("the pool was never started")
        sup.post(("stop", self.stop_timeout if timeout is None else float(timeout)))
        sup.finished.wait()
        assert sup.report is not None
        return sup.report

    def resize(self, workers: int | float) -> None:
        """Change the number of workers while running (split by the same weights)."""
        target = resolve_workers(workers, self._cpu_count)
        split_by_weight([(k, k.weight) for k in self._sup.kinds], target)
        if self._sup.state not in ("new", "running", "starting"):
            raise PoolError(f"cannot resize a pool that is {self._sup.state}")
        self._sup.post(("resize", target))

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of this pool: slots, workers, counters (by task kind too)."""
        return self._sup.statistics()

    def _close_at_exit(self) -> None:
        if self._sup.state != "new" and not self._sup.finished.is_set():
            log.warning("runtime: the interpreter is exiting; stopping %r", self)
            self.stop()

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._sup.finished.is_set():
            self.stop()

    def __repr__(self) -> str:
        sup = self._sup
        kinds = ", ".join(f"{k.label}:{k.weight}" for k in sup.kinds)
        return (
            f"<runtime.Pool {kinds} workers={sup.target} backend={self.backend} state={sup.state}>"
        )

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> Any:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}
        sup = self._sup

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if sup.stopping:
                log.warning("runtime: %s again; not waiting for running tasks any longer", name)
                sup.post(("stop", 0.0))
            else:
                log.warning(
                    "runtime: %s received; stopping the pool (up to %.1fs)", name, self.stop_timeout
                )
                sup.post(("stop", self.stop_timeout))

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, old)

        return restore
