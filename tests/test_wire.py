"""Plain payloads travel as marshal; everything else as before (pickle), with the same values and types."""

from __future__ import annotations

import enum
import functools
import math
import pickle

import pytest

import runtime
from runtime._wire import MARSHAL_OK, is_plain, pack, pack_calls, unpack, unpack_calls
from tests.helpers import wire

pytestmark = pytest.mark.timeout(60)
needs_marshal = pytest.mark.skipif(
    not MARSHAL_OK,
    reason="3.12 pickles everything (marshal's interning is unsafe across interpreters)",
)


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


PLAIN = [
    0,
    -(2**100),
    1.5,
    -0.0,
    float("inf"),
    3 + 4j,
    "text",
    "\udcff surrogate",
    b"\x00bytes",
    True,
    None,
    (),
    (1, "a", (2.0, None)),
    [1, [2, [3]]],
    {"a": 1, "b": [1, 2], 3: (4,)},
]
NOT_PLAIN = [
    bytearray(b"x"),
    memoryview(b"x"),
    {1, 2},
    frozenset({1}),
    Color.RED,
    MyStr("s"),
    [bytearray(b"x")],
    {"k": {1}},
    list(range(100)),  # more objects than are worth walking
    object(),
    len,
]


@needs_marshal
@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_round_trip_through_marshal_as_pickle_would(value):
    assert is_plain(value)
    payload = pack(value)
    assert payload[:1] == b"M"
    back = unpack(payload)
    assert back == pickle.loads(pickle.dumps(value))
    assert type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize("value", NOT_PLAIN, ids=lambda v: type(v).__name__)
def test_anything_else_is_pickled(value):
    assert not is_plain(value)
    if not isinstance(value, memoryview):  # a memoryview cannot be pickled at all
        assert pack(value)[:1] == b"\x80"  # a pickle's PROTO opcode


@needs_marshal
def test_shared_references_and_cycles():
    inner = [1, 2]
    back = unpack(pack([inner, inner]))
    assert back == [[1, 2], [1, 2]]
    assert back[0] is back[1]
    cycle: list[object] = []
    cycle.append(cycle)
    assert not is_plain(cycle)  # walked until the limit, then pickled
    assert unpack(pack(cycle))[0][0] is not None


def _local_function():
    def inner():
        return 1

    return inner


@needs_marshal
def test_calls_of_module_functions_go_by_name():
    blob = pack_calls([(wire.add, (1,), {"b": 2}), (divmod, (7, 2), {})])
    assert blob is not None
    (fn1, args1, kwargs1), (fn2, args2, kwargs2) = unpack_calls(memoryview(b"M" + blob))
    assert (fn1, args1, kwargs1) == (wire.add, (1,), {"b": 2})
    assert (fn2, args2, kwargs2) == (divmod, (7, 2), {})


@pytest.mark.parametrize(
    "fn",
    [
        _local_function(),
        lambda: 1,
        functools.partial(wire.add, 1),
        [].append,
        "".join,
        dict.fromkeys,
        Color,  # a class: pickle's business
    ],
    ids=["closure", "lambda", "partial", "bound-builtin", "bound-str", "classmethod", "class"],
)
def test_other_callables_are_pickled(fn):
    assert pack_calls([(fn, (), {})]) is None


def test_arguments_that_are_not_plain_make_the_batch_pickled():
    assert pack_calls([(wire.add, (1,), {}), (wire.echo_typed, (bytearray(b"x"),), {})]) is None


def test_a_rebound_name_is_not_sent_for_the_old_function(monkeypatch):
    old = wire.add
    monkeypatch.setattr(wire, "add", lambda a, b=0: a - b)
    assert pack_calls([(old, (1,), {})]) is None  # pickle refuses it too


def test_main_functions_keep_their_own_path():
    def f():
        return 1

    f.__module__ = "__main__"
    f.__qualname__ = "f"
    assert pack_calls([(f, (), {})]) is None


@needs_marshal
def test_a_call_that_cannot_be_loaded_raises_in_unpack_calls():
    blob = pack_calls([(wire.add, (1,), {})])
    assert blob is not None
    bad = b"M" + blob.replace(b"add", b"nop")
    with pytest.raises(AttributeError):
        unpack_calls(bad)


def test_values_and_types_survive_every_backend(backend):
    values = [*PLAIN, bytearray(b"x"), {1, 2}, Color.RED, MyStr("s"), [wire.add, 1]]
    with runtime.Executor(1, backend=backend) as ex:
        for value, (back, type_name) in zip(values, ex.map(wire.echo_typed, values), strict=True):
            assert back == value
            assert type(back) is type(value)
            assert type_name == type(value).__qualname__
        # One call at a time too: a batch of one is the plain path's usual case.
        for value in values:
            back, _ = ex.submit(wire.echo_typed, value).result(timeout=30)
            assert back == value
            assert type(back) is type(value), value


@needs_marshal
def test_a_fresh_worker_answers_plain_calls_without_importing_pickle(backend):
    if backend == "thread":
        pytest.skip("thread workers share the main interpreter, which has pickle already")
    with runtime.Executor(1, backend=backend) as ex:
        assert ex.submit(wire.add, 1, b=2).result(timeout=30) == 3
        # (Not copyreg or functools: an editable install's import hook loads those itself.)
        assert ex.submit(wire.loaded, "_pickle", "pickle").result(timeout=30) == [False, False]
        # The first payload that needs pickle imports it, and both kinds keep working.
        back, _ = ex.submit(wire.echo_typed, bytearray(b"x")).result(timeout=30)
        assert back == bytearray(b"x")
        assert ex.submit(wire.loaded, "_pickle").result(timeout=30) == [True]
        assert ex.submit(wire.add, 2).result(timeout=30) == 2


def test_a_failing_plain_call_still_reports_its_exception(backend):
    with runtime.Executor(1, backend=backend) as ex:
        with pytest.raises(TypeError):
            ex.submit(wire.add, "a", 1).result(timeout=30)
        with pytest.raises(ZeroDivisionError):
            ex.submit(divmod, 1, 0).result(timeout=30)
        assert ex.submit(wire.add, 1, 1).result(timeout=30) == 2


def test_a_missing_function_fails_only_its_batch(backend, monkeypatch):
    if backend == "thread":
        pytest.skip("thread workers see the main interpreter's modules, ghost included")
    with runtime.Executor(1, backend=backend) as ex:
        assert ex.submit(wire.add, 1).result(timeout=30) == 1
        import types

        ghost = types.FunctionType(wire.add.__code__, {}, "ghost")
        ghost.__module__ = "tests.helpers.wire"
        ghost.__qualname__ = "ghost"
        monkeypatch.setattr(wire, "ghost", ghost, raising=False)
        with pytest.raises(runtime.NotTransferable):
            ex.submit(ghost, 1).result(timeout=30)  # the worker's module has no such name
        assert ex.submit(wire.add, 2).result(timeout=30) == 2
