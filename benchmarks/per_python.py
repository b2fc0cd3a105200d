"""What each backend gives on each Python found here: the README's "Backends on each Python" table.

    python benchmarks/per_python.py [--json benchmarks/results/per-python.json]

Runs itself under every supported interpreter that ``scripts/_python.sh`` finds (each needs ``runtime``
importable: it puts the repository first on ``sys.path``), and for each reports the interpreter API and the
``auto`` choice, the cost of one bare interpreter (create, and resident memory kept after create + destroy),
and for each backend: time to the first result of a new 2-worker ``runtime.Executor`` and its speedup over
serial on a CPU-bound job (median of 3). Only the standard library and ``runtime`` are used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("subinterpreter", "thread", "process")


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _bare_interpreters(count: int = 40) -> dict[str, float] | None:
    """Create/destroy cost and what each leaves behind in RSS, with the lowest-level API there is."""
    try:
        import _interpreters as api  # 3.13+ (the backport's module on 3.13, stdlib on 3.14+)

        def create() -> object:
            return api.create("isolated")
    except ImportError:
        try:
            import _xxsubinterpreters as api  # 3.12

            def create() -> object:
                return api.create(isolated=True)
        except ImportError:
            return None
    for _ in range(3):  # warm: first creations allocate the runtime's shared state
        api.destroy(create())
    before = _rss_mb()
    t0 = time.perf_counter()
    for _ in range(count):
        api.destroy(create())
    elapsed = time.perf_counter() - t0
    return {
        "create_destroy_ms": round(elapsed / count * 1000, 2),
        "leak_mb_per_interpreter": round(max(0.0, _rss_mb() - before) / count, 2),
    }


def measure() -> dict[str, object]:
    """Runs under one interpreter; prints nothing, returns the record."""
    sys.path.insert(0, str(ROOT))
    import warnings

    import runtime

    caps = runtime.capabilities()
    record: dict[str, object] = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "interpreters_api": caps.interpreters_api,
        "auto": caps.default_backend,
        "bare": _bare_interpreters(),
    }
    n, jobs = 26, 8
    t0 = time.perf_counter()
    for _ in range(jobs):
        fib(n)
    serial = time.perf_counter() - t0
    per_backend: dict[str, object] = {}
    for backend in BACKENDS:
        firsts, speedups = [], []
        try:
            for _ in range(3):
                with warnings.catch_warnings():
                    warnings.simplefilter(
                        "ignore"
                    )  # the 3.12 subinterpreter warning is the point here
                    t0 = time.perf_counter()
                    with runtime.Executor(workers=2, backend=backend) as ex:
                        ex.submit(abs, -1).result()
                        firsts.append((time.perf_counter() - t0) * 1000)
                        list(ex.map(fib, [n] * 2))  # warm: workers imported this module
                        t0 = time.perf_counter()
                        list(ex.map(fib, [n] * jobs, chunksize=1))
                        speedups.append(serial / (time.perf_counter() - t0))
        except runtime.Error as exc:
            per_backend[backend] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        per_backend[backend] = {
            "first_result_ms": round(statistics.median(firsts), 1),
            "fib_speedup": round(statistics.median(speedups), 2),
        }
    record["backends"] = per_backend
    return record


def _pythons() -> list[tuple[str, str]]:
    out = subprocess.run(
        ["bash", "-c", ". scripts/_python.sh && find_pythons"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        version, path = line.split(" ", 1)
        # Prefer the environment scripts/test.sh made for it (it has runtime's dependencies installed).
        for venv in (ROOT / ".venvs" / version, ROOT / ".venvs" / f"wheel-{version}"):
            if (venv / "bin" / "python").exists():
                path = str(venv / "bin" / "python")
                break
        found.append((version, path))
    return found


def _table(records: list[dict[str, object]]) -> str:
    head = "| | " + " | ".join(str(r["python"]) for r in records) + " |"
    rows = [head, "|---" * (len(records) + 1) + "|"]

    def row(label: str, cell: object) -> None:
        rows.append(f"| {label} | " + " | ".join(str(cell(r)) for r in records) + " |")  # type: ignore[operator]

    row("interpreter API / `auto`", lambda r: f"{r['interpreters_api']} / {r['auto']}")
    row(
        "bare interpreter: create+destroy ms, MB kept each",
        lambda r: (
            "n/a"
            if not r["bare"]
            else f"{r['bare']['create_destroy_ms']} ms, {r['bare']['leak_mb_per_interpreter']} MB"
        ),
    )
    for backend in BACKENDS:
        row(
            f"`{backend}`: first result ms, fib x",
            lambda r, b=backend: (
                r["backends"][b].get("error", "")[:40]
                or f"{r['backends'][b]['first_result_ms']} ms, {r['backends'][b]['fib_speedup']}x"
            ),
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write every record here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure()))
        return 0
    records = []
    for version, path in _pythons():
        print(f"measuring {version} ({path}) ...", file=sys.stderr)
        done = subprocess.run(
            [path, __file__, "--one"], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            print(f"  failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        records.append(json.loads(done.stdout))
    print(_table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
