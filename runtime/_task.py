"""Tasks, what a worker knows about itself, and ``"pkg.mod:Name"`` references.

:class:`WorkerInfo` is defined in ``runtime._context`` (with the rest of a worker's state,
which imports nothing of ours) and is public from here and as ``runtime.WorkerInfo``.
"""

from __future__ import annotations

import importlib
import os
import sys

from ._context import WorkerInfo, stop_requested
from ._errors import ConfigurationError, ReferenceNotFound

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Task", "TaskSpec", "WorkerInfo", "reference_of", "resolve_reference"]


class Task:
    """Base class of the long-running jobs a :class:`~runtime.Pool` keeps alive.

    Subclass it and implement :meth:`run`. An instance given to a pool records its
    constructor arguments; every worker builds its own instance from them, so
    ``Pool(Fetch(url="..."))`` runs ``Fetch(url="...")`` in each worker.

    Inside the worker, ``self.context`` is what the bootstrap returned in *that*
    worker, ``self.worker`` is a :class:`WorkerInfo`, and ``self.stopping`` turns
    true when the pool asks its tasks to finish.
    """

    context: Any = None
    worker: WorkerInfo
    _spec_args: tuple[Any, ...]
    _spec_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Task:
        self = super().__new__(cls)
        self._spec_args = args
        self._spec_kwargs = kwargs
        return self

    def run(self) -> None:
        """Do the work. Returning ends this worker's job; raising gets it restarted."""
        raise NotImplementedError(f"{type(self).__qualname__}.run() is not implemented")

    @property
    def stopping(self) -> bool:
        """True once the pool asked its tasks to finish (stop(), SIGTERM, a resize down)."""
        return self.wait_stopping(0)

    def wait_stopping(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once when a stop is requested.

        Returns True if a stop was requested. Use it instead of ``time.sleep`` in loops.
        """
        return stop_requested(timeout)


class TaskSpec:
    """A task class plus the constructor arguments every worker uses to build it."""

    __slots__ = ("args", "cls", "kwargs")

    def __init__(
        self, cls: type[Task], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> None:
        self.cls = cls
        self.args = args
        self.kwargs = kwargs or {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskSpec, (self.cls, self.args, self.kwargs))

    @property
    def label(self) -> str:
        return self.cls.__qualname__

    @classmethod
    def from_value(cls, value: object) -> TaskSpec:
        if isinstance(value, str):
            value = resolve_reference(value)
        if isinstance(value, Task):
            return cls(type(value), value._spec_args, dict(value._spec_kwargs))
        if isinstance(value, type) and issubclass(value, Task):
            if value is Task:
                raise ConfigurationError("runtime.Task itself has no run(); pass a subclass")
            return cls(value)
        raise ConfigurationError(
            f"a task must be a runtime.Task subclass, an instance of one, or a 'pkg.mod:Name' "
            f"reference to one; got {value!r}"
        )

    def build(self) -> Task:
        return self.cls(*self.args, **self.kwargs)


def resolve_reference(ref: str) -> Any:
    """Import ``"pkg.mod:Name"`` (or ``"pkg.mod:Outer.Inner"``) and return the object."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigurationError(f"expected a reference like 'package.module:name', got {ref!r}")
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname:
        raise ConfigurationError(f"expected a reference like 'package.module:name', got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReferenceNotFound(
            f"cannot import module {module_name!r} for reference {ref!r}: {exc}. "
            "Check the spelling and that the package is on sys.path (PYTHONPATH)."
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ReferenceNotFound(
                f"module {module_name!r} has no attribute {qualname!r} (reference {ref!r})"
            ) from None
    return obj


def reference_of(obj: Any) -> str:
    """The ``"module:qualname"`` a worker can import ``obj`` by."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigurationError(
            f"{obj!r} cannot be imported by a worker: define it at module level (not inside a "
            "function, not a lambda) or pass a 'pkg.mod:name' reference"
        )
    return f"{module}:{qualname}"


# REPLs that run as a package's __main__ (3.13's new REPL is `python -m _pyrepl` under the
# hood; `python -m asyncio` is asyncio's REPL): what is typed there is no module a worker can
# re-import, and re-running the package in a worker would start another REPL.
_REPL_MAINS = frozenset({"_pyrepl.__main__", "asyncio.__main__"})


def main_module_spec() -> dict[str, str] | None:
    """How a fresh worker can re-import the parent's ``__main__`` (as multiprocessing's spawn does).

    None for an interactive ``__main__`` (REPL, ``-c``, stdin, IPython, Jupyter).
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name in _REPL_MAINS:
        return None
    if name and name != "__main__":
        if name.endswith(".__main__"):
            name = name[: -len(".__main__")]
        return {"name": name}
    path = getattr(main, "__file__", None)
    if path and _is_repl_file(path):
        return None
    if path and os.path.exists(path):
        return {"path": os.path.abspath(path)}
    return None


def _is_repl_file(path: str) -> bool:
    """Some 3.13 builds leave ``__main__.__file__`` at ``.../_pyrepl/__main__.py`` (and no
    ``__spec__``) in the terminal REPL: that session is interactive, not a script to re-run."""
    head, base = os.path.split(path)
    package = os.path.basename(head)
    return base == "__main__.py" and f"{package}.__main__" in _REPL_MAINS
