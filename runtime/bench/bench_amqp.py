"""RabbitMQ benchmark: consume+ack throughput vs raw pika, CPU-bound scaling, publisher confirms.

    python -m runtime.bench.bench_amqp [--quick] [--json PATH] [--url URL] [--metrics-overhead]

Every figure is the median of ``--repeats`` runs against the broker at ``--url``.
``--metrics-overhead`` runs only the no-op consume+ack with metrics on and off, in
alternating order within the same run (on: counters, histograms and the ops server,
scraped once a second by another process, 15 times Prometheus' default rate; off:
``metrics=False`` and no server).
Handlers live at module level (workers import them); pika is imported only in the
main process, so subinterpreter workers never load it.

The CPU-bound rows also say where the CPU went while the messages were consumed, in
cores: the workers, the main side of this process (pika's I/O thread, the executor's
hub, the waiting main thread; ``runtime.bench.cpu``) and, when it runs on this machine
and its process is visible, the broker. On a machine with as many cores as workers,
whatever the main side and the broker use is taken from the workers: that, not the
executor, is what keeps the 2-worker speed-up under 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def noop(message: Any) -> None:
    pass


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def cpu(message: Any) -> None:
    _fib(int(message.body))


def _queue() -> str:
    return f"bench-runtime-{uuid.uuid4().hex[:10]}"


def _fill(url: str, queue: str, bodies: list[bytes]) -> None:
    from runtime.amqp import Publisher

    with Publisher(url) as publisher:
        publisher.publish_batch(bodies, queue)


def _cleanup(url: str, names: list[str], exchanges: list[str]) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for name in names:
        channel.queue_delete(name)
    for name in exchanges:
        channel.exchange_delete(name)
    connection.close()


def raw_pika(url: str, count: int, prefetch: int) -> float:
    """A plain single pika consumer acking every message: messages per second."""
    import pika

    queue = _queue()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    _fill(url, queue, [b"x"] * count)
    channel.basic_qos(prefetch_count=prefetch)
    seen = 0

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal seen
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    start = time.perf_counter()
    channel.start_consuming()
    elapsed = time.perf_counter() - start
    channel.queue_delete(queue)
    connection.close()
    return count / elapsed


def _broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM, if this process can see it."""
    try:
        out = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    pids = out.stdout.split()
    return int(pids[0]) if len(pids) == 1 else None


def _process_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_tids() -> set[int]:
    names = ("runtime-interp-worker-", "runtime-thread-worker-")
    return {t.native_id for t in threading.enumerate() if t.name.startswith(names) and t.native_id}


CPU_SPLIT: dict[str, list[float]] = {}  # "<rows label>:<part>" -> cores, one per run


def runtime_consumer(
    url: str,
    count: int,
    handler: str,
    bodies: list[bytes],
    workers: int,
    backend: str,
    prefetch: int | None,
    metrics: bool = True,
    cpu_label: str | None = None,
) -> float:
    """Our Consumer on ``workers`` workers: messages per second from start() to the last ack.

    With ``cpu_label``, where the CPU went meanwhile is added to :data:`CPU_SPLIT`.
    """
    import runtime
    from runtime.amqp import Consumer
    from runtime.bench.cpu import thread_cpu_ns

    queue = _queue()
    broker = _broker_pid() if cpu_label else None
    with runtime.Executor(workers=workers, backend=backend, metrics=metrics) as executor:
        executor.wait_ready(60)  # measure consuming, not booting
        consumer = Consumer(
            handler, queue, url=url, prefetch=prefetch, executor=executor, metrics=metrics
        )
        from runtime.amqp import Publisher

        with Publisher(url) as publisher:
            publisher.declare(consumer.topology)
            publisher.publish_batch(bodies, queue)
        workers_here = _worker_tids()
        threads_before, broker_before = thread_cpu_ns(), _process_cpu_s(broker)
        start = time.perf_counter()
        consumer.start()
        # A 10 ms poll: a few hundredths of a percent of the run, and (unlike a 2 ms one)
        # not itself a visible share of the main side's CPU.
        while consumer.statistics().succeeded < count:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        threads_after, broker_after = thread_cpu_ns(), _process_cpu_s(broker)
        consumer.stop()
    _cleanup(url, consumer.topology.queue_names(), [consumer.topology.dead_letter_exchange])
    if cpu_label and threads_before is not None and threads_after is not None:
        worker_s = main_s = 0.0
        for tid, ns in threads_after.items():
            spent = (ns - threads_before.get(tid, 0)) / 1e9
            if tid in workers_here:
                worker_s += spent
            else:
                main_s += spent
        CPU_SPLIT.setdefault(f"{cpu_label}:workers", []).append(worker_s / elapsed)
        CPU_SPLIT.setdefault(f"{cpu_label}:main side", []).append(main_s / elapsed)
        if broker_before is not None and broker_after is not None:
            CPU_SPLIT.setdefault(f"{cpu_label}:broker", []).append(
                (broker_after - broker_before) / elapsed
            )
    return count / elapsed


_SCRAPER = """
import sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
while True:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
    print(flush=True)
    time.sleep(interval)
"""


class _Scraper:
    """The ops server, scraped every ``interval`` seconds by another process (as Prometheus is)."""

    def __init__(self, interval: float) -> None:
        import subprocess

        import runtime

        self.server = runtime.serve_metrics(0, host="127.0.0.1")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SCRAPER, self.server.url + "/metrics", str(interval)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.scrapes = 0

    def close(self) -> None:
        self._proc.terminate()
        output, _ = self._proc.communicate(timeout=30)
        self.scrapes = output.count("\n")
        self.server.close()


def metrics_overhead(
    url: str, count: int, repeats: int, backend: str, interval: float = 1.0
) -> dict[str, float]:
    """No-op consume+ack, metrics on vs off, alternating; medians and the overhead in %."""
    me = __name__ if __name__ != "__main__" else "runtime.bench.bench_amqp"
    bodies = [b"x"] * count
    on: list[float] = []
    off: list[float] = []
    scrapes = 0
    for i in range(repeats):
        for metrics in (True, False) if i % 2 == 0 else (False, True):
            scraper = _Scraper(interval) if metrics else None
            try:
                rate = runtime_consumer(
                    url, count, f"{me}:noop", bodies, 2, backend, 200, metrics=metrics
                )
            finally:
                if scraper is not None:
                    scraper.close()
                    scrapes += scraper.scrapes
            (on if metrics else off).append(rate)
    on_rate, off_rate = statistics.median(on), statistics.median(off)
    return {
        "metrics_on": on_rate,
        "metrics_off": off_rate,
        "overhead_pct": (off_rate - on_rate) / off_rate * 100,
        "scrapes": scrapes,
    }


def executor_rate(count: int, fib_arg: int, workers: int, backend: str) -> float:
    """The same CPU-bound jobs through the Executor alone (no broker): jobs per second."""
    import runtime

    with runtime.Executor(workers=workers, backend=backend) as executor:
        executor.wait_ready(60)
        start = time.perf_counter()
        futures = [executor.submit(_fib, fib_arg) for _ in range(count)]
        for future in futures:
            future.result()
        return count / (time.perf_counter() - start)


def publisher_rate(url: str, count: int, batched: bool) -> float:
    from runtime.amqp import Publisher, Topology

    topology = Topology(_queue())
    with Publisher(url) as publisher:
        publisher.declare(topology)
        start = time.perf_counter()
        if batched:
            publisher.publish_batch([b"x"] * count, topology.queue)
        else:
            for _ in range(count):
                publisher.publish(topology.queue, b"x")
        elapsed = time.perf_counter() - start
        publisher.delete(topology)
    return count / elapsed


def _median(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.bench.bench_amqp", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--url", default=URL)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backend", default="auto")
    parser.add_argument(
        "--metrics-overhead",
        action="store_true",
        help="only compare no-op consume+ack with metrics on vs off (same run, alternating)",
    )
    args = parser.parse_args(argv)
    import runtime

    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    n = 5_000 if quick else 20_000
    cpu_n, fib_arg = (60, 22) if quick else (480, 24)
    backend = runtime.Executor(workers=1, backend=args.backend)
    chosen = backend.backend
    backend.shutdown()
    me = __name__ if __name__ != "__main__" else "runtime.bench.bench_amqp"
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "backend": chosen,
        "repeats": repeats,
    }

    def row(name: str, value: float, unit: str = "msg/s") -> None:
        results[name] = round(value, 1)
        print(f"{name:48} {value:12,.0f} {unit}", flush=True)

    print(f"RabbitMQ benchmark (Python {results['python']}, backend={chosen}, median of {repeats})")

    def overhead(repeats: int) -> None:
        figures = metrics_overhead(args.url, n, repeats, args.backend)
        row("no-op consume+ack, metrics on (scraped 1/s)", figures["metrics_on"])
        row("no-op consume+ack, metrics off", figures["metrics_off"])
        results["metrics_overhead_pct"] = round(figures["overhead_pct"], 2)
        print(f"{'  metrics overhead':48} {figures['overhead_pct']:12.2f} %")
        print(f"{'  /metrics scrapes during the runs':48} {figures['scrapes']:12.0f}")

    if args.metrics_overhead:
        overhead(args.repeats or (3 if quick else 7))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=2)
        return 0
    raw = _median(lambda: raw_pika(args.url, n, 200), repeats)
    row("raw pika consume+ack (1 consumer, prefetch 200)", raw)
    ours = _median(
        lambda: runtime_consumer(args.url, n, f"{me}:noop", [b"x"] * n, 2, args.backend, 200),
        repeats,
    )
    row("runtime Consumer no-op (2 workers, prefetch 200)", ours)
    results["noop_vs_raw"] = round(ours / raw, 3)
    print(f"{'  ratio to raw pika':48} {ours / raw:12.2f} x")
    ours_default = _median(
        lambda: runtime_consumer(args.url, n, f"{me}:noop", [b"x"] * n, 2, args.backend, None),
        repeats,
    )
    row("runtime Consumer no-op (2 workers, default prefetch 8)", ours_default)
    overhead(repeats)

    body = [str(fib_arg).encode()] * cpu_n
    one = _median(
        lambda: runtime_consumer(
            args.url, cpu_n, f"{me}:cpu", body, 1, args.backend, None, cpu_label="1 worker"
        ),
        repeats,
    )
    row(f"CPU-bound fib({fib_arg}), 1 worker", one)
    two = _median(
        lambda: runtime_consumer(
            args.url, cpu_n, f"{me}:cpu", body, 2, args.backend, None, cpu_label="2 workers"
        ),
        repeats,
    )
    row(f"CPU-bound fib({fib_arg}), 2 workers", two)
    results["cpu_speedup_2_workers"] = round(two / one, 3)
    print(f"{'  speed-up with 2 workers':48} {two / one:12.2f} x")
    executor_one = _median(lambda: executor_rate(cpu_n, fib_arg, 1, args.backend), repeats)
    executor_two = _median(lambda: executor_rate(cpu_n, fib_arg, 2, args.backend), repeats)
    results["executor_speedup_2_workers"] = round(executor_two / executor_one, 3)
    print(f"{'  the Executor alone, same jobs':48} {executor_two / executor_one:12.2f} x")
    split = {key: round(statistics.median(v), 3) for key, v in CPU_SPLIT.items()}
    results["cpu_cores_while_consuming"] = split
    for label in ("1 worker", "2 workers"):
        parts = "   ".join(
            f"{part} {split[f'{label}:{part}']:.2f}"
            for part in ("workers", "main side", "broker")
            if f"{label}:{part}" in split
        )
        print(f"{'  CPU cores while consuming, ' + label:48} {parts}")

    batched = _median(lambda: publisher_rate(args.url, n, True), repeats)
    row("publisher confirms, batched", batched)
    single = _median(lambda: publisher_rate(args.url, 1_000 if not quick else 300, False), repeats)
    row("publisher confirms, one by one", single)
    results["batched_vs_single"] = round(batched / single, 1)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
