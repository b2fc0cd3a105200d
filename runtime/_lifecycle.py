"""Worker lifecycle limits: when a worker is recycled, how long a bootstrap may take.

One frozen :class:`Limits` value travels from the user-facing constructors (``Pool``,
``Executor``, ``amqp.Consumer``) and the CLI flags to the code that enforces it, so every
front validates and spells the limits the same way:

* ``max_tasks_per_worker``: jobs (Executor, consumer handler calls) or task runs (Pool) a
  worker serves before it is replaced;
* ``max_worker_memory``: bytes a worker may hold before it is replaced (what is counted
  depends on the backend, see :func:`runtime._usage.worker_memory`);
* ``max_worker_age``: seconds a worker lives before it is replaced;
* ``boot_timeout``: seconds a fresh worker's bootstrap may take before it is given up.

A recycled worker finishes what it holds, and its successor boots before it retires.
"""

from __future__ import annotations

import math
import re

from ._early import DEFAULT_BOOT_TIMEOUT
from ._errors import ConfigurationError
from ._frozen import Frozen

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_BOOT_TIMEOUT",
    "Limits",
    "add_arguments",
    "from_args",
    "parse_size",
    "positive_int",
]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Compiled by the first size parsed (re caches it): compiling costs a new executor 0.2 ms.
_SIZE = r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$"


def parse_size(value: str | int) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GiB``, ``300000`` (binary units: 1K = 1024)."""
    if isinstance(value, bool):
        raise ConfigurationError(
            f"a memory size must be an int or a string like '512M', got {value!r}"
        )
    if isinstance(value, int):
        if value < 1:
            raise ConfigurationError(f"a memory size must be >= 1 byte, got {value}")
        return value
    match = re.match(_SIZE, str(value), re.IGNORECASE)
    if match is None:
        raise ConfigurationError(
            f"cannot read {value!r} as a memory size; write bytes or a number with K, M, G or T "
            "(binary units), for example 512M or 2G"
        )
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise ConfigurationError(f"a memory size must be >= 1 byte, got {value!r}")
    return size


def _positive_number(name: str, value: Any, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a number > 0 (seconds) or None, got {value!r}")
    return float(value)


class Limits(Frozen):
    """When workers are recycled and how long a bootstrap may take (``None``: no limit).

    Immutable (:class:`~runtime._frozen.Frozen`): every new executor builds one.
    """

    __slots__ = ("boot_timeout", "max_tasks_per_worker", "max_worker_age", "max_worker_memory")

    max_tasks_per_worker: int | None
    max_worker_memory: int | None
    max_worker_age: float | None
    boot_timeout: float | None

    def __init__(
        self,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
    ) -> None:
        tasks = max_tasks_per_worker
        if tasks is not None and (
            isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1
        ):
            raise ConfigurationError(
                f"max_tasks_per_worker must be an int >= 1 or None, got {tasks!r}"
            )
        memory = None if max_worker_memory is None else parse_size(max_worker_memory)
        age = _positive_number("max_worker_age", max_worker_age)
        boot = _positive_number("boot_timeout", boot_timeout)
        set_field = object.__setattr__  # the class refuses attribute stores
        set_field(self, "max_tasks_per_worker", tasks)
        set_field(self, "max_worker_memory", memory)
        set_field(self, "max_worker_age", age)
        set_field(self, "boot_timeout", boot)

    def _fields(self) -> tuple[int | float | None, ...]:
        return (
            self.max_tasks_per_worker,
            self.max_worker_memory,
            self.max_worker_age,
            self.boot_timeout,
        )

    def __repr__(self) -> str:
        return (
            f"Limits(max_tasks_per_worker={self.max_tasks_per_worker!r}, "
            f"max_worker_memory={self.max_worker_memory!r}, "
            f"max_worker_age={self.max_worker_age!r}, boot_timeout={self.boot_timeout!r})"
        )

    @property
    def recycles(self) -> bool:
        """Whether any recycling limit is set."""
        return (
            self.max_tasks_per_worker is not None
            or self.max_worker_memory is not None
            or self.max_worker_age is not None
        )


def positive_int(value: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    import argparse

    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {number}")
    return number


def add_arguments(parser: Any) -> None:
    """Add ``--max-tasks-per-worker``, ``--max-worker-memory``, ``--max-worker-age`` and
    ``--boot-timeout`` to an ``argparse`` parser (read them back with :func:`from_args`)."""
    import argparse

    def size(value: str) -> int:
        try:
            return parse_size(value)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def seconds(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value!r}") from None
        if not number > 0 or math.isinf(number):
            raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value!r}")
        return number

    group = parser.add_argument_group("worker lifecycle")
    group.add_argument(
        "--max-tasks-per-worker",
        type=positive_int,
        default=None,
        metavar="N",
        help="replace a worker after it served N jobs (default: never)",
    )
    group.add_argument(
        "--max-worker-memory",
        type=size,
        default=None,
        metavar="SIZE",
        help="replace a worker that holds more than SIZE (512M, 2G; default: no limit)",
    )
    group.add_argument(
        "--max-worker-age",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="replace a worker after SECONDS (default: never)",
    )
    group.add_argument(
        "--boot-timeout",
        type=seconds,
        default=DEFAULT_BOOT_TIMEOUT,
        metavar="SECONDS",
        help="give up on a bootstrap that takes longer (default: %(default)s)",
    )


def from_args(args: Any) -> Limits:
    """The :class:`Limits` given by the flags :func:`add_arguments` added."""
    return Limits(
        args.max_tasks_per_worker, args.max_worker_memory, args.max_worker_age, args.boot_timeout
    )
