"""Faults inside tasks and jobs: exceptions by the thousand, SystemExit, KeyboardInterrupt,
dying threads, SIGKILLed processes, a worker lost in the middle of a batch."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

import runtime
from runtime._supervisor import _FAILURES_KEPT
from tests.helpers import faults as helpers
from tests.helpers.tasks import read_lines

from .conftest import settle, snapshot, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import FaultRecorder


@pytest.mark.timeout(120)
def test_a_thousand_task_exceptions_restart_each_time_then_give_up_at_the_limit(
    backend: str, fault_recorder: FaultRecorder
) -> None:
    baseline = snapshot()
    per_slot = 500  # two slots: 1,000 restarts, then each slot's next failure gives up
    # Fresh threads cost ~2 ms a restart; fresh subinterpreters and processes ~45-50 ms
    # each (about 50 s per 1,000 on two cores, and on 3.12/3.13 every destroyed
    # interpreter leaks ~3 MB), so those two reuse their bootstrapped worker here. Fresh
    # interpreters in a crash loop are test_crash_loop_memory_is_bounded's subject.
    fresh = backend == "thread"
    gates = (runtime.Channel(), runtime.Channel())
    policy = runtime.RestartPolicy(
        max_restarts=per_slot, within=3600, backoff=0, fresh_worker=fresh
    )
    pool = runtime.Pool(
        {helpers.RaiseOnCue(gates[0]): 1, helpers.RaiseOnCue(gates[1]): 1},
        workers=2,
        backend=backend,
        restart=policy,
        handle_signals=False,
    )
    pool.start()
    restarts = 0
    try:
        for _ in range(per_slot):
            for gate in gates:
                gate.send("fail")
                restarts += 1
                # Back at size after each restart: both slots running, no extra worker alive.
                stats = wait_until(
                    lambda restarts=restarts: (
                        (s := pool.statistics()).restarts == restarts
                        and s.running == 2
                        and s.workers_alive == 2
                        and s
                    ),
                    timeout=20,
                    what=f"restart {restarts} with the pool back at two workers",
                )
                assert stats.gave_up == 0
        fault_recorder.add(
            f"pool task exceptions [{backend}]", injected=restarts, recovered=restarts
        )
        # One failure more than max_restarts: that slot gives up, the other keeps running.
        gates[0].send("fail")
        stats = wait_until(
            lambda: (s := pool.statistics()).gave_up == 1 and s, what="the first give-up"
        )
        assert (stats.restarts, stats.running) == (restarts, 1)
        gates[1].send("fail")
        wait_until(lambda: pool.statistics().state == "stopped", what="the pool to finish")
    finally:
        report = pool.stop(timeout=10)
        for gate in gates:
            gate.close()
            gate.release()
    assert (report.restarts, report.gave_up, report.completed) == (2 * per_slot, 2, 0)
    # The report keeps the most recent failures only (a crash loop must not grow the pool).
    assert len(report.failures) == min(2 * per_slot + 2, _FAILURES_KEPT)
    assert report.failures[-1].endswith(f"attempt {per_slot + 1}")
    fault_recorder.add(f"pool give-up at the limit [{backend}]", injected=2, recovered=2)
    after = settle(baseline)
    assert after.threads <= baseline.threads, (baseline, after)
    assert after.interpreters <= baseline.interpreters, (baseline, after)
    assert after.fds <= baseline.fds, (baseline, after)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("exc", ["SystemExit", "KeyboardInterrupt"])
def test_a_task_raising_systemexit_or_keyboardinterrupt_is_restarted(
    backend: str, exc: str, tmp_path: Path, fault_recorder: FaultRecorder
) -> None:
    out = str(tmp_path / "attempts")
    policy = runtime.RestartPolicy(backoff=0)
    report = runtime.Pool(
        helpers.RaiseOnce(out, exc), workers=1, backend=backend, restart=policy
    ).run()
    attempts = [line.split() for line in read_lines(out)]
    assert [a[0] for a in attempts] == ["1", "2"]
    assert (report.completed, report.restarts, report.gave_up) == (1, 1, 0)
    assert len(report.failures) == 1
    fault_recorder.add(
        f"pool task raises {exc} [{backend}]", injected=1, recovered=report.completed
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("exc", ["SystemExit", "KeyboardInterrupt"])
def test_a_job_raising_systemexit_or_keyboardinterrupt_fails_only_that_job(
    backend: str, exc: str, fault_recorder: FaultRecorder
) -> None:
    with runtime.Executor(2, backend=backend) as ex:
        before = [ex.submit(helpers.identity, i) for i in range(20)]
        bad = ex.submit(helpers.raise_named, exc)
        after = [ex.submit(helpers.identity, i) for i in range(20, 40)]
        error = bad.exception(timeout=30)
        assert type(error).__name__ == exc
        assert [f.result(timeout=30) for f in before + after] == list(range(40))
        assert list(ex.map(helpers.identity, range(100))) == list(range(100))
    fault_recorder.add(f"executor job raises {exc} [{backend}]", injected=1, recovered=1)


@pytest.mark.timeout(60)
def test_a_thread_worker_that_dies_is_replaced(
    tmp_path: Path, fault_recorder: FaultRecorder
) -> None:
    out = str(tmp_path / "attempts")
    report = runtime.Pool(
        helpers.RaiseOnce(out, "SystemExit"),
        workers=1,
        backend="thread",
        restart=runtime.RestartPolicy(backoff=0),
    ).run()
    first, second = (line.split() for line in read_lines(out))
    assert first[1] != second[1]  # the second attempt ran in a new worker
    assert report.replaced == 1
    assert "thread worker" in report.failures[0]
    assert report.completed == 1
    fault_recorder.add("thread worker dies", injected=1, recovered=1)


@pytest.mark.timeout(90)
def test_a_sigkilled_process_worker_is_replaced_by_the_pool(
    tmp_path: Path, fault_recorder: FaultRecorder
) -> None:
    kills = 5
    log = str(tmp_path / "announced")
    pool = runtime.Pool(
        helpers.AnnounceThenWait(log),
        workers=2,
        backend="process",
        restart=runtime.RestartPolicy(backoff=0),
        handle_signals=False,
        stop_timeout=20,
    )
    pool.start()
    try:
        for n in range(1, kills + 1):
            rows = wait_until(
                lambda n=n: len(lines := read_lines(log)) == n + 1 and lines,
                what=f"{n + 1} workers announced",
            )
            pids = [int(row.split()[1]) for row in rows]
            # Workers are killed oldest first: the first n - 1 announcers are dead already.
            alive = pids[n - 1 :]
            os.kill(alive[0], signal.SIGKILL)
            stats = wait_until(
                lambda n=n: (s := pool.statistics()).replaced == n and s.running == 2 and s,
                what=f"replacement {n}",
            )
            assert stats.workers_alive == 2
            fault_recorder.add("pool process worker SIGKILLed", injected=1, recovered=1)
        rows = wait_until(lambda: len(lines := read_lines(log)) == kills + 2 and lines)
        attempts = [int(row.split()[0]) for row in rows]
        assert attempts[:2] == [1, 1]
        assert all(a >= 2 for a in attempts[2:])  # each replacement is a restart of its slot
        assert len({row.split()[1] for row in rows}) == kills + 2  # a new process every time
        report = pool.stop(timeout=20)
    finally:
        if pool.statistics().state != "stopped":
            pool.stop(timeout=5)
    assert (report.replaced, report.unfinished, report.completed) == (kills, 0, 2)


@pytest.mark.timeout(60)
def test_a_sigkilled_executor_worker_fails_only_its_in_flight_futures(
    fault_recorder: FaultRecorder,
) -> None:
    channel = runtime.Channel()
    try:
        with runtime.Executor(2, backend="process") as ex:
            ex.wait_ready(timeout=30)
            doomed = ex.submit(helpers.pid_then_wait, channel, 30)
            pid = channel.recv(timeout=30)
            others = [ex.submit(helpers.identity, i) for i in range(50)]
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(runtime.WorkerCrashed, match="SIGKILL"):
                doomed.result(timeout=30)
            outcomes = [f.exception(timeout=30) for f in others]
            crashed = [e for e in outcomes if e is not None]
            assert all(isinstance(e, runtime.WorkerCrashed) for e in crashed)
            # Later work runs on the survivor and the replacement.
            assert list(ex.map(helpers.identity, range(200))) == list(range(200))
            assert ex.submit(helpers.identity, "after").result(timeout=30) == "after"
    finally:
        channel.close()
        channel.release()
    fault_recorder.add(
        "executor process worker SIGKILLed", injected=1, recovered=1, failed_jobs=1 + len(crashed)
    )


@pytest.mark.timeout(60)
def test_an_executor_worker_lost_mid_batch_fails_only_that_batch(
    fault_recorder: FaultRecorder,
) -> None:
    gate = runtime.Channel()
    try:
        with runtime.Executor(2, backend="process") as ex:
            ex.wait_ready(timeout=30)
            # Hold both workers (two batches each) so the next jobs queue up and leave in
            # batches of several: the killer then sits in the middle of one.
            held = [ex.submit(helpers.released_by, gate, "held") for _ in range(4)]
            items = list(range(200))
            killer_at = 60
            futures = [
                ex.submit(helpers.kill_own_process)
                if i == killer_at
                else ex.submit(helpers.identity, i)
                for i in items
            ]
            for _ in held:
                gate.send(None)
            assert [f.result(timeout=30) for f in held] == ["held"] * 4
            errors = {i: f.exception(timeout=30) for i, f in enumerate(futures)}
            failed = sorted(i for i, e in errors.items() if e is not None)
            assert killer_at in failed
            assert all(isinstance(errors[i], runtime.WorkerCrashed) for i in failed)
            # The killer's batchmates fail with it; the message counts them.
            assert len(failed) > 1
            assert f"while running {len(failed)} job(s)" in str(errors[killer_at])
            for i in items:
                if i not in failed:
                    assert futures[i].result() == i
            # Jobs submitted afterwards all succeed.
            assert list(ex.map(helpers.identity, range(500))) == list(range(500))
    finally:
        gate.close()
        gate.release()
    fault_recorder.add(
        "executor worker lost mid-batch", injected=1, recovered=1, failed_jobs=len(failed)
    )
