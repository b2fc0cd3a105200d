"""How jobs, tasks and results become bytes: by reference, or by value for an interactive ``__main__``.

The stdlib pickles a function or class *by reference* (``__main__.sq``): the worker
imports the name. A fresh worker can re-import a script's or a module's ``__main__``
(``_worker._fixup_main``), so those keep travelling by reference: it is cheaper and
it is what multiprocessing's spawn does. A REPL, ``python -c``, ``python -`` (stdin),
IPython or a Jupyter kernel has a ``__main__`` that no worker can import; pickled by
reference, its functions failed *inside the worker* ("Can't get attribute 'sq' on
<module '__main__'>"), and its lambdas and closures failed in the caller. Those
objects travel *by value* instead: cloudpickle sends their code, the globals they
read and their closure cells.

Modes (chosen once per pool or executor by :func:`mode_for`, and handed to each
worker in its init spec so results and exceptions travel back the same way):

* ``None``: a script or module ``__main__``. Plain ``pickle.dumps``, nothing else runs.
* ``VALUE``: interactive ``__main__``, workers in other interpreters or processes:
  every function and class of ``__main__`` travels by value.
* ``LOCAL``: interactive ``__main__``, thread workers (same interpreter): what the
  worker can look up in ``__main__`` goes by reference, so thread workers share the
  session's module state as threads should; lambdas and closures go by value.

Cost: in an interactive session a payload is first pickled by a stdlib pickler
whose ``reducer_override`` only looks for a ``__main__`` function or class (the C
pickler calls it for functions, classes and instances, never for ints, strings,
lists, tuples or dicts). Only when it finds one is cloudpickle imported and the
payload pickled again, by value. Workers do not import cloudpickle up front either:
a by-value stream names cloudpickle's loaders, so ``pickle.loads`` imports it the
first time such a payload arrives. ``import runtime`` never imports it.
"""

from __future__ import annotations

import sys

from ._context import results_pickler, set_results_pickler
from ._wire import PROTOCOL, named_in

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import io
    from typing import Any

__all__ = ["LOCAL", "PROTOCOL", "VALUE", "dumps", "interactive_main", "mode_for", "worker_dumps"]

VALUE = "value"
LOCAL = "local"


def interactive_main() -> bool:
    """True when ``__main__`` is a REPL, ``-c``, stdin, IPython or Jupyter session (no file to re-import)."""
    from ._task import main_module_spec

    return "__main__" in sys.modules and main_module_spec() is None


# Not from the types and io modules: a worker that receives a REPL's or a notebook's jobs
# imports this module, and every module costs a fresh interpreter time.
_FunctionType = type(interactive_main)
_ModuleType = type(sys)


def mode_for(backend: str) -> str | None:
    """The pickling mode for sending work to ``backend`` workers from this process."""
    if not interactive_main():
        return None
    return LOCAL if backend == "thread" else VALUE


def _found_in_main(obj: Any) -> bool:
    return named_in(sys.modules.get("__main__"), str(getattr(obj, "__qualname__", "")), obj)


def by_value(obj: Any, mode: str | None) -> bool:
    """Whether ``obj`` (met while pickling in ``mode``) must travel by value."""
    if mode is None or not isinstance(obj, (_FunctionType, type)):
        return False
    if getattr(obj, "__module__", None) != "__main__":
        return False
    return mode == VALUE or not _found_in_main(obj)


class _ByValue(Exception):
    """Raised by the probe pickler at the first object that must travel by value."""


_probe: Any = None


def _probe_class() -> Any:
    """The pickler that stops at the first object that must travel by value (built on first use).

    ``pickle`` is imported here, not at the top: a new executor whose calls are plain
    (``runtime._wire.is_plain``) never needs it.
    """
    global _probe
    if _probe is None:
        import pickle

        class Probe(pickle.Pickler):
            def __init__(self, file: io.BytesIO, mode: str) -> None:
                super().__init__(file, PROTOCOL)
                self._mode = mode

            def reducer_override(self, obj: Any) -> Any:
                if by_value(obj, self._mode):
                    raise _ByValue
                return NotImplemented

        _probe = Probe
    return _probe


_value_pickler: Any = None


def _value_pickler_class() -> Any:
    global _value_pickler
    if _value_pickler is None:
        import cloudpickle

        class ValuePickler(cloudpickle.Pickler):  # type: ignore[misc]
            """cloudpickle for ``__main__`` objects; stdlib by-reference for everything else.

            cloudpickle alone would also send lambdas and local functions of ordinary
            modules by value; keeping those by reference keeps one rule, whatever else
            travels in the same payload. Built-in types (``types.CodeType`` ...) that
            the by-value stream names go to cloudpickle, which knows how to name them.
            """

            def __init__(self, file: io.BytesIO, mode: str) -> None:
                super().__init__(file, protocol=PROTOCOL)
                self._mode = mode

            def reducer_override(self, obj: Any) -> Any:
                if (
                    isinstance(obj, (_FunctionType, type))
                    and getattr(obj, "__module__", None) != "builtins"
                    and not by_value(obj, self._mode)
                ):
                    return NotImplemented
                return super().reducer_override(obj)

        _value_pickler = ValuePickler
    return _value_pickler


def dumps(obj: Any, mode: str | None) -> bytes:
    """Pickle ``obj`` for the other side of a worker pipe (see the module docstring for ``mode``)."""
    if mode is None:
        import pickle

        return pickle.dumps(obj, protocol=PROTOCOL)
    import io

    buf = io.BytesIO()
    try:
        _probe_class()(buf, mode).dump(obj)
    except _ByValue:
        pass
    else:
        return buf.getvalue()
    buf = io.BytesIO()
    _value_pickler_class()(buf, mode).dump(obj)
    return buf.getvalue()


def set_worker_mode(mode: str | None) -> None:
    """Inside a worker: how to pickle what goes back to the caller (results, exceptions).

    Kept with the worker's state (``runtime._context``), where the exception codec finds it.
    """
    if mode is None:
        set_results_pickler(None)
        return

    def pickler(obj: Any) -> bytes:
        return dumps(obj, mode)

    set_results_pickler(pickler)


def worker_dumps(obj: Any) -> bytes:
    """Pickle ``obj`` in the mode of the calling worker thread (plain pickle outside workers)."""
    pickler = results_pickler()
    return dumps(obj, None) if pickler is None else pickler(obj)


def culprit(fn: Any, mode: str | None) -> str:
    """For a by-value function that failed to pickle: which global or closure variable is to blame."""
    if not isinstance(fn, _FunctionType) or not by_value(fn, mode):
        return ""
    code = fn.__code__
    names: list[tuple[str, str, Any]] = [
        ("global", name, fn.__globals__[name]) for name in code.co_names if name in fn.__globals__
    ]
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            names.append(("closure variable", name, cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    for kind, name, value in names:
        if isinstance(value, _ModuleType):
            continue
        try:
            dumps(value, mode)
        except Exception:
            what = f"{type(value).__module__}.{type(value).__qualname__}"
            return f"{fn.__qualname__!r} uses the {kind} {name!r} (a {what}), which cannot be pickled. "
    return ""


def hint(mode: str | None) -> str:
    """What a caller can do when something cannot be pickled, for error messages."""
    if mode is None:
        return (
            "Workers receive pickled copies: pass module-level functions and classes and "
            "picklable arguments (no lambdas, locks, open files or sockets)"
        )
    return (
        "Functions and classes defined in this interactive session travel by value, with the "
        "globals and closure variables they use; a lock, an open file or a socket among those "
        "cannot travel: create it inside the function, or pass what it holds instead"
    )
