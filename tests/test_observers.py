"""The observer seam (runtime.Observer), the frozen statistics and the pool's Decision."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Any

import pytest

import runtime
from runtime._events import HOOKS, Hooks
from runtime._policy import decide
from tests.helpers import lifecycle, tasks
from tests.helpers.tasks import read_lines

pytestmark = pytest.mark.timeout(120)


class Counting(runtime.Observer):
    """Counts every hook it hears, and keeps the events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, list[Any]] = collections.defaultdict(list)

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.events[name])


def _recording(name: str) -> Any:
    def hook(self: Counting, event: Any) -> None:
        with self.lock:
            self.events[name].append(event)

    hook.__name__ = name
    return hook


for _name in HOOKS:
    setattr(Counting, _name, _recording(_name))


class Raising(runtime.Observer):
    """Raises in every hook."""


def _raising(name: str) -> Any:
    def hook(self: Raising, event: Any) -> None:
        raise RuntimeError(f"observer bug in {name}")

    return hook


for _name in HOOKS:
    setattr(Raising, _name, _raising(_name))


class OnlyFinished(runtime.Observer):
    def __init__(self) -> None:
        self.finished = 0

    def job_finished(self, event: Any) -> None:
        self.finished += 1


def _run_jobs(ex: runtime.Executor) -> list[Any]:
    futures = [ex.submit(tasks.square, i) for i in range(40)]
    results = [f.result(timeout=30) for f in futures]
    results += list(ex.map(tasks.square, range(100), chunksize=10))
    with pytest.raises(KeyError):
        ex.submit(tasks.raise_key_error, "k").result(timeout=30)
    return results


# ---------------------------------------------------------------- executor
def test_an_observer_sees_exactly_the_jobs_run(backend):
    seen = Counting()
    with runtime.Executor(2, backend=backend, observers=[seen]) as ex:
        results = _run_jobs(ex)
        stats = ex.statistics()
    assert results == [i * i for i in range(40)] + [i * i for i in range(100)]
    # 40 submits, 10 map chunks (a chunk is one job), 1 failure.
    assert seen.count("job_submitted") == 51
    assert seen.count("job_started") == 51
    assert seen.count("job_finished") == 50
    assert seen.count("job_failed") == 1
    (failed,) = seen.events["job_failed"]
    assert failed.exception_type == "KeyError"
    assert failed.function is tasks.raise_key_error
    assert failed.worker.backend == backend
    assert "raise_key_error" in failed.traceback
    assert {e.function for e in seen.events["job_finished"]} == {tasks.square}
    batches = seen.events["batch_finished"]
    assert sum(b.jobs for b in batches) == 51
    assert sum(b.failed for b in batches) == 1
    assert all(b.seconds >= 0 for b in batches)
    assert seen.count("worker_started") == 2
    assert seen.count("worker_ready") == 2
    assert (stats.submitted, stats.completed, stats.failed) == (51, 50, 1)


def test_an_observer_that_raises_changes_nothing(backend, caplog):
    with runtime.Executor(2, backend=backend) as plain:
        expected = _run_jobs(plain)
        plain_stats = plain.statistics()
    later = Counting()
    with runtime.Executor(2, backend=backend, observers=[Raising(), later]) as ex:
        assert _run_jobs(ex) == expected
        stats = ex.statistics()
    assert (stats.submitted, stats.completed, stats.failed) == (
        plain_stats.submitted,
        plain_stats.completed,
        plain_stats.failed,
    )
    assert later.count("job_finished") == 50  # the next observer still hears everything
    logged = [r for r in caplog.records if "observer hook" in r.getMessage()]
    assert logged
    assert all(r.levelno == logging.ERROR for r in logged)


def test_a_worker_that_dies_fails_its_jobs_for_observers_too():
    seen = Counting()
    with runtime.Executor(1, backend="process", observers=[seen]) as ex:
        with pytest.raises(runtime.WorkerCrashed):
            ex.submit(tasks.die_hard).result(timeout=30)
        assert ex.submit(tasks.square, 3).result(timeout=30) == 9
        stats = ex.statistics()
    (failed,) = seen.events["job_failed"]
    assert failed.exception_type == "runtime.WorkerCrashed"
    assert seen.count("worker_replaced") == 1
    assert stats.replaced == 1
    assert stats.failed == 1


def test_process_wide_observers_hear_every_component_until_removed():
    seen = Counting()
    runtime.add_observer(seen)
    try:
        with runtime.Executor(1, backend="thread") as ex:
            ex.submit(tasks.square, 2).result(timeout=30)
    finally:
        runtime.remove_observer(seen)
    assert seen.count("job_finished") == 1
    with runtime.Executor(1, backend="thread") as ex:
        ex.submit(tasks.square, 2).result(timeout=30)
    assert seen.count("job_finished") == 1
    runtime.remove_observer(seen)  # not registered: no error


def test_unimplemented_hooks_cost_nothing():
    only = OnlyFinished()
    hooks = Hooks([only])
    assert hooks.job_finished  # one method to call
    for name in HOOKS:
        if name != "job_finished":
            assert not getattr(hooks, name), name  # an empty tuple: one falsy check
    assert not Hooks().job_finished
    with runtime.Executor(1, backend="thread", observers=[only]) as ex:
        ex.submit(tasks.square, 2).result(timeout=30)
    assert only.finished == 1


def test_observers_must_be_observers():
    with pytest.raises(runtime.ConfigurationError, match="Observer"):
        runtime.Executor(1, backend="thread", observers=[object()])  # type: ignore[list-item]
    with pytest.raises(runtime.ConfigurationError, match="Observer"):
        runtime.add_observer(print)  # type: ignore[arg-type]
    with pytest.raises(runtime.ConfigurationError, match="Observer"):
        runtime.Pool(tasks.Hello, observers=["no"])  # type: ignore[list-item]


def test_executor_statistics_are_a_frozen_snapshot(backend):
    with runtime.Executor(2, backend=backend) as ex:
        ex.wait_ready(timeout=30)
        gate = runtime.Channel()
        futures = [ex.submit(tasks.released_by, gate, i) for i in range(6)]
        busy = ex.statistics()  # each job is queued or on a worker until the gate opens
        for _ in range(6):
            gate.send(1)
        assert [f.result(timeout=30) for f in futures] == list(range(6))
        done = ex.statistics()
    after = ex.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        busy.submitted = 0  # type: ignore[misc]
    assert busy.backend == backend
    assert busy.workers_target == 2
    assert busy.workers_alive == 2
    assert busy.queued + busy.in_flight == 6
    assert busy.submitted == 6
    assert busy.completed == 0
    assert busy.state == "running"
    assert busy.broken is None
    assert (done.completed, done.queued, done.in_flight, done.batches_in_flight) == (6, 0, 0, 0)
    assert after.state == "shutdown"


def test_a_broken_executor_says_so_in_its_statistics(backend):
    ex = runtime.Executor(1, backend=backend, bootstrap="tests.helpers.tasks:boot_fails")
    try:
        with pytest.raises(runtime.BootstrapError):
            ex.wait_ready(timeout=30)
        stats = ex.statistics()
        assert stats.state == "broken"
        assert "bootstrap failed" in (stats.broken or "")
    finally:
        ex.shutdown()


# ---------------------------------------------------------------- pool
def test_a_pool_task_failure_carries_the_decision(backend, tmp_path):
    out = str(tmp_path / "out")
    seen = Counting()
    policy = runtime.RestartPolicy(max_restarts=2, backoff=0)
    report = runtime.Pool(
        lifecycle.Fail(out), workers=1, backend=backend, restart=policy, observers=[seen]
    ).run()
    assert (report.restarts, report.gave_up) == (2, 1)
    failures = seen.events["task_failed"]
    assert [f.decision.action for f in failures] == ["restart", "restart", "give_up"]
    assert all(f.exception_type == "ValueError" and f.kind == "Fail" for f in failures)
    assert [f.attempt for f in failures] == [1, 2, 3]
    assert all(f.worker.backend == backend and f.worker.slot == 1 for f in failures)
    assert failures[0].decision.fresh_worker  # RestartPolicy(fresh_worker=True)
    assert len(read_lines(out)) == 3


def test_a_pool_observer_that_raises_changes_nothing(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=2, backoff=0)
    report = runtime.Pool(
        lifecycle.Fail(out), workers=1, backend=backend, restart=policy, observers=[Raising()]
    ).run()
    assert (report.restarts, report.gave_up, report.completed) == (2, 1, 0)
    assert len(read_lines(out)) == 3


def test_pool_events_and_statistics_by_kind(backend, tmp_path):
    seen = Counting()
    pool = runtime.Pool(
        {tasks.KindA(str(tmp_path / "a")): 1, tasks.KindB(str(tmp_path / "b")): 1},
        workers=2,
        backend=backend,
        observers=[seen],
    )
    report = pool.run()
    stats = pool.statistics()
    assert report.completed == 2
    assert sorted(e.kind for e in seen.events["task_finished"]) == sorted(stats.completed_by_kind)
    assert sum(stats.completed_by_kind.values()) == 2
    assert seen.count("worker_started") == 2
    assert seen.count("worker_ready") == 2
    assert seen.count("worker_stopped") == 2
    assert stats.restart_backoff == dict.fromkeys(stats.restart_backoff, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.completed = 0  # type: ignore[misc]


# ---------------------------------------------------------------- the decision, a pure function
def test_decide_is_a_pure_function_of_what_the_pool_knows():
    policy = runtime.RestartPolicy(max_restarts=3, backoff=0.5, jitter=False)
    base = {"worker_alive": True, "recycle_reason": None, "fresh_allowed": True}
    assert decide(policy, 1, stopping=True, **base) == runtime.Decision("stop")
    assert decide(policy, 4, stopping=False, **base) == runtime.Decision("give_up")
    first = decide(policy, 1, stopping=False, **base)
    assert first == runtime.Decision("restart", 0.5, fresh_worker=True)
    assert decide(policy, 3, stopping=False, **base).delay == 2.0
    spent = decide(policy, 1, stopping=False, **{**base, "fresh_allowed": False})
    assert spent.fresh_worker is False  # past the fresh_workers budget: reuse
    gone = decide(policy, 1, stopping=False, **{**base, "worker_alive": False})
    assert gone.fresh_worker is True
    aged = decide(policy, 1, stopping=False, **{**base, "recycle_reason": "age"})
    assert (aged.fresh_worker, aged.recycle_reason) == (True, "age")
    reuse = runtime.RestartPolicy(fresh_worker=False)
    assert decide(reuse, 1, stopping=False, **base).fresh_worker is False
    assert decide(runtime.RestartPolicy(), 10**6, stopping=False, **base).action == "restart"
