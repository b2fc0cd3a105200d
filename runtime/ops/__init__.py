"""Operating ``runtime`` as a service: health, readiness, Prometheus metrics and failure reports.

Components (pools, executors, consumers) keep plain counters and heartbeats and
register themselves in a process-wide registry (``_registry``); ``_server`` answers
``/healthz``, ``/readyz`` and ``/metrics`` from it. The public names live in
:mod:`runtime` (``runtime.serve_metrics``, ``runtime.MetricsServer``, ``runtime.Failure``).
"""
