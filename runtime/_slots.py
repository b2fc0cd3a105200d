"""A pool's slots: one per worker it keeps, each bound to a task kind, with its restart state.

A slot outlives its workers: when a task fails, the slot records the failure and the
pool's :func:`runtime._policy.decide` says what happens next; when a worker dies or is
recycled, the slot gets another. Everything here is plain data and pure functions over
it, touched only by the pool's supervisor thread (under the pool's lock), so nothing in
this module needs a lock of its own.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._task import TaskSpec

if TYPE_CHECKING:
    from ._hub import Timer
    from ._lifecycle import Limits
    from ._workerset import Member

__all__ = ["Kind", "Slot", "SlotState", "normalize_tasks", "retire_order"]


class SlotState(enum.Enum):
    BOOTING = "booting"
    RUNNING = "running"
    WAITING = "waiting"  # restart scheduled
    DONE = "done"
    GAVE_UP = "gave_up"


TERMINAL = (SlotState.DONE, SlotState.GAVE_UP)


@dataclasses.dataclass(eq=False)
class Kind:
    spec: TaskSpec
    blob: bytes
    weight: float
    label: str


@dataclasses.dataclass(eq=False)
class Slot:
    id: int
    kind: Kind
    state: SlotState = SlotState.BOOTING
    worker: Member | None = None
    standby: Member | None = None  # the successor booted for an aged worker
    attempt: int = 0
    failures: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    retiring: bool = False  # a resize removes it: it ends with its current run
    initial: bool = True
    runs: int = 0  # task runs the current worker hosted
    over_memory: int | None = None  # what the current worker reported when over the limit
    fresh: int = 0  # fresh workers started for this slot's restarts
    recycling: bool = False  # the running task was asked to stop for its standby
    restart_at: float = 0.0
    timer: Timer | None = None  # the restart due
    age_from: float = 0.0  # when the current worker's age started counting
    age_timer: Timer | None = None

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL

    def label(self, attempt: bool = True) -> str:
        return f"{self.kind.label} (slot {self.id}" + (
            f", attempt {self.attempt})" if attempt else ")"
        )

    def record_failure(self, now: float, within: float) -> int:
        """Count a failure at ``now``; the failures within the last ``within`` seconds."""
        self.failures.append(now)
        while self.failures and now - self.failures[0] > within:
            self.failures.popleft()
        return len(self.failures)

    def recycle_reason(self, limits: Limits, now: float) -> str | None:
        """Why the slot's worker must not host another run (lifecycle limits), or None."""
        if not limits.recycles:
            return None
        if limits.max_tasks_per_worker is not None and self.runs >= limits.max_tasks_per_worker:
            return "tasks"
        if self.over_memory is not None:
            return "memory"
        if limits.max_worker_age is not None and now - self.age_from >= limits.max_worker_age:
            return "age"
        return None

    def new_worker(self, worker: Member, now: float) -> None:
        """``worker`` becomes this slot's own: its counters start again."""
        self.worker = worker
        self.runs = 0
        self.over_memory = None
        self.age_from = now


def normalize_tasks(tasks: Any) -> list[tuple[TaskSpec, float]]:
    if isinstance(tasks, Mapping):
        if not tasks:
            raise ConfigurationError("the task mapping is empty; give at least one task kind")
        return [(TaskSpec.from_value(k), w) for k, w in tasks.items()]
    return [(TaskSpec.from_value(tasks), 1)]


_RETIRE_FIRST = {SlotState.WAITING: 0, SlotState.BOOTING: 1, SlotState.RUNNING: 2}


def retire_order(slots: list[Slot], count: int) -> list[Slot]:
    """The ``count`` slots a resize down retires: waiting first, then booting, then running."""
    return sorted(slots, key=lambda s: _RETIRE_FIRST.get(s.state, 3))[:count]


def restart_backoff(slots: list[Slot], kinds: list[Kind], now: float) -> dict[str, float]:
    """Per task kind: the longest wait left among its slots waiting to restart (0.0: none)."""
    out = {k.label: 0.0 for k in kinds}
    for slot in slots:
        if slot.state is SlotState.WAITING:
            label = slot.kind.label
            out[label] = max(out[label], slot.restart_at - now, 0.0)
    return out
