"""Frozen snapshots of the components (``statistics()``) and a pool's report, as trio's ``*Statistics``.

A snapshot is taken under the component's lock and never changes afterwards: readers
(``runtime.ops``, a user's dashboard) get a consistent picture without holding any lock
of the component, and a field's meaning does not depend on the component's internals.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ExecutorStatistics", "PoolReport", "PoolStatistics"]


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


@dataclasses.dataclass(frozen=True)
class PoolReport:
    """What a pool did, returned by :meth:`Pool.run` and :meth:`Pool.stop`."""

    completed: int
    restarts: int
    gave_up: int
    replaced: int
    unfinished: int
    stopped: bool
    failures: tuple[str, ...] = ()  # the most recent 1,000, oldest first
    recycled: int = 0  # workers replaced by the lifecycle limits (not counted in completed)


@dataclasses.dataclass(frozen=True)
class PoolStatistics:
    """An immutable snapshot of a pool (``pool.statistics()``)."""

    backend: str
    target_workers: int
    workers_alive: int
    running: int
    booting: int
    waiting_restart: int
    completed: int
    restarts: int
    gave_up: int
    replaced: int
    by_kind: Mapping[str, int]
    state: str
    recycled: int = 0
    completed_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    restarts_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    gave_up_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    replaced_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    recycled_by_reason: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Per task kind: the longest wait left before a restart (0.0 when none waits).
    restart_backoff: Mapping[str, float] = dataclasses.field(default_factory=dict)
