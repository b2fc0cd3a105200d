"""Restart policy, backoff, and how many workers a pool gets."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import TypeVar

from ._errors import ConfigurationError

__all__ = ["RestartPolicy", "resolve_workers", "split_by_weight"]

K = TypeVar("K")


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What a pool does when a task raises.

    * ``max_restarts``: restarts allowed within ``within`` seconds before the slot
      gives up (``None``: never give up).
    * ``backoff`` doubles after each consecutive failure, up to ``max_backoff``;
      ``jitter`` spreads it over [50 %, 100 %] so a crashing fleet does not restart in lockstep.
    * ``fresh_worker``: restart in a fresh interpreter/thread/process (module state
      leaked by the failed attempt dies with it) rather than reusing the bootstrapped worker.
      On CPython 3.12/3.13 every destroyed own-GIL interpreter leaks a few MB (CPython
      #110411), so for tasks that fail often on the subinterpreter backend, cap
      ``max_restarts`` or set ``fresh_worker=False``.
    """

    max_restarts: int | None = None
    within: float = 60.0
    backoff: float = 0.1
    max_backoff: float = 30.0
    jitter: bool = True
    fresh_worker: bool = True

    def __post_init__(self) -> None:
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

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before restart number ``failures`` (1-based) in a row."""
        if failures < 1 or self.backoff == 0:
            return 0.0
        base = min(self.max_backoff, self.backoff * (2 ** min(failures - 1, 62)))
        if self.jitter:
            base *= 0.5 + 0.5 * float((rng or random).random())
        return float(base)


def resolve_workers(workers: int | float, cpu_count: int) -> int:
    """An int >= 1 is a count; a float in (0, 1] is a fraction of the usable CPUs (at least 1)."""
    if isinstance(workers, bool):
        raise ConfigurationError(
            f"workers must be an int >= 1 or a float in (0, 1], got {workers!r}"
        )
    if isinstance(workers, int):
        if workers < 1:
            raise ConfigurationError(f"workers must be >= 1, got {workers}")
        return workers
    if isinstance(workers, float):
        if not (0.0 < workers <= 1.0) or math.isnan(workers):
            raise ConfigurationError(
                f"a fractional worker count must be in (0, 1] (a share of the {cpu_count} usable "
                f"CPUs), got {workers}; pass an int for an absolute count"
            )
        return max(1, math.floor(cpu_count * workers + 1e-9))
    raise ConfigurationError(f"workers must be an int >= 1 or a float in (0, 1], got {workers!r}")


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
