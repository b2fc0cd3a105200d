"""Broker fixtures: unique queue names, cleanup, reading what handlers recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from runtime.amqp import Publisher, Topology
from runtime.amqp._topology import retry_delays

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def records(out: Path) -> list[list[str]]:
    """Every line a handler wrote: [body, attempt, redelivered, *extra, pid]."""
    rows = []
    for path in out.glob("*.log"):
        for line in path.read_text().splitlines():
            rows.append([*line.split(), path.stem])
    return rows


def handled_counts(out: Path) -> Counter[str]:
    return Counter(row[0] for row in records(out))


class Broker:
    """A plain pika connection for inspecting queues from the test."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(URL))
        self.channel = self.connection.channel()

    def _ch(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if not self.connection.is_open:
            self.connection = pika.BlockingConnection(pika.URLParameters(URL))
            self.channel = self.connection.channel()
        elif not self.channel.is_open:
            self.channel = self.connection.channel()
        return self.channel

    def count(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue``."""
        try:
            ok = self._ch().queue_declare(queue, passive=True)
        except (
            pika.exceptions.AMQPConnectionError
        ):  # killed by close_all_connections: reconnect once
            self.connection = pika.BlockingConnection(pika.URLParameters(URL))
            self.channel = self.connection.channel()
            ok = self.channel.queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count

    def consumers(self, queue: str) -> int:
        """Consumers of ``queue``; 0 while it is not declared yet."""
        try:
            return self.count(queue)[1]
        except Exception:  # not declared yet: the passive declare closed the channel
            self.channel = self.connection.channel()
            return 0

    def get_all(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        out: list[tuple[pika.BasicProperties, bytes]] = []
        ch = self._ch()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((props, body))

    def delete(self, names: list[str], exchanges: list[str]) -> None:
        try:
            self.connection.process_data_events(0)
        except pika.exceptions.AMQPConnectionError:
            self.connection = pika.BlockingConnection(pika.URLParameters(URL))
            self.channel = self.connection.channel()
        ch = self._ch()
        for name in names:
            ch.queue_delete(name)
        for name in exchanges:
            ch.exchange_delete(name)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    yield b
    b.close()


_topologies: dict[str, list[Topology]] = {}


def remember(topology: Topology) -> Topology:
    """Register a topology so the ``queue`` fixture deletes its retry queues too."""
    _topologies.setdefault(topology.queue, []).append(topology)
    return topology


@pytest.fixture
def queue(broker: Broker) -> Iterator[str]:
    """A unique queue name; the queue and its retry/dead-letter companions are deleted after the test."""
    name = f"test-runtime-{uuid.uuid4().hex[:12]}"
    # What a consumer with the default retry settings declares (CLI subprocesses).
    remember(Topology(name, retry_delays=retry_delays(5, 1.0, 300.0)))
    yield name
    names: list[str] = []
    for topology in _topologies.pop(name, []):
        names.extend(n for n in topology.queue_names() if n not in names)
    broker.delete(names, [f"{name}.dlx"])


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "handled"
    d.mkdir()
    return d


@pytest.fixture
def publish() -> Iterator[Callable[..., int]]:
    publisher = Publisher(URL)

    def _publish(queue: str, bodies: list[str], **headers: object) -> int:
        return publisher.publish_batch(
            bodies, queue, headers={k: str(v) for k, v in headers.items()}
        )

    yield _publish
    publisher.close()


def ctl(*args: str) -> None:
    """Run ``rabbitmqctl`` with ``args``."""
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_vhost() -> Iterator[str]:
    """A vhost and user only this test uses; yields the broker URL for them.

    Tests that take connections away (``rabbitmqctl close_all_connections -p <vhost>``)
    use one, so they touch no other test's connections on the shared broker.
    """
    name = f"test-runtime-{uuid.uuid4().hex[:10]}"
    ctl("add_vhost", name)
    ctl("add_user", name, "secret")
    ctl("set_permissions", "-p", name, name, ".*", ".*", ".*")
    try:
        yield f"amqp://{name}:secret@127.0.0.1:5672/{name}"
    finally:
        ctl("delete_vhost", name)
        ctl("delete_user", name)


def close_all_connections() -> None:
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "closed by the runtime test suite"],
        check=True,
        capture_output=True,
        timeout=30,
    )


def consume_process(queue: str, handler: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "consume",
            handler,
            "--queue",
            queue,
            "--url",
            URL,
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
