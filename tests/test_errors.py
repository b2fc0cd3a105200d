"""Bad input raises one clear runtime.Error and leaves nothing behind."""

from __future__ import annotations

import sys

import pytest

import runtime
from tests.helpers import tasks

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("workers", [0, -1, 1.5, 0.0, "4", True, None])
def test_bad_worker_counts(workers):
    with pytest.raises(runtime.ConfigurationError, match=r"workers|fraction") as info:
        runtime.Pool(tasks.Report("/dev/null"), workers=workers, backend="thread")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({tasks.KindA: -1, tasks.KindB: 2}, "weight"),
        ({tasks.KindA: 0, tasks.KindB: 0}, "weight > 0"),
        ({}, "empty"),
        ({tasks.KindA: "x"}, "weight"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(runtime.ConfigurationError, match=match):
        runtime.Pool(weights, workers=4, backend="thread")


def test_too_few_workers_for_the_kinds():
    with pytest.raises(runtime.ConfigurationError, match="at least one"):
        runtime.Pool({tasks.KindA: 1, tasks.KindB: 1}, workers=1, backend="thread")


def test_unknown_backend():
    with pytest.raises(runtime.ConfigurationError, match="unknown backend 'bogus'"):
        runtime.Pool(tasks.Report("/dev/null"), backend="bogus")
    with pytest.raises(runtime.ConfigurationError, match="unknown backend"):
        runtime.Executor(1, backend="bogus")


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("tests.helpers.nope:Task", "cannot import module 'tests.helpers.nope'"),
        ("tests.helpers.tasks:Nope", "has no attribute 'Nope'"),
        ("no-colon", "expected a reference"),
        ("tests.helpers.tasks:square", "runtime.Task subclass"),
    ],
)
def test_bad_task_references_fail_in_the_caller(ref, match):
    with pytest.raises(runtime.ConfigurationError, match=match):
        runtime.Pool(ref, backend="process")


def test_bad_bootstrap_reference():
    with pytest.raises(runtime.ReferenceNotFound, match="has no attribute"):
        runtime.Pool(
            tasks.Report("/dev/null"), backend="process", bootstrap="tests.helpers.tasks:missing"
        )
    with pytest.raises(runtime.ConfigurationError, match="not callable"):
        runtime.Pool(
            tasks.Report("/dev/null"),
            backend="thread",
            bootstrap="tests.helpers.tasks:BOOT_COUNTER",
        )
    with pytest.raises(runtime.ConfigurationError, match="lambda"):
        runtime.Pool(tasks.Report("/dev/null"), backend="process", bootstrap=lambda: None)


def test_task_base_class_and_non_tasks():
    with pytest.raises(runtime.ConfigurationError, match="subclass"):
        runtime.Pool(runtime.Task, backend="thread")
    with pytest.raises(runtime.ConfigurationError, match=r"runtime\.Task subclass"):
        runtime.Pool(object, backend="thread")


def test_unpicklable_task_arguments():
    import threading

    with pytest.raises(runtime.NotTransferable, match="cannot be sent to a worker") as info:
        runtime.Pool(tasks.Report(threading.Lock()), backend="thread")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_bad_restart_policy():
    with pytest.raises(runtime.ConfigurationError, match="max_restarts"):
        runtime.RestartPolicy(max_restarts=-1)
    with pytest.raises(runtime.ConfigurationError, match="max_backoff"):
        runtime.RestartPolicy(backoff=5, max_backoff=1)
    with pytest.raises(runtime.ConfigurationError, match="restart must be"):
        runtime.Pool(tasks.Report("/dev/null"), backend="thread", restart={"max_restarts": 1})


def test_bootstrap_failure_is_raised_with_the_worker_traceback(backend, tmp_path):
    pool = runtime.Pool(
        tasks.Report(str(tmp_path / "o")), workers=2, backend=backend, bootstrap=tasks.boot_fails
    )
    with pytest.raises(runtime.BootstrapError) as info:
        pool.run()
    err = info.value
    assert "config file missing" in str(err)
    assert err.remote_traceback
    assert "boot_fails" in err.remote_traceback
    assert "Uncaught in the worker" in str(err)


def test_bootstrap_failure_in_executor(backend):
    # The constructor does not wait for the workers: wait_ready() (and submit) report it.
    with runtime.Executor(2, backend=backend, bootstrap=tasks.boot_fails) as ex:
        with pytest.raises(runtime.BootstrapError, match="config file missing") as info:
            ex.wait_ready(timeout=20)
        assert "boot_fails" in (info.value.remote_traceback or "")
        with pytest.raises(runtime.BootstrapError, match="config file missing"):
            ex.submit(tasks.square, 2)


def test_every_error_derives_from_the_root():
    for name in runtime.__all__:
        obj = getattr(runtime, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, runtime.Error), name


def boot_imports_single_phase_extension() -> None:
    import _testsinglephase  # noqa: F401  (CPython's test module: refuses subinterpreters)


def test_extension_refusing_subinterpreters_is_named(backend):
    if backend == "thread" and sys.version_info < (3, 13):
        pytest.skip("CPython 3.12's _testsinglephase segfaults when loaded after a refused load")
    if backend == "subinterpreter":
        with (
            runtime.Executor(
                1, backend=backend, bootstrap=boot_imports_single_phase_extension
            ) as ex,
            pytest.raises(runtime.BackendUnavailable, match="_testsinglephase") as info,
        ):
            ex.wait_ready(timeout=20)
        assert "backend='thread' or backend='process'" in str(info.value)
        assert "_testsinglephase" in (info.value.remote_traceback or "")
    else:
        with runtime.Executor(
            1, backend=backend, bootstrap=boot_imports_single_phase_extension
        ) as ex:
            assert ex.submit(tasks.square, 3).result(timeout=20) == 9
