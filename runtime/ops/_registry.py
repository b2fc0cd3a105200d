"""The process-wide registry of live pools, executors and consumers, and their plain counters.

Each component keeps its own counters as plain ints and dicts and publishes them in a
frozen ``statistics()`` snapshot; its ops object (:class:`ObservingOps`) adds what only
events carry (failures by type, :class:`Histogram` bucket lists of durations) from the
observer hooks it registers on the component: no prometheus-client object and no import
of it on the hot path. ``/metrics``, ``/healthz`` and ``/readyz`` read those at request
time through this registry, so one scrape covers every worker of every backend (all
of them report to the main interpreter anyway) without a multiprocess directory. Ops
never reads a component's private state nor takes its locks (``tests/test_ops_seams.py``
checks that).

Concurrency decision: components leave the registry through :meth:`Registry.retire`,
which only appends to a deque. It is called from weakref finalizers (any thread, at
any allocation, possibly while that thread holds a component's lock) and from
component shutdown paths, so it must never take a lock itself: taking the registry
lock there could deadlock against a scrape that holds the registry lock and waits for
that component's lock. The deque is settled under the lock by the next reader, which
folds the retired component's counters into running totals so that counters never go
backwards when a component goes away.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref

try:  # the C function: bisect.py is one more file for a new executor to import
    from _bisect import bisect_left
except ImportError:  # pragma: no cover - a build without the C module
    from bisect import bisect_left

from .._events import Observer
from ._catalog import DURATION_BUCKETS, METRICS
from ._failure import FailureReports

# Named tuples from collections at run time: typing would cost a new executor milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, NamedTuple

    from .._events import Hooks
    from .._heartbeat import Heartbeat

    class _HistogramSnapshot(NamedTuple):
        bounds: tuple[float, ...]
        counts: tuple[int, ...]  # per bucket (not cumulative); the last one is +Inf
        sum: float

    class _Sample(NamedTuple):
        name: str
        labels: tuple[str, ...]
        value: float | HistogramSnapshot
else:
    _HistogramSnapshot = collections.namedtuple("_HistogramSnapshot", "bounds counts sum")
    _Sample = collections.namedtuple("_Sample", "name labels value")

__all__ = [
    "REGISTRY",
    "ComponentOps",
    "Histogram",
    "HistogramSnapshot",
    "ObservingOps",
    "Registry",
    "Sample",
]


class HistogramSnapshot(_HistogramSnapshot):
    """Bucket counts (per bucket, not cumulative; the last one is +Inf) and their sum."""

    __slots__ = ()

    def merged(self, other: HistogramSnapshot) -> HistogramSnapshot:
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return HistogramSnapshot(self.bounds, counts, self.sum + other.sum)


class Histogram:
    """Bucket counters for durations, kept by one writer thread; read by snapshots."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.sum)


Labels = tuple[str, ...]


class Sample(_Sample):
    """One metric value: name, label values, and a number or a histogram."""

    __slots__ = ()


class ComponentOps:
    """What one pool, executor or consumer tells the ops endpoints; subclassed per component.

    Holds the component only through a weak reference, so a component that is dropped
    without being stopped is still collected (and then retired by a finalizer).
    """

    kind = "component"

    def __init__(self, owner: Any, on_failure: Any, metrics: bool) -> None:
        self.metrics = bool(metrics)
        self.reports = FailureReports(on_failure, self.kind)  # validates on_failure here, early
        self.name = self.kind
        self.heartbeats: list[Heartbeat] = []
        self._owner = weakref.ref(owner)
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._closed = False

    # -------------------------------------------------------------- lifecycle
    def owner(self) -> Any:
        return self._owner()

    def register(self) -> None:
        owner = self._owner()
        if owner is None or self._closed:
            return
        self.name = REGISTRY.register(self)
        self._finalizer = weakref.finalize(owner, REGISTRY.retire, self)

    def close(self) -> None:
        """The component stopped: leave the registry, deliver the failure reports still queued."""
        if self._closed:
            return
        self._closed = True
        for heartbeat in self.heartbeats:
            heartbeat.close()
        if self._finalizer is not None:
            self._finalizer.detach()
        REGISTRY.retire(self)
        self.reports.close()

    # -------------------------------------------------------------- what endpoints read
    def counters(self) -> list[Sample]:
        """Counter and histogram samples: only the component's own counters (owner may be gone)."""
        return [Sample("parallel_runtime_failure_hook_errors_total", (), self.reports.errors)]

    def gauges(self) -> list[Sample]:
        return []

    def not_ready(self) -> list[str]:
        return []

    def problems(self, now: float, stale_after: float) -> list[str]:
        out = []
        for heartbeat in self.heartbeats:
            problem = heartbeat.problem(now, stale_after)
            if problem is not None:
                out.append(f"{self.name} {problem}")
        return out

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "component": self.kind,
            "name": self.name,
            "threads": [h.describe(now) for h in self.heartbeats],
        }


class ObservingOps(ComponentOps, Observer):
    """The ops of a component with :class:`~runtime._events.Hooks` and a ``statistics()``.

    It sees its component only through three public seams, never through its private
    state or its locks: the events the component's hooks dispatch (this object is one
    more :class:`~runtime.Observer` of it), the frozen snapshot ``owner.statistics()``
    returns, and the heartbeats the component hands to :meth:`attach`. Counters that
    events carry (failures by type, durations) are this object's own; the component's
    counters (submitted, completed, restarts ...) are read from ``statistics()`` when an
    endpoint asks.

    The contract with the component:

    * ``ops = XOps(component, on_failure, metrics)`` in its constructor (validates
      ``on_failure`` early);
    * ``ops.attach(hooks, heartbeats)`` once, when its supervising threads exist: the
      ops registers itself on ``hooks`` (only when it needs events: metrics on or an
      ``on_failure`` hook set), keeps ``heartbeats`` for ``/healthz`` and enters the
      process registry;
    * ``ops.close()`` at shutdown, without holding the component's lock: it reads
      ``statistics()`` one last time (the counters folded into the registry totals when
      the component leaves), closes the heartbeats, leaves the registry and delivers the
      failure reports still queued.

    Nothing else: the component never calls its ops per event.
    """

    def __init__(self, owner: Any, on_failure: Any, metrics: bool) -> None:
        super().__init__(owner, on_failure, metrics)
        # Guards this object's own event counters (hooks may run on several threads).
        self._lock = threading.Lock()
        self._last: Any = None  # the latest statistics() read
        self._final: Any = None  # read at close(): what the retired counters come from

    def wants_events(self) -> bool:
        """Whether any hook of this object has work to do (else it does not observe)."""
        return self.metrics or self.reports.hook is not None

    def attach(self, hooks: Hooks, heartbeats: Iterable[Heartbeat]) -> None:
        """Observe ``hooks``, watch ``heartbeats`` and enter the registry (see the class)."""
        self.heartbeats = list(heartbeats)
        if self._closed:
            return
        if self.wants_events():
            hooks.add(self)
        self.register()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._final = self.statistics()
        except Exception:  # a component that cannot answer any more: keep what was read
            self._final = None
        if self._final is None:
            self._final = self._last
        super().close()

    def statistics(self) -> Any:
        """The owner's ``statistics()`` now (remembered), or None when the owner is gone."""
        owner = self.owner()
        if owner is None:
            return None
        stats = owner.statistics()
        self._last = stats
        return stats

    def counted(self) -> Any:
        """The statistics counters are read from, never going backwards: the snapshot
        taken at :meth:`close` once closed, else the owner's current one, else (owner
        gone, or failing to answer) the last one read. None when none was ever read.

        Never calls the owner once closed: the registry folds a retired component's
        counters in under its own lock, where calling into a component is not allowed.
        """
        if self._closed:
            return self._final
        try:
            stats = self.statistics()
        except Exception:
            return self._last
        return self._last if stats is None else stats


def _aggregate(name: str, old: float, new: float) -> float:
    if METRICS[name].aggregate == "max":
        return max(old, new)  # "the longest" across components, not a sum of delays
    return old + new


class Registry:
    """Live components plus the counter totals of the ones that went away."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, ComponentOps] = {}
        self._retiring: collections.deque[ComponentOps] = collections.deque()
        self._retired: dict[tuple[str, Labels], float | HistogramSnapshot] = {}
        self._numbers: dict[str, itertools.count[int]] = collections.defaultdict(
            lambda: itertools.count(1)
        )

    def register(self, ops: ComponentOps) -> str:
        """Add a component; returns its display name (``pool-1``, ``consumer-orders`` ...)."""
        with self._lock:
            self._settle()
            self._live[id(ops)] = ops
            return f"{ops.kind}-{next(self._numbers[ops.kind])}"

    def retire(self, ops: ComponentOps) -> None:
        """Remove a component. Lock-free (see the module docstring); settled by the next reader."""
        self._retiring.append(ops)

    def _settle(self) -> None:
        while self._retiring:
            ops = self._retiring.popleft()
            if self._live.pop(id(ops), None) is None:
                continue
            if not ops.metrics:
                continue
            for sample in ops.counters():
                self._retired[(sample.name, sample.labels)] = _add(
                    self._retired.get((sample.name, sample.labels)), sample.value
                )

    def components(self) -> list[ComponentOps]:
        with self._lock:
            self._settle()
            return list(self._live.values())

    def collect(self) -> dict[str, dict[Labels, float | HistogramSnapshot]]:
        """Every metric's value per label set: live components plus retired counter totals."""
        with self._lock:
            self._settle()
            live = list(self._live.values())
            retired = dict(self._retired)
        out: dict[str, dict[Labels, float | HistogramSnapshot]] = collections.defaultdict(dict)
        for (name, labels), value in retired.items():
            out[name][labels] = value
        for ops in live:
            if not ops.metrics:
                continue
            for sample in (*ops.counters(), *ops.gauges()):
                series = out[sample.name]
                old = series.get(sample.labels)
                if old is None:
                    series[sample.labels] = sample.value
                elif isinstance(old, HistogramSnapshot) or isinstance(
                    sample.value, HistogramSnapshot
                ):
                    series[sample.labels] = _add(old, sample.value)
                else:
                    series[sample.labels] = _aggregate(sample.name, old, float(sample.value))
        return out


def _add(
    old: float | HistogramSnapshot | None, new: float | HistogramSnapshot
) -> float | HistogramSnapshot:
    if old is None:
        return new
    if isinstance(old, HistogramSnapshot) and isinstance(new, HistogramSnapshot):
        return old.merged(new)
    if isinstance(old, HistogramSnapshot) or isinstance(new, HistogramSnapshot):
        raise TypeError("a histogram and a number share one metric name")
    return old + new


REGISTRY = Registry()
