"""`parallel-runtime consume` as an operator sees it: probes, metrics, failure reports, bad input.

Everything runs against the real broker and real HTTP. Tests that take connections
away use a vhost and user of their own, so ``close_all_connections`` there touches no
other test's connections on the shared broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from typing import TYPE_CHECKING

import pika
import pytest

from runtime.amqp import Topology

from ..helpers.ops import get, get_json, port_from, scrape, value, wait_for, wait_for_status
from .conftest import ROOT, URL, Broker, ctl, records, remember

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

H = "tests.amqp.handlers"
P = "parallel_runtime_"


class Consume:
    """A `python -m runtime consume ... --metrics-port 0` process, its output read on a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "consume", *args, "--metrics-port", "0"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        port = wait_for(lambda: port_from(self.lines) or self.proc.poll() is not None, 60, "port")
        assert port is not True, self.output()
        self.url = f"http://127.0.0.1:{port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return rc


@pytest.fixture
def consume() -> Iterator[Callable[..., Consume]]:
    started: list[Consume] = []

    def _start(*args: str, env: dict[str, str] | None = None) -> Consume:
        c = Consume(*args, env=env)
        started.append(c)
        return c

    yield _start
    for c in started:
        c.stop(signal.SIGKILL)


def test_probes_and_exact_counters(
    queue: str, broker: Broker, publish: Callable[..., int], consume: Callable[..., Consume]
) -> None:
    c = consume(
        f"{H}:noop", "--queue", queue, "--url", URL, "--workers", "2", "--backend", "thread",
        "--prefetch", "16", "--stats-interval", "0",
    )  # fmt: skip
    wait_for_status(c.url + "/readyz", 200)
    status, health = get_json(c.url + "/healthz")
    assert status == 200, health
    kinds = {comp["component"] for comp in health["components"]}
    assert kinds == {"consumer", "executor"}
    before = scrape(c.url)
    assert value(before, P + "messages_delivered_total", queue=queue) == 0
    assert value(before, P + "broker_connected", queue=queue) == 1
    assert value(before, P + "prefetch_limit", queue=queue) == 16
    count = 137
    publish(queue, [str(i) for i in range(count)])
    wait_for(
        lambda: value(scrape(c.url), P + "messages_acked_total", queue=queue) >= count,
        what="every message acked",
    )
    after = scrape(c.url)
    assert value(after, P + "messages_delivered_total", queue=queue) == count
    assert value(after, P + "messages_acked_total", queue=queue) == count
    assert value(after, P + "messages_failed_total", queue=queue) == 0
    assert value(after, P + "handler_duration_seconds_count", queue=queue) == count
    assert value(after, P + "jobs_completed_total") == count
    assert value(after, P + "prefetch_in_use", queue=queue) == 0
    assert (P + "broker_last_frame_age_seconds", frozenset({("queue", queue)})) in after
    assert broker.count(queue) == (0, 1)
    assert c.stop() == 0, c.output()


# ---------------------------------------------------------------------- reconnect
def test_readyz_is_503_while_disconnected_and_200_after_the_reconnect(
    own_vhost: str, consume: Callable[..., Consume]
) -> None:
    vhost = own_vhost.rsplit("/", 1)[1]
    queue = f"test-runtime-{uuid.uuid4().hex[:12]}"
    c = consume(
        f"{H}:noop", "--queue", queue, "--url", own_vhost, "--workers", "1", "--backend", "thread",
        "--stats-interval", "0",
    )  # fmt: skip
    wait_for_status(c.url + "/readyz", 200)
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "-p", vhost, "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"parallel-runtime consume {queue} (pid {c.proc.pid})" in listed
    # Keep the consumer out while it is disconnected: its reconnects are refused.
    ctl("clear_permissions", "-p", vhost, vhost)
    ctl("close_all_connections", "-p", vhost, "closed by the runtime ops test")
    body = wait_for_status(c.url + "/readyz", 503)
    assert "not connected to the broker" in " ".join(body["not_ready"])
    assert get(c.url + "/healthz")[0] == 200  # liveness does not hang on the broker
    samples = scrape(c.url)
    assert value(samples, P + "broker_connected", queue=queue) == 0
    wait_for(lambda: "refused the login" in c.output(), what="a refused reconnect")
    assert get(c.url + "/readyz")[0] == 503
    ctl("set_permissions", "-p", vhost, vhost, ".*", ".*", ".*")
    wait_for_status(c.url + "/readyz", 200, timeout=60)
    assert value(scrape(c.url), P + "broker_reconnects_total", queue=queue) == 1
    assert c.stop() == 0, c.output()


# ---------------------------------------------------------------------- SIGTERM drain
def test_readyz_is_503_during_the_sigterm_drain(
    queue: str,
    out: Path,
    tmp_path: Path,
    broker: Broker,
    publish: Callable[..., int],
    consume: Callable[..., Consume],
) -> None:
    gate = tmp_path / "gate"
    c = consume(
        f"{H}:wait_for_file", "--queue", queue, "--url", URL, "--workers", "1", "--backend",
        "thread", "--prefetch", "1", "--stop-timeout", "30", "--stats-interval", "0",
    )  # fmt: skip
    wait_for_status(c.url + "/readyz", 200)
    publish(queue, ["held"], out=str(out), gate=str(gate))
    wait_for(
        lambda: value(scrape(c.url), P + "prefetch_in_use", queue=queue) == 1,
        what="the message in the handler",
    )
    c.proc.send_signal(signal.SIGTERM)
    body = wait_for_status(c.url + "/readyz", 503)
    assert "draining" in " ".join(body["not_ready"])
    assert get(c.url + "/healthz")[0] == 200
    gate.touch()
    assert c.stop() == 0, c.output()
    assert [r[0] for r in records(out)] == ["held"]
    assert broker.count(queue)[0] == 0  # finished within the drain and acked


# ---------------------------------------------------------------------- failure reports
def test_failure_queue_gets_json_with_the_worker_traceback(
    queue: str,
    out: Path,
    tmp_path: Path,
    broker: Broker,
    publish: Callable[..., int],
    consume: Callable[..., Consume],
) -> None:
    failures = f"{queue}.failures"
    remember(Topology(queue, retry_delays=(0.0,)))
    hook_file = tmp_path / "hook.jsonl"
    c = consume(
        f"{H}:fail_always", "--queue", queue, "--url", URL, "--workers", "1", "--backend",
        "process", "--max-attempts", "2", "--retry-delay", "0", "--failure-queue", failures,
        "--on-failure", f"{H}:record_failure", "--stats-interval", "0",
        env={"RUNTIME_TEST_FAILURES": str(hook_file)},
    )  # fmt: skip
    try:
        wait_for_status(c.url + "/readyz", 200)
        assert broker.count(failures) == (0, 0)  # declared at start, before any failure
        publish(queue, ["7"], out=str(out))
        docs: list[tuple[pika.BasicProperties, bytes]] = []

        def two_reports() -> bool:
            docs.extend(broker.get_all(failures))
            return len(docs) >= 2

        wait_for(two_reports, what="reports")
        assert c.stop() == 0, c.output()
    finally:
        with contextlib.suppress(Exception):
            broker.delete([failures], [])
    reports = [json.loads(body) for _, body in docs]
    assert [r["action"] for r in reports] == ["retry", "dead_letter"]
    assert [r["delivery_attempt"] for r in reports] == [1, 2]
    for props, _ in docs:
        assert props.content_type == "application/json"
        assert props.delivery_mode == 2
    for report in reports:
        assert report["source"] == "consumer"
        assert report["queue"] == queue
        assert report["task"] == f"{H}:fail_always"
        assert report["exception_type"] == "ValueError"
        assert report["message"] == "cannot handle 7"
        assert "in fail_always" in report["traceback"]
        assert 'raise ValueError(f"cannot handle' in report["traceback"]
        assert report["worker"]["backend"] == "process"
        assert report["worker"]["pid"] != c.proc.pid  # it failed in the worker process
    hooked = [json.loads(line) for line in hook_file.read_text().splitlines()]
    assert hooked == reports  # --on-failure saw the same records
    # The failure queue is durable: declaring it durable again is accepted.
    broker._ch().queue_declare(failures, durable=True)
    broker.delete([failures], [])


# ---------------------------------------------------------------------- bad input
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_input_is_one_clear_error_before_anything_starts(broker: Broker) -> None:
    queue = f"test-runtime-{uuid.uuid4().hex[:12]}"
    consume = ["consume", f"{H}:noop", "--queue", queue, "--url", URL, "--backend", "thread"]
    run = ["run", "tests.helpers.tasks:Hello", "--backend", "thread"]
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        cases = {
            "already in use": ["--metrics-port", busy],
            "metrics port must be a number 0..65535": ["--metrics-port", "http"],
            "(0: any free port), got '70000'": ["--metrics-port", "70000"],
            "cannot import module 'nope.hooks'": ["--on-failure", "nope.hooks:report"],
        }
        for expected, flags in cases.items():
            for command in (consume, run):
                result = _cli(*command, *flags)
                assert result.returncode == 2, (command, flags, result.stderr)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1, result.stderr
                assert lines[0].startswith("parallel-runtime")
                assert expected in lines[0]
                assert "hello from worker" not in result.stdout
    # Nothing started: the consumer never declared its queue.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        broker._ch().queue_declare(queue, passive=True)


def test_consumer_on_failure_in_process_every_backend(
    backend: str, queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    from runtime.amqp import Consumer

    seen: list[runtime.Failure] = []
    consumer = Consumer(
        f"{H}:fail_always",
        queue,
        url=URL,
        workers=1,
        backend=backend,
        max_attempts=1,
        on_failure=seen.append,
    )
    remember(consumer.topology)
    with consumer:
        publish(queue, ["9"], out=str(out))
        wait_for(lambda: consumer.statistics().dead_lettered == 1, what="the dead-letter")
    (failure,) = seen  # delivered before stop() returned
    assert (failure.source, failure.action, failure.exception_type) == (
        "consumer",
        "dead_letter",
        "ValueError",
    )
    assert failure.worker is not None
    assert failure.worker.backend == backend
    assert "cannot handle 9" in failure.traceback
    assert broker.count(f"{queue}.dead")[0] == 1


def test_bench_switch_compares_metrics_on_and_off() -> None:
    from runtime.bench.bench_amqp import metrics_overhead

    figures = metrics_overhead(URL, 300, 1, "thread", interval=0.05)
    assert figures["metrics_on"] > 0
    assert figures["metrics_off"] > 0
    assert figures["overhead_pct"] == pytest.approx(
        (figures["metrics_off"] - figures["metrics_on"]) / figures["metrics_off"] * 100
    )
