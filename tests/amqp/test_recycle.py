"""Consumers whose workers are recycled (max_tasks_per_worker and friends): nothing lost, acked once."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

import runtime
from runtime.amqp import Consumer
from runtime.amqp._cli import configure_parser

from .conftest import URL, Broker, consume_process, handled_counts, records, remember, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

H = "tests.amqp.handlers"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_recycling_consumer_handles_every_message_once(
    backend: str, queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    ids = [str(i) for i in range(200)]
    consumer = Consumer(
        f"{H}:record", queue, url=URL, workers=2, backend=backend, max_tasks_per_worker=5
    )
    remember(consumer.topology)
    with consumer:
        publish(queue, ids, out=str(out))
        wait_for(lambda: len(records(out)) >= len(ids), timeout=60, what="all messages handled")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
        recycled = consumer.statistics().recycled["tasks"]
    stats = consumer.statistics()
    counts = handled_counts(out)
    assert sorted(counts, key=int) == ids
    assert set(counts.values()) == {1}  # none lost, none handled twice
    assert stats.succeeded == len(ids)
    assert stats.failed == stats.requeued == 0
    assert broker.count(queue) == (0, 0)  # every message acked
    assert recycled >= len(ids) // 5 - 2  # a fresh worker every 5 handler calls
    assert stats.recycled["tasks"] >= recycled  # still there once the executor is shut down


def test_limits_with_a_user_executor_are_a_configuration_error() -> None:
    with runtime.Executor(1, backend="thread") as ex:
        with pytest.raises(runtime.ConfigurationError, match="executor"):
            Consumer(f"{H}:record", "q", url=URL, executor=ex, max_tasks_per_worker=5)
        Consumer(f"{H}:record", "q", url=URL, executor=ex)  # defaults are fine


def test_consume_cli_reads_the_lifecycle_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose", action="store_true")
    configure_parser(parser)
    args = parser.parse_args(
        [
            "pkg.mod:handler",
            "--queue",
            "q",
            "--max-tasks-per-worker",
            "5",
            "--max-worker-memory",
            "512M",
            "--max-worker-age",
            "3600",
            "--boot-timeout",
            "20",
        ]
    )
    assert args.max_tasks_per_worker == 5
    assert args.max_worker_memory == 512 << 20
    assert args.max_worker_age == 3600.0
    assert args.boot_timeout == 20.0
    with pytest.raises(SystemExit):
        parser.parse_args(["h:h", "--queue", "q", "--max-worker-memory", "lots"])


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_consume_process_with_max_tasks_per_worker(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    proc = consume_process(
        queue,
        f"{H}:record",
        "--workers",
        "2",
        "--backend",
        "thread",
        "--max-tasks-per-worker",
        "5",
        "--stats-interval",
        "0",
    )
    try:
        wait_for(lambda: broker.consumers(queue) == 1, timeout=30, what="the consumer")
        ids = [str(i) for i in range(100)]
        publish(queue, ids, out=str(out))
        wait_for(lambda: set(handled_counts(out)) == set(ids), timeout=60, what="all handled")
        wait_for(lambda: broker.count(queue)[0] == 0, what="queue drained")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, output
    assert set(handled_counts(out).values()) == {1}
