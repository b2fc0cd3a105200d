"""The record of one failure that ``on_failure`` hooks and ``--failure-queue`` receive."""

from __future__ import annotations

import dataclasses

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._task import WorkerInfo

__all__ = ["Failure"]


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failure, as ``on_failure`` hooks (and ``--failure-queue``) receive it.

    ``source`` is ``"pool"``, ``"executor"`` or ``"consumer"``. ``task`` names what
    failed: the task kind (pool), the function (executor) or the handler reference
    (consumer). ``attempt`` is the task's run in its slot (pool), 1 (executor) or the
    delivery attempt (consumer). ``action`` says what happens next: ``"restart"``,
    ``"give_up"`` or ``"stop"`` (pool), ``"raise"`` (executor: the caller's future
    holds the exception), ``"retry"`` or ``"dead_letter"`` (consumer). ``traceback`` is
    the worker-side traceback; ``time`` is seconds since the epoch.
    """

    source: str
    task: str
    exception_type: str
    message: str
    traceback: str
    attempt: int
    action: str
    time: float
    worker: WorkerInfo | None = None
    queue: str | None = None
    message_id: str | None = None
    delivery_attempt: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``worker`` as a dict, ``time`` also as ISO 8601 UTC)."""
        import datetime

        data = dataclasses.asdict(self)
        worker = self.worker
        data["worker"] = None if worker is None else {f: getattr(worker, f) for f in worker._fields}
        data["time_iso"] = datetime.datetime.fromtimestamp(self.time, datetime.UTC).isoformat()
        return data

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), default=repr)
