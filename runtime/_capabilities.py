"""What this Python can do: free-threading, the GIL, subinterpreter APIs, usable CPUs.

``backend="auto"`` is decided here, and only here, so that tests can inject a
:class:`Capabilities` describing a build this machine does not have.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import sys
import sysconfig

from ._early import usable_cpu_count

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

__all__ = ["Backend", "Capabilities", "capabilities", "choose_backend", "usable_cpu_count"]

log = logging.getLogger("runtime")

type Backend = Literal["subinterpreter", "thread", "process"]
type InterpretersApi = Literal["stdlib", "backport", "lowlevel"]
BACKENDS: tuple[Backend, ...] = ("subinterpreter", "thread", "process")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """A snapshot of what the running interpreter offers for parallel work."""

    free_threaded_build: bool
    gil_enabled: bool
    subinterpreters: bool
    interpreters_api: InterpretersApi | None
    default_backend: Backend
    cpu_count: int
    python_version: tuple[int, int] = dataclasses.field(default=sys.version_info[:2])

    @property
    def subinterpreters_safe_by_default(self) -> bool:
        """Own-GIL interpreters on 3.12 crash on ssl/hashlib/asyncio imports: never chosen by auto."""
        return self.subinterpreters and self.python_version >= (3, 13)


def _interpreters_api(version: tuple[int, int]) -> InterpretersApi | None:
    if version >= (3, 14) and importlib.util.find_spec("concurrent.interpreters") is not None:
        return "stdlib"
    if version >= (3, 13):
        if importlib.util.find_spec("_interpreters") is None:
            return None
        if importlib.util.find_spec("interpreters_backport") is not None:
            return "backport"
        return "lowlevel"
    if version >= (3, 12) and importlib.util.find_spec("_xxsubinterpreters") is not None:
        # The compiled 3.12 backport segfaults at import here; the stdlib low-level
        # module with isolated=True gives real own-GIL interpreters.
        return "lowlevel"
    return None


def detect() -> Capabilities:
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
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
    return dataclasses.replace(partial, default_backend=backend)


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
