"""Render a ``parallel-runtime bench --json`` document as the README's markdown table.

    python benchmarks/readme_table.py benchmarks/results/quick-2cpu-py3.14.10.json

One row per peer and backend at the largest worker count: speedups over serial (fib, nbody), µs per
tiny task, submit→result p50/p99, main-interpreter CPU per call, start-up and time to the first
result, MB per worker. Only the standard library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (workload, field, header, format)
COLUMNS = [
    ("fib", "speedup_vs_serial", "fib x", "{:.2f}"),
    ("nbody", "speedup_vs_serial", "nbody x", "{:.2f}"),
    ("tiny", "per_task_us", "tiny map µs/task", "{:,.1f}"),
    ("latency", "p50_us", "p50 µs", "{:.0f}"),
    ("latency", "p99_us", "p99 µs", "{:.0f}"),
    ("latency", "main_cpu_us", "main CPU µs/call", "{:.0f}"),
    ("startup", "startup_ms", "start ms", "{:.1f}"),
    ("first_result", "first_result_ms", "first result ms", "{:.1f}"),
    ("startup", "mem_mb_per_worker", "MB/worker", "{:.1f}"),
]


def render(doc: dict[str, object]) -> str:
    results: list[dict[str, object]] = doc["results"]  # type: ignore[assignment]
    workers = max(int(r["workers"]) for r in results)  # type: ignore[call-overload]
    index = {
        (r["peer"], r["backend"], r["workload"]): r for r in results if r["workers"] in (workers, 1)
    }
    peers: list[tuple[object, object]] = []
    for r in results:
        key = (r["peer"], r["backend"])
        if r["peer"] != "serial" and key not in peers:
            peers.append(key)
    lines = [
        "| peer | backend | " + " | ".join(c[2] for c in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for peer, backend in peers:
        cells = []
        for workload, field, _, fmt in COLUMNS:
            row = index.get((peer, backend, workload))
            value = None if row is None else row.get(field)
            cells.append("-" if value is None else fmt.format(value))
        name = f"**{peer}**" if peer == "runtime.Executor" else str(peer)
        lines.append(f"| {name} | {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(render(json.loads(Path(path).read_text())))
