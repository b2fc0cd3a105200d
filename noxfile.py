"""nox sessions: tests on every interpreter that exists here (missing ones are skipped), lint, types, bench."""

from __future__ import annotations

import nox

nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "lint", "types"]

PYTHONS = ["3.12", "3.13", "3.14", "3.13t", "3.14t"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite; free-threaded builds (3.13t/3.14t) exercise the thread backend in parallel."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.13")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "runtime", "tests")
    session.run("ruff", "format", "--check", "runtime")


@nox.session(python="3.13")
def types(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.13")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[bench]")
    args = session.posargs or ["--quick", "--json", "bench-out/bench.json", "--plot", "bench-out/bench.png"]
    session.run("parallel-runtime", "bench", *args)
