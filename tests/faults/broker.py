"""The fault suite's view of the shared RabbitMQ broker: our consumers, our connections, our queues.

Everything here touches only what this suite created (queues named ``fault-<hex>`` and the
connections whose name says they consume one of them): other users of the broker are
left alone, except by the one test that restarts the broker application.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.helpers.faults"


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return result.stdout


def queue_info(queue: str) -> tuple[int, int, int] | None:
    """(ready, unacknowledged, consumers) of ``queue``, from the broker itself; None if absent."""
    for line in rabbitmqctl(
        "list_queues", "name", "messages_ready", "messages_unacknowledged", "consumers"
    ).splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == queue:
            return int(parts[1]), int(parts[2]), int(parts[3])
    return None


def our_connections(queue: str) -> list[str]:
    """Broker-side ids of the connections of consumers of ``queue`` (by their connection name)."""
    marker = f"parallel-runtime consume {queue} (pid"
    return [
        line.split("\t", 1)[0]
        for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines()
        if marker in line
    ]


def close_connections(ids: Iterable[str]) -> int:
    closed = 0
    for conn in ids:
        try:
            rabbitmqctl("close_connection", conn, "closed by the runtime fault-injection suite")
        except subprocess.CalledProcessError:
            continue  # already gone
        closed += 1
    return closed


def delete_queues(queue: str) -> None:
    """Delete ``queue`` and its retry/dead-letter companions and exchange."""
    import pika

    names = [
        line.split("\t")[0]
        for line in rabbitmqctl("list_queues", "name").splitlines()
        if line.split("\t")[0] == queue or line.startswith(f"{queue}.")
    ]
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dlx")
    finally:
        connection.close()


def consume(queue: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``parallel-runtime consume`` (as ``python -m runtime``) on ``queue``, output to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime",
                "consume",
                f"{HANDLERS}:record_id",
                "--queue",
                queue,
                "--url",
                URL,
                "--stats-interval",
                "0",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def handled(out: Path) -> collections.Counter[str]:
    """How often each message id was handled, over every process's log."""
    counts: collections.Counter[str] = collections.Counter()
    for path in out.glob("*.log"):
        counts.update(path.read_text().split())
    return counts


def handled_by(out: Path, pid: int) -> int:
    try:
        return len((out / f"{pid}.log").read_text().split())
    except FileNotFoundError:
        return 0


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, wait; a process that does not end is killed (and its code is returned as -9)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def wait_broker_up(timeout: float = 120) -> None:
    """Block until the broker application runs again (``rabbitmqctl await_startup``)."""
    rabbitmqctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10)
