"""Frozen snapshots of an executor's state (``Executor.statistics()``), as trio's ``*Statistics``.

A snapshot is taken under the executor's lock and never changes afterwards: readers
(``runtime.ops``, a user's dashboard) get a consistent picture without holding any lock
of the component, and a field's meaning does not depend on the component's internals.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ExecutorStatistics"]


@dataclasses.dataclass(frozen=True)
class ExecutorStatistics:
    """An immutable snapshot of an :class:`~runtime.Executor`."""

    backend: str
    workers_target: int  # the worker count it keeps
    workers_alive: int  # booted and taking work
    workers_booting: int
    workers_standby: int  # booted successors waiting to take over from a recycled worker
    queued: int  # jobs waiting for a worker
    in_flight: int  # jobs on workers
    batches_in_flight: int
    submitted: int
    completed: int
    failed: int
    replaced: int  # workers that died and were replaced
    recycled: Mapping[str, int]  # workers retired by a lifecycle limit, by reason
    state: str  # "running", "broken" or "shutdown"
    broken: str | None = None  # what broke it (a first worker's bootstrap failed)
