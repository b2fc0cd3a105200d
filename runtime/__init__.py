"""Run Python work in parallel inside one process.

Workers are own-GIL subinterpreters (PEP 734), free-threaded threads, or
processes, bootstrapped through the application's entry point and kept alive by a
supervised :class:`Pool`. :class:`Executor` is a ``concurrent.futures`` executor
on the same workers; :mod:`runtime.aio` is the anyio front and :mod:`runtime.amqp`
the RabbitMQ consumer (both imported only when used).
"""

from __future__ import annotations

import sys as _sys

from ._lazy import lazy_exports

# Not typing.TYPE_CHECKING: every fresh worker imports this package, and typing costs
# each of them milliseconds. Type checkers treat any TYPE_CHECKING name as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._capabilities import Capabilities as Capabilities
    from ._capabilities import capabilities as capabilities
    from ._channel import Channel as Channel
    from ._context import WorkerInfo as WorkerInfo
    from ._context import current_context as current_context
    from ._context import current_worker as current_worker
    from ._context import stop_requested as stop_requested
    from ._errors import BackendUnavailable as BackendUnavailable
    from ._errors import BootstrapError as BootstrapError
    from ._errors import ChannelClosed as ChannelClosed
    from ._errors import ChannelEmpty as ChannelEmpty
    from ._errors import ChannelFull as ChannelFull
    from ._errors import ChannelTimeout as ChannelTimeout
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import Error as Error
    from ._errors import ExecutorShutdown as ExecutorShutdown
    from ._errors import NotTransferable as NotTransferable
    from ._errors import PoolError as PoolError
    from ._errors import ReferenceNotFound as ReferenceNotFound
    from ._errors import RemoteError as RemoteError
    from ._errors import TaskFailed as TaskFailed
    from ._errors import WorkerCrashed as WorkerCrashed
    from ._events import BatchFinished as BatchFinished
    from ._events import BrokerEvent as BrokerEvent
    from ._events import DeliveryFailed as DeliveryFailed
    from ._events import DeliverySettled as DeliverySettled
    from ._events import JobEvent as JobEvent
    from ._events import JobFailed as JobFailed
    from ._events import Observer as Observer
    from ._events import TaskEvent as TaskEvent
    from ._events import TaskFailure as TaskFailure
    from ._events import WorkerEvent as WorkerEvent
    from ._events import add_observer as add_observer
    from ._events import remove_observer as remove_observer
    from ._executor import Executor as Executor
    from ._policy import Decision as Decision
    from ._policy import RestartPolicy as RestartPolicy
    from ._pool import Pool as Pool
    from ._pool import PoolReport as PoolReport
    from ._pool import PoolStatistics as PoolStatistics
    from ._statistics import ExecutorStatistics as ExecutorStatistics
    from ._task import Task as Task
    from .aio import open_executor as open_executor
    from .ops._failure_record import Failure as Failure
    from .ops._server import MetricsServer as MetricsServer
    from .ops._server import serve_metrics as serve_metrics
del TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "BatchFinished",
    "BootstrapError",
    "BrokerEvent",
    "Capabilities",
    "Channel",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelFull",
    "ChannelTimeout",
    "ConfigurationError",
    "Decision",
    "DeliveryFailed",
    "DeliverySettled",
    "Error",
    "Executor",
    "ExecutorShutdown",
    "ExecutorStatistics",
    "Failure",
    "JobEvent",
    "JobFailed",
    "MetricsServer",
    "NotTransferable",
    "Observer",
    "Pool",
    "PoolError",
    "PoolReport",
    "PoolStatistics",
    "ReferenceNotFound",
    "RemoteError",
    "RestartPolicy",
    "Task",
    "TaskEvent",
    "TaskFailed",
    "TaskFailure",
    "WorkerCrashed",
    "WorkerEvent",
    "WorkerInfo",
    "add_observer",
    "capabilities",
    "current_context",
    "current_worker",
    "open_executor",
    "remove_observer",
    "serve_metrics",
    "stop_requested",
]

# Everything loads on first use, the errors too: a fresh subinterpreter worker imports
# this package before anything else, and each module it pulls in costs start-up time
# and memory in every worker (the errors' fifteen classes: 0.5 ms in each, on 3.14).
_LAZY = {
    "BackendUnavailable": "._errors",
    "BootstrapError": "._errors",
    "ChannelClosed": "._errors",
    "ChannelEmpty": "._errors",
    "ChannelFull": "._errors",
    "ChannelTimeout": "._errors",
    "ConfigurationError": "._errors",
    "Error": "._errors",
    "ExecutorShutdown": "._errors",
    "NotTransferable": "._errors",
    "PoolError": "._errors",
    "ReferenceNotFound": "._errors",
    "RemoteError": "._errors",
    "TaskFailed": "._errors",
    "WorkerCrashed": "._errors",
    "Capabilities": "._capabilities",
    "capabilities": "._capabilities",
    "RestartPolicy": "._policy",
    "Observer": "._events",
    "add_observer": "._events",
    "remove_observer": "._events",
    "BatchFinished": "._events",
    "BrokerEvent": "._events",
    "DeliveryFailed": "._events",
    "DeliverySettled": "._events",
    "JobEvent": "._events",
    "JobFailed": "._events",
    "TaskEvent": "._events",
    "TaskFailure": "._events",
    "WorkerEvent": "._events",
    "Decision": "._policy",
    "ExecutorStatistics": "._statistics",
    "Task": "._task",
    "WorkerInfo": "._context",
    "current_context": "._context",
    "current_worker": "._context",
    "stop_requested": "._context",
    "Channel": "._channel",
    "Executor": "._executor",
    "Pool": "._pool",
    "PoolReport": "._pool",
    "PoolStatistics": "._pool",
    "open_executor": ".aio",
    "Failure": ".ops._failure_record",
    "MetricsServer": ".ops._server",
    "serve_metrics": ".ops._server",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)


# Objects defined in a script's __main__ come back from workers as __mp_main__.X
# (the name the worker re-imports the script under); make that name resolve here.
if "__main__" in _sys.modules:
    _sys.modules.setdefault("__mp_main__", _sys.modules["__main__"])
