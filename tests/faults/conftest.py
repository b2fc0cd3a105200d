"""The fault-injection suite's shared state: a recorder every test reports into, a leak
baseline, and the one summary line printed at the end of the session.

The counts in the summary are what the tests observed (each test adds the faults it
injected, the recoveries it saw, the jobs or messages it found lost or duplicated), never
constants. Leaks are measured for the package as a whole: a snapshot of OS threads, live
subinterpreters, open descriptors and resident memory after a warm-up (so that what the
runtime creates once per process, such as multiprocessing's descriptor-sharing thread,
is part of the baseline), and another after the last fault test, once things settled.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import runtime
from tests.conftest import available_backends
from tests.helpers import faults as helpers
from tests.helpers.ops import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Snapshot:
    threads: int
    interpreters: int
    fds: int
    rss_mb: float


def wait_until(
    condition: Any, timeout: float = 30.0, what: str = "condition", interval: float = 0.0005
) -> Any:
    """:func:`tests.helpers.ops.wait_for`, polling fast: the fault loops hand-shake per restart."""
    return wait_for(condition, timeout, what, interval)


def live_interpreters() -> int:
    """Subinterpreters alive in this process (the main interpreter not counted)."""
    try:
        import _interpreters as low  # 3.13+
    except ImportError:  # 3.12
        import _xxsubinterpreters as low
    return len(low.list_all()) - 1


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def snapshot() -> Snapshot:
    return Snapshot(
        threads=len(os.listdir("/proc/self/task")),
        interpreters=live_interpreters(),
        fds=len(os.listdir("/proc/self/fd")),
        rss_mb=rss_mb(),
    )


def settle(baseline: Snapshot, timeout: float = 15.0) -> Snapshot:
    """Wait until threads, interpreters and descriptors are back at ``baseline`` (or time out).

    Workers end asynchronously (a retired thread unwinds, a child process is reaped), so
    a snapshot taken the instant a pool returns may still count them.
    """
    end = time.monotonic() + timeout
    while True:
        gc.collect()
        now = snapshot()
        back = (
            now.threads <= baseline.threads
            and now.interpreters <= baseline.interpreters
            and now.fds <= baseline.fds
        )
        if back or time.monotonic() > end:
            return now
        time.sleep(0.05)


@dataclasses.dataclass
class FaultRecorder:
    """What the fault tests injected and observed; one per session."""

    injected: int = 0
    recovered: int = 0
    lost: int = 0
    duplicates: int = 0
    tests: int = 0
    baseline: Snapshot | None = None
    final: Snapshot | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    finished: float | None = None
    scenarios: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(
        self,
        scenario: str,
        *,
        injected: int = 0,
        recovered: int = 0,
        lost: int = 0,
        duplicates: int = 0,
        **details: Any,
    ) -> None:
        """Report what one scenario (or one step of it) injected and observed."""
        self.injected += injected
        self.recovered += recovered
        self.lost += lost
        self.duplicates += duplicates
        self.scenarios.append(
            {
                "scenario": scenario,
                "injected": injected,
                "recovered": recovered,
                "lost": lost,
                "duplicates": duplicates,
                **details,
            }
        )

    def leaks(self) -> dict[str, float]:
        if self.baseline is None or self.final is None:
            return {"threads": -1, "interpreters": -1, "fds": -1, "rss_growth_mb": 0.0}
        return {
            "threads": max(0, self.final.threads - self.baseline.threads),
            "interpreters": max(0, self.final.interpreters - self.baseline.interpreters),
            "fds": max(0, self.final.fds - self.baseline.fds),
            "rss_growth_mb": round(self.final.rss_mb - self.baseline.rss_mb, 1),
        }

    def line(self) -> str:
        leaks = self.leaks()
        return (
            f"faults: injected={self.injected} recovered={self.recovered} lost={self.lost} "
            f"duplicates={self.duplicates} leaked_threads={leaks['threads']} "
            f"leaked_interpreters={leaks['interpreters']} leaked_fds={leaks['fds']} "
            f"rss_growth_mb={leaks['rss_growth_mb']}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.line(),
            "python": sys.version.split()[0],
            "injected": self.injected,
            "recovered": self.recovered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "leaked": self.leaks(),
            "tests": self.tests,
            "baseline": dataclasses.asdict(self.baseline) if self.baseline else None,
            "final": dataclasses.asdict(self.final) if self.final else None,
            "wall_s": round((self.finished or time.monotonic()) - self.started, 1),
            "scenarios": self.scenarios,
        }


RECORDER = pytest.StashKey[FaultRecorder]()


@pytest.fixture(scope="session")
def fault_recorder(request: pytest.FixtureRequest) -> FaultRecorder:
    """The session's recorder: every fault test reports what it injected and observed here."""
    stash = request.config.stash
    if RECORDER not in stash:
        stash[RECORDER] = FaultRecorder()
    return stash[RECORDER]


def _warm_up() -> None:
    """Create once what the runtime creates once per process, before the baseline."""
    gate = runtime.Channel()
    for backend in available_backends():
        with warnings.catch_warnings():
            # Explicit subinterpreters on 3.12 warn loudly by design (tests use safe modules).
            warnings.filterwarnings(
                "ignore", message="runtime: own-GIL subinterpreters on Python 3.12"
            )
            ex = runtime.Executor(1, backend=backend)
        with ex:
            assert ex.submit(helpers.identity, 1).result(timeout=60) == 1
            # A channel handed to a child process starts multiprocessing's fd-sharing thread.
            assert ex.submit(helpers.send_on, gate, backend).result(timeout=60) == backend
            assert gate.recv(timeout=60) == backend
    # The broker tests import pika and runtime.amqp: their imports are not leaks.
    importlib.import_module("pika")
    importlib.import_module("runtime.amqp")

    gate.close()
    gate.release()


@pytest.fixture(scope="package", autouse=True)
def _fault_baseline(fault_recorder: FaultRecorder) -> Iterator[None]:
    """Baseline after a warm-up; the leak figures are taken after the package's last test."""
    _warm_up()
    gc.collect()
    fault_recorder.baseline = snapshot()
    fault_recorder.started = time.monotonic()
    yield
    fault_recorder.final = settle(fault_recorder.baseline)
    fault_recorder.finished = time.monotonic()


@pytest.fixture(autouse=True)
def _count_fault_test(fault_recorder: FaultRecorder) -> None:
    fault_recorder.tests += 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = config.stash.get(RECORDER, None)
    if recorder is None or recorder.tests == 0:
        return
    terminalreporter.write_line(recorder.line())
    target = os.environ.get("FAULTS_JSON")
    if target:
        Path(target).write_text(json.dumps(recorder.as_json(), indent=2) + "\n")
