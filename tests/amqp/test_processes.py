"""Consumers as separate processes (`python -m runtime consume`): scale-out, SIGKILL, SIGTERM, CLI errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from .conftest import ROOT, URL, Broker, consume_process, handled_counts, records, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

H = "tests.amqp.handlers"


def _stop(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_scale_out_three_processes_one_sigkilled(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    prefetch = 8
    procs = [
        consume_process(
            queue,
            f"{H}:slow_record",
            "--workers",
            "2",
            "--backend",
            "thread",
            "--prefetch",
            str(prefetch),
            "--stats-interval",
            "0",
        )
        for _ in range(3)
    ]
    try:
        wait_for(lambda: broker.consumers(queue) == 3, timeout=30, what="three consumers")
        ids = [str(i) for i in range(3000)]
        publish(queue, ids, out=str(out), sleep=0.003)
        victim = procs[0]
        victim_log = out / f"{victim.pid}.log"
        wait_for(
            lambda: victim_log.exists() and len(victim_log.read_text().splitlines()) >= 100,
            what="the victim handling messages",
        )
        victim.kill()
        victim.wait(10)
        wait_for(
            lambda: set(handled_counts(out)) == set(ids), timeout=60, what="every message handled"
        )
        wait_for(lambda: broker.count(queue)[0] == 0, what="queue drained")
    finally:
        results = [_stop(p) for p in procs[1:]]
        if procs[0].poll() is None:
            procs[0].kill()
        procs[0].communicate(timeout=10)
    for rc, output in results:
        assert rc == 0, output
    counts = handled_counts(out)
    duplicates = {body for body, n in counts.items() if n > 1}
    # Only messages the killed process had handled but not yet acked come back: at most its prefetch.
    assert len(duplicates) <= prefetch
    assert all(n <= 2 for n in counts.values())
    victim_bodies = {row[0] for row in records(out) if row[-1] == str(procs[0].pid)}
    assert duplicates <= victim_bodies
    survivors = {row[-1] for row in records(out)} - {str(procs[0].pid)}
    assert len(survivors) == 2


@pytest.mark.timeout(60)
def test_sigterm_drains_in_flight_work_and_exits_zero(
    queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    proc = consume_process(
        queue,
        f"{H}:slow_record",
        "--workers",
        "2",
        "--backend",
        "process",
        "--prefetch",
        "4",
        "--stop-timeout",
        "20",
    )
    try:
        wait_for(lambda: broker.consumers(queue) == 1, timeout=30, what="the consumer")
        ids = [str(i) for i in range(12)]
        publish(queue, ids, out=str(out), sleep=0.4)
        wait_for(lambda: len(records(out)) >= 2, what="work under way")
    finally:
        rc, output = _stop(proc, signal.SIGTERM)
    assert rc == 0, output
    assert "SIGTERM received; draining" in output
    handled = handled_counts(out)
    assert set(handled.values()) == {1}  # every in-flight message finished and was acked once
    remaining = sorted(body.decode() for _, body in broker.get_all(queue))
    assert sorted([*handled, *remaining], key=int) == ids  # nothing lost


@pytest.mark.timeout(60)
def test_sigterm_requeues_handlers_past_the_deadline(
    queue: str, out: Path, tmp_path: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    gate = tmp_path / "gate"
    proc = consume_process(
        queue,
        f"{H}:wait_for_file",
        "--workers",
        "1",
        "--backend",
        "thread",
        "--prefetch",
        "1",
        "--stop-timeout",
        "0.3",
    )
    try:
        wait_for(lambda: broker.consumers(queue) == 1, timeout=30, what="the consumer")
        publish(queue, ["stuck"], out=str(out), gate=str(gate))
        wait_for(lambda: broker.count(queue)[0] == 0, what="delivery")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: broker.count(queue) == (1, 0), what="the message requeued")
    finally:
        gate.touch()
        rc, output = _stop(proc)
    assert rc == 0, output
    assert "requeued" in output


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "consume", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(60)
def test_cli_errors_are_clear_and_non_zero() -> None:
    bad_ref = _cli(
        "tests.amqp.nope:handler", "--queue", "q", "--url", "amqp://guest:guest@127.0.0.1:1/%2F"
    )
    assert bad_ref.returncode == 2
    assert "cannot import module 'tests.amqp.nope'" in bad_ref.stderr
    assert "cannot reach" not in bad_ref.stderr  # failed before connecting

    unreachable = _cli(
        f"{H}:record",
        "--queue",
        "q",
        "--url",
        "amqp://guest:guest@127.0.0.1:1/%2F",
        "--connect-attempts",
        "2",
        "--backend",
        "thread",
        "--workers",
        "1",
    )
    assert unreachable.returncode == 1
    assert (
        "cannot reach the broker at amqp://guest:***@127.0.0.1:1/%2F after 2 attempt(s)"
        in unreachable.stderr
    )

    bad_url = _cli(f"{H}:record", "--queue", "q", "--url", "http://127.0.0.1:5672/")
    assert bad_url.returncode == 2
    assert "must start with amqp://" in bad_url.stderr
    assert _cli(f"{H}:record", "--queue", "q", "--url", URL, "--prefetch", "0").returncode == 2
