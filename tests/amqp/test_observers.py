"""Observers of a consumer against the real broker: one event per settled delivery, and a
hook that raises changes nothing the user sees."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

import runtime
from runtime._events import Observer
from runtime.amqp import Consumer, Publisher

from .conftest import URL, Broker, ctl, handled_counts, records, remember, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

H = "tests.amqp.handlers"


class Recording(Observer):
    """Keeps every consumer event it hears (appended on the broker I/O thread)."""

    def __init__(self) -> None:
        self.settled: list[Any] = []
        self.failed: list[Any] = []
        self.connected: list[Any] = []
        self.disconnected: list[Any] = []
        self.threads: set[str] = set()

    def delivery_settled(self, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.settled.append(event)

    def delivery_failed(self, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.failed.append(event)

    def broker_connected(self, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.connected.append(event)

    def broker_disconnected(self, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.disconnected.append(event)


class Raising(Observer):
    """Raises in every consumer hook; must be logged and ignored."""

    calls = 0

    def _boom(self, event: Any) -> None:
        Raising.calls += 1
        raise RuntimeError(f"observer failure on {type(event).__name__}")

    delivery_settled = delivery_failed = broker_connected = broker_disconnected = _boom


def _consumer(handler: str, queue: str, **kwargs: Any) -> Consumer:
    consumer = Consumer(f"{H}:{handler}", queue, url=URL, **kwargs)
    remember(consumer.topology)
    return consumer


@pytest.mark.timeout(60)
def test_one_ack_event_per_message_and_one_connect(
    backend: str, queue: str, out: Path, broker: Broker
) -> None:
    seen = Recording()
    ids = [str(i) for i in range(50)]
    consumer = _consumer("record", queue, workers=2, backend=backend, observers=[seen])
    with consumer, Publisher(URL) as publisher:
        for i in ids:
            publisher.publish(
                queue, i, headers={"out": str(out)}, properties={"message_id": f"m{i}"}
            )
        wait_for(lambda: len(seen.settled) >= len(ids), what="a settlement per message")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
        assert len(seen.connected) == 1
        assert seen.disconnected == []
    stats = consumer.statistics()
    assert len(seen.settled) == len(ids) == stats.succeeded == stats.acked
    assert sorted(e.message_id for e in seen.settled) == sorted(f"m{i}" for i in ids)
    assert len({e.delivery_tag for e in seen.settled}) == len(ids)
    for event in seen.settled:
        assert event.owner is consumer
        assert event.queue == queue
        assert (event.outcome, event.attempt, event.exception_type) == ("ack", 1, None)
        assert isinstance(event.seconds, float)
        assert event.seconds >= 0
    (connected,) = seen.connected
    assert (connected.owner, connected.queue, connected.error) == (consumer, queue, None)
    assert connected.url == "amqp://guest:***@127.0.0.1:5672/%2F"  # no password in events
    # stop() closed the connection: one clean disconnect, no error.
    (disconnected,) = seen.disconnected
    assert (disconnected.owner, disconnected.queue, disconnected.error) == (consumer, queue, None)
    assert seen.threads == {f"runtime-amqp-{queue}"}  # the broker I/O thread only
    assert broker.count(queue) == (0, 0)


@pytest.mark.timeout(40)
def test_failing_handler_settles_as_retry_then_dead_letter(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    seen = Recording()
    consumer = _consumer(
        "fail_always",
        queue,
        workers=2,
        backend="thread",
        max_attempts=3,
        retry_delay=0.05,
        observers=[seen],
    )
    with consumer:
        publish(queue, ["a", "b"], out=str(out))
        wait_for(lambda: broker.count(f"{queue}.dead")[0] == 2, what="two dead letters")
        wait_for(lambda: len(seen.settled) >= 6, what="three settlements per message")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
    stats = consumer.statistics()
    assert len(seen.settled) == 6 == stats.failed
    outcomes = sorted((e.attempt, e.outcome) for e in seen.settled)
    assert outcomes == [
        (1, "retry"),
        (1, "retry"),
        (2, "retry"),
        (2, "retry"),
        (3, "dead_letter"),
        (3, "dead_letter"),
    ]
    assert Counter(e.outcome for e in seen.settled) == {
        "retry": stats.retried,
        "dead_letter": stats.dead_lettered,
    }
    for event in seen.settled:
        assert event.exception_type == "ValueError"
        assert isinstance(event.seconds, float)
    assert len(seen.connected) == 1
    # One delivery_failed per failed attempt, carrying what the consumer decided and why.
    failed = sorted((e.attempt, e.action) for e in seen.failed)
    assert failed == outcomes
    for event in seen.failed:
        assert event.exception_type == "ValueError"
        assert event.handler == f"{H}:fail_always"
        assert "fail_always" in event.traceback
        assert event.worker.backend == "thread"
        assert event.queue == queue


@pytest.mark.timeout(60)
def test_an_observer_that_raises_changes_nothing(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    ids = [str(i) for i in range(40)]
    watched = Recording()
    Raising.calls = 0
    consumer = _consumer(
        "record", queue, workers=2, backend="thread", observers=[Raising(), watched]
    )
    with consumer:
        publish(queue, ids, out=str(out))
        wait_for(lambda: len(records(out)) >= len(ids), what="all messages handled")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
    stats = consumer.statistics()
    counts = handled_counts(out)
    assert sorted(counts, key=int) == ids
    assert set(counts.values()) == {1}
    assert (stats.received, stats.succeeded, stats.acked) == (len(ids),) * 3
    assert stats.failed == stats.requeued == stats.reconnects == stats.stale_dropped == 0
    assert broker.count(queue) == (0, 0)  # every message acked
    # Every hook raised (connect, each settlement, disconnect) and the next observer still heard it.
    assert Raising.calls == len(ids) + 2
    assert len(watched.settled) == len(ids)
    assert len(watched.connected) == len(watched.disconnected) == 1


@pytest.mark.timeout(90)
def test_a_lost_connection_settles_what_was_in_flight_as_stale(
    own_vhost: str, out: Path, tmp_path: Path
) -> None:
    vhost = own_vhost.rsplit("/", 1)[1]
    queue = f"test-runtime-{uuid.uuid4().hex[:12]}"  # deleted with the vhost
    gate = tmp_path / "gate"
    seen = Recording()
    consumer = Consumer(
        f"{H}:wait_for_file",
        queue,
        url=own_vhost,
        workers=2,
        backend="thread",
        prefetch=2,
        reconnect_delay=0.1,
        observers=[seen],
    )
    with consumer:
        with Publisher(own_vhost) as publisher:
            publisher.publish_batch(["p", "q"], queue, headers={"out": str(out), "gate": str(gate)})
        wait_for(lambda: consumer.statistics().inflight == 2, what="both messages in flight")
        ctl("close_all_connections", "-p", vhost, "closed by the runtime observer test")
        wait_for(lambda: len(seen.connected) == 2, what="the reconnect")
        wait_for(lambda: consumer.statistics().inflight == 2, what="redelivery")
        gate.touch()
        wait_for(lambda: consumer.statistics().succeeded == 2, what="redelivered messages acked")
    stats = consumer.statistics()
    assert (stats.reconnects, stats.stale_dropped) == (1, 2)
    # The old connection's two deliveries settle once each, as stale, when it is lost;
    # their handlers' late results are dropped without a second event.
    assert [(e.outcome, e.delivery_tag) for e in seen.settled[:2]] == [
        ("stale", 1),
        ("stale", 2),
    ]
    assert [e.outcome for e in seen.settled[2:]] == ["ack", "ack"]
    assert all(e.seconds is None for e in seen.settled[:2])
    lost, closed = seen.disconnected
    assert lost.error is not None  # why it was lost (the broker closed it)
    assert closed.error is None  # stop() closed it cleanly
    assert len(seen.connected) == 2


def test_observers_must_be_observer_instances() -> None:
    with pytest.raises(runtime.ConfigurationError, match="Observer"):
        Consumer(f"{H}:record", "q", url=URL, observers=[object()])  # type: ignore[list-item]
