"""Build/GIL detection and the backend choice, including builds this machine lacks (injected)."""

from __future__ import annotations

import logging
import pickle
import sys

import pytest

import runtime
from runtime._capabilities import (
    Capabilities,
    _has_module,
    choose_backend,
    detect,
    usable_cpu_count,
)
from runtime._policy import resolve_workers, split_by_weight
from tests.helpers import tasks


def caps(**kw) -> Capabilities:
    base = dict(
        free_threaded_build=False,
        gil_enabled=True,
        subinterpreters=True,
        interpreters_api="backport",
        default_backend="subinterpreter",
        cpu_count=4,
        python_version=(3, 13),
    )
    base.update(kw)
    return Capabilities(**base)


def test_this_interpreter_is_described():
    c = runtime.capabilities()
    assert c == detect()
    assert c.cpu_count == usable_cpu_count() >= 1
    assert c.free_threaded_build is False  # no free-threaded build exists on these machines
    if sys.version_info >= (3, 14):  # PEP 734 is in the stdlib: concurrent.interpreters
        assert (c.interpreters_api, c.default_backend) == ("stdlib", "subinterpreter")
    elif sys.version_info >= (3, 13):  # the interpreters-pep-734 backport
        assert (c.interpreters_api, c.default_backend) == ("backport", "subinterpreter")
    else:
        assert (c.interpreters_api, c.default_backend) == ("lowlevel", "process")


@pytest.mark.parametrize(
    ("injected", "expected"),
    [
        (caps(free_threaded_build=True, gil_enabled=False), "thread"),
        (caps(free_threaded_build=True, gil_enabled=True), "subinterpreter"),
        (
            caps(
                free_threaded_build=True,
                gil_enabled=True,
                subinterpreters=False,
                interpreters_api=None,
            ),
            "process",
        ),
        (caps(python_version=(3, 14), interpreters_api="stdlib"), "subinterpreter"),
        (caps(python_version=(3, 12), interpreters_api="lowlevel"), "process"),
        (caps(subinterpreters=False, interpreters_api=None), "process"),
    ],
)
def test_auto_picks_the_backend_that_runs_in_parallel(injected, expected):
    backend, why = choose_backend("auto", injected)
    assert backend == expected
    assert why


def test_auto_choice_is_logged(caplog):
    fake = caps(free_threaded_build=True, gil_enabled=False)
    with caplog.at_level(logging.INFO, logger="runtime"):
        pool = runtime.Pool(tasks.Report("/dev/null"), backend="auto", _capabilities=fake)
    assert pool.backend == "thread"
    assert "free-threaded build with the GIL disabled" in caplog.text


def test_explicit_subinterpreter_without_support():
    with pytest.raises(runtime.BackendUnavailable, match="backend='process'"):
        choose_backend("subinterpreter", caps(subinterpreters=False, interpreters_api=None))


def test_subinterpreters_on_312_warn_loudly():
    with pytest.warns(RuntimeWarning, match="crash the whole process"):
        runtime.Pool(
            tasks.Report("/dev/null"),
            backend="subinterpreter",
            _capabilities=caps(python_version=(3, 12)),
        )


def test_cpu_count_is_affinity_aware(monkeypatch):
    import os

    monkeypatch.setattr(os, "process_cpu_count", lambda: 3, raising=False)
    monkeypatch.setattr("runtime._early._cgroup_cpu_limit", lambda: None)
    assert usable_cpu_count() == 3
    monkeypatch.setattr("runtime._early._cgroup_cpu_limit", lambda: 2)
    assert usable_cpu_count() == 2


def test_capabilities_is_frozen():
    with pytest.raises(AttributeError, match="immutable"):
        runtime.capabilities().cpu_count = 99  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del runtime.capabilities().cpu_count  # type: ignore[misc]


def test_capabilities_is_a_value():
    a = caps()
    assert a == caps()
    assert hash(a) == hash(caps())
    assert a != caps(cpu_count=5)
    assert a.replace(cpu_count=5) == caps(cpu_count=5)
    assert a.cpu_count == 4
    assert pickle.loads(pickle.dumps(a)) == a
    assert eval(repr(a), {"Capabilities": Capabilities}) == a
    assert list(a.as_dict()) == [
        "free_threaded_build",
        "gil_enabled",
        "subinterpreters",
        "interpreters_api",
        "default_backend",
        "cpu_count",
        "python_version",
    ]
    with pytest.raises(TypeError, match="no field"):
        a.replace(cores=3)
    if sys.version_info >= (3, 13):
        import copy

        assert copy.replace(a, gil_enabled=False).gil_enabled is False


def test_detection_agrees_with_sysconfig_and_importlib():
    """The probes avoid sysconfig and importlib.util (start-up cost); they must say the same."""
    import importlib.util
    import sysconfig

    c = detect()
    assert c.free_threaded_build is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    for name in (
        "_interpreters",
        "_xxsubinterpreters",
        "interpreters_backport",
        "no_such_module_xyz",
    ):
        assert _has_module(name) is (importlib.util.find_spec(name) is not None), name
    assert _has_module("concurrent.interpreters") is (
        importlib.util.find_spec("concurrent.interpreters") is not None
    )


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"), [(0.5, 16, 8), (1.0, 3, 3), (0.1, 2, 1), (7, 2, 7)]
)
def test_resolve_workers(workers, cpus, expected):
    assert resolve_workers(workers, cpus) == expected


def test_split_by_weight_examples():
    assert split_by_weight({"A": 3, "B": 7}, 16) == {"A": 5, "B": 11}
    assert split_by_weight({"A": 3, "B": 7}, 10) == {"A": 3, "B": 7}
    assert split_by_weight({"A": 1, "B": 1000}, 3) == {"A": 1, "B": 2}
    assert split_by_weight({"A": 1, "B": 0}, 4) == {"A": 4, "B": 0}


def test_restart_backoff_grows_and_caps():
    policy = runtime.RestartPolicy(backoff=0.1, max_backoff=1.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = runtime.RestartPolicy(backoff=1.0, max_backoff=8.0)
    assert all(0.5 <= jittered.delay(1) <= 1.0 for _ in range(50))


def test_gil_turned_back_on_by_the_bootstrap_is_reported(caplog, monkeypatch):
    from runtime import _common

    monkeypatch.setattr(_common, "_gil_warned", False)
    ft = caps(free_threaded_build=True, gil_enabled=False)
    report = {"gil_enabled": True, "new_extensions": ["legacy_ext"]}
    with caplog.at_level(logging.WARNING, logger="runtime"):
        assert _common.warn_if_gil_returned(report, ft, "thread") is True
    assert "legacy_ext" in caplog.text
    assert "NOT run Python code in parallel" in caplog.text
    assert _common.warn_if_gil_returned({"gil_enabled": False}, ft, "thread") is False
    assert _common.warn_if_gil_returned(report, caps(), "thread") is False  # GIL build: expected
