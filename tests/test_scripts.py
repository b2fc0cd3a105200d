"""Whole programs in a subprocess: __main__ tasks, SIGTERM drain, the CLI's run command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_tasks_and_functions_defined_in_main(backend):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(SCRIPTS / "main_tasks.py"), backend],
        capture_output=True,
        text=True,
        timeout=100,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"task-ran|{backend}|main-bootstrap") == 2
    assert "completed=2" in out.stdout
    assert "cubes=0,1,8,27,64" in out.stdout
    assert "cloudpickle-loaded=False,False" in out.stdout


def _communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """The rest of the output; on a timeout, kill the program and fail with what it had printed."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit within {timeout}s\n--- stdout\n{out}\n--- stderr\n{err}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_a_running_pool(backend, sig):
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(SCRIPTS / "drain.py"), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    with proc:
        # Workers print from separate interpreters/processes, so their lines can interleave
        # on the shared stdout: count markers in the text, not lines.
        seen = ""
        assert proc.stdout is not None
        while seen.count("started|") < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            seen += line
        proc.send_signal(sig)
        rest, err = _communicate(proc, 60)
    assert proc.returncode == 0, err
    assert rest.count("drained|") == 2
    assert "report|2|0|True" in rest


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_taken_by_another_thread_still_drains(backend, sig):
    # The kernel may give a process-directed signal to any thread; Pool.run() in the main thread
    # must wake up for it all the same (it once slept until the next signal).
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(SCRIPTS / "signal_elsewhere.py"), backend, sig],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    with proc:
        out, err = _communicate(proc, 60)
    assert proc.returncode == 0, err
    assert "report|2|0|True" in out
    assert f"{sig} received" in err


def test_cli_run_command():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            "tests.helpers.tasks:Hello",
            "--workers",
            "2",
            "--backend",
            "thread",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("hello from worker") == 2
    assert "completed=2 restarts=0 gave_up=0" in out.stdout


def test_cli_run_reports_bad_input():
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "run", "tests.helpers.nope:Task"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode == 2
    assert "cannot import module 'tests.helpers.nope'" in out.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_process_workers_exit_when_the_parent_is_killed():
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(SCRIPTS / "drain.py"), "process"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    seen = ""
    assert proc.stdout is not None
    while seen.count("started|") < 2:
        line = proc.stdout.readline()
        assert line
        seen += line
    pids = [int(part.split("|")[2].split()[0]) for part in seen.split("started")[1:]]
    assert len(pids) == 2
    proc.kill()
    proc.wait(timeout=20)
    proc.stdout.close()
    end = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "orphaned workers kept running"
