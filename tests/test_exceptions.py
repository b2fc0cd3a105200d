"""Exceptions from workers keep their type, args, attributes, notes and chain, on every backend."""

from __future__ import annotations

import pickle

import anyio
import pytest

import runtime
from runtime._wire import RemoteTraceback, decode_exception, encode_exception
from runtime.aio import open_executor
from tests.helpers import tasks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ex(backend):
    with runtime.Executor(2, backend=backend) as executor:
        yield executor


def test_the_test_exception_really_does_not_round_trip_the_default_way():
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        pickle.loads(pickle.dumps(tasks.Rejected(1, "x")))


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def test_rebuilt_with_type_attributes_notes_and_cause(ex):
    with pytest.raises(tasks.Rejected) as info:
        ex.submit(tasks.reject, 7).result(timeout=20)
    err = info.value
    assert (err.code, err.detail, err.args) == (7, "no such order", ("7: no such order",))
    assert err.__notes__ == ["looked in the order table"]
    cause = err.__cause__
    assert isinstance(cause, KeyError)
    assert cause.args == ("order-1",)
    # The worker traceback hangs at the root of the chain and names the worker frames.
    root = _root(err)
    assert isinstance(root, RemoteTraceback)
    assert "in reject" in root.tb
    assert "KeyError" in root.tb


def test_implicit_context_is_kept(ex):
    with pytest.raises(tasks.Rejected) as info:
        ex.submit(tasks.reject_while_handling, 3).result(timeout=20)
    err = info.value
    assert err.code == 3
    assert isinstance(err.__context__, ValueError)
    assert str(err.__context__) == "first problem"
    assert not err.__suppress_context__
    assert isinstance(err.__context__.__cause__, RemoteTraceback)


def test_an_attribute_that_cannot_travel_is_dropped_with_a_note(ex):
    with pytest.raises(tasks.Rejected) as info:
        ex.submit(tasks.reject_with_a_lock).result(timeout=20)
    err = info.value
    assert err.code == 5
    assert not hasattr(err, "lock")
    assert any("'lock'" in note for note in err.__notes__)


def test_exception_groups_rebuild_their_members(ex):
    with pytest.raises(ExceptionGroup) as info:
        ex.submit(tasks.reject_many).result(timeout=20)
    group = info.value
    assert group.message == "several"
    first, second = group.exceptions
    assert isinstance(first, tasks.Rejected)
    assert first.code == 1
    assert isinstance(second, ValueError)


def test_what_truly_cannot_be_rebuilt_is_a_task_failed(ex):
    with pytest.raises(runtime.TaskFailed, match="Unrebuildable") as info:
        ex.submit(tasks.raise_unrebuildable).result(timeout=20)
    assert "raise_unrebuildable" in (info.value.remote_traceback or "")


def test_map_raises_the_rebuilt_exception_at_its_item(ex):
    for kwargs in ({}, {"buffersize": 2}, {"ordered": False}):
        it = ex.map(tasks.reject_if, range(6), [4] * 6, chunksize=2, **kwargs)
        got = []
        with pytest.raises(tasks.Rejected) as info:
            got.extend(it)
        assert info.value.code == 4
        assert 4 not in got
        if kwargs.get("ordered", True):
            assert got == [0, 1, 2, 3]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
def test_async_front_gets_the_rebuilt_exception(backend, anyio_backend):
    async def main() -> None:
        async with open_executor(workers=1, backend=backend) as aex:
            with pytest.raises(tasks.Rejected) as info:
                await aex.run(tasks.reject, 9)
            assert info.value.code == 9
            assert isinstance(info.value.__cause__, KeyError)
            with pytest.raises(tasks.Rejected):
                await aex.map(tasks.reject_if, [1, 2, 3], [2, 2, 2])

    anyio.run(main, backend=anyio_backend)


def test_pool_failure_reports_name_the_real_type(backend):
    pool = runtime.Pool(
        tasks.RejectedTask,
        workers=1,
        backend=backend,
        restart=runtime.RestartPolicy(max_restarts=0, backoff=0.01),
    )
    report = pool.run()
    assert report.gave_up == 1
    assert report.failures[0].endswith("Rejected: 7: task said no")


def test_decode_without_a_record_falls_back():
    data, name, message, tb = encode_exception(ValueError("plain"))
    err = decode_exception((None, name, message, tb), fallback=runtime.BootstrapError)
    assert isinstance(err, runtime.BootstrapError)
    assert "ValueError: plain" in str(err)
    rebuilt = decode_exception((data, name, message, tb))
    assert type(rebuilt) is ValueError
    assert isinstance(rebuilt.__cause__, RemoteTraceback)


def test_a_job_that_cannot_be_loaded_in_the_worker_is_not_transferable(ex):
    with pytest.raises(runtime.NotTransferable, match="could not be loaded") as info:
        ex.submit(tasks.add, tasks.LoadsBadly()).result(timeout=20)
    assert isinstance(info.value.__cause__, ImportError)
    assert ex.submit(tasks.add, 1, 2).result(timeout=20) == 3
