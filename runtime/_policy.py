"""Restart policy, backoff, the pool's restart decision, and how many workers a pool gets.

The decision after a task failed is a value: :func:`decide` is a pure function of what
the pool knows (the failures within the window, whether it is stopping, whether the
failed task's worker can host another run, a lifecycle limit it passed, the slot's budget
of fresh workers), and returns a :class:`Decision` that the pool acts on and hands to
observers, so that no reader (metrics, failure reports) has to re-derive what the pool
did from its state.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

from ._early import interpreters_leak, resolve_workers
from ._errors import ConfigurationError

__all__ = [
    "LEAKY_FRESH_WORKERS",
    "Decision",
    "RestartPolicy",
    "decide",
    "interpreters_leak",
    "resolve_workers",
    "split_by_weight",
]

K = TypeVar("K")

#: Fresh workers per slot that ``fresh_workers="auto"`` allows where interpreters leak.
LEAKY_FRESH_WORKERS = 8


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What a pool does when a task raises.

    * ``max_restarts``: restarts allowed within ``within`` seconds before the slot
      gives up (``None``: never give up).
    * ``backoff`` doubles after each consecutive failure, up to ``max_backoff``;
      ``jitter`` spreads it over [50 %, 100 %] so a crashing fleet does not restart in lockstep.
    * ``fresh_worker``: restart in a fresh interpreter/thread/process (module state
      leaked by the failed attempt dies with it) rather than reusing the bootstrapped worker.
    * ``fresh_workers``: how many of those fresh workers a slot may get for restarts
      (``None``: no limit). Past it, the slot's restarts reuse its bootstrapped worker, as
      ``fresh_worker=False`` does, and the pool logs a warning once. The default,
      ``"auto"``, is 8 where interpreters leak on destroy (the subinterpreter backend on
      CPython before 3.14, about 3-4 MB each, CPython #110411: without a limit a task
      that always fails grows the process without bound) and no limit elsewhere. To get
      fresh interpreters for every restart on 3.12/3.13, set ``fresh_workers=None`` and
      cap ``max_restarts``; or use Python 3.14+, or ``backend="process"``. Workers
      recycled by the pool's lifecycle limits (``max_tasks_per_worker``...) are not
      counted: those limits are the caller's explicit choice.
    """

    max_restarts: int | None = None
    within: float = 60.0
    backoff: float = 0.1
    max_backoff: float = 30.0
    jitter: bool = True
    fresh_worker: bool = True
    fresh_workers: int | Literal["auto"] | None = "auto"

    def __post_init__(self) -> None:
        fresh = self.fresh_workers
        if (
            fresh != "auto"
            and fresh is not None
            and (isinstance(fresh, bool) or not isinstance(fresh, int) or fresh < 0)
        ):
            raise ConfigurationError(
                f"fresh_workers must be 'auto', None (no limit) or an int >= 0, got {fresh!r}"
            )
        if self.max_restarts is not None and (
            not isinstance(self.max_restarts, int) or self.max_restarts < 0
        ):
            raise ConfigurationError(
                f"max_restarts must be None or an int >= 0, got {self.max_restarts!r}"
            )
        for name in ("within", "backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if self.max_backoff < self.backoff:
            raise ConfigurationError(
                f"max_backoff ({self.max_backoff}) must not be smaller than backoff ({self.backoff})"
            )

    def fresh_worker_budget(self, backend: str) -> int | None:
        """Fresh workers a slot may get for restarts on ``backend`` (None: no limit)."""
        if self.fresh_workers == "auto":
            return LEAKY_FRESH_WORKERS if interpreters_leak(backend) else None
        return self.fresh_workers

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before restart number ``failures`` (1-based) in a row."""
        if failures < 1 or self.backoff == 0:
            return 0.0
        base = min(self.max_backoff, self.backoff * (2 ** min(failures - 1, 62)))
        if self.jitter:
            base *= 0.5 + 0.5 * float((rng or random).random())
        return float(base)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a pool does after a task failed: the value it acts on and reports.

    * ``action``: ``"restart"`` (after ``delay`` seconds), ``"give_up"`` (the slot failed
      more than ``max_restarts`` times within ``within``) or ``"stop"`` (the pool is
      stopping, or the slot is being retired by a resize).
    * ``fresh_worker``: the restart runs on a new worker rather than the one that failed
      (always, when that worker is gone).
    * ``recycle_reason``: a lifecycle limit (``"tasks"``, ``"memory"``, ``"age"``) that
      retires the failed task's worker, else None.
    """

    action: Literal["restart", "give_up", "stop"]
    delay: float = 0.0
    fresh_worker: bool = False
    recycle_reason: str | None = None


def decide(
    policy: RestartPolicy,
    failures: int,
    *,
    stopping: bool,
    worker_alive: bool,
    recycle_reason: str | None,
    fresh_allowed: bool,
    rng: random.Random | None = None,
) -> Decision:
    """The pool's restart decision, a pure function of what it knows.

    ``failures``: the slot's failures within ``policy.within`` (this one included);
    ``worker_alive``: the failed task's worker can host another run; ``recycle_reason``:
    the lifecycle limit it passed, if any; ``fresh_allowed``: the slot's budget of fresh
    workers (``RestartPolicy.fresh_workers``) is not spent.
    """
    if stopping:
        return Decision("stop")
    limit = policy.max_restarts
    if limit is not None and failures > limit:
        return Decision("give_up")
    delay = policy.delay(failures, rng)
    if not worker_alive:
        return Decision("restart", delay, fresh_worker=True)
    if recycle_reason is not None:
        return Decision("restart", delay, fresh_worker=True, recycle_reason=recycle_reason)
    return Decision("restart", delay, fresh_worker=policy.fresh_worker and fresh_allowed)


def split_by_weight[K](
    weights: Mapping[K, float] | Sequence[tuple[K, float]], total: int
) -> dict[K, int]:
    """Split ``total`` workers by weight (largest remainder); every positive weight gets >= 1."""
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if not items:
        raise ConfigurationError("no task kinds given")
    for key, weight in items:
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or weight < 0
            or math.isnan(weight)
        ):
            raise ConfigurationError(f"weight of {key!r} must be a number >= 0, got {weight!r}")
    positive = [(k, float(w)) for k, w in items if w > 0]
    if not positive:
        raise ConfigurationError("at least one task kind needs a weight > 0")
    if total < len(positive):
        raise ConfigurationError(
            f"{total} worker(s) cannot give each of the {len(positive)} task kinds with a weight > 0 "
            "at least one; raise workers or drop a kind"
        )
    weight_sum = sum(w for _, w in positive)
    exact = [(k, total * w / weight_sum) for k, w in positive]
    counts = {k: math.floor(x) for k, x in exact}
    left = total - sum(counts.values())
    by_remainder = sorted(
        range(len(exact)), key=lambda i: (-(exact[i][1] - math.floor(exact[i][1])), i)
    )
    for i in by_remainder[:left]:
        counts[exact[i][0]] += 1
    for key in counts:
        if counts[key] == 0:
            donor = max(counts, key=lambda k: counts[k])
            counts[donor] -= 1
            counts[key] = 1
    result: dict[K, int] = {k: 0 for k, _ in items}
    result.update(counts)
    return result
