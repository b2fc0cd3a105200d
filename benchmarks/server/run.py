"""Async server benchmark: one CPU-bound job per request, offloaded four ways, loaded with wrk.

    python benchmarks/server/run.py [--seconds 5] [--jobs 16,20,24] [--loop asyncio|trio]
                                    [--repeats 1] [--json PATH] [--plot PATH]

For each offloading variant (``app.py``: inline, ``anyio.to_thread``, ``anyio.to_process``,
``runtime.aio.run_sync``) one server process is started (uvicorn on asyncio; hypercorn on
trio), warmed up, and each job size (``fib(n)``; 16, 20, 24 are about 0.1, 0.6 and 4 ms
here) is loaded with ``wrk -t<threads> -c<connections> --latency`` for ``--seconds``.
Rounds repeat the whole grid with the variants in a fresh random order; figures are
medians over rounds. Output: requests per second, p50/p99 latency, the ratio to
``anyio.to_process`` per job size, as a table, a JSON document and a PNG.

Needs ``wrk`` (Debian: ``apt-get install wrk``) and ``pip install 'parallel-runtime[server-bench]'``
(uvicorn with httptools; hypercorn and trio for ``--loop trio``). The machine running it also runs the load
generator: wrk's own CPU is part of every figure, the same for every variant.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("inline", "to_thread", "to_process", "runtime")
BASELINE = "to_process"
SCHEMA_VERSION = 1
ROW_FIELDS = (
    "variant",
    "n",
    "job_ms",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "requests",
    "errors",
    "rounds",
)


# ---------------------------------------------------------------------- wrk
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), requests and errors from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unreadable wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "requests": int(total.group(1)),
        "errors": errors,
    }


def run_wrk(url: str, seconds: float, threads: int, connections: int) -> dict[str, float]:
    duration = f"{max(1, round(seconds))}s"
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return parse_wrk(out.stdout)


# ---------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http() -> str:
    """uvicorn's HTTP parser: httptools (C) where installed, else h11 (pure Python)."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def _server_command(loop: str, port: int) -> list[str]:
    if loop == "trio":
        return [
            sys.executable,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
            "app:app",
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "asyncio",
        "--http",
        _http(),
        "--log-level",
        "warning",
        "--no-access-log",
        "app:app",
    ]


def _checkout() -> list[str]:
    """This checkout, for the server's path, only where no ``runtime`` is installed.

    An installed package (a wheel in a bench venv, as users run it) must not be shadowed
    by the source tree.
    """
    return [] if importlib.util.find_spec("runtime") is not None else [str(ROOT)]


@contextlib.contextmanager
def server(variant: str, loop: str, backend: str) -> Any:
    """A server process for ``variant``; yields its base URL once it answers."""
    port = _free_port()
    env = {
        **os.environ,
        "SERVER_BENCH_OFFLOAD": variant,
        "SERVER_BENCH_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(filter(None, [*_checkout(), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(_server_command(loop, port), cwd=HERE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until it accepts connections (a start-up poll, outside any measurement)
            if proc.poll() is not None:
                raise RuntimeError(f"the {variant} server exited with code {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {variant} server did not start in 60 s") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------- the run
def job_ms(n: int, repeats: int = 5) -> float:
    """Milliseconds one ``fib(n)`` takes here, inline (median of ``repeats``)."""
    sys.path.insert(0, str(ROOT))
    from runtime.bench.workloads import fib

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fib(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    started = time.monotonic()
    for round_no in range(args.repeats):
        order = list(args.variants)
        rng.shuffle(order)
        for variant in order:
            print(
                f"round {round_no + 1}/{args.repeats}: {variant} ...", file=sys.stderr, flush=True
            )
            with server(variant, args.loop, args.backend) as url:
                for n in args.jobs:
                    target = f"{url}/fib/{n}"
                    # Warm-up: workers started, modules imported, connections open.
                    run_wrk(target, 1, args.threads, args.connections)
                    samples.setdefault((variant, n), []).append(
                        run_wrk(target, args.seconds, args.threads, args.connections)
                    )
    rows = []
    for n in args.jobs:
        ms = job_ms(n)
        for variant in args.variants:
            runs = samples.get((variant, n), [])
            if not runs:
                continue
            rows.append(
                {
                    "variant": variant,
                    "n": n,
                    "job_ms": round(ms, 4),
                    "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
                    "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                    "requests": int(sum(r["requests"] for r in runs)),
                    "errors": int(sum(r["errors"] for r in runs)),
                    "rounds": len(runs),
                }
            )
    return {
        "environment": _environment(args, time.monotonic() - started),
        "results": rows,
        "ratios": ratios(rows),
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant against ``anyio.to_process`` at the same job size (req/s: higher is better)."""
    base = {r["n"]: r for r in rows if r["variant"] == BASELINE}
    out = []
    for r in rows:
        b = base.get(r["n"])
        if b is None or r["variant"] == BASELINE:
            continue
        out.append(
            {
                "variant": r["variant"],
                "n": r["n"],
                "rps_vs_to_process": round(r["requests_per_s"] / b["requests_per_s"], 3),
                "p99_vs_to_process": round(r["p99_ms"] / b["p99_ms"], 3),
            }
        )
    return out


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _environment(args: argparse.Namespace, duration: float) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "schema_version": SCHEMA_VERSION,
        "python": platform.python_version(),
        "loop": args.loop,
        "server": "hypercorn" if args.loop == "trio" else "uvicorn",
        "http": "hypercorn" if args.loop == "trio" else _http(),
        "runtime_backend": args.backend,
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else None,
        "versions": {
            d: _version(d) for d in ("parallel-runtime", "anyio", "uvicorn", "hypercorn", "trio")
        },
        "seconds_per_cell": args.seconds,
        "threads": args.threads,
        "connections": args.connections,
        "repeats": args.repeats,
        "duration_s": round(duration, 1),
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def validate(doc: Any) -> None:
    """Raise ValueError unless ``doc`` has the shape this script writes."""
    if not isinstance(doc, dict) or set(doc) != {"environment", "results", "ratios"}:
        raise ValueError("top level must be {environment, results, ratios}")
    if doc["environment"].get("schema_version") != SCHEMA_VERSION:
        raise ValueError("unknown schema version")
    if not isinstance(doc["results"], list) or not doc["results"]:
        raise ValueError("results must be a non-empty list")
    for i, row in enumerate(doc["results"]):
        if not isinstance(row, dict) or set(row) != set(ROW_FIELDS):
            raise ValueError(f"results[{i}] must have exactly {ROW_FIELDS}")
        if row["variant"] not in VARIANTS:
            raise ValueError(f"results[{i}].variant is unknown: {row['variant']!r}")
        for key in ("job_ms", "requests_per_s", "p50_ms", "p99_ms"):
            value = row[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"results[{i}].{key} must be a number >= 0")
        if row["p50_ms"] > row["p99_ms"]:
            raise ValueError(f"results[{i}]: p50 above p99")
    for i, r in enumerate(doc["ratios"]):
        if set(r) != {"variant", "n", "rps_vs_to_process", "p99_vs_to_process"}:
            raise ValueError(f"ratios[{i}] has the wrong keys")


# ---------------------------------------------------------------------- report
LABELS = {
    "inline": "inline (no offload)",
    "to_thread": "anyio.to_thread",
    "to_process": "anyio.to_process",
    "runtime": "runtime.aio.run_sync",
}


def render(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        f"server benchmark: Python {env['python']}, {env['server']} on {env['loop']}, "
        f"{env['cpu_count']} CPUs, wrk -t{env['threads']} -c{env['connections']}, "
        f"{env['seconds_per_cell']} s per cell, median of {env['repeats']} round(s)",
        "",
        f"{'job':<18} {'variant':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    for row in doc["results"]:
        lines.append(
            f"fib({row['n']}) {row['job_ms']:6.2f} ms {LABELS[row['variant']]:<22} "
            f"{row['requests_per_s']:>9,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>7}"
        )
    if doc["ratios"]:
        lines += [
            "",
            f"against {LABELS[BASELINE]} (req/s: higher is better; p99: lower is better):",
        ]
        for r in doc["ratios"]:
            lines.append(
                f"  fib({r['n']}) {LABELS[r['variant']]:<22} req/s {r['rps_vs_to_process']:5.2f}x"
                f"   p99 {r['p99_vs_to_process']:5.2f}x"
            )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    jobs = sorted({r["n"] for r in rows})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(13, 5.5))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        xs, rps, p99 = [], [], []
        for j, n in enumerate(jobs):
            row = next((r for r in rows if r["variant"] == variant and r["n"] == n), None)
            if row is None:
                continue
            xs.append(j + (i - len(variants) / 2 + 0.5) * width)
            rps.append(row["requests_per_s"])
            p99.append(row["p99_ms"])
        ax_rps.bar(xs, rps, width, label=LABELS[variant])
        ax_p99.bar(xs, p99, width, label=LABELS[variant])
    ticks = []
    for n in jobs:
        ms = next(r["job_ms"] for r in rows if r["n"] == n)
        ticks.append(f"fib({n})\n≈{ms:.2g} ms")
    for ax in (ax_rps, ax_p99):
        ax.set_xticks(range(len(jobs)), ticks)
        ax.grid(True, axis="y", alpha=0.3)
    ax_rps.set_yscale("log")
    ax_rps.set_ylabel("requests per second (log)")
    ax_rps.set_title("Throughput (higher is better)")
    ax_p99.set_yscale("log")
    ax_p99.set_ylabel("p99 latency, ms (log)")
    ax_p99.set_title("p99 latency (lower is better)")
    handles, labels = ax_rps.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(variants), frameon=False)
    env = doc["environment"]
    fig.suptitle(
        f"ASGI server, one fib(n) per request · Python {env['python']} · {env['server']} on "
        f"{env['loop']} · {env['cpu_count']} CPUs · wrk -t{env['threads']} -c{env['connections']}"
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; choose from {VARIANTS}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk run per cell (default 5)")
    parser.add_argument("--jobs", type=_ints, default=[16, 20, 24], help="fib sizes (16,20,24)")
    parser.add_argument("--variants", type=_names, default=list(VARIANTS))
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--backend", default="auto", help="runtime backend (default auto)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the whole grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/")
    parser.add_argument("--plot", type=Path, default=None, help="default: next to the JSON")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("run.py: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    doc = measure(args)
    validate(doc)
    print(render(doc))
    stem = f"server-{args.loop}-py{platform.python_version()}"
    json_path = args.json or RESULTS / f"{stem}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"JSON written to {json_path}")
    if not args.no_plot:
        try:
            print(f"plot written to {plot(doc, args.plot or json_path.with_suffix('.png'))}")
        except ImportError:
            print("run.py: no plot (matplotlib is not installed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
