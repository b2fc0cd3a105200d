"""A minimal ASGI app for the server benchmark: ``GET /fib/<n>`` answers ``fib(n)``.

How the CPU-bound job runs is chosen by ``SERVER_BENCH_OFFLOAD`` (one server process per
variant, started by ``run.py``):

* ``inline``     - in the event loop itself (the baseline: nothing offloaded);
* ``to_thread``  - ``anyio.to_thread.run_sync`` (its default limiter);
* ``to_process`` - ``anyio.to_process.run_sync`` (its default limiter: the CPU count);
* ``runtime``    - ``runtime.aio.run_sync`` (its default executor and limiter: the CPU count;
  ``SERVER_BENCH_BACKEND`` picks the backend, default ``auto``).

No framework: the app is a plain ASGI callable, so the figures are the offloading's and the
server's, not a router's. It runs on uvicorn (asyncio) and on hypercorn (asyncio or trio).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread

import runtime.aio
from runtime.bench.workloads import fib

OFFLOAD = os.environ.get("SERVER_BENCH_OFFLOAD", "inline")
BACKEND = os.environ.get("SERVER_BENCH_BACKEND", "auto")
VARIANTS = ("inline", "to_thread", "to_process", "runtime")
if OFFLOAD not in VARIANTS:
    raise SystemExit(f"SERVER_BENCH_OFFLOAD must be one of {', '.join(VARIANTS)}, not {OFFLOAD!r}")


async def compute(n: int) -> int:
    if OFFLOAD == "runtime":
        return await runtime.aio.run_sync(fib, n)
    if OFFLOAD == "to_process":
        return await anyio.to_process.run_sync(fib, n)
    if OFFLOAD == "to_thread":
        return await anyio.to_thread.run_sync(fib, n)
    return fib(n)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if OFFLOAD == "runtime":
                runtime.aio.configure_default_executor(backend=BACKEND)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if OFFLOAD == "runtime":
                await runtime.aio.aclose_default_executor()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    head, _, arg = scope["path"].rpartition("/")
    if head != "/fib" or not arg.isdigit():
        status, body = 404, b"GET /fib/<n>\n"
    else:
        status, body = 200, b"%d\n" % await compute(int(arg))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
