"""Worker-side helpers for channel tests (safe to import in any worker)."""

from __future__ import annotations

import runtime


def echo(inbox: runtime.Channel, outbox: runtime.Channel) -> int:
    """Forward everything from inbox to outbox until inbox is closed; return the count."""
    n = 0
    for item in inbox:
        outbox.send(item)
        n += 1
    return n


def produce(channel: runtime.Channel, start: int, count: int) -> int:
    for i in range(start, start + count):
        channel.send(i)
    return count


def consume(channel: runtime.Channel, count: int) -> list[int]:
    return [channel.recv(timeout=30) for _ in range(count)]


class Pipeline(runtime.Task):
    """A pool task that receives work over a channel passed as a constructor argument."""

    def __init__(self, inbox: runtime.Channel, outbox: runtime.Channel) -> None:
        self.inbox = inbox
        self.outbox = outbox

    def run(self) -> None:
        for item in self.inbox:
            self.outbox.send((self.worker.id, item * 2))


def announce_then_recv(announce: runtime.Channel, channel: runtime.Channel) -> object:
    """Tell the test this worker's pid, then wait in ``channel.recv`` (to be killed there)."""
    import os

    announce.send(os.getpid())
    return channel.recv(timeout=30)
