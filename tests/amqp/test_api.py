"""Publisher, errors, message decoding and import hygiene."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import runtime
from runtime.amqp import (
    BrokerUnreachable,
    Consumer,
    InvalidURL,
    Message,
    MessageDecodeError,
    Publisher,
    PublishFailed,
    Topology,
)

from .conftest import ROOT, URL, Broker

H = "tests.amqp.handlers"


def test_import_runtime_does_not_import_pika() -> None:
    code = (
        "import sys, runtime, runtime.amqp\n"
        "from runtime.amqp import Message, Topology, MessageDecodeError\n"
        "import tests.amqp.handlers\n"
        "assert 'pika' not in sys.modules, 'pika imported'\n"
        "from runtime.amqp import Consumer, Publisher\n"
        "assert 'pika' not in sys.modules, 'pika imported by the lazy names'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_errors_derive_from_runtime_error() -> None:
    for cls in (BrokerUnreachable, InvalidURL, MessageDecodeError, PublishFailed):
        assert issubclass(cls, runtime.Error)
    assert issubclass(InvalidURL, runtime.ConfigurationError)


def test_message_decoding() -> None:
    msg = Message(b'{"a": 1}', properties={"content_type": "application/json", "message_id": "m1"})
    assert msg.json() == {"a": 1}
    assert msg.content_type == "application/json"
    assert msg.message_id == "m1"
    assert Message("é".encode("latin-1"), properties={"content_encoding": "latin-1"}).text() == "é"
    with pytest.raises(MessageDecodeError, match="not valid utf-8"):
        Message(b"\xff").text()
    with pytest.raises(MessageDecodeError, match="not valid JSON"):
        Message(b"{").json()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://127.0.0.1/", "must start with amqp://"),
        ("amqp://guest:guest@127.0.0.1:notaport/%2F", "cannot parse"),
        ("amqp:///%2F", "names no host"),
    ],
)
def test_bad_url_is_rejected_at_construction(url: str, match: str) -> None:
    with pytest.raises(InvalidURL, match=match):
        Consumer(f"{H}:record", "q", url=url)


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_unreachable_broker_gives_up_after_bounded_retries() -> None:
    consumer = Consumer(
        f"{H}:record",
        "q",
        url="amqp://guest:guest@127.0.0.1:1/%2F",
        workers=1,
        backend="thread",
        connect_attempts=2,
        reconnect_delay=0.05,
    )
    with pytest.raises(BrokerUnreachable, match=r"after 2 attempt\(s\)"):
        consumer.start()


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_wrong_credentials_are_not_retried() -> None:
    with pytest.raises(BrokerUnreachable, match="refused the login"):
        Publisher("amqp://guest:wrong@127.0.0.1:5672/%2F", connect_attempts=5)


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_publisher_batched_and_single_with_confirms() -> None:
    broker = Broker()
    topology = Topology(f"test-runtime-{uuid.uuid4().hex[:12]}")
    try:
        with Publisher(URL) as publisher:
            publisher.declare(topology)
            publisher.declare(topology)  # idempotent
            assert publisher.publish_batch((str(i) for i in range(5000)), topology.queue) == 5000
            publisher.publish(
                topology.queue, b"one more", headers={"k": "v"}, properties={"message_id": "x"}
            )
            assert broker.count(topology.queue)[0] == 5001
            with pytest.raises(PublishFailed, match="unroutable"):
                publisher.publish_batch([b"lost"], f"no-such-queue-{uuid.uuid4().hex}")
            # The publisher stays usable after a failed batch.
            publisher.publish(topology.queue, "after")
            assert broker.count(topology.queue)[0] == 5002
            publisher.delete(topology)
    finally:
        broker.delete(topology.queue_names(), [topology.dead_letter_exchange])
        broker.close()
