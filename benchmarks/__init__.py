"""Benchmark suite: ``runtime.Executor`` against process pools, thread pools and friends.

Run it with ``parallel-runtime bench --quick`` (or ``python -m benchmarks``). The pieces:
:mod:`benchmarks.workloads` (what runs in the workers), :mod:`benchmarks.peers` (who runs it),
:mod:`benchmarks.runner` (how it is measured), :mod:`benchmarks.report` (table, JSON, PNG),
:mod:`benchmarks.scaling` (the one-off scaling curve for a many-core machine).
"""

from __future__ import annotations

SCHEMA_VERSION = 1
