"""nox sessions: tests on every supported interpreter found here, lint, types, bench.

Interpreters are found the way ``scripts/test.sh`` finds them (``scripts/_python.sh``: pyenv's versions, PATH,
and the prefixes ``../shared/tools/debian-python`` unpacks), so ``nox`` and the test script run the same set.
Free-threaded builds (3.13t/3.14t) join wherever they exist.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "lint", "types"]

HERE = Path(__file__).parent


def _found() -> dict[str, str]:
    """``{"3.14.10": "/path/to/python3.14", ...}`` as scripts/_python.sh's find_pythons reports them."""
    try:
        out = subprocess.run(
            ["bash", "-c", ". scripts/_python.sh && find_pythons"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


FOUND = _found()
# nox's own lookup by name serves where the script finds nothing (e.g. a machine without bash).
NEWEST = list(FOUND.values())[-1] if FOUND else "3.14"


@nox.session
@nox.parametrize(
    "python",
    [nox.param(path, id=version) for version, path in FOUND.items()]
    or ["3.12", "3.13", "3.14", "3.15", "3.13t", "3.14t"],
)
def tests(session: nox.Session) -> None:
    """The whole suite; free-threaded builds (3.13t/3.14t) exercise the thread backend in parallel."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "runtime", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "runtime")


@nox.session(python=NEWEST)
def types(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=NEWEST)
def bench(session: nox.Session) -> None:
    session.install("-e", ".[bench]")
    args = session.posargs or ["--quick", "--json", "bench-out/bench.json", "--plot", "bench-out/bench.png"]
    session.run("parallel-runtime", "bench", *args)
