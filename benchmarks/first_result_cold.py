"""Time to the first result in a fresh process: each try is a new interpreter process.

Usage: python benchmarks/first_result_cold.py [ROUNDS] [WORKERS] [--busy] [--loaded]
[--pythons A,B] [--json PATH]
(defaults: 9 rounds, 2 workers).

``parallel-runtime bench --workloads first_result`` times a new executor inside one
long-lived process, where everything the executor imports is already loaded after
its first repeat. A user's first executor is built in a fresh process, which pays
for those imports too. Here every try is a child process that has already run
``import concurrent.futures, runtime`` (the same for every peer, so the stdlib's
own import cost is left out of every figure), then times, from one clock reading:

* ``floor``: N bare interpreters created in parallel threads, one pipe round trip each
  (what any pool of N own-GIL subinterpreters pays before its first result);
* ``InterpreterPoolExecutor``: importing the class (the stdlib's on 3.14, the
  ``interpreters-pep-734`` backport's on 3.13), the constructor, one tiny call;
* ``runtime.Executor``: ``runtime.Executor`` (its lazy import), the constructor, one
  tiny call, for the subinterpreter and thread backends.

Peers run interleaved, round by round; the figures are medians with their ranges.

``--busy``: in every try another thread of the main interpreter runs Python code the
whole time (as an event loop serving requests, or the application's own work, does)
while the executor starts. Creating an interpreter needs the main interpreter's GIL
about fifteen times, and a busy thread makes each wait up to the switch interval
(5 ms); ``runtime`` lowers the interval while it creates interpreters
(``runtime._early.FastSwitching``). The extra row ``runtime.Executor[subinterpreter,
interval left alone]`` turns that off, to show what it is worth.

``--loaded``: each try first builds (and shuts down) one executor of its peer, untimed,
then times a second one: a long-running program starting an executor again (an async
server's default executor after its idle timeout, a pool resized).

``--pythons A,B``: an A/B of two builds of the package instead of the peers. Each of A
and B is a Python executable (say, two venvs, each with one build's wheel installed);
the rows are the floor (under A) and ``runtime.Executor[subinterpreter] A`` and ``B``,
interleaved round by round, with the ratio ``B / A``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys

PREAMBLE = "import concurrent.futures, runtime, time, sys\nT = time.perf_counter\n"

# --busy: a thread of the main interpreter running Python code throughout the try.
BUSY = """
import threading

def _spin():
    n = 0
    while True:
        n += 1

threading.Thread(target=_spin, daemon=True).start()
"""

# Each peer's code defines run(), which times one start and returns seconds. With
# --loaded, run() runs once untimed first: the process has built one executor before.
MAIN = """
if __name__ == "__main__":
    if {loaded}:
        run()
    print(run())
"""

# The floor's own timer (runtime.bench.floor) starts with the threads: the same measure as
# the bench's floor row, taken here in a fresh process.
FLOOR = """
from runtime.bench.floor import available, first_result_s
if available() is not None:
    sys.exit(3)

def run():
    return first_result_s({workers})
"""

IPE = """
from runtime.bench.workloads import tiny

def run():
    t0 = T()
    try:
        from concurrent.futures import InterpreterPoolExecutor
    except ImportError:
        try:
            from interpreters_backport.concurrent.futures import InterpreterPoolExecutor
        except ImportError:
            sys.exit(3)
    ex = InterpreterPoolExecutor({workers})
    ex.submit(tiny, 1).result()
    seconds = T() - t0
    ex.shutdown()
    return seconds
"""

RUNTIME = """
from runtime.bench.workloads import tiny

def run():
    t0 = T()
    ex = runtime.Executor({workers}, backend="{backend}")
    ex.submit(tiny, 1).result()
    seconds = T() - t0
    ex.shutdown()
    return seconds
"""

PEERS = {
    "floor": FLOOR,
    "InterpreterPoolExecutor": IPE,
    "runtime.Executor[subinterpreter]": RUNTIME.replace("{backend}", "subinterpreter"),
    "runtime.Executor[thread]": RUNTIME.replace("{backend}", "thread"),
}

# Only with --busy: the same start with the switch interval left as it is.
UNTUNED = "runtime.Executor[subinterpreter, interval left alone]"
UNTUNED_CODE = (
    "import runtime._early\nruntime._early.FAST_SWITCH_INTERVAL = 1.0\n"
    + RUNTIME.replace("{backend}", "subinterpreter")
)


def _try(
    code: str, busy: bool = False, loaded: bool = False, python: str = sys.executable
) -> float | None:
    main = MAIN.replace("{loaded}", str(loaded))
    done = subprocess.run(
        [python, "-c", PREAMBLE + (BUSY if busy else "") + code + main],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    if done.returncode == 3:
        return None  # this Python lacks the peer
    if done.returncode != 0:
        raise RuntimeError(f"a try failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    busy = "--busy" in sys.argv
    loaded = "--loaded" in sys.argv
    json_path = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    if json_path in args:
        args.remove(json_path)
    pythons = (
        sys.argv[sys.argv.index("--pythons") + 1].split(",") if "--pythons" in sys.argv else []
    )
    if pythons:
        args.remove(",".join(pythons))
    # name -> (code, the Python that runs it)
    peers: dict[str, tuple[str, str]]
    if pythons:
        ours = RUNTIME.replace("{backend}", "subinterpreter")
        peers = {"floor": (FLOOR, pythons[0])}
        for i, python in enumerate(pythons):
            peers[f"runtime.Executor[subinterpreter] {chr(65 + i)}"] = (ours, python)
    else:
        chosen = {**PEERS, UNTUNED: UNTUNED_CODE} if busy else PEERS
        peers = {name: (code, sys.executable) for name, code in chosen.items()}
    rounds = int(args[0]) if args else 9
    workers = int(args[1]) if len(args) > 1 else 2
    times: dict[str, list[float]] = {name: [] for name in peers}
    for done_rounds in range(rounds):
        for name, (code, python) in peers.items():
            seconds = _try(code.replace("{workers}", str(workers)), busy, loaded, python)
            if seconds is not None:
                times[name].append(seconds * 1e3)
        print(f"\rround {done_rounds + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = {
        name: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v), "n": len(v)}
        for name, v in times.items()
        if v
    }
    print(
        f"first result in a {'process that built one before' if loaded else 'fresh process'}"
        f"{', beside a busy thread' if busy else ''}: "
        f"Python {platform.python_version()}, {workers} workers, "
        f"{os.cpu_count()} CPUs, median of {rounds} (min-max)"
    )
    for name, row in rows.items():
        print(f"  {name:54} {row['median_ms']:7.1f} ms  ({row['min_ms']:.1f}-{row['max_ms']:.1f})")
    ratios = {}
    builds = {
        chr(65 + i): rows.get(f"runtime.Executor[subinterpreter] {chr(65 + i)}")
        for i in range(len(pythons))
    }
    for i, python in enumerate(pythons):
        print(f"  {chr(65 + i)}: {python}")
    for label, ours in builds.items():
        if ours is not None and "floor" in rows:
            key = f"runtime.Executor[subinterpreter] {label} / floor"
            ratios[key] = ours["median_ms"] / rows["floor"]["median_ms"]
            print(f"  {key:90} {ratios[key]:.2f}x")
    for label, ours in builds.items():
        if label != "A" and ours is not None and builds["A"] is not None:
            key = f"{label} / A"
            ratios[key] = ours["median_ms"] / builds["A"]["median_ms"]
            print(f"  {key:90} {ratios[key]:.2f}x")
    for backend in ("subinterpreter", "thread"):
        ours = rows.get(f"runtime.Executor[{backend}]")
        if ours is None:
            continue
        yardsticks = ["floor", "InterpreterPoolExecutor"]
        if backend == "subinterpreter":
            yardsticks.append(UNTUNED)
        for peer in yardsticks:
            if peer in rows:
                key = f"runtime.Executor[{backend}] / {peer}"
                ratios[key] = ours["median_ms"] / rows[peer]["median_ms"]
                print(f"  {key:90} {ratios[key]:.2f}x")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {
                    "python": platform.python_version(),
                    "workers": workers,
                    "busy": busy,
                    "loaded": loaded,
                    "pythons": pythons,
                    "cpus": os.cpu_count(),
                    "rounds": rounds,
                    "peers": rows,
                    "ratios": ratios,
                    "command": "python benchmarks/first_result_cold.py "
                    + " ".join(args)
                    + (" --busy" if busy else "")
                    + (" --loaded" if loaded else "")
                    + (f" --pythons {','.join(pythons)}" if pythons else "")
                    + (f" --json {os.path.relpath(json_path)}" if json_path else ""),
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
