"""The floor under a subinterpreter pool's time to its first result.

``N`` bare interpreters created in parallel threads, each answering one byte over a pipe:
what any pool of ``N`` own-GIL subinterpreters must pay before its first result, with
no pool code, no worker module and no pickling at all. The runner reports it as the
``floor`` row of the ``first_result`` measurement, so every peer's time to its first
result can be read against it in the same run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

__all__ = ["available", "first_result_s"]


def _driver() -> tuple[Any, Any, Any] | None:
    """(create, run_string, destroy) of the low-level interpreters module, or None."""
    if sys.version_info >= (3, 13):
        try:
            import _interpreters as low
        except ImportError:
            return None
        return low.create, low.run_string, low.destroy
    try:  # pragma: no cover - exercised on 3.12 only
        import _xxsubinterpreters as low
    except ImportError:
        return None
    return (lambda: low.create(isolated=True)), low.run_string, low.destroy


def available() -> str | None:
    """None when the floor can be measured here, else why not."""
    return None if _driver() is not None else "this Python has no subinterpreter API"


def first_result_s(workers: int) -> float:
    """Seconds from nothing to one answer from each of ``workers`` fresh interpreters."""
    driver = _driver()
    if driver is None:
        raise RuntimeError(available())
    create, run_string, destroy = driver
    pipes = [(os.pipe(), os.pipe()) for _ in range(workers)]
    interps: list[Any] = []
    lock = threading.Lock()

    def body(request_r: int, reply_w: int) -> None:
        interp = create()
        with lock:
            interps.append(interp)
        run_string(interp, f"import os\nos.write({reply_w}, os.read({request_r}, 1))")

    threads = [
        threading.Thread(target=body, args=(req[0], rep[1]), name="runtime-bench-floor")
        for req, rep in pipes
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for req, _ in pipes:
        os.write(req[1], b"x")
    for _, rep in pipes:
        os.read(rep[0], 1)
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    for interp in interps:
        destroy(interp)
    for req, rep in pipes:
        for fd in (*req, *rep):
            os.close(fd)
    return elapsed
