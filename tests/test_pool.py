"""The supervised pool on every backend."""

from __future__ import annotations

import collections
import time

import pytest

import runtime
from tests.helpers import tasks
from tests.helpers.tasks import read_lines, wait_for_lines

pytestmark = pytest.mark.timeout(90)


def _wait(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_bootstrap_runs_once_per_worker_and_reaches_the_task(backend, tmp_path):
    out = str(tmp_path / "out")
    report = runtime.Pool(tasks.Report(out), workers=3, backend=backend, bootstrap=tasks.boot).run()
    assert (report.completed, report.restarts, report.gave_up) == (3, 0, 0)
    rows = [line.split("|") for line in read_lines(out)]
    assert len(rows) == 3
    for _tag, worker_id, _kind, attempt, booted_in, _boots in rows:
        assert booted_in == worker_id  # the context was built in *this* worker
        assert attempt == "1"
    if backend != "thread":  # isolated module state: each fresh worker booted exactly once
        assert {r[5] for r in rows} == {"1"}


def test_bootstrap_by_reference_and_generator_finalizer(backend, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    fin = str(tmp_path / "fin")
    monkeypatch.setenv("RUNTIME_TEST_FINALIZE_FILE", fin)
    report = runtime.Pool(
        "tests.helpers.tasks:Report",
        workers=1,
        backend=backend,
        bootstrap="tests.helpers.tasks:boot_generator",
    )
    # A reference names a class; constructor arguments need an instance, so use one:
    report = runtime.Pool(
        tasks.Report(out),
        workers=2,
        backend=backend,
        bootstrap="tests.helpers.tasks:boot_generator",
    ).run()
    assert report.completed == 2
    assert wait_for_lines(fin, 2) == ["finalized", "finalized"]


def test_module_globals_are_isolated_between_workers(backend, tmp_path):
    out = str(tmp_path / "out")
    runtime.Pool(tasks.Isolation(out), workers=3, backend=backend).run()
    seen = read_lines(out)
    assert len(seen) == 3
    if backend == "thread":
        # Threads share module globals by nature: exactly one saw the pristine value.
        assert seen.count("pristine") == 1
    else:
        assert seen == ["pristine"] * 3


def test_failures_restart_with_backoff_then_give_up(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=2, within=60, backoff=0.01, max_backoff=0.05)
    report = runtime.Pool(tasks.FailAlways(out), workers=1, backend=backend, restart=policy).run()
    assert (report.completed, report.restarts, report.gave_up) == (0, 2, 1)
    lines = read_lines(out)
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]
    workers = {line.split()[-1] for line in lines}
    assert len(workers) == 3  # fresh_worker=True: each attempt in a fresh worker
    assert len(report.failures) == 3
    assert "ValueError: boom on attempt 3" in report.failures[-1]


def test_restart_in_fresh_worker_drops_leaked_state(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(backoff=0.01)
    report = runtime.Pool(tasks.FailOnce(out), workers=1, backend=backend, restart=policy).run()
    assert (report.completed, report.restarts, report.gave_up) == (1, 1, 0)
    first, second = (line.split("|") for line in read_lines(out))
    assert first[0] == "1"
    assert second[0] == "2"
    assert first[1] != second[1]
    if backend != "thread":
        assert second[2] == "pristine"


def test_reused_worker_when_fresh_worker_is_false(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(backoff=0.01, fresh_worker=False)
    report = runtime.Pool(tasks.FailOnce(out), workers=1, backend=backend, restart=policy).run()
    assert report.completed == 1
    assert report.restarts == 1
    first, second = (line.split("|") for line in read_lines(out))
    assert first[1] == second[1]
    assert second[2] == "leaked by attempt 1"


def test_a_worker_that_dies_is_replaced(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(backoff=0.01)
    report = runtime.Pool(
        tasks.FailOnce(out, die=True), workers=1, backend=backend, restart=policy
    ).run()
    assert report.replaced == 1
    assert report.completed == 1
    assert len(read_lines(out)) == 2


@pytest.mark.parametrize(("total", "expected"), [(10, (3, 7)), (16, (5, 11))])
def test_weights_split_the_workers(backend, tmp_path, total, expected):
    out = str(tmp_path / "out")
    pool = runtime.Pool(
        {tasks.KindA(out, "A"): 3, tasks.KindB(out, "B"): 7}, workers=total, backend=backend
    )
    report = pool.run()
    assert report.completed == total
    kinds = collections.Counter(line.split("|")[0] for line in read_lines(out))
    assert (kinds["A"], kinds["B"]) == expected


def test_fraction_of_cpus():
    caps = runtime.capabilities()
    fake = caps.replace(cpu_count=8)
    pool = runtime.Pool(
        tasks.Report("/dev/null"), workers=0.5, backend="thread", _capabilities=fake
    )
    assert pool.statistics().target_workers == 4
    pool = runtime.Pool(
        tasks.Report("/dev/null"), workers=0.01, backend="thread", _capabilities=fake
    )
    assert pool.statistics().target_workers == 1


def test_resize_up_and_down_while_running(backend, tmp_path):
    out = str(tmp_path / "out")
    with runtime.Pool(tasks.Loop(out), workers=2, backend=backend, stop_timeout=20) as pool:
        assert _wait(lambda: pool.statistics().running == 2)
        pool.resize(4)
        assert _wait(lambda: pool.statistics().running == 4)
        assert len(wait_for_lines(out, 4)) == 4
        pool.resize(1)
        assert _wait(lambda: pool.statistics().running == 1)
        assert _wait(lambda: sum(line.startswith("stop") for line in read_lines(out)) == 3)
        stats = pool.statistics()
        assert stats.target_workers == 1
        assert stats.completed == 3
        report = pool.stop(timeout=20)
    assert report.completed == 4
    assert report.unfinished == 0
    assert report.stopped


def test_stop_reports_tasks_that_do_not_finish(tmp_path):
    out = str(tmp_path / "out")
    pool = runtime.Pool(tasks.Stubborn(out, seconds=1.5), workers=1, backend="process").start()
    wait_for_lines(out, 1)
    report = pool.stop(timeout=0.2)
    assert report.unfinished == 1
    assert report.completed == 0


def test_statistics_is_a_frozen_snapshot(tmp_path):
    out = str(tmp_path / "out")
    with runtime.Pool(tasks.Loop(out), workers=2, backend="thread") as pool:
        stats = pool.statistics()
        with pytest.raises(AttributeError):
            stats.running = 5  # type: ignore[misc]
        assert stats.backend == "thread"
        assert stats.target_workers == 2


def test_a_pool_starts_only_once(tmp_path):
    pool = runtime.Pool(tasks.Report(str(tmp_path / "o")), backend="thread")
    pool.run()
    with pytest.raises(runtime.PoolError, match="already started"):
        pool.start()
