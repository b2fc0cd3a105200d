"""Every exception the package raises, under one root: :class:`Error`.

Errors that describe something that happened inside a worker carry the worker-side
traceback as text (``remote_traceback``) and print it after the message, the way
anyio's ``BrokenWorkerInterpreter`` does, so a failure is readable from the caller.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "BootstrapError",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelFull",
    "ChannelTimeout",
    "ConfigurationError",
    "Error",
    "ExecutorShutdown",
    "NotTransferable",
    "PoolError",
    "ReferenceNotFound",
    "RemoteError",
    "TaskFailed",
    "WorkerCrashed",
]


class Error(Exception):
    """Root of every exception raised by ``runtime``."""


class ConfigurationError(Error, ValueError):
    """A bad argument: worker count, weights, backend name, policy values, references."""


class ReferenceNotFound(ConfigurationError, ImportError):
    """A ``"pkg.mod:Name"`` reference (task, bootstrap, handler) cannot be imported or resolved."""


class RemoteError(Error):
    """Something failed inside a worker; ``remote_traceback`` holds the worker-side traceback."""

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        if self.remote_traceback:
            tb = self.remote_traceback.rstrip()
            return f"{self.message}\n\nUncaught in the worker:\n\n{tb}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.remote_traceback))


class BackendUnavailable(RemoteError, RuntimeError):
    """The requested worker backend cannot run here (or cannot load a module the work needs).

    The message says why and what to use instead; when a worker found out,
    ``remote_traceback`` holds its traceback.
    """


class BootstrapError(RemoteError):
    """The application's bootstrap failed in a fresh worker; no task ran there."""


class TaskFailed(RemoteError):
    """A task raised; carries the worker-side traceback."""


class WorkerCrashed(RemoteError):
    """A worker died (its process exited or its thread/interpreter ended) while it held work."""


class PoolError(Error, RuntimeError):
    """The pool was used in a way its state does not allow (e.g. started twice)."""


class ExecutorShutdown(Error, RuntimeError):
    """Work was submitted to an executor that is shut down."""


class NotTransferable(Error, TypeError):
    """An object cannot travel between the caller and a worker (it cannot be pickled or shared)."""


class ChannelClosed(Error):
    """The channel is closed: nothing more can be sent, and nothing is left to receive."""


class ChannelTimeout(Error, TimeoutError):
    """A blocking channel operation did not complete within its timeout."""


class ChannelEmpty(Error):
    """``recv_nowait`` found nothing to receive."""


class ChannelFull(Error):
    """``send_nowait`` found a bounded channel at capacity."""


# Shown and pickled under their public name, however they were imported: runtime.Error.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, BaseException) and _cls.__module__ == __name__:
        _cls.__module__ = "runtime"
del _cls
