"""Whole programs in a subprocess: __main__ tasks, SIGTERM drain, the CLI's run command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    lines = out.stdout.splitlines()
    assert lines.count(f"task-ran|{backend}|main-bootstrap") == 2
    assert "completed=2" in lines
    assert "cubes=0,1,8,27,64" in lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_a_running_pool(backend, sig):
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(SCRIPTS / "drain.py"), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        started = 0
        assert proc.stdout is not None
        while started < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            started += line.startswith("started|")
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = rest.splitlines()
    assert sum(line.startswith("drained|") for line in lines) == 2
    assert "report|2|0|True" in lines


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
