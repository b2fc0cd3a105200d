"""Command-line argument helpers shared by ``parallel-runtime run`` and ``consume``.

A leaf module: it imports nothing of ours, so :mod:`runtime.cli` and
:mod:`runtime.amqp._cli` can both import it without importing each other (the
cycle a deferred import only hides).
"""

from __future__ import annotations

import argparse

__all__ = ["BACKENDS", "workers_arg"]

#: ``--backend`` choices, in the order ``--help`` lists them.
BACKENDS = ("auto", "subinterpreter", "thread", "process")


def workers_arg(value: str) -> int | float:
    """argparse type for ``--workers``: a count (``4``) or a fraction of the CPUs (``0.5``)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes a count (4) or a fraction of the CPUs (0.5), got {value!r}"
        ) from None
