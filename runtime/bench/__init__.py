"""Benchmark suite: ``runtime.Executor`` against process pools, thread pools and friends.

Run it with ``parallel-runtime bench --quick`` (or ``python -m runtime.bench``). The pieces:
:mod:`runtime.bench.workloads` (what runs in the workers), :mod:`runtime.bench.peers` (who runs it),
:mod:`runtime.bench.runner` (how it is measured), :mod:`runtime.bench.report` (table, JSON, PNG),
:mod:`runtime.bench.scaling` (the one-off scaling curve for a many-core machine).
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # 2: first_result rows, the floor peer, main_cpu_us on latency rows
