"""Code that runs *inside* a worker: initialize (main fixup, bootstrap) → serve → finalize.

The same loop runs in every backend: in a subinterpreter (started by ``run_string``
in a thread of the main interpreter), in a plain thread, and in a child process.
It talks to the main side over two pipes (framed marshal or pickles, see ``_wire``) and
watches a third pipe that becomes readable when the pool asks tasks to stop.
Nothing here polls: every wait is a blocking read or ``select`` on an fd.

A fresh worker imports this module before anything else, so its imports are kept to
C modules, ``runtime._wire`` and ``runtime._context`` (the worker's state, which
:func:`current_worker`, :func:`current_context` and :func:`stop_requested` read; they
are defined there and public from here): every Python module loaded at boot costs each
worker start-up time and memory. Not even pickle: plain messages and calls come as marshal,
and the first payload that needs pickle imports it (``runtime._wire``). What only some
workers need (bootstrap, main fix-up, tracebacks) is imported where it is used.
"""

from __future__ import annotations

import os
import sys

from ._context import (
    WorkerInfo,
    WorkerState,
    current_context,
    current_worker,
    set_state,
    stop_requested,
)
from ._wire import (
    CALLS,
    ExcPayload,
    FrameReader,
    decode,
    encode,
    encode_exception,
    results_frame,
    send_message,
    unpack,
    unpack_calls,
    write_all,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import ModuleType
    from typing import Any
else:
    ModuleType = type(sys)  # types.ModuleType, without importing types in every worker

__all__ = ["current_context", "current_worker", "importing_main", "serve", "stop_requested"]

_importing_main = False

SUBINTERPRETER_REFUSAL = "does not support loading in subinterpreters"


def importing_main() -> bool:
    """True while a worker re-imports the parent's ``__main__`` (pools must not be created then)."""
    return _importing_main


def _fixup_main(spec: dict[str, str]) -> None:
    """Re-import the parent's main script/module as ``__mp_main__`` so ``__main__.X`` unpickles."""
    global _importing_main
    import runpy

    if sys.modules.get("__main__").__dict__.get("__runtime_fixed__", False):  # type: ignore[union-attr]
        return
    _importing_main = True
    try:
        if "name" in spec:
            namespace = runpy.run_module(spec["name"], run_name="__mp_main__", alter_sys=False)
        else:
            namespace = runpy.run_path(spec["path"], run_name="__mp_main__")
    finally:
        _importing_main = False
    module = ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    module.__dict__["__runtime_fixed__"] = True
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


class _LazyMain(ModuleType):
    """Stands in for ``__main__`` in a worker; re-imports the parent's main only if something is looked up.

    Most jobs never reference ``__main__``; re-running the parent's script in every
    fresh worker (as multiprocessing's spawn does) would cost their start-up for nothing.
    """

    def __init__(self, spec: dict[str, str], original: Any) -> None:
        super().__init__("__main__")
        self.__dict__["_runtime_spec"] = spec
        self.__dict__["_runtime_original"] = original

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            original = self.__dict__["_runtime_original"]
            if original is not None and hasattr(original, name):
                return getattr(original, name)
            raise AttributeError(name)
        _fixup_main(self.__dict__["_runtime_spec"])
        return getattr(sys.modules["__main__"], name)


def _install_lazy_main(spec: dict[str, str]) -> None:
    original = sys.modules.get("__main__")
    sys.modules["__main__"] = sys.modules["__mp_main__"] = _LazyMain(spec, original)


def _annotate(exc: BaseException, backend: str) -> None:
    """Turn the cryptic single-phase-init refusal into advice."""
    if (
        backend == "subinterpreter"
        and isinstance(exc, ImportError)
        and SUBINTERPRETER_REFUSAL in str(exc)
    ):
        words = str(exc).split()
        name = getattr(exc, "name", None) or (words[1] if len(words) > 1 else "?")
        exc.add_note(
            f"runtime: the extension module {name!r} cannot load in a subinterpreter; "
            "use backend='thread' or backend='process' for work that needs it"
        )


def _run_bootstrap(bootstrap: Any, info: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    if bootstrap is None:
        return None, lambda: None
    import inspect

    if isinstance(bootstrap, str):
        from ._task import resolve_reference

        fn = resolve_reference(bootstrap)
    else:
        from ._wire import loads

        fn = loads(bootstrap)
    if not callable(fn):
        raise TypeError(f"the bootstrap {fn!r} is not callable")
    try:
        takes_worker = len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):
        takes_worker = False
    result = fn(WorkerInfo(**info)) if takes_worker else fn()
    if inspect.isgenerator(result):
        gen = result
        context = next(gen)

        def finalize() -> None:
            try:
                next(gen)
            except StopIteration:
                pass
            else:
                gen.close()

        return context, finalize
    return result, lambda: None


def _gil_report(before: set[str]) -> dict[str, Any]:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is None:
        return {"gil_enabled": None, "new_extensions": []}
    new = sorted(
        name
        for name in set(sys.modules) - before
        if str(getattr(sys.modules[name], "__file__", "") or "").endswith((".so", ".pyd"))
    )
    return {"gil_enabled": bool(is_enabled()), "new_extensions": new}


def _run_task(state: WorkerState, blob: bytes, info: dict[str, Any]) -> tuple[Any, ...]:
    from ._wire import loads

    try:
        spec = loads(blob)
        task = spec.build()
        task.context = state.context
        task.worker = WorkerInfo(**info)
        state.info = info
        task.run()
    except Exception as exc:
        _annotate(exc, info.get("backend", ""))
        return ("task_failed", encode_exception(exc))
    return ("task_done",)


def _run_calls(
    batch_id: int,
    count: int,
    blob: Any,
    backend: str,
    results_dumps: Callable[[Any], bytes] | None,
) -> bytes:
    """Run one batch; returns the framed results message (``results_dumps``: the pickler for
    results that are not plain, None for plain pickle)."""
    results: list[tuple[bool, Any]] = []
    try:
        calls = unpack_calls(blob)
    except Exception as exc:
        _annotate(exc, backend)
        failure = encode_exception(_not_loadable(exc, backend))
        results = [(False, failure)] * count
    else:
        for fn, args, kwargs in calls:
            try:
                results.append((True, fn(*args, **kwargs)))
            except BaseException as exc:  # SystemExit in a job fails the job, not the worker
                _annotate(exc, backend)
                results.append((False, encode_exception(exc)))
    try:
        tag, data = encode(results, results_dumps)
    except Exception:
        from ._wire import dumps as pickle_dumps

        pickler = results_dumps or pickle_dumps
        tag, data = b"", pickler([_transferable(ok, value, pickler) for ok, value in results])
    return results_frame(batch_id, data, tag)


def _check_memory(meter: Any, state: WorkerState, outbox: int) -> None:
    measured = meter.check(state.context)
    if measured is not None:
        send_message(outbox, ("over_memory", measured))


def _not_loadable(exc: Exception, backend: str) -> BaseException:
    """The jobs of a batch could not be unpickled here: say so as a NotTransferable, cause attached."""
    from ._errors import NotTransferable

    err = NotTransferable(
        f"the job could not be loaded in the {backend} worker: {type(exc).__name__}: {exc}"
    )
    err.__cause__ = exc
    return err


def _transferable(ok: bool, value: Any, results_dumps: Callable[[Any], bytes]) -> tuple[bool, Any]:
    if not ok:
        return ok, value
    try:
        results_dumps(value)
    except Exception as exc:
        from ._errors import NotTransferable

        err = NotTransferable(
            f"the result of type {type(value).__module__}.{type(value).__qualname__} cannot be "
            f"sent back from the worker: {exc}"
        )
        payload: ExcPayload = encode_exception(err)
        return False, payload
    return ok, value


def serve(inbox: int, outbox: int, stop_fd: int) -> None:
    """Run one worker until the main side says ``exit`` or goes away."""
    reader = FrameReader(inbox)
    payload = reader.next_payload()
    if payload is None:
        return
    _, spec = unpack(payload)
    info: dict[str, Any] = spec["info"]
    os.set_blocking(stop_fd, False)
    # Results travel back as the caller's jobs came (runtime._pickling); the plain pickle of
    # a script's or module's __main__ needs no pickling module loaded in this worker.
    mode = spec.get("pickling")
    results_dumps: Callable[[Any], bytes] | None = None
    if mode is not None:
        from ._pickling import set_worker_mode, worker_dumps

        set_worker_mode(mode)
        results_dumps = worker_dumps
    state = WorkerState(info, stop_fd)
    set_state(state)
    backend = info["backend"]
    before = set(sys.modules)
    try:
        if spec.get("main") and backend != "thread":
            _install_lazy_main(spec["main"])
        state.context, finalize = _run_bootstrap(spec.get("bootstrap"), info)
    except BaseException as exc:
        _annotate(exc, backend)
        refused = isinstance(exc, ImportError) and SUBINTERPRETER_REFUSAL in str(exc)
        send_message(outbox, ("boot_failed", encode_exception(exc), refused))
        return
    send_message(outbox, ("ready", os.getpid(), _gil_report(before)))
    # max_worker_memory: measured here, throttled (runtime._usage); None costs one check a batch.
    meter = None
    if spec.get("memory_limit") is not None:
        from ._usage import Meter

        meter = Meter(backend, spec["memory_limit"])
    try:
        while True:
            payload = reader.next_payload()
            if payload is None:
                return
            if payload[0] == CALLS:
                _, batch_id, count, blob = decode(payload)
                state.batch = batch_id
                if state.stop_batches:
                    state.stop_batches = {b for b in state.stop_batches if b >= batch_id}
                write_all(outbox, _run_calls(batch_id, count, blob, backend, results_dumps))
                if meter is not None:
                    _check_memory(meter, state, outbox)
                continue
            msg = unpack(payload)
            kind = msg[0]
            if kind == "task":
                outcome = _run_task(state, msg[1], msg[2])
                if meter is not None:  # before task_done/task_failed: the pool relies on it
                    _check_memory(meter, state, outbox)
                send_message(outbox, outcome)
            elif kind == "exit":
                return
    finally:
        try:
            finalize()
        finally:
            set_state(None)
            if mode is not None:
                set_worker_mode(None)


def map_chunk(
    fn: Callable[..., Any], chunk: Iterable[tuple[Any, ...]]
) -> tuple[list[Any], ExcPayload | None]:
    """Run ``fn`` over a chunk of argument tuples, stopping at the first exception (as ``map`` does)."""
    values: list[Any] = []
    for args in chunk:
        try:
            values.append(fn(*args))
        except BaseException as exc:
            return values, encode_exception(exc)
    return values, None
