"""runtime.ops sees components only through their public seams: events, statistics(), heartbeats.

(a) A static check over the ops modules: no private attribute (one leading underscore)
    of anything but ``self``/``cls`` or a module, and no other object's lock.
(b) ExecutorOps and PoolOps against a fake owner that has nothing but ``statistics()``,
    with events fed straight into a real :class:`runtime._events.Hooks`.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime._events import BatchFinished, Hooks, JobFailed, TaskFailure
from runtime._heartbeat import Heartbeat
from runtime._policy import Decision
from runtime._statistics import ExecutorStatistics
from runtime._task import WorkerInfo
from runtime.ops import _health, _registry
from runtime.ops._executor_ops import ExecutorOps
from runtime.ops._pool_ops import PoolOps
from runtime.ops._registry import HistogramSnapshot, Registry

from .helpers import tasks

P = "parallel_runtime_"
# Above the package under test: the checkout, or site-packages for the installed wheel.
ROOT = Path(runtime.__file__).resolve().parent.parent

# ====================================================================== (a) the static check

OPS_FILES = [
    *sorted((ROOT / "runtime" / "ops").glob("*.py")),
    ROOT / "runtime" / "amqp" / "_consumer_ops.py",
]

# The public API of named tuples (underscored only so as not to clash with field names).
NAMEDTUPLE_API = frozenset({"_fields", "_field_defaults", "_replace", "_asdict", "_make"})
LOCKISH = ("lock", "mutex", "condition", "semaphore")
ATTR_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError, AttributeError):
        return False


class SeamChecker(ast.NodeVisitor):
    """Collects the lines where a module reads private state or takes a lock not its own."""

    def __init__(self, tree: ast.Module, package: str) -> None:
        self.problems: list[str] = []
        self.modules = self._module_names(tree, package)  # local name -> dotted module
        self.module_globals = {
            target.id
            for stmt in tree.body
            if isinstance(stmt, (ast.Assign, ast.AnnAssign))
            for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
            if isinstance(target, ast.Name)
        }

    @staticmethod
    def _module_names(tree: ast.Module, package: str) -> dict[str, str]:
        names: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        first = alias.name.split(".")[0]
                        names[first] = first
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                for alias in node.names:
                    dotted = f"{base}.{alias.name}"
                    if alias.name != "*" and _is_module(dotted):
                        names[alias.asname or alias.name] = dotted
        return names

    def _own(self, node: ast.expr) -> bool:
        """``self``/``cls``, ``super()``, or a module: whose underscored names this module may read."""
        if isinstance(node, ast.Name) and node.id in ("self", "cls"):
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "super"
        ):
            return True
        dotted = _dotted(node)
        if dotted is None:
            return False
        first, _, rest = dotted.partition(".")
        if first not in self.modules:
            return False
        return not rest or _is_module(f"{self.modules[first]}.{rest}")

    def _problem(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _private(node.attr) and not self._own(node.value):
            self._problem(node, f"reads another object's private {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in ATTR_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not self._own(node.args[0])
        ):
            self._problem(node, f"reads another object's private {ast.unparse(node)}")
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("acquire", "release", "acquire_lock", "release_lock")
            and not self._own_lock(func.value)
        ):
            self._problem(node, f"takes a lock not its own: {ast.unparse(node)}")
        self.generic_visit(node)

    def _own_lock(self, node: ast.expr) -> bool:
        """``self.<name>`` or a lock this module defines at its top level."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return node.value.id in ("self", "cls")
        return isinstance(node, ast.Name) and node.id in self.module_globals

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            expr = item.context_expr
            target = expr.func if isinstance(expr, ast.Call) else expr
            name = (
                target.attr
                if isinstance(target, ast.Attribute)
                else target.id
                if isinstance(target, ast.Name)
                else ""
            )
            lockish = any(word in name.lower() for word in LOCKISH)
            if isinstance(expr, ast.Call):
                # with self._lock_for(x) / with threading.Lock(): a method of our own
                # or a fresh lock; anything else named like a lock is someone else's.
                if lockish and not (isinstance(target, ast.Attribute) and self._own(target.value)):
                    self._problem(node, f"takes a lock not its own: {ast.unparse(expr)}")
            elif lockish and not self._own_lock(expr):
                self._problem(node, f"takes a lock not its own: {ast.unparse(expr)}")
        self.generic_visit(node)

    visit_With = _with
    visit_AsyncWith = _with


def seam_problems(source: str, package: str = "runtime.ops") -> list[str]:
    checker = SeamChecker(tree := ast.parse(source), package)
    checker.visit(tree)
    return checker.problems


@pytest.mark.parametrize("path", OPS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_ops_reads_no_private_state_and_takes_no_foreign_lock(path: Path) -> None:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    problems = seam_problems(path.read_text(), package)
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_seam_check_catches_what_it_forbids() -> None:
    bad = """
import threading
def gauges(self, executor, pool, lock):
    with executor._lock:
        n = len(executor._workers)
    self.owner()._pending
    pool._slots.values()
    getattr(pool, "_kinds")
    with pool.lock:
        pass
    with self.reports.lock:
        pass
    pool.state_lock.acquire()
    with lock:
        pass
    with pool.statistics_lock():
        pass
"""
    problems = seam_problems(bad)
    for culprit in (
        "executor._lock",
        "executor._workers",
        "self.owner()._pending",
        "pool._slots",
        "getattr(pool, '_kinds')",
        "pool.lock",
        "self.reports.lock",
        "pool.state_lock.acquire()",
        ": lock",
        "pool.statistics_lock()",
    ):
        assert any(culprit in p for p in problems), (culprit, problems)
    assert len(problems) == 11, problems  # `with executor._lock` is both kinds of problem


def test_the_seam_check_allows_own_state_modules_and_namedtuple_api() -> None:
    good = """
import sys
import threading
from .. import _events
_install_lock = threading.Lock()
class X(Base):
    def f(self, worker, event):
        with self._lock:
            self._count += 1
        with _install_lock:
            pass
        with threading.Lock():
            pass
        super()._setup()
        sys._getframe(0)
        _events._GLOBAL
        cls = type(self)
        return {f: getattr(worker, f) for f in worker._fields}, event._replace(x=1), cls._kinds
"""
    assert seam_problems(good) == []


# ====================================================================== (b) fakes and helpers


def executor_stats(**changes: Any) -> ExecutorStatistics:
    values: dict[str, Any] = {
        "backend": "thread",
        "workers_target": 2,
        "workers_alive": 2,
        "workers_booting": 0,
        "workers_standby": 0,
        "queued": 3,
        "in_flight": 4,
        "batches_in_flight": 2,
        "submitted": 10,
        "completed": 6,
        "failed": 1,
        "replaced": 1,
        "recycled": {"tasks": 2, "memory": 1},
        "state": "running",
        "broken": None,
    }
    values.update(changes)
    return ExecutorStatistics(**values)


def pool_stats(**changes: Any) -> runtime.PoolStatistics:
    values: dict[str, Any] = {
        "backend": "thread",
        "target_workers": 3,
        "workers_alive": 3,
        "running": 3,
        "booting": 0,
        "waiting_restart": 0,
        "completed": 5,
        "restarts": 2,
        "gave_up": 1,
        "replaced": 1,
        "by_kind": {"Loop": 2, "Other": 1},
        "state": "running",
        "recycled": 2,
        "completed_by_kind": {"Loop": 4, "Other": 1},
        "restarts_by_kind": {"Loop": 2},
        "gave_up_by_kind": {"Other": 1},
        "replaced_by_kind": {"Loop": 1},
        "recycled_by_reason": {"age": 2},
        "restart_backoff": {"Loop": 0.0, "Other": 4.5},
    }
    values.update(changes)
    return runtime.PoolStatistics(**values)


class FakeOwner:
    """A component as ops may see it: nothing but ``statistics()``."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.calls = 0

    def statistics(self) -> Any:
        self.calls += 1
        if isinstance(self.stats, BaseException):
            raise self.stats
        return self.stats


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry of this test's own, so components of other tests do not show."""
    fresh = Registry()
    monkeypatch.setattr(_registry, "REGISTRY", fresh)
    monkeypatch.setattr(_health, "REGISTRY", fresh)
    return fresh


def totals(registry: Registry) -> dict[tuple[str, tuple[str, ...]], Any]:
    return {
        (name, labels): value
        for name, series in registry.collect().items()
        for labels, value in series.items()
    }


def attached(ops: Any, *heartbeats: Heartbeat) -> Hooks:
    hooks = Hooks()
    ops.attach(hooks, list(heartbeats))
    return hooks


def delivered(seen: list[Any], n: int) -> list[Any]:
    end = time.monotonic() + 10
    while len(seen) < n and time.monotonic() < end:
        time.sleep(0.005)
    return seen


# ====================================================================== (b) ExecutorOps


def test_executor_counters_and_gauges_come_from_statistics(registry: Registry) -> None:
    owner = FakeOwner(executor_stats())
    ops = ExecutorOps(owner, None, True)
    attached(ops, Heartbeat("hub"))
    assert ops.name == "executor-1"
    got = totals(registry)
    assert got[(P + "jobs_submitted_total", ())] == 10
    assert got[(P + "jobs_completed_total", ())] == 6
    assert got[(P + "executor_workers_replaced_total", ())] == 1
    assert got[(P + "workers_recycled_total", ("tasks",))] == 2
    assert got[(P + "workers_recycled_total", ("memory",))] == 1
    assert got[(P + "executor_workers_target", ())] == 2
    assert got[(P + "executor_workers_alive", ())] == 2
    assert got[(P + "jobs_queued", ())] == 3
    assert got[(P + "batches_in_flight", ())] == 2
    assert got[(P + "failure_hook_errors_total", ())] == 0
    assert not [key for key in got if key[0] == P + "jobs_failed_total"]  # none failed yet
    ops.close()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"workers_alive": 1, "workers_booting": 1}, ["executor-1: 1 of 2 workers ready"]),
        (
            {"state": "broken", "broken": "BootstrapError('no module named x')"},
            ["executor-1: broken: BootstrapError('no module named x')"],
        ),
        ({"state": "shutdown", "workers_alive": 0}, ["executor-1: shutting down"]),
    ],
)
def test_executor_not_ready(
    registry: Registry, changes: dict[str, Any], expected: list[str]
) -> None:
    owner = FakeOwner(executor_stats(**changes))  # held: ops keeps only a weak reference
    ops = ExecutorOps(owner, None, True)
    attached(ops)
    assert ops.not_ready() == expected
    ok, body = _health.readiness(30.0)
    assert ok is (not expected)
    assert body["not_ready"] == expected
    ops.close()


def test_executor_job_failed_counts_and_reports(registry: Registry) -> None:
    seen: list[runtime.Failure] = []
    owner = FakeOwner(executor_stats())
    ops = ExecutorOps(owner, seen.append, True)
    hooks = attached(ops)
    assert hooks.job_failed
    assert hooks.batch_finished
    worker = WorkerInfo(id=3, backend="thread", pid=1234)
    hooks.job_failed(
        JobFailed(owner, tasks.raise_key_error, None, worker, "builtins.KeyError", "'x'", "tb")
    )
    hooks.job_failed(
        JobFailed(owner, tasks.square, None, None, "runtime.NotTransferable", "no", "")
    )
    hooks.job_failed(
        JobFailed(owner, tasks.raise_key_error, None, worker, "builtins.KeyError", "'y'", "tb")
    )
    got = totals(registry)
    assert got[(P + "jobs_failed_total", ("KeyError",))] == 2
    assert got[(P + "jobs_failed_total", ("runtime.NotTransferable",))] == 1
    ops.close()  # delivers the reports still queued
    assert [(f.task, f.exception_type, f.message) for f in seen] == [
        ("tests.helpers.tasks:raise_key_error", "KeyError", "'x'"),
        ("tests.helpers.tasks:square", "runtime.NotTransferable", "no"),
        ("tests.helpers.tasks:raise_key_error", "KeyError", "'y'"),
    ]
    first = seen[0]
    assert (first.source, first.action, first.attempt, first.traceback) == (
        "executor",
        "raise",
        1,
        "tb",
    )
    assert first.worker is worker
    assert seen[1].worker is None
    assert abs(first.time - time.time()) < 60


def test_executor_batch_finished_fills_the_histogram_per_job(registry: Registry) -> None:
    owner = FakeOwner(executor_stats())
    ops = ExecutorOps(owner, None, True)
    hooks = attached(ops)
    hooks.batch_finished(BatchFinished(owner, 1, 3, 0, 0.002))
    hooks.batch_finished(BatchFinished(owner, 2, 1, 1, 0.5))
    snap = totals(registry)[(P + "job_duration_seconds", ())]
    assert isinstance(snap, HistogramSnapshot)
    assert sum(snap.counts) == 4
    assert snap.counts[snap.bounds.index(0.0025)] == 3  # le=0.0025 holds the three 2 ms jobs
    assert snap.counts[snap.bounds.index(0.5)] == 1
    assert snap.sum == pytest.approx(3 * 0.002 + 0.5)
    ops.close()


def test_executor_observes_only_what_it_needs(registry: Registry) -> None:
    owner = FakeOwner(executor_stats())
    quiet = ExecutorOps(owner, None, False)
    hooks = attached(quiet)
    assert not hooks.job_failed
    assert not hooks.batch_finished
    assert quiet in (ops for ops in registry.components())  # still in /readyz and /healthz
    quiet.close()

    seen: list[runtime.Failure] = []
    hook_only = ExecutorOps(owner, seen.append, False)
    hooks = attached(hook_only)
    assert hooks.job_failed
    hooks.batch_finished(BatchFinished(owner, 1, 5, 0, 0.1))
    assert sum(hook_only.duration.snapshot().counts) == 0  # metrics off: nothing timed
    hooks.job_failed(JobFailed(owner, len, None, None, "builtins.ValueError", "bad", ""))
    hook_only.close()
    assert [f.task for f in seen] == ["builtins:len"]
    assert P + "jobs_submitted_total" not in registry.collect()  # metrics=False: not exported


def test_executor_counters_survive_close_and_never_call_the_owner_after(
    registry: Registry,
) -> None:
    owner = FakeOwner(executor_stats(submitted=5, completed=4))
    ops = ExecutorOps(owner, None, True)
    hooks = attached(ops)
    hooks.job_failed(JobFailed(owner, len, None, None, "builtins.KeyError", "k", ""))
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 5
    owner.stats = executor_stats(submitted=7, completed=7, recycled={"age": 1})
    ops.close()  # the last statistics are read here
    calls = owner.calls
    owner.stats = RuntimeError("a component that is gone must not be asked")
    assert registry.components() == []
    got = totals(registry)
    assert got[(P + "jobs_submitted_total", ())] == 7
    assert got[(P + "jobs_completed_total", ())] == 7
    assert got[(P + "workers_recycled_total", ("age",))] == 1
    assert got[(P + "jobs_failed_total", ("KeyError",))] == 1
    assert P + "executor_workers_alive" not in registry.collect()  # gauges leave with it
    assert owner.calls == calls

    # A second executor adds to the retired totals: counters never go backwards.
    other = FakeOwner(executor_stats(submitted=2, completed=1))
    second = ExecutorOps(other, None, True)
    attached(second)
    assert second.name == "executor-2"
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 9
    second.close()
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 9


def test_executor_dropped_without_close_keeps_the_counters_last_read(registry: Registry) -> None:
    owner: FakeOwner | None = FakeOwner(executor_stats(submitted=3, completed=3))
    ops = ExecutorOps(owner, None, True)
    attached(ops)
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 3  # read (and remembered)
    del owner
    gc.collect()  # the weakref finalizer retires it
    assert ops.owner() is None
    assert ops.gauges() == []
    assert ops.not_ready() == []
    assert registry.components() == []
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 3


def test_executor_failing_statistics_falls_back_to_the_last_read(registry: Registry) -> None:
    owner = FakeOwner(executor_stats(submitted=4))
    ops = ExecutorOps(owner, None, True)
    attached(ops)
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 4
    owner.stats = RuntimeError("tearing down")
    assert [s.value for s in ops.counters() if s.name == P + "jobs_submitted_total"] == [4]
    ok, body = _health.readiness(30.0)
    assert not ok
    assert body["not_ready"] == ["executor-1: could not read its state: RuntimeError: tearing down"]
    ops.close()  # statistics() raises at close too: the last read is what is kept
    assert totals(registry)[(P + "jobs_submitted_total", ())] == 4


def test_health_reads_the_heartbeats_handed_to_attach(registry: Registry) -> None:
    thread = threading.Thread(target=lambda: None, name="runtime-pool-supervisor")
    thread.start()
    thread.join()
    supervisor = Heartbeat("supervisor", thread)
    hub = Heartbeat("hub")
    hub.park("worker messages")
    owner = FakeOwner(pool_stats())  # held: ops keeps only a weak reference
    ops = PoolOps(owner, None, True)
    attached(ops, supervisor, hub)
    ok, body = _health.health(30.0)
    assert not ok
    assert body["unhealthy"] == ["pool-1 supervisor: its thread 'runtime-pool-supervisor' has died"]
    assert [t["thread"] for t in body["components"][0]["threads"]] == ["supervisor", "hub"]
    ops.close()
    assert supervisor.closed
    assert hub.closed
    assert _health.health(30.0)[0]


# ====================================================================== (b) PoolOps


def test_pool_counters_and_gauges_come_from_statistics(registry: Registry) -> None:
    owner = FakeOwner(pool_stats())  # held: ops keeps only a weak reference
    ops = PoolOps(owner, None, True)
    attached(ops)
    got = totals(registry)
    assert got[(P + "tasks_completed_total", ("Loop",))] == 4
    assert got[(P + "tasks_completed_total", ("Other",))] == 1
    assert got[(P + "task_restarts_total", ("Loop",))] == 2
    assert got[(P + "task_give_ups_total", ("Other",))] == 1
    assert got[(P + "pool_workers_replaced_total", ("Loop",))] == 1
    assert got[(P + "workers_recycled_total", ("age",))] == 2
    assert got[(P + "pool_workers_target", ())] == 3
    assert got[(P + "pool_workers_alive", ())] == 3
    assert got[(P + "pool_workers_booting", ())] == 0
    assert got[(P + "restart_backoff_seconds", ("Loop",))] == 0.0
    assert got[(P + "restart_backoff_seconds", ("Other",))] == 4.5
    ops.close()
    got = totals(registry)
    assert got[(P + "tasks_completed_total", ("Loop",))] == 4  # folded in at retire
    assert (P + "restart_backoff_seconds", ("Other",)) not in got  # gauges leave with it


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        (
            {"running": 1, "booting": 1, "waiting_restart": 1},
            ["pool-1: 1 of 3 workers running (1 booting, 1 waiting to restart)"],
        ),
        ({"state": "stopping"}, ["pool-1: the pool is stopping"]),
    ],
)
def test_pool_not_ready(registry: Registry, changes: dict[str, Any], expected: list[str]) -> None:
    owner = FakeOwner(pool_stats(**changes))  # held: ops keeps only a weak reference
    ops = PoolOps(owner, None, True)
    attached(ops)
    assert ops.not_ready() == expected
    ops.close()


def test_pool_task_failed_counts_and_reports_the_decision(registry: Registry) -> None:
    seen: list[runtime.Failure] = []
    owner = FakeOwner(pool_stats())
    ops = PoolOps(owner, seen.append, True)
    hooks = attached(ops)
    assert hooks.task_failed
    worker = WorkerInfo(id=7, backend="process", attempt=1, slot=2, kind="Loop", pid=99)
    for attempt, decision in ((1, Decision("restart", delay=1.0)), (2, Decision("give_up"))):
        hooks.task_failed(
            TaskFailure(
                owner,
                "Loop",
                2,
                attempt,
                worker,
                "builtins.ValueError",
                f"boom on attempt {attempt}",
                "Traceback ...",
                decision,
            )
        )
    hooks.task_failed(
        TaskFailure(
            owner, "Other", 3, 1, None, "runtime.WorkerCrashed", "exit 9", None, Decision("stop")
        )
    )
    got = totals(registry)
    assert got[(P + "task_failures_total", ("Loop", "ValueError"))] == 2
    assert got[(P + "task_failures_total", ("Other", "runtime.WorkerCrashed"))] == 1
    delivered(seen, 3)
    assert [(f.task, f.attempt, f.action, f.exception_type) for f in seen] == [
        ("Loop", 1, "restart", "ValueError"),
        ("Loop", 2, "give_up", "ValueError"),
        ("Other", 1, "stop", "runtime.WorkerCrashed"),
    ]
    assert all(f.source == "pool" for f in seen)
    assert seen[0].worker is worker
    assert seen[0].message == "boom on attempt 1"
    assert seen[0].traceback == "Traceback ..."
    assert seen[2].traceback == ""  # a died worker has none
    assert seen[2].worker is None
    ops.close()
    assert totals(registry)[(P + "task_failures_total", ("Loop", "ValueError"))] == 2


def test_pool_without_metrics_or_hook_does_not_observe(registry: Registry) -> None:
    owner = FakeOwner(pool_stats())  # held: ops keeps only a weak reference
    ops = PoolOps(owner, None, False)
    hooks = attached(ops, Heartbeat("supervisor"))
    assert not hooks.task_failed
    assert registry.components() == [ops]
    assert registry.collect() == {}
    ops.close()
    assert registry.components() == []


def test_attach_after_close_registers_nothing(registry: Registry) -> None:
    owner = FakeOwner(pool_stats())  # held: ops keeps only a weak reference
    ops = PoolOps(owner, None, True)
    ops.close()
    hooks = attached(ops)
    assert not hooks.task_failed
    assert registry.components() == []
