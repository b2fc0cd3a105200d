"""What this Python can do: free-threading, the GIL, subinterpreter APIs, usable CPUs.

``backend="auto"`` is decided here, and only here, so that tests can inject a
:class:`Capabilities` describing a build this machine does not have.
"""

from __future__ import annotations

import functools
import logging
import sys

from ._early import free_threaded_build, usable_cpu_count
from ._frozen import Frozen

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

__all__ = ["Backend", "Capabilities", "capabilities", "choose_backend", "usable_cpu_count"]

log = logging.getLogger("runtime")

type Backend = Literal["subinterpreter", "thread", "process"]
type InterpretersApi = Literal["stdlib", "backport", "lowlevel"]
BACKENDS: tuple[Backend, ...] = ("subinterpreter", "thread", "process")


_FIELDS = (
    "free_threaded_build",
    "gil_enabled",
    "subinterpreters",
    "interpreters_api",
    "default_backend",
    "cpu_count",
    "python_version",
)


class Capabilities(Frozen):
    """A snapshot of what the running interpreter offers for parallel work.

    Immutable (:class:`~runtime._frozen.Frozen`): a new executor with thread workers probes it.
    """

    __slots__ = _FIELDS

    free_threaded_build: bool
    gil_enabled: bool
    subinterpreters: bool
    interpreters_api: InterpretersApi | None
    default_backend: Backend
    cpu_count: int
    python_version: tuple[int, int]

    def __init__(
        self,
        free_threaded_build: bool,
        gil_enabled: bool,
        subinterpreters: bool,
        interpreters_api: InterpretersApi | None,
        default_backend: Backend,
        cpu_count: int,
        python_version: tuple[int, int] = (sys.version_info[0], sys.version_info[1]),
    ) -> None:
        set_field = object.__setattr__  # the class refuses attribute stores
        set_field(self, "free_threaded_build", free_threaded_build)
        set_field(self, "gil_enabled", gil_enabled)
        set_field(self, "subinterpreters", subinterpreters)
        set_field(self, "interpreters_api", interpreters_api)
        set_field(self, "default_backend", default_backend)
        set_field(self, "cpu_count", cpu_count)
        set_field(self, "python_version", python_version)

    @property
    def subinterpreters_safe_by_default(self) -> bool:
        """Own-GIL interpreters on 3.12 crash on ssl/hashlib/asyncio imports: never chosen by auto."""
        return self.subinterpreters and self.python_version >= (3, 13)

    def as_dict(self) -> dict[str, object]:
        """The fields by name, in declaration order (``parallel-runtime info --json``)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def replace(self, **changes: object) -> Capabilities:
        """A copy with ``changes`` applied (tests describe builds this machine lacks)."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"Capabilities has no field(s) {sorted(unknown)}")
        return Capabilities(**{**self.as_dict(), **changes})  # type: ignore[arg-type]

    __replace__ = replace  # copy.replace() on 3.13+

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items())
        return f"Capabilities({inner})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Capabilities, self._fields())


def _free_threaded_build() -> bool:
    known = free_threaded_build()  # from sys.abiflags: POSIX; Windows has it from 3.14
    if known is not None:
        return known
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _has_module(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (or ``importlib.util``)."""
    if name in sys.modules or name in sys.builtin_module_names:
        return True
    if "." in name:
        import importlib.util

        return importlib.util.find_spec(name) is not None
    return any(
        finder.find_spec(name, None) is not None
        for finder in sys.meta_path
        if hasattr(finder, "find_spec")
    )


def _interpreters_api(version: tuple[int, int]) -> InterpretersApi | None:
    if version >= (3, 14) and _has_module("concurrent.interpreters"):
        return "stdlib"
    if version >= (3, 13):
        if not _has_module("_interpreters"):
            return None
        if _has_module("interpreters_backport"):
            return "backport"
        return "lowlevel"
    if version >= (3, 12) and _has_module("_xxsubinterpreters"):
        # The compiled 3.12 backport segfaults at import here; the stdlib low-level
        # module with isolated=True gives real own-GIL interpreters.
        return "lowlevel"
    return None


def detect() -> Capabilities:
    free_threaded = _free_threaded_build()
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    gil_enabled = True if is_gil_enabled is None else bool(is_gil_enabled())
    version = sys.version_info[:2]
    api = _interpreters_api(version)
    partial = Capabilities(
        free_threaded_build=free_threaded,
        gil_enabled=gil_enabled,
        subinterpreters=api is not None,
        interpreters_api=api,
        default_backend="process",
        cpu_count=usable_cpu_count(),
        python_version=version,
    )
    backend, _ = choose_backend("auto", partial)
    return partial.replace(default_backend=backend)


@functools.cache
def _cached() -> Capabilities:
    return detect()


def capabilities(*, refresh: bool = False) -> Capabilities:
    """Describe this interpreter. ``refresh=True`` re-reads the GIL state (an import may re-enable it)."""
    if refresh:
        _cached.cache_clear()
    return _cached()


def choose_backend(requested: str, caps: Capabilities | None = None) -> tuple[Backend, str]:
    """Resolve a backend name; returns ``(backend, why)``. Raises ConfigurationError for bad names."""
    from ._errors import BackendUnavailable, ConfigurationError

    caps = caps or capabilities()
    if requested == "auto":
        if caps.free_threaded_build and not caps.gil_enabled:
            return "thread", "free-threaded build with the GIL disabled: threads run in parallel"
        if caps.subinterpreters_safe_by_default:
            return "subinterpreter", (
                f"own-GIL subinterpreters available ({caps.interpreters_api} API on "
                f"{caps.python_version[0]}.{caps.python_version[1]})"
            )
        if caps.free_threaded_build:
            return (
                "process",
                "free-threaded build but the GIL is enabled: threads would not run in parallel",
            )
        if caps.subinterpreters:
            return "process", (
                "Python 3.12 subinterpreters crash on ssl/hashlib/asyncio imports; "
                'pass backend="subinterpreter" to use them anyway'
            )
        return "process", "no own-GIL subinterpreters and no free-threading on this Python"
    if requested not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {requested!r}: use 'auto', 'subinterpreter', 'thread' or 'process'"
        )
    if requested == "subinterpreter" and not caps.subinterpreters:
        raise BackendUnavailable(
            "own-GIL subinterpreters are not available on this Python "
            f"({sys.version.split()[0]}); use backend='process' or backend='thread'"
        )
    if requested == "thread":
        why = "threads requested" + (
            ""
            if caps.free_threaded_build and not caps.gil_enabled
            else " (the GIL serialises Python code)"
        )
        return "thread", why
    return requested, f"{requested} requested"  # type: ignore[return-value]
