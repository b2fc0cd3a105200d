"""A base for the package's small immutable values (:class:`~runtime._lifecycle.Limits`, ``Capabilities``).

Plain classes with ``__slots__``, not dataclasses: they are built on a new executor's
path, and on 3.13 importing ``dataclasses`` alone costs a fresh process about 9 ms.
"""

from __future__ import annotations

__all__ = ["Frozen"]


class Frozen:
    """Refuses attribute stores and deletions; equal and hashed by :meth:`_fields`.

    A subclass lists its fields in ``__slots__``, sets them in ``__init__`` with
    ``object.__setattr__``, and returns their values from ``_fields``.
    """

    __slots__ = ()

    def _fields(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())
