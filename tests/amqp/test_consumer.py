"""Consumer behaviour against the real broker at 127.0.0.1:5672."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

import runtime
from runtime.amqp import (
    ATTEMPT_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_TRACEBACK_HEADER,
    ERROR_TYPE_HEADER,
    Consumer,
    TopologyMismatch,
)

from .conftest import (
    URL,
    Broker,
    close_all_connections,
    handled_counts,
    records,
    remember,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

H = "tests.amqp.handlers"


def _consumer(handler: str, queue: str, **kwargs: object) -> Consumer:
    consumer = Consumer(f"{H}:{handler}", queue, url=URL, **kwargs)  # type: ignore[arg-type]
    remember(consumer.topology)
    return consumer


@pytest.mark.timeout(60)
def test_happy_path_every_message_exactly_once(
    backend: str, queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    ids = [str(i) for i in range(300)]
    with _consumer("record", queue, workers=2, backend=backend) as consumer:
        publish(queue, ids, out=str(out))
        wait_for(lambda: len(records(out)) >= len(ids), what="all messages handled")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
    stats = consumer.statistics()
    counts = handled_counts(out)
    assert sorted(counts, key=int) == ids
    assert set(counts.values()) == {1}
    assert stats.succeeded == len(ids)
    assert stats.failed == stats.reconnects == stats.requeued == 0
    assert broker.count(queue) == (0, 0)
    assert {row[1] for row in records(out)} == {"1"}  # first attempt each


@pytest.mark.timeout(60)
def test_task_handler_one_instance_per_worker(
    backend: str, queue: str, out: Path, publish: Callable[..., int]
) -> None:
    with _consumer("Recorder", queue, workers=2, backend=backend):
        publish(queue, [str(i) for i in range(60)], out=str(out))
        wait_for(lambda: len(records(out)) >= 60, what="all messages handled")
    rows = records(out)
    assert len(rows) == 60
    instances_by_worker: dict[tuple[str, str], set[str]] = {}
    for _body, _attempt, _redelivered, worker, instance, pid in rows:
        instances_by_worker.setdefault((pid, worker), set()).add(instance)
    assert all(len(instances) == 1 for instances in instances_by_worker.values()), (
        instances_by_worker
    )
    assert len({instance for s in instances_by_worker.values() for instance in s}) == len(
        instances_by_worker
    )


@pytest.mark.timeout(30)
def test_failures_are_retried_then_dead_lettered_with_the_error(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer(
        "fail_always", queue, workers=2, backend="thread", max_attempts=3, retry_delay=0.05
    )
    with consumer:
        publish(queue, ["a", "b", "c"], out=str(out))
        wait_for(lambda: broker.count(f"{queue}.dead")[0] == 3, what="three dead letters")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
    stats = consumer.statistics()
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.succeeded) == (9, 6, 3, 0)
    attempts = sorted((row[0], row[1]) for row in records(out))
    assert attempts == [(b, a) for b in "abc" for a in "123"]
    dead = broker.get_all(f"{queue}.dead")
    assert sorted(body for _, body in dead) == [b"a", b"b", b"c"]
    for props, body in dead:
        headers = props.headers
        assert headers[ATTEMPT_HEADER] == 3
        assert headers[ERROR_TYPE_HEADER] == "ValueError"
        assert headers[ERROR_MESSAGE_HEADER] == f"cannot handle {body.decode()}"
        assert "fail_always" in headers[ERROR_TRACEBACK_HEADER]
        assert props.delivery_mode == 2
    assert broker.count(queue)[0] == 0


@pytest.mark.timeout(30)
def test_transient_failures_succeed_on_a_later_attempt(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer(
        "fail_twice", queue, workers=2, backend="thread", max_attempts=4, retry_delay=0.05
    )
    with consumer:
        publish(queue, ["x", "y"], out=str(out))
        wait_for(lambda: len(records(out)) >= 6, what="three attempts each")
        wait_for(lambda: consumer.statistics().succeeded == 2, what="acks")
    assert sorted((r[0], r[1]) for r in records(out)) == [(b, a) for b in "xy" for a in "123"]
    assert consumer.statistics().dead_lettered == 0
    assert broker.count(f"{queue}.dead")[0] == 0


@pytest.mark.timeout(30)
def test_undecodable_message_is_a_failed_attempt_not_a_crash(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer("needs_json", queue, workers=1, backend="thread", max_attempts=1)
    with consumer:
        publish(
            queue,
            ["\udcff not json".encode("utf-8", "surrogateescape").decode("latin-1"), "{oops"],
            out=str(out),
        )
        publish(queue, ['{"id": 7}'], out=str(out))
        wait_for(lambda: broker.count(f"{queue}.dead")[0] == 2, what="dead letters")
        wait_for(lambda: len(records(out)) == 1, what="the valid message")
    assert [r[0] for r in records(out)] == ["7"]
    types = {props.headers[ERROR_TYPE_HEADER] for props, _ in broker.get_all(f"{queue}.dead")}
    assert types == {"runtime.amqp.MessageDecodeError"}


@pytest.mark.timeout(40)
def test_quorum_queue_with_retries(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer(
        "fail_twice",
        queue,
        workers=2,
        backend="thread",
        quorum=True,
        max_attempts=3,
        retry_delay=0.05,
        delivery_limit=20,
    )
    with consumer:
        publish(queue, [str(i) for i in range(20)], out=str(out))
        wait_for(lambda: consumer.statistics().succeeded == 20, what="all succeeded")
    assert set(handled_counts(out).values()) == {3}
    # The queue really is a quorum queue: declaring it classic is refused, with our error.
    with pytest.raises(TopologyMismatch, match="other arguments"):
        Consumer(
            f"{H}:record",
            queue,
            url=URL,
            workers=1,
            backend="thread",
            max_attempts=3,
            retry_delay=0.05,
        ).start()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cpu_bound_handler_longer_than_heartbeats_keeps_the_connection(
    backend: str, queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer("burn", queue, workers=1, backend=backend, heartbeat=2)
    with consumer:
        publish(queue, ["hot"], out=str(out), seconds=6.5)
        wait_for(
            lambda: consumer.statistics().succeeded == 1, timeout=40, what="the CPU-bound message"
        )
        stats = consumer.statistics()
        assert stats.connected
    assert [(r[0], r[1], r[2]) for r in records(out)] == [("hot", "1", "0")]
    assert (stats.received, stats.reconnects, stats.requeued) == (1, 0, 0)
    assert broker.count(queue)[0] == 0


@pytest.mark.timeout(60)
def test_broker_killing_connections_mid_stream_loses_nothing(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    ids = [str(i) for i in range(600)]
    consumer = _consumer("slow_record", queue, workers=2, backend="thread", reconnect_delay=0.1)
    with consumer:
        publish(queue, ids, out=str(out), sleep=0.01)
        wait_for(lambda: len(records(out)) >= 60, what="a first share handled")
        close_all_connections()
        wait_for(
            lambda: set(handled_counts(out)) == set(ids), timeout=40, what="every message handled"
        )
        wait_for(
            lambda: broker.count(queue)[0] == 0 and consumer.statistics().inflight == 0, what="acks"
        )
        stats = consumer.statistics()
    assert stats.reconnects >= 1
    counts = handled_counts(out)
    duplicates = sum(n - 1 for n in counts.values())
    assert (
        duplicates <= consumer.prefetch
    )  # at most the deliveries unacked when the connection died


@pytest.mark.timeout(40)
def test_results_of_an_old_connection_are_dropped_not_acked(
    queue: str, out: Path, tmp_path: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    gate = tmp_path / "gate"
    consumer = _consumer(
        "wait_for_file", queue, workers=2, backend="thread", prefetch=2, reconnect_delay=0.1
    )
    with consumer:
        publish(queue, ["p", "q"], out=str(out), gate=str(gate))
        wait_for(lambda: consumer.statistics().inflight == 2, what="both messages in flight")
        close_all_connections()
        wait_for(lambda: consumer.statistics().reconnects == 1, what="the reconnect")
        wait_for(lambda: consumer.statistics().inflight == 2, what="redelivery")
        gate.touch()
        wait_for(lambda: consumer.statistics().succeeded == 2, what="redelivered messages acked")
        stats = consumer.statistics()
    # The old connection's two results were dropped; acking their tags on the new channel
    # would have closed it (PRECONDITION_FAILED) and forced a second reconnect.
    assert stats.stale_dropped == 2
    assert stats.reconnects == 1
    assert sorted((r[0], r[2]) for r in records(out)) == [
        ("p", "0"),
        ("p", "1"),
        ("q", "0"),
        ("q", "1"),
    ]
    assert broker.count(queue)[0] == 0


@pytest.mark.timeout(30)
def test_stop_requeues_what_did_not_finish_in_time(
    queue: str, out: Path, tmp_path: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    gate = tmp_path / "gate"
    consumer = _consumer(
        "wait_for_file", queue, workers=1, backend="thread", prefetch=1, stop_timeout=0.2
    )
    consumer.start()
    try:
        publish(queue, ["late"], out=str(out), gate=str(gate))
        wait_for(lambda: consumer.statistics().inflight == 1, what="the message in flight")
        stopper = threading.Thread(target=consumer.stop)
        stopper.start()
        wait_for(lambda: broker.count(queue) == (1, 0), what="the message back in the queue")
    finally:
        gate.touch()
        consumer.stop()
        stopper.join()
    assert consumer.statistics().requeued == 1


def test_bad_handler_reference_fails_before_connecting() -> None:
    # The URL points nowhere: the error must be about the handler, raised before any connection.
    with pytest.raises(runtime.ReferenceNotFound, match=r"tests\.amqp\.nope"):
        Consumer("tests.amqp.nope:handler", "q", url="amqp://guest:guest@127.0.0.1:1/%2F")
    with pytest.raises(runtime.ConfigurationError, match="handle"):
        Consumer(f"{H}:Recorder.instances", "q")


@pytest.mark.timeout(30)
def test_broker_cancel_redeclares_and_resumes(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    consumer = _consumer("record", queue, workers=1, backend="thread", reconnect_delay=0.1)
    with consumer:
        publish(queue, ["before"], out=str(out))
        wait_for(lambda: consumer.statistics().succeeded == 1, what="the first message")
        broker.delete([queue], [])  # the broker cancels our consumer (Basic.Cancel)
        wait_for(lambda: consumer.statistics().reconnects == 1, what="the consumer to come back")
        wait_for(lambda: broker.count(queue)[1] == 1, what="consuming the re-declared queue")
        publish(queue, ["after"], out=str(out))
        wait_for(lambda: consumer.statistics().succeeded == 2, what="the second message")
    assert sorted(r[0] for r in records(out)) == ["after", "before"]
