"""What the workers run. Module-level functions only, so every peer pickles them by reference.

This module is imported inside every worker (subinterpreters, threads, processes), so it imports
nothing heavy at module level: own-GIL subinterpreters on 3.12 crash on ``ssl``, ``hashlib`` or
``asyncio`` imports, and an import here would be paid once per worker by every peer. ``hashlib``
is imported inside :func:`sha256_rounds` only, and the runner never sends that workload to a
subinterpreter peer on 3.12.
"""

from __future__ import annotations

import os
import time
import zlib

__all__ = [
    "fib",
    "nbody",
    "payload_echo",
    "sha256_rounds",
    "tiny",
    "warm",
    "zlib_compress",
]

# --- pure-Python CPU-bound kernels (hold the GIL the whole time) -------------------------------


def fib(n: int) -> int:
    """Naive recursive Fibonacci: function-call overhead, nothing else."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


_SOLAR_MASS = 4 * 3.141592653589793**2
_DAYS_PER_YEAR = 365.24
_BODIES = (
    # position, velocity (per day), mass — the Sun, Jupiter, Saturn, Uranus, Neptune.
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0),
    (
        (4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01),
        (1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05),
        9.54791938424326609e-04,
    ),
    (
        (8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01),
        (-2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05),
        2.85885980666130812e-04,
    ),
    (
        (1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01),
        (2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05),
        4.36624404335156298e-05,
    ),
    (
        (1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01),
        (2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05),
        5.15138902046611451e-05,
    ),
)


def nbody(steps: int) -> float:
    """The classic five-body simulation (pyperformance's ``nbody``); returns the final energy."""
    bodies = [
        ([*pos], [v * _DAYS_PER_YEAR for v in vel], mass * _SOLAR_MASS)
        for pos, vel, mass in _BODIES
    ]
    # Offset the Sun's momentum so the system's centre of mass stays put.
    px = py = pz = 0.0
    for _, v, m in bodies:
        px -= v[0] * m
        py -= v[1] * m
        pz -= v[2] * m
    sun_v, sun_m = bodies[0][1], bodies[0][2]
    sun_v[0], sun_v[1], sun_v[2] = px / sun_m, py / sun_m, pz / sun_m

    pairs = [(bodies[i], bodies[j]) for i in range(len(bodies)) for j in range(i + 1, len(bodies))]
    dt = 0.01
    for _ in range(steps):
        for (r1, v1, m1), (r2, v2, m2) in pairs:
            dx = r1[0] - r2[0]
            dy = r1[1] - r2[1]
            dz = r1[2] - r2[2]
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** -1.5)
            b1 = m1 * mag
            b2 = m2 * mag
            v1[0] -= dx * b2
            v1[1] -= dy * b2
            v1[2] -= dz * b2
            v2[0] += dx * b1
            v2[1] += dy * b1
            v2[2] += dz * b1
        for r, v, _ in bodies:
            r[0] += dt * v[0]
            r[1] += dt * v[1]
            r[2] += dt * v[2]

    energy = 0.0
    for i, (r1, v1, m1) in enumerate(bodies):
        energy += 0.5 * m1 * (v1[0] * v1[0] + v1[1] * v1[1] + v1[2] * v1[2])
        for r2, _, m2 in bodies[i + 1 :]:
            dx, dy, dz = r1[0] - r2[0], r1[1] - r2[1], r1[2] - r2[2]
            energy -= m1 * m2 / (dx * dx + dy * dy + dz * dz) ** 0.5
    return energy


# --- C-level work that releases the GIL ---------------------------------------------------------

_buffers: dict[int, bytes] = {}


def _buffer(kib: int) -> bytes:
    """A per-worker buffer of ``kib`` KiB, half random and half repetitive (so zlib has work).

    Built once per worker and cached, so the measured task is the C call, not the allocation.
    """
    data = _buffers.get(kib)
    if data is None:
        size = kib * 1024
        block = os.urandom(4096)
        parts = []
        for i in range(size // 8192 + 1):
            parts.append(block[i % 64 :] + block[: i % 64])  # repetitive half, shifted per block
            parts.append(os.urandom(4096))  # incompressible half
        data = b"".join(parts)[:size]
        _buffers[kib] = data
    return data


def zlib_compress(kib: int) -> int:
    """Compress a ``kib`` KiB buffer at level 6; zlib releases the GIL while it works."""
    return len(zlib.compress(_buffer(kib), 6))


def sha256_rounds(rounds: int, kib: int = 1024) -> str:
    """SHA-256 over a ``kib`` KiB buffer ``rounds`` times; hashlib releases the GIL on large data."""
    import hashlib  # here, not at module level: it crashes 3.12 own-GIL subinterpreters

    data = _buffer(kib)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(data).digest()
    return digest.hex()


# --- dispatch cost ----------------------------------------------------------------------------


def tiny(x: int) -> int:
    """Almost no work: what remains is the peer's per-task overhead."""
    return x + 1


def payload_echo(blob: bytes) -> bytes:
    """Return the payload: 1 MB goes in and 1 MB comes back out."""
    return blob


def warm(delay: float) -> tuple[int, int]:
    """Hold a worker for ``delay`` seconds; report which process and thread ran it.

    The runner starts N of these at once right after opening a pool: they finish once N workers
    are up (that is the start-up time), and the process ids tell it which processes to measure.
    """
    import _thread  # builtin: importing threading would add to every worker's measured memory

    time.sleep(delay)
    return os.getpid(), _thread.get_ident()
