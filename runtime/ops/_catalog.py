"""Every metric ``/metrics`` exposes: name, type, help and label names, in one table.

The collector, the README table and the tests read this table, so a metric cannot be
exported without being documented (or documented without being exported).
"""

from __future__ import annotations

import collections

__all__ = ["DURATION_BUCKETS", "METRICS", "MetricInfo"]

# Named tuples from collections at run time: a new executor loads this module, and
# typing (for typing.NamedTuple) would cost it milliseconds. Type checkers see the fields.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class _MetricInfo(NamedTuple):
        type: str  # "counter" | "gauge" | "histogram"
        help: str
        labels: tuple[str, ...] = ()
        component: str = ""
        aggregate: str = "sum"  # how several live components combine: "sum" or "max"
else:
    _MetricInfo = collections.namedtuple(
        "_MetricInfo", "type help labels component aggregate", defaults=((), "", "sum")
    )


class MetricInfo(_MetricInfo):
    """One metric's type, help, label names, owning component and how components combine."""

    __slots__ = ()


# Seconds: from sub-millisecond no-op jobs to five-minute batch handlers.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

P = "parallel_runtime_"

METRICS: dict[str, MetricInfo] = {
    # ---------------------------------------------------------------- Pool
    P + "pool_workers_target": MetricInfo(
        "gauge", "Workers the pools should have (their target size).", (), "pool"
    ),
    P + "pool_workers_alive": MetricInfo(
        "gauge", "Pool workers whose interpreter, thread or process is up.", (), "pool"
    ),
    P + "pool_workers_booting": MetricInfo(
        "gauge", "Pool workers still running their bootstrap.", (), "pool"
    ),
    P + "tasks_completed_total": MetricInfo(
        "counter", "Tasks that returned (finished their job).", ("kind",), "pool"
    ),
    P + "task_failures_total": MetricInfo(
        "counter",
        "Task failures (raised, bootstrap failed, worker died), by exception type.",
        ("kind", "exception"),
        "pool",
    ),
    P + "task_restarts_total": MetricInfo(
        "counter", "Tasks restarted after a failure.", ("kind",), "pool"
    ),
    P + "task_give_ups_total": MetricInfo(
        "counter", "Slots given up after too many failures (max_restarts).", ("kind",), "pool"
    ),
    P + "pool_workers_replaced_total": MetricInfo(
        "counter", "Pool workers that died and were replaced.", ("kind",), "pool"
    ),
    P + "restart_backoff_seconds": MetricInfo(
        "gauge",
        "Longest restart back-off currently scheduled (seconds until that restart; 0: none).",
        ("kind",),
        "pool",
        "max",
    ),
    # ---------------------------------------------------------------- Executor
    P + "executor_workers_target": MetricInfo(
        "gauge", "Workers the executors should have.", (), "executor"
    ),
    P + "executor_workers_alive": MetricInfo(
        "gauge", "Executor workers booted and taking jobs.", (), "executor"
    ),
    P + "jobs_submitted_total": MetricInfo("counter", "Jobs submitted.", (), "executor"),
    P + "jobs_completed_total": MetricInfo(
        "counter", "Jobs that returned a result.", (), "executor"
    ),
    P + "jobs_failed_total": MetricInfo(
        "counter",
        "Jobs that raised, could not be sent, or were lost with their worker; by exception type.",
        ("exception",),
        "executor",
    ),
    P + "jobs_queued": MetricInfo(
        "gauge", "Jobs waiting in the executors for a worker.", (), "executor"
    ),
    P + "batches_in_flight": MetricInfo(
        "gauge", "Batches of jobs handed to workers and not answered yet.", (), "executor"
    ),
    P + "job_duration_seconds": MetricInfo(
        "histogram",
        "From a job's batch being written to its worker until its result was read back.",
        (),
        "executor",
    ),
    P + "executor_workers_replaced_total": MetricInfo(
        "counter", "Executor workers that died and were replaced.", (), "executor"
    ),
    # ---------------------------------------------------------------- Consumer
    P + "messages_delivered_total": MetricInfo(
        "counter", "Messages the broker delivered to the consumer.", ("queue",), "consumer"
    ),
    P + "messages_acked_total": MetricInfo(
        "counter",
        "Messages acked (handled, or their retry/dead-letter copy confirmed).",
        ("queue",),
        "consumer",
    ),
    P + "messages_failed_total": MetricInfo(
        "counter", "Handler failures (each failed attempt).", ("queue",), "consumer"
    ),
    P + "messages_retried_total": MetricInfo(
        "counter", "Failed messages sent to a retry queue.", ("queue",), "consumer"
    ),
    P + "messages_dead_lettered_total": MetricInfo(
        "counter", "Failed messages dead-lettered after the last attempt.", ("queue",), "consumer"
    ),
    P + "messages_requeued_total": MetricInfo(
        "counter",
        "Messages given back to the broker unhandled (stop, drain deadline, nack).",
        ("queue",),
        "consumer",
    ),
    P + "broker_reconnects_total": MetricInfo(
        "counter", "Reconnections after a lost broker connection.", ("queue",), "consumer"
    ),
    P + "broker_connected": MetricInfo(
        "gauge", "1 while the consumer is connected and consuming.", ("queue",), "consumer"
    ),
    P + "prefetch_in_use": MetricInfo(
        "gauge", "Delivered messages not settled yet (unacked).", ("queue",), "consumer"
    ),
    P + "prefetch_limit": MetricInfo(
        "gauge", "The consumer's prefetch count.", ("queue",), "consumer"
    ),
    P + "handler_duration_seconds": MetricInfo(
        "histogram",
        "Time the handler ran, measured in the worker (successes and failures).",
        ("queue",),
        "consumer",
    ),
    P + "broker_last_frame_age_seconds": MetricInfo(
        "gauge",
        "Seconds since the consumer last received anything from the broker.",
        ("queue",),
        "consumer",
        "max",
    ),
    # ---------------------------------------------------------------- Pool and Executor
    P + "workers_recycled_total": MetricInfo(
        "counter",
        "Workers replaced by a lifecycle limit (max tasks, memory or age per worker), by reason.",
        ("reason",),
        "any",
    ),
    # ---------------------------------------------------------------- failure reports
    P + "failure_hook_errors_total": MetricInfo(
        "counter", "on_failure hooks that raised (logged, then ignored).", (), "any"
    ),
}
