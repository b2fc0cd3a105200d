"""Operating it: /healthz, /readyz, /metrics over real HTTP, on_failure for Pool and Executor."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time

import pytest

import runtime
from runtime._heartbeat import Heartbeat
from runtime.backends import live_workers
from runtime.ops._catalog import METRICS
from runtime.ops._registry import REGISTRY, Histogram

from .helpers import tasks
from .helpers.ops import get, get_json, scrape, value, wait_for, wait_for_status

pytestmark = pytest.mark.timeout(60)
P = "parallel_runtime_"


@pytest.fixture
def server():
    srv = runtime.serve_metrics(0, host="127.0.0.1")
    yield srv
    srv.close()


def _total(name: str, *labels: str) -> float:
    """A counter's current total from the registry (live components plus retired ones)."""
    raw = REGISTRY.collect().get(name, {}).get(tuple(labels), 0.0)
    assert isinstance(raw, (int, float))
    return float(raw)


# ---------------------------------------------------------------------- the server
def test_port_zero_picks_a_free_port_and_logs_it(caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    with runtime.serve_metrics(0, host="127.0.0.1") as srv:
        assert isinstance(srv, runtime.MetricsServer)
        assert srv.port > 0
        assert f"on http://127.0.0.1:{srv.port}" in caplog.text
        status, body = get(srv.url + "/nope")
        assert status == 404
        assert "/healthz" in body
    # closed: the port no longer answers
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


@pytest.mark.parametrize("port", [-1, 65536, "abc", "9464x", True, 1.5, None])
def test_bad_port_is_one_clear_error(port):
    with pytest.raises(
        runtime.ConfigurationError, match=r"metrics port must be a number 0\.\.65535"
    ):
        runtime.serve_metrics(port)


def test_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(runtime.ConfigurationError, match="already in use"):
            runtime.serve_metrics(port, host="127.0.0.1")


def test_bad_host_is_one_clear_error():
    with pytest.raises(runtime.ConfigurationError, match=r"cannot serve metrics on 256\.0\.0\.1"):
        runtime.serve_metrics(0, host="256.0.0.1")


def test_without_the_metrics_extra_metrics_is_501_and_probes_still_work():
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"  # as if the extra were missing
        "import runtime\n"
        "from tests.helpers.ops import get\n"
        "with runtime.serve_metrics(0, host='127.0.0.1') as srv:\n"
        "    print(get(srv.url + '/metrics'))\n"
        "    print(get(srv.url + '/healthz')[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("(501, ")
    assert "pip install 'parallel-runtime[metrics]'" in out.stdout
    assert out.stdout.splitlines()[-1] == "200"


def test_running_pools_and_executors_never_imports_prometheus_client():
    code = (
        "import sys, runtime\n"
        "from tests.helpers.tasks import square\n"
        "with runtime.Executor(1, backend='thread') as ex:\n"
        "    assert ex.submit(square, 3).result() == 9\n"
        "with runtime.serve_metrics(0, host='127.0.0.1') as srv:\n"
        "    from tests.helpers.ops import get\n"
        "    assert get(srv.url + '/healthz')[0] == 200\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------- pool
def test_pool_health_readiness_and_metrics(backend, server, tmp_path):
    status, body = get_json(server.url + "/readyz")
    assert status == 503  # nothing is running yet
    assert "no pool, executor or consumer is running" in body["not_ready"][0]
    completed = _total(P + "tasks_completed_total", "Loop")
    pool = runtime.Pool(tasks.Loop(str(tmp_path / "log")), workers=2, backend=backend)
    with pool:
        wait_for_status(server.url + "/readyz", 200)
        status, health = get_json(server.url + "/healthz")
        assert status == 200, health
        threads = health["components"][0]["threads"]
        assert {t["thread"] for t in threads} == {"supervisor", "hub"}
        samples = scrape(server.url)
        assert value(samples, P + "pool_workers_target") == 2
        assert value(samples, P + "pool_workers_alive") == 2
        assert value(samples, P + "pool_workers_booting") == 0
    status, body = get_json(server.url + "/readyz")
    assert status == 503
    assert _total(P + "tasks_completed_total", "Loop") == completed + 2  # both returned on stop


def test_pool_on_failure_every_backend(backend, tmp_path):
    seen: list[runtime.Failure] = []
    before = _total(P + "task_failures_total", "FailAlways", "ValueError")
    restarts = _total(P + "task_restarts_total", "FailAlways")
    pool = runtime.Pool(
        tasks.FailAlways(str(tmp_path / "log")),
        workers=1,
        backend=backend,
        restart=runtime.RestartPolicy(max_restarts=1, backoff=0),
        on_failure=seen.append,
    )
    report = pool.run()
    assert report.gave_up == 1
    assert [f.action for f in seen] == ["restart", "give_up"]
    for attempt, failure in enumerate(seen, 1):
        assert isinstance(failure, runtime.Failure)
        assert failure.source == "pool"
        assert failure.task == "FailAlways"
        assert failure.exception_type == "ValueError"
        assert failure.message == f"boom on attempt {attempt}"
        assert failure.attempt == attempt
        assert 'raise ValueError(f"boom on attempt' in failure.traceback  # the worker's traceback
        assert failure.worker is not None
        assert failure.worker.backend == backend
        assert failure.worker.kind == "FailAlways"
        assert abs(failure.time - time.time()) < 60
        with pytest.raises(AttributeError):
            failure.message = "frozen"  # type: ignore[misc]
    doc = seen[0].to_dict()
    assert doc["worker"]["backend"] == backend
    assert doc["exception_type"] == "ValueError"
    assert _total(P + "task_failures_total", "FailAlways", "ValueError") == before + 2
    assert _total(P + "task_restarts_total", "FailAlways") == restarts + 1


def test_pool_not_ready_during_restart_backoff(server, tmp_path):
    pool = runtime.Pool(
        tasks.FailAlways(str(tmp_path / "log")),
        workers=1,
        backend="thread",
        restart=runtime.RestartPolicy(backoff=30, max_backoff=30, jitter=False),
    )
    with pool:
        body = wait_for_status(server.url + "/readyz", 503)
        wait_for(
            lambda: "1 waiting to restart" in str(get_json(server.url + "/readyz")[1]),
            what="the slot waiting for its restart",
        )
        backoff = value(scrape(server.url), P + "restart_backoff_seconds", kind="FailAlways")
        assert 0 < backoff <= 30
        assert get(server.url + "/healthz")[0] == 200  # failing tasks are not a stuck pool
        del body


def test_a_hook_that_raises_is_logged_and_never_disturbs_the_pool(tmp_path, caplog):
    errors = _total(P + "failure_hook_errors_total")
    pool = runtime.Pool(
        tasks.FailAlways(str(tmp_path / "log")),
        workers=1,
        backend="thread",
        restart=runtime.RestartPolicy(max_restarts=2, backoff=0),
        on_failure="tests.helpers.tasks:failing_hook",
    )
    report = pool.run()
    assert (report.restarts, report.gave_up) == (2, 1)
    assert caplog.text.count("the on_failure hook") == 3
    assert "the hook itself is broken" in caplog.text
    assert _total(P + "failure_hook_errors_total") == errors + 3


def test_on_failure_by_reference(tmp_path):
    tasks.FAILURES.clear()
    runtime.Pool(
        tasks.FailAlways(str(tmp_path / "log")),
        backend="thread",
        restart=runtime.RestartPolicy(max_restarts=0),
        on_failure="tests.helpers.tasks:remember_failure",
    ).run()
    assert [f.action for f in tasks.FAILURES] == ["give_up"]  # type: ignore[attr-defined]


def test_bad_on_failure_fails_before_anything_starts():
    with pytest.raises(runtime.ReferenceNotFound, match=r"cannot import module 'nope\.mod'"):
        runtime.Pool(tasks.Hello, backend="thread", on_failure="nope.mod:fn")
    with pytest.raises(runtime.ConfigurationError, match="on_failure must be a callable"):
        runtime.Executor(1, backend="thread", on_failure=42)
    with pytest.raises(runtime.ConfigurationError, match="not callable"):
        runtime.Executor(1, backend="thread", on_failure="tests.helpers.tasks:MODULE_STATE")
    assert live_workers() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("runtime-")]


# ---------------------------------------------------------------------- executor
def test_executor_on_failure_and_counters_every_backend(backend, server):
    seen: list[runtime.Failure] = []
    submitted = _total(P + "jobs_submitted_total")
    failed = _total(P + "jobs_failed_total", "KeyError")
    with runtime.Executor(1, backend=backend, on_failure=seen.append) as ex:
        wait_for_status(server.url + "/readyz", 200)
        assert [f.result() for f in [ex.submit(tasks.square, i) for i in range(4)]] == [0, 1, 4, 9]
        with pytest.raises(KeyError):
            ex.submit(tasks.raise_key_error, "missing").result()
        with pytest.raises(ValueError, match="bad item 2"):
            list(ex.map(tasks.fail_if, [1, 2, 3], [2, 2, 2]))
        samples = scrape(server.url)
        assert value(samples, P + "executor_workers_alive") == 1
        assert value(samples, P + "job_duration_seconds_count") >= 6
    assert [(f.task, f.exception_type) for f in seen] == [
        ("tests.helpers.tasks:raise_key_error", "KeyError"),
        ("tests.helpers.tasks:fail_if", "ValueError"),
    ]
    assert all(f.source == "executor" and f.action == "raise" for f in seen)
    assert "raise KeyError(key)" in seen[0].traceback
    assert seen[0].worker is not None
    assert seen[0].worker.backend == backend
    assert _total(P + "jobs_submitted_total") == submitted + 8  # 4 + 1 + map's 3 chunks
    assert _total(P + "jobs_failed_total", "KeyError") == failed + 1


def test_executor_reports_jobs_lost_with_their_worker():
    seen: list[runtime.Failure] = []
    replaced = _total(P + "executor_workers_replaced_total")
    with runtime.Executor(1, backend="process", on_failure=seen.append) as ex:
        with pytest.raises(runtime.WorkerCrashed):
            ex.submit(tasks.die_hard).result()
        assert ex.submit(tasks.square, 5).result() == 25
    assert [(f.exception_type, f.task) for f in seen] == [
        ("runtime.WorkerCrashed", "tests.helpers.tasks:die_hard")
    ]
    assert _total(P + "executor_workers_replaced_total") == replaced + 1


def test_metrics_false_keeps_a_component_out_of_metrics_only(server):
    submitted = _total(P + "jobs_submitted_total")
    with runtime.Executor(1, backend="thread", metrics=False) as ex:
        assert ex.submit(tasks.square, 2).result() == 4
        status, body = get_json(server.url + "/readyz")
        assert status == 200
        assert body["components"][0]["component"] == "executor"
    assert _total(P + "jobs_submitted_total") == submitted


# ---------------------------------------------------------------------- liveness
def test_healthz_names_a_stuck_hub_and_recovers(backend):
    gate = threading.Event()
    with (
        runtime.serve_metrics(0, host="127.0.0.1", stale_after=0.3) as srv,
        runtime.Executor(1, backend=backend) as ex,
    ):
        ex.wait_ready(timeout=20)  # the job must be running for request_stop to reach it
        future = ex.submit(tasks.wait_for_stop, 30)
        # Runs on the executor's hub thread when the result arrives (nobody else waits
        # to read it): the hub is stuck.
        future.add_done_callback(lambda _f: gate.wait(30))
        assert get(srv.url + "/healthz")[0] == 200
        assert ex.request_stop(future)
        body = wait_for_status(srv.url + "/healthz", 503)
        assert body["status"] == "unhealthy"
        assert "hub: busy for" in body["unhealthy"][0]
        assert body["unhealthy"][0].startswith("executor-")
        assert get(srv.url + "/readyz")[0] == 503
        gate.set()
        wait_for_status(srv.url + "/healthz", 200)


def test_heartbeat_parked_is_alive_forever_busy_is_stuck_dead_is_dead():
    beat = Heartbeat("hub")
    later = time.monotonic() + 3600
    beat.park("worker messages")
    assert beat.problem(later, 30.0) is None  # a wait without timeout, an hour long: healthy
    beat.beat()
    assert beat.problem(time.monotonic(), 30.0) is None
    problem = beat.problem(later, 30.0)
    assert problem is not None
    assert "stuck" in problem
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    dead = Heartbeat("supervisor", thread)
    dead.park()
    problem = dead.problem(time.monotonic(), 30.0)
    assert problem is not None
    assert "has died" in problem
    dead.close()
    assert dead.problem(time.monotonic(), 30.0) is None  # ended on purpose


def test_histogram_buckets_are_prometheus_le():
    hist = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 2.0):
        hist.observe(v)
    hist.observe(0.2, 3)
    snap = hist.snapshot()
    assert snap.counts == (2, 5, 1)  # le=0.1 holds 0.1 itself; the last bucket is +Inf
    assert snap.sum == pytest.approx(0.05 + 0.1 + 0.5 + 1.0 + 2.0 + 0.6)


def test_every_catalogued_metric_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Operating it") :]
    missing = [name for name in METRICS if f"`{name}`" not in section]
    assert not missing
