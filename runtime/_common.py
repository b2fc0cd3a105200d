"""Pieces the Pool and the Executor share: backend resolution, bootstrap packing, worker ids."""

from __future__ import annotations

import atexit
import itertools
import logging
import warnings
import weakref

from ._errors import ConfigurationError, NotTransferable
from ._pickling import by_value, dumps, hint, mode_for
from ._task import main_module_spec, reference_of, resolve_reference

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._capabilities import Capabilities

log = logging.getLogger("runtime")
_ids = itertools.count(1)


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_atexit_registered = False


def close_at_exit(obj: Any) -> None:
    """Shut ``obj`` down (its ``_close_at_exit()``) when the interpreter exits, as the stdlib pools do."""
    global _atexit_registered
    _live.add(obj)
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_close_all)


def _close_all() -> None:
    for obj in list(_live):
        try:
            obj._close_at_exit()
        except Exception:
            log.exception("runtime: error while closing %r at exit", obj)


def next_worker_id() -> int:
    return next(_ids)


def resolve_backend(backend: str, caps: Capabilities | None = None) -> str:
    from ._capabilities import capabilities, choose_backend

    caps = caps or capabilities()
    chosen, why = choose_backend(backend, caps)
    if backend == "auto":
        log.info("runtime: backend=auto chose %r: %s", chosen, why)
    if chosen == "subinterpreter" and caps.python_version < (3, 13):
        warnings.warn(
            "runtime: own-GIL subinterpreters on Python 3.12 crash the whole process when a worker "
            "imports ssl, hashlib or asyncio (and pika/anyio import those); use them only with "
            "modules known to be safe, or use backend='process'",
            RuntimeWarning,
            stacklevel=3,
        )
    return chosen


def pack_bootstrap(bootstrap: Any, backend: str) -> bytes | str | None:
    """Validate a bootstrap in the caller and pack it for the worker."""
    if bootstrap is None:
        return None
    if isinstance(bootstrap, str):
        fn = resolve_reference(bootstrap)
        if not callable(fn):
            raise ConfigurationError(
                f"bootstrap {bootstrap!r} resolves to {fn!r}, which is not callable"
            )
        if not by_value(fn, mode_for(backend)):
            return bootstrap
        bootstrap = fn  # '__main__:init' in an interactive session: it travels by value
    if not callable(bootstrap):
        raise ConfigurationError(
            f"bootstrap must be a callable or a 'pkg.mod:name' reference, got {bootstrap!r}"
        )
    mode = mode_for(backend)
    if not by_value(bootstrap, mode):
        reference_of(bootstrap)
    return pickled(
        bootstrap, f"the bootstrap {getattr(bootstrap, '__qualname__', bootstrap)!r}", mode
    )


def pickled(obj: Any, what: str, mode: str | None) -> bytes:
    """``obj`` pickled for workers in ``mode`` (see ``_pickling``), or NotTransferable naming ``what``."""
    try:
        return dumps(obj, mode)
    except Exception as exc:
        raise NotTransferable(
            f"{what} cannot be sent to a worker: {type(exc).__name__}: {exc}. {hint(mode)}"
        ) from exc


def init_spec(
    info: dict[str, Any],
    backend: str,
    bootstrap: bytes | str | None,
    *,
    memory_limit: int | None = None,
) -> dict[str, Any]:
    """What a fresh worker is told first. With ``memory_limit`` (bytes) the worker
    measures itself (``runtime._usage``) and sends ``("over_memory", bytes)`` once when
    it reaches the limit."""
    spec: dict[str, Any] = {
        "info": info,
        "main": main_module_spec() if backend != "thread" else None,
        "bootstrap": bootstrap,
        "pickling": mode_for(backend),
    }
    if memory_limit is not None:
        spec["memory_limit"] = memory_limit
    return spec


def bootstrap_name(bootstrap: Any) -> str:
    """How errors name a bootstrap: its reference, or its qualified name."""
    if bootstrap is None:
        return "(none: the worker's own start-up)"
    if isinstance(bootstrap, str):
        return bootstrap
    module = getattr(bootstrap, "__module__", None)
    name = getattr(bootstrap, "__qualname__", None) or repr(bootstrap)
    return f"{module}:{name}" if module else str(name)


_gil_warned = False


def warn_if_gil_returned(report: dict[str, Any], caps: Capabilities | None, backend: str) -> bool:
    """After a bootstrap on a free-threaded build: warn (once) if an import turned the GIL back on."""
    global _gil_warned
    if backend != "thread" or caps is None or not caps.free_threaded_build:
        return False
    if not report.get("gil_enabled"):
        return False
    if not _gil_warned:
        _gil_warned = True
        mods = ", ".join(report.get("new_extensions") or []) or "an extension module"
        log.warning(
            "runtime: the GIL was re-enabled while the bootstrap ran (likely by %s, which does not "
            "declare free-threading support); thread workers will NOT run Python code in parallel. "
            "Use backend='process' or 'subinterpreter', or set PYTHON_GIL=0 if the module is safe.",
            mods,
        )
    return True
