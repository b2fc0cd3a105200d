"""``/healthz`` and ``/readyz``: what the registered components say, as (ok, JSON body).

Liveness (``/healthz``) asks only "are the supervising threads alive and not stuck"
(see :mod:`runtime._heartbeat`); it never depends on the broker, because restarting
a pod does not bring a broker back. Readiness (``/readyz``) adds "is every pool at its
target size, every executor's workers up, every consumer connected and consuming, and
nothing draining": the answer a load balancer or KEDA needs.
"""

from __future__ import annotations

import time
from typing import Any

from ._registry import REGISTRY, ComponentOps

__all__ = ["health", "readiness"]


def _safely(ops: ComponentOps, what: str, call: Any) -> list[str]:
    try:
        result: list[str] = call()
    except Exception as exc:  # a component tearing down under us: say so, do not 500
        return [f"{ops.name}: could not read its {what}: {type(exc).__name__}: {exc}"]
    return result


def health(stale_after: float) -> tuple[bool, dict[str, Any]]:
    now = time.monotonic()
    components = REGISTRY.components()
    problems = [
        p
        for ops in components
        for p in _safely(ops, "heartbeats", lambda ops=ops: ops.problems(now, stale_after))
    ]
    return not problems, {
        "status": "ok" if not problems else "unhealthy",
        "unhealthy": problems,
        "components": [ops.describe(now) for ops in components],
    }


def readiness(stale_after: float) -> tuple[bool, dict[str, Any]]:
    now = time.monotonic()
    components = REGISTRY.components()
    reasons: list[str] = []
    if not components:
        reasons.append("starting: no pool, executor or consumer is running yet")
    for ops in components:
        reasons += _safely(ops, "heartbeats", lambda ops=ops: ops.problems(now, stale_after))
        reasons += _safely(ops, "state", ops.not_ready)
    return not reasons, {
        "status": "ready" if not reasons else "not ready",
        "not_ready": reasons,
        "components": [ops.describe(now) for ops in components],
    }
