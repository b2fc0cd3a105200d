"""Pool lifecycle: boot timeouts, the fresh-interpreter budget, recycling (every backend)."""

from __future__ import annotations

import itertools
import logging
import os
import sys

import pytest

import runtime
from runtime.backends import abandoned_workers
from runtime.cli import main as cli_main
from tests.helpers import lifecycle, tasks
from tests.helpers.ops import wait_for
from tests.helpers.tasks import read_lines

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- boot timeout
def test_initial_boot_timeout_raises_bootstrap_error(backend, hang_gate, caplog):
    pool = runtime.Pool(
        lifecycle.Fail(),
        workers=2,
        backend=backend,
        bootstrap=lifecycle.hang,
        boot_timeout=0.5,
    )
    with pytest.raises(runtime.BootstrapError) as info:
        pool.start()
    message = str(info.value)
    assert "did not finish the bootstrap tests.helpers.lifecycle:hang" in message
    assert f"{backend} backend" in message
    assert "slot " in message
    assert "worker " in message
    assert "task Fail" in message
    assert "boot_timeout=0.5s" in message
    assert "s elapsed" in message
    assert ("killed" if backend == "process" else "abandoned") in message
    assert pool.statistics().state == "stopped"
    if backend != "process":
        assert abandoned_workers()  # still hanging until the gate opens
        assert "abandoning" in caplog.text


def test_replacement_boot_timeout_is_retried_and_never_wedges(backend, hang_gate, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=2, backoff=0.01, max_backoff=0.02)
    pool = runtime.Pool(
        lifecycle.Fail(out),
        workers=1,
        backend=backend,
        bootstrap=lifecycle.hang_after_first,
        restart=policy,
        boot_timeout=0.5,
    )
    pool.start()
    # The first run fails; its replacement hangs in its bootstrap: the pool still answers.
    wait_for(
        lambda: pool.statistics().booting == 1 and pool.statistics().restarts >= 1,
        what="a replacement booting after a restart",
    )
    pool.resize(2)
    wait_for(lambda: pool.statistics().target_workers == 2, what="the resize")
    report = pool.run()
    # Per slot: failure 1 (the task), 2 and 3 (boot timeouts) exceed max_restarts=2.
    assert report.gave_up == 2
    timed_out = [f for f in report.failures if "bootstrap timed out" in f]
    assert len(timed_out) == 4
    assert [line.split("|")[0] for line in read_lines(out)] == ["1", "1"]


def test_boot_timeout_none_waits(backend):
    pool = runtime.Pool(lifecycle.Fail(), workers=1, backend=backend, boot_timeout=None)
    assert pool.limits.boot_timeout is None
    with pytest.raises(runtime.ConfigurationError, match="boot_timeout"):
        runtime.Pool(lifecycle.Fail(), workers=1, backend=backend, boot_timeout=0)


def test_cli_run_boot_timeout(hang_gate, capsys):
    rc = cli_main(
        [
            "run",
            "tests.helpers.tasks:Hello",
            "--backend",
            "thread",
            "--bootstrap",
            "tests.helpers.lifecycle:hang",
            "--boot-timeout",
            "0.3",
            "--max-tasks-per-worker",
            "3",
            "--max-worker-memory",
            "512M",
            "--max-worker-age",
            "3600",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "did not finish the bootstrap tests.helpers.lifecycle:hang" in err
    assert "boot_timeout=0.3s" in err


# ---------------------------------------------------------------- crash-loop budget
def test_fresh_worker_budget_then_reuse_with_one_warning(backend, tmp_path, caplog):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=6, backoff=0, fresh_workers=2)
    with caplog.at_level(logging.WARNING, logger="runtime"):
        report = runtime.Pool(lifecycle.Fail(out), workers=1, backend=backend, restart=policy).run()
    assert (report.restarts, report.gave_up) == (6, 1)
    workers = [line.split("|")[1] for line in read_lines(out)]
    assert len(workers) == 7
    assert len(set(workers)) == 3  # the first worker, then 2 fresh ones, then reused
    assert workers[3:] == [workers[2]] * 4
    warnings = [
        r for r in caplog.records if "fresh" in r.getMessage() and "reuse" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "fresh_workers=None" in warnings[0].getMessage()


def test_fresh_worker_budget_default_depends_on_the_leak():
    policy = runtime.RestartPolicy()
    leaks = sys.version_info < (3, 14)
    assert policy.fresh_worker_budget("subinterpreter") == (8 if leaks else None)
    assert policy.fresh_worker_budget("process") is None
    assert policy.fresh_worker_budget("thread") is None
    assert runtime.RestartPolicy(fresh_workers=None).fresh_worker_budget("subinterpreter") is None
    with pytest.raises(runtime.ConfigurationError, match="fresh_workers"):
        runtime.RestartPolicy(fresh_workers=-1)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not runtime.capabilities().subinterpreters, reason="no subinterpreters")
def test_crash_loop_memory_stays_bounded_on_subinterpreters(tmp_path, caplog):
    if sys.version_info < (3, 13):
        pytest.importorskip("_xxsubinterpreters")
        import warnings

        warnings.filterwarnings("ignore", message="runtime: own-GIL subinterpreters on Python 3.12")
    out = str(tmp_path / "out")
    # Where interpreters leak (< 3.14) the budget keeps 1,000 restarts cheap; on 3.14+ each
    # restart is a fresh interpreter (about 25 ms here), so fewer make the same point.
    per_slot = 500 if sys.version_info < (3, 14) else 100
    policy = runtime.RestartPolicy(max_restarts=per_slot, within=3600, backoff=0)
    before = _rss()
    with caplog.at_level(logging.WARNING, logger="runtime"):
        report = runtime.Pool(
            lifecycle.Fail(out), workers=2, backend="subinterpreter", restart=policy
        ).run()
    growth = _rss() - before
    assert report.restarts == 2 * per_slot
    lines = read_lines(out)
    assert len(lines) == 2 * per_slot + 2
    budget = policy.fresh_worker_budget("subinterpreter")
    if budget is not None:
        assert len({line.split("|")[1] for line in lines}) == 2 * (1 + budget)
    assert growth < 100 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB"


# ---------------------------------------------------------------- recycling at task boundaries
def test_max_tasks_per_worker_recycles_a_reused_worker(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=5, backoff=0, fresh_worker=False)
    pool = runtime.Pool(
        lifecycle.Fail(out), workers=1, backend=backend, restart=policy, max_tasks_per_worker=2
    )
    report = pool.run()
    assert (report.restarts, report.gave_up, report.recycled) == (5, 1, 2)
    workers = [line.split("|")[1] for line in read_lines(out)]
    assert len(workers) == 6
    assert workers[0] == workers[1] != workers[2] == workers[3] != workers[4] == workers[5]
    assert pool.statistics().recycled_by_reason == {"tasks": 2}


def test_max_worker_age_recycles_at_the_restart(backend, tmp_path):
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=2, backoff=0, fresh_worker=False)
    report = runtime.Pool(
        lifecycle.Fail(out, sleep=0.4),
        workers=1,
        backend=backend,
        restart=policy,
        max_worker_age=0.3,
    ).run()
    assert report.recycled == 2
    assert len({line.split("|")[1] for line in read_lines(out)}) == 3


def test_a_worker_over_its_memory_limit_does_not_host_the_restart(backend, tmp_path):
    # End to end: the worker measures itself after the run (runtime._usage) and reports
    # before its task's failure, so the restart goes to a fresh worker.
    out = str(tmp_path / "out")
    policy = runtime.RestartPolicy(max_restarts=1, backoff=0, fresh_worker=False)
    pool = runtime.Pool(
        lifecycle.KeepThenFail(out, 96),
        workers=1,
        backend=backend,
        bootstrap="tests.helpers.recycle_jobs:boot",
        restart=policy,
        max_worker_memory="64M",
    )
    report = pool.run()
    assert report.recycled >= 1
    assert pool.statistics().recycled_by_reason.get("memory", 0) >= 1
    workers = [line.split("|")[1] for line in read_lines(out)]
    assert len(workers) == 2
    assert workers[0] != workers[1]


def test_memory_limit_travels_in_the_init_spec():
    from runtime._common import init_spec

    spec = init_spec({"id": 1, "backend": "thread"}, "thread", None, memory_limit=1 << 20)
    assert spec["memory_limit"] == 1 << 20
    assert "memory_limit" not in init_spec({"id": 1, "backend": "thread"}, "thread", None)


@pytest.mark.timeout(120)
def test_running_task_is_recycled_on_a_standby_booted_first(backend, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    monkeypatch.setenv("RUNTIME_TEST_BOOT_LOG", out)
    pool = runtime.Pool(
        tasks.Loop(out),
        workers=1,
        backend=backend,
        bootstrap=lifecycle.note_boot,
        max_worker_age=0.5,
    )
    pool.start()
    try:
        wait_for(lambda: pool.statistics().recycled >= 2, 60, what="two recycles")
    finally:
        report = pool.stop(timeout=10)
    assert report.recycled >= 2
    assert report.completed == 1  # the last run, stopped by stop()
    lines = read_lines(out)
    starts = [line.split("|")[1] for line in lines if line.startswith("start|")]
    assert len(set(starts)) == len(starts) >= 3
    # Each successor booted before its predecessor's task was asked to stop.
    for old, new in itertools.pairwise(starts):
        assert lines.index(f"boot|{new}") < lines.index(f"stop|{old}")
