"""Lifecycle faults: hung bootstraps (boot timeout), recycling under load, the crash-loop
memory bound.

These drive the lifecycle API of issue 10 (``boot_timeout=``, ``max_tasks_per_worker=``
and the pool's bounded fresh-worker budget on Pythons whose interpreters leak).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
import warnings
from typing import TYPE_CHECKING

import pytest

import runtime
from runtime._policy import interpreters_leak
from tests.helpers import faults as helpers
from tests.helpers.tasks import read_lines

from .broker import ROOT
from .conftest import rss_mb

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .conftest import FaultRecorder

HUNG_BOOT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import runtime
    from tests.helpers import faults

    backend = sys.argv[1]
    t0 = time.monotonic()
    try:
        with runtime.Executor(2, backend=backend, bootstrap=faults.hang_boot, boot_timeout=1.0) as ex:
            ex.wait_ready(timeout=60)
    except runtime.BootstrapError as exc:
        print("executor:", type(exc).__name__, round(time.monotonic() - t0, 1), exc, flush=True)
    else:
        print("executor: no error", flush=True)
    t0 = time.monotonic()
    try:
        runtime.Pool(
            faults.FailForever(), workers=2, backend=backend, bootstrap=faults.hang_boot,
            boot_timeout=1.0, handle_signals=False,
        ).start()
    except runtime.BootstrapError as exc:
        print("pool:", type(exc).__name__, round(time.monotonic() - t0, 1), exc, flush=True)
    else:
        print("pool: no error", flush=True)
    print("exiting", flush=True)
    """
)


@pytest.fixture
def hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A FIFO the ``hang_boot`` bootstrap blocks on; closing our end releases every reader."""
    fifo = str(tmp_path / "hang")
    os.mkfifo(fifo)
    # Held open for writing, so a reader's open() returns at once and its read() blocks.
    holder = os.open(fifo, os.O_RDWR)
    monkeypatch.setenv("RUNTIME_FAULT_HANG", fifo)
    try:
        yield fifo
    finally:
        os.close(holder)  # end of file for whoever is still reading: nothing stays hung


@pytest.mark.timeout(90)
def test_hung_bootstraps_time_out_and_nothing_hangs_at_exit(
    backend: str, hang: str, fault_recorder: FaultRecorder
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", HUNG_BOOT_SCRIPT, backend],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    raised = [
        line
        for line in lines
        if line.startswith(("executor: BootstrapError", "pool: BootstrapError"))
    ]
    fault_recorder.add(
        f"hung bootstrap [{backend}]",
        injected=2,
        recovered=len(raised) if proc.returncode == 0 and "exiting" in lines else 0,
        exit_s=round(elapsed, 1),
    )
    assert len(raised) == 2, output
    for line in raised:
        assert "hang_boot" in line, line  # the error names the bootstrap
    assert proc.returncode == 0, output
    assert lines[-1] == "exiting", output


@pytest.mark.timeout(150)
def test_recycling_under_load_loses_and_repeats_nothing(
    backend: str, tmp_path: Path, fault_recorder: FaultRecorder
) -> None:
    jobs, per_worker = 5_000, 50
    if interpreters_leak(backend):
        # Each recycled interpreter keeps ~3 MB on CPython < 3.14 (the executor warns):
        # 20 recycles make the same point as 100 without growing the process by 300 MB.
        per_worker = 250
    log = str(tmp_path / "jobs")
    with runtime.Executor(2, backend=backend, max_tasks_per_worker=per_worker) as ex:
        futures = [ex.submit(helpers.record_job, log, i) for i in range(jobs)]
        results = [f.result(timeout=120) for f in futures]
    assert [job for job, _ in results] == list(range(jobs))  # every job answered, in order
    ran = collections.Counter(int(line.split()[0]) for line in read_lines(log))
    runs_per_worker = collections.Counter(int(line.split()[1]) for line in read_lines(log))
    lost = jobs - len(ran)
    twice = sum(n - 1 for n in ran.values() if n > 1)
    recycled = len(runs_per_worker) - 2
    fault_recorder.add(
        f"recycling under load [{backend}]",
        injected=recycled,
        recovered=recycled if not lost and not twice else 0,
        lost=lost,
        duplicates=twice,
        workers=len(runs_per_worker),
    )
    assert set(ran) == set(range(jobs))
    assert lost == 0
    assert twice == 0
    assert max(runs_per_worker.values()) <= per_worker
    assert len(runs_per_worker) >= jobs // per_worker


@pytest.mark.timeout(150)
def test_crash_loop_memory_is_bounded(fault_recorder: FaultRecorder) -> None:
    """A task that always fails, default policy but no backoff, two subinterpreter workers.

    The target is 10,000 restarts within 300 MB on 3.13. Here the loop runs up to 2,000
    restarts or 25 s, whichever comes first (3.14+ keeps fresh interpreters: ~40 ms a
    restart on two cores), in two halves: the whole run must stay within 300 MB, and the
    second half (past any fixed start-up cost, such as a budget of fresh interpreters)
    within 300 MB per 10,000 restarts, plus 16 MB of allocator noise.
    """
    if not runtime.capabilities().subinterpreters:
        pytest.skip("no own-GIL subinterpreters on this build")
    if sys.version_info < (3, 13):
        warnings.filterwarnings("ignore", message="runtime: own-GIL subinterpreters on Python 3.12")
    target, budget_s, bound_mb, noise_mb = 2_000, 25.0, 300.0, 16.0
    pool = runtime.Pool(
        helpers.FailForever(),
        workers=2,
        backend="subinterpreter",
        restart=runtime.RestartPolicy(backoff=0),
        handle_signals=False,
    )
    start_rss = rss_mb()
    pool.start()

    def run_until(restarts: int, until: float) -> tuple[int, float]:
        # Stops early if memory runs away, so an unbounded loop fails fast instead of
        # eating the machine.
        while True:
            done, rss = pool.statistics().restarts, rss_mb()
            if done >= restarts or time.monotonic() >= until or rss - start_rss > bound_mb:
                return done, rss
            time.sleep(0.05)

    try:
        began = time.monotonic()
        mid_restarts, mid_rss = run_until(target // 2, began + budget_s / 2)
        first_half = time.monotonic() - began
        end_restarts, end_rss = run_until(2 * mid_restarts, time.monotonic() + first_half)
    finally:
        report = pool.stop(timeout=20)
    growth = end_rss - start_rss
    steady = end_rss - mid_rss
    steady_bound = bound_mb * (end_restarts - mid_restarts) / 10_000 + noise_mb
    bounded = growth <= bound_mb and steady <= steady_bound
    fault_recorder.add(
        "crash loop memory bound [subinterpreter]",
        injected=report.restarts,
        recovered=report.restarts if bounded else 0,
        restarts=end_restarts,
        rss_growth_mb=round(growth, 1),
        second_half_growth_mb=round(steady, 1),
        per_10k_restarts_mb=round(steady * 10_000 / max(1, end_restarts - mid_restarts), 1),
    )
    assert mid_restarts > 0
    assert end_restarts > mid_restarts, (mid_restarts, end_restarts)
    assert growth <= bound_mb, f"+{growth:.0f} MB over {end_restarts} restarts"
    assert steady <= steady_bound, (
        f"+{steady:.1f} MB over restarts {mid_restarts}..{end_restarts}: more than "
        f"{bound_mb:.0f} MB per 10,000 restarts"
    )
