"""Functions, classes, lambdas and closures from an interactive __main__, in real interpreters.

Each session runs in a subprocess as a user would start it: ``python -c``, ``python -``
(code on stdin) and the REPL (``python -i`` reading stdin), on every backend. The
session drives Executor, Pool and runtime.aio with objects defined in it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
ROOT = Path(__file__).parent.parent

# REPL-friendly: a blank line after each compound statement, none inside one.
SESSION = textwrap.dedent(
    """\
    import itertools, sys, threading
    import anyio
    import runtime, runtime.aio
    B = {backend!r}
    SCALE = 10
    def sq(x):
        return x * x + SCALE

    def make_adder(n):
        return lambda x: x + n

    class Point:
        def __init__(self, x):
            self.x = x

    class Rejected(Exception):
        def __init__(self, code, detail):
            super().__init__(f"{{code}}: {{detail}}")
            self.code = code

    def reject(code):
        raise Rejected(code, "no")

    lock = threading.Lock()
    def uses_lock():
        with lock:
            return 1

    class Hello(runtime.Task):
        def run(self):
            print(f"task|{{self.worker.backend}}|{{self.context['from']}}", flush=True)

    ex = runtime.Executor(2, backend=B)
    print("submit", ex.submit(sq, 3).result(30))
    print("lambda", ex.submit(lambda x: x * 2, 5).result(30))
    print("closure", ex.submit(make_adder(10), 1).result(30))
    p = ex.submit(Point, 7).result(30)
    print("instance", type(p) is Point, p.x)
    print("map", list(ex.map(sq, range(4))))
    print("lazy", list(itertools.islice(ex.map(sq, itertools.count(), buffersize=2), 4)))
    print("unordered", sorted(ex.map(sq, range(4), ordered=False)))
    try:
        ex.submit(reject, 7).result(30)
    except Rejected as err:
        print("rejected", err.code)

    try:
        print("lock-shared", ex.submit(uses_lock).result(30))
    except runtime.NotTransferable as err:
        print("not-transferable", "uses_lock" in str(err) and "'lock'" in str(err))

    print("after", ex.submit(sq, 1).result(30))
    ex.shutdown()
    report = runtime.Pool(Hello, workers=2, backend=B, bootstrap=lambda: {{"from": "session"}}).run()
    print("pool", report.completed)
    async def main():
        async with runtime.aio.open_executor(1, backend=B) as aex:
            print("aio-run", await aex.run(sq, 2))
            print("aio-map", await aex.map(lambda x: -x, [1, 2]))
            print("aio-imap", sorted([v async for v in aex.imap(sq, range(3), ordered=False)]))

    anyio.run(main)
    print("cloudpickle", "cloudpickle" in sys.modules)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


def python(
    *args: str, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter as a user would, with the repository importable."""
    return subprocess.run(
        [sys.executable, "-W", "ignore", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=150,
        env=_env(),
        cwd=cwd,
    )


def run_session(how: str, code: str) -> subprocess.CompletedProcess[str]:
    if how == "-c":
        return python("-c", code)
    if how == "stdin":
        return python("-", stdin=code)
    return python("-i", stdin=code)  # the REPL, reading its input from a pipe


@pytest.mark.parametrize("how", ["-c", "stdin", "repl"])
def test_interactive_session(backend, how):
    out = run_session(how, SESSION.format(backend=backend))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = set(out.stdout.splitlines())
    expected = {
        "submit 19",
        "lambda 10",
        "closure 11",
        "instance True 7",
        "map [10, 11, 14, 19]",
        "lazy [10, 11, 14, 19]",
        "unordered [10, 11, 14, 19]",
        "rejected 7",
        "after 11",
        "pool 2",
        "aio-run 14",
        "aio-map [-1, -2]",
        "aio-imap [10, 11, 14]",
        "cloudpickle True",
        # Thread workers share the session: uses_lock goes by reference, the lock is shared.
        "lock-shared 1" if backend == "thread" else "not-transferable True",
    }
    assert expected <= lines, (expected - lines, out.stdout, out.stderr)
    assert out.stdout.count(f"task|{backend}|session") == 2


def test_asyncio_repl(backend):
    # `python -m asyncio`: __main__ is asyncio's module, the session lives in another namespace.
    # (One-line definitions: its 3.13.0 line reader does not take indented blocks from a pipe.)
    code = textwrap.dedent(
        f"""\
        import runtime
        def sq(x): return x * x + 1

        ex = runtime.Executor(1, backend={backend!r})
        print("asyncio-repl", ex.submit(sq, 3).result(30), ex.submit(lambda: 5).result(30))
        ex.shutdown()
        """
    )
    out = python("-m", "asyncio", stdin=code)
    assert "asyncio-repl 10 5" in out.stdout, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_cloudpickle_is_not_loaded_when_nothing_needs_it(backend):
    code = textwrap.dedent(
        f"""\
        import sys, runtime
        from tests.helpers import tasks
        with runtime.Executor(1, backend={backend!r}) as ex:
            print("results", ex.submit(tasks.square, 4).result(30), list(ex.map(abs, [-1, -2])))
            print("in-worker", ex.submit(tasks.module_loaded, "cloudpickle").result(30))
        print("in-caller", "cloudpickle" in sys.modules)
        """
    )
    out = run_session("-c", code)
    assert out.returncode == 0, out.stderr
    assert "results 16 [1, 2]" in out.stdout
    assert "in-worker False" in out.stdout
    assert "in-caller False" in out.stdout


JOBS = textwrap.dedent(
    """\
    import runtime
    GREETING = "hello"
    class Hello(runtime.Task):
        def run(self):
            print(f"{GREETING}|{self.worker.backend}|{self.context}", flush=True)

    def init():
        return "booted"
    if __name__ == "__main__":
        print("ran-as-main", flush=True)
    """
)


def run_cli(
    *args: str, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return python("-m", "runtime", "run", *args, stdin=stdin, cwd=cwd)


def test_cli_run_takes_task_code_from_stdin(backend):
    out = run_cli(
        "Hello",
        "--source",
        "-",
        "--workers",
        "2",
        "--backend",
        backend,
        "--bootstrap",
        "init",
        stdin=JOBS,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"hello|{backend}|booted") == 2
    assert out.stdout.count("ran-as-main") == 1  # once, in the CLI: the code travelled by value
    assert "completed=2 restarts=0 gave_up=0" in out.stdout


def test_cli_run_takes_task_code_from_a_file(backend, tmp_path):
    jobs = tmp_path / "jobs.py"
    jobs.write_text(JOBS)
    out = run_cli(
        "Hello", "--source", str(jobs), "--backend", backend, "--bootstrap", "init", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"hello|{backend}|booted") == 1
    # A file is re-imported by the workers (by reference), under __mp_main__, not run as main.
    assert out.stdout.count("ran-as-main") == 1
    assert "completed=1" in out.stdout


def test_cli_run_source_names_are_checked():
    out = run_cli("Missing", "--source", "-", stdin=JOBS)
    assert out.returncode == 2
    assert "defines no 'Missing'" in out.stderr


class Terminal:
    """Drive an interactive interpreter through a pseudo-terminal, as a person at a keyboard would.

    Every step waits for the terminal to show something (the typed line echoed, the next
    prompt, an expected output), never for a fixed time.
    """

    _ESCAPES = re.compile(r"\x1b\[[0-9;?]*[@-~]|\x1b[=>]|\r")

    def __init__(self, backend: str) -> None:
        self.master, slave = pty.openpty()
        # Wide enough that no typed line wraps (a wrapped line is redrawn with markers).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        env = _env()
        env.update(TERM="xterm", NO_COLOR="1", PYTHON_COLORS="0")
        self.proc = subprocess.Popen(
            [sys.executable, "-q", "-W", "ignore"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            close_fds=True,
        )
        os.close(slave)
        self.text = ""
        self.expect(">>> ", 0)

    def _read(self, timeout: float) -> bool:
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.text += self._ESCAPES.sub("", data.decode(errors="replace"))
        return bool(data)

    def expect(self, marker: str, start: int, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while marker not in self.text[start:]:
            if time.monotonic() > end or not self._read(0.5):
                raise AssertionError(f"the terminal never showed {marker!r}:\n{self.text[-3000:]}")

    def line(self, text: str) -> None:
        start = len(self.text)
        os.write(self.master, text.encode())
        if text:
            self.expect(text, start)  # echoed: the REPL has taken every key
        start = len(self.text)
        os.write(self.master, b"\r")
        self.expect(" ", start)  # the next prompt (">>> " or "... ") or output follows

    def close(self) -> int:
        try:
            os.write(self.master, b"exit()\r")
            end = time.monotonic() + 60
            while self.proc.poll() is None and time.monotonic() < end and self._read(0.5):
                pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            code = self.proc.wait(30)
            os.close(self.master)
        return code


def test_terminal_repl_through_a_pty(backend):
    """The REPL a person gets by typing ``python`` (3.13's new REPL runs as ``_pyrepl.__main__``)."""
    term = Terminal(backend)
    try:
        term.line("import runtime")
        term.line("def sq(x): return x * x + 1")
        term.line("")
        term.line(f"ex = runtime.Executor(1, backend={backend!r})")
        term.line("print('OUT', ex.submit(sq, 3).result(30), ex.submit(lambda: 5).result(30))")
        term.expect("OUT 10 5", 0)
        term.line("ex.shutdown()")
        term.line("class Hi(runtime.Task): run = lambda self: print('OUT-TASK', flush=True)")
        term.line("")
        term.line(f"print('OUT-POOL', runtime.Pool(Hi, backend={backend!r}).run().completed)")
        term.expect("OUT-POOL 1", 0)
    finally:
        code = term.close()
    assert "OUT-TASK" in term.text
    assert "Traceback" not in term.text, term.text
    assert code == 0
