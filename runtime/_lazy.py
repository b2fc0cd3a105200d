"""Module-level ``__getattr__``/``__dir__`` for packages whose heavier names load on first use (PEP 562)."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: this module loads in every fresh worker
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` that import ``table[name]`` (relative to ``package``) on demand.

    Loaded classes and functions get ``__module__ = package`` so tracebacks and reprs
    show the public name; the value is cached in ``namespace`` so the import runs once.
    """

    def __getattr__(name: str) -> Any:
        module_name = table.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module_name, package), name)
        if isinstance(value, type) or callable(value):
            try:  # noqa: SIM105 - contextlib is not imported in every fresh worker
                value.__module__ = package
            except (AttributeError, TypeError):
                pass
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
