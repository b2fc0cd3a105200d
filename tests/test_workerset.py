"""runtime._workerset.WorkerSet on its own: a fake owner, real workers on every backend."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from runtime._events import Hooks
from runtime._hub import Hub
from runtime._lifecycle import Limits
from runtime._workerset import Member, State, WorkerSet

pytestmark = pytest.mark.timeout(60)


class FakeOwner:
    """Records every callback; the set calls them under ``lock`` (the hub's timers too)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: list[tuple[str, Any]] = []
        self.changed = threading.Condition(self.lock)

    def _record(self, what: str, *args: Any) -> None:
        assert self.lock._is_owned()  # type: ignore[attr-defined]
        self.calls.append((what, *args))
        self.changed.notify_all()

    def worker_ready(self, member: Member) -> None:
        self._record("ready", member)

    def worker_boot_failed(self, member: Member, payload: Any, refused: bool) -> None:
        self._record("boot_failed", member, payload[1])

    def worker_boot_timed_out(self, member: Member, elapsed: float, killed: bool) -> None:
        self._record("boot_timed_out", member, killed)

    def worker_over_memory(self, member: Member, nbytes: int) -> None:
        self._record("over_memory", member, nbytes)

    def names(self) -> list[str]:
        with self.lock:
            return [c[0] for c in self.calls]

    def wait(self, what: str, count: int = 1, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        with self.lock:
            while sum(1 for c in self.calls if c[0] == what) < count:
                left = end - time.monotonic()
                assert left > 0, f"no {what!r} after {timeout}s: {self.calls}"
                self.changed.wait(left)


class Harness:
    """A WorkerSet whose workers' messages are handled the way the executor does it."""

    def __init__(
        self, backend: str, bootstrap: Any = None, boot_timeout: float | None = 30
    ) -> None:
        from runtime._common import pack_bootstrap

        self.owner = FakeOwner()
        self.hub = Hub(name="runtime-test-hub")
        self.closed: list[Member | None] = []
        self.set = WorkerSet(
            self.owner,
            backend=backend,
            hub=self.hub,
            info=lambda m: {
                "id": m.handle.id,
                "backend": backend,
                "attempt": 1,
                "slot": None,
                "kind": None,
                "pid": 0,
            },
            bootstrap=pack_bootstrap(bootstrap, backend),
            limits=Limits(boot_timeout=boot_timeout),
            on_message=self._message,
            on_closed=self._closed,
            hooks=Hooks(),
            source="executor",
            component=self.owner,
            lock=self.owner.lock,
        )

    def _message(self, handle: Any, msg: tuple[Any, ...]) -> None:
        with self.owner.lock:
            self.set.message(handle, msg)

    def _closed(self, handle: Any) -> None:
        with self.owner.lock:
            self.closed.append(self.set.closed(handle))
            self.owner.changed.notify_all()

    def wait_closed(self, count: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        with self.owner.lock:
            while len(self.closed) < count:
                left = end - time.monotonic()
                assert left > 0, f"{len(self.closed)} of {count} workers closed: {self.set.members}"
                self.owner.changed.wait(left)

    def close(self) -> None:
        with self.owner.lock:
            self.set.exit_all()
        self.set.join(10.0)
        self.hub.close()


@pytest.fixture
def harness(backend):
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(backend, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_a_spawned_member_boots_then_is_active(harness):
    h = harness()
    with h.owner.lock:
        member = h.set.spawn(initial=True)
        assert member.state is State.BOOTING
        assert not member.ready
        assert h.set.members == {member.id: member}
    h.owner.wait("ready")
    with h.owner.lock:
        assert member.state is State.ACTIVE
        assert member.ready
        assert member.booted
        assert h.set.count(State.ACTIVE) == 1
        assert member.timer is None  # the boot deadline was cancelled
        assert h.set.boot_seconds > 0


def test_a_successor_waits_as_standby_and_the_hand_over_swaps_them_at_once(harness):
    h = harness()
    with h.owner.lock:
        old = h.set.spawn()
    h.owner.wait("ready")
    with h.owner.lock:
        new = h.set.spawn(predecessor=old)
        assert old.successor is new
        assert new.predecessor is old
    h.owner.wait("ready", 2)
    with h.owner.lock:
        assert new.state is State.STANDBY
        assert not new.ready
        assert old.ready
        took_over = h.set.hand_over(old)
        # One critical section: the count of members taking work never dropped.
        assert took_over is new
        assert new.state is State.ACTIVE
        assert new.ready
        assert old.state is State.RETIRING
        assert not old.ready
    h.wait_closed(1)  # the retired one ends after what it holds
    assert h.closed == [old]
    with h.owner.lock:
        assert h.set.members == {new.id: new}


def test_a_failing_bootstrap_is_reported_and_the_member_is_gone(harness):
    h = harness(bootstrap="tests.helpers.tasks:boot_fails")
    with h.owner.lock:
        member = h.set.spawn(initial=True)
    h.owner.wait("boot_failed")
    with h.owner.lock:
        (call,) = [c for c in h.owner.calls if c[0] == "boot_failed"]
        assert call[1] is member
        assert member.state is State.GONE
        assert member.id not in h.set.members
        assert "ready" not in h.owner.names()


def test_a_bootstrap_past_its_deadline_is_killed_or_abandoned(harness, backend, hang_gate):
    h = harness(bootstrap="tests.helpers.lifecycle:hang", boot_timeout=0.3)
    with h.owner.lock:
        member = h.set.spawn(initial=True)
    h.owner.wait("boot_timed_out")
    with h.owner.lock:
        (call,) = [c for c in h.owner.calls if c[0] == "boot_timed_out"]
        assert call[1] is member
        assert call[2] is (backend == "process")  # only a process can be killed
        assert member.state is State.GONE
        assert not h.set.members
        if backend != "process":
            assert member.handle.abandoned is not None
            assert member.handle not in h.set.spawned  # never joined: it may not end


def test_lifecycle_messages_are_idempotent(harness):
    h = harness()
    with h.owner.lock:
        member = h.set.spawn()
    h.owner.wait("ready")
    with h.owner.lock:
        h.set.message(member.handle, ("ready", member.handle.pid, True))  # a replay
        h.set.message(member.handle, ("boot_failed", (None, "x.Y", "late", ""), False))
        assert h.owner.names() == ["ready"]
        assert member.state is State.ACTIVE


def test_over_memory_is_passed_to_the_owner_for_working_members_only(harness):
    h = harness()
    with h.owner.lock:
        member = h.set.spawn()
    h.owner.wait("ready")
    with h.owner.lock:
        h.set.message(member.handle, ("over_memory", 123))
        assert h.owner.calls[-1] == ("over_memory", member, 123)
        h.set.retire(member)
        h.set.message(member.handle, ("over_memory", 456))  # retiring: nothing to decide
        assert h.owner.calls[-1] == ("over_memory", member, 123)


def test_retry_delay_backs_off_and_a_boot_resets_it(harness):
    h = harness()
    with h.owner.lock:
        delays = [h.set.retry_delay() for _ in range(12)]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert delays[-1] == 30.0
    assert all(a <= b for a, b in itertools.pairwise(delays))
    with h.owner.lock:
        h.set.spawn()
    h.owner.wait("ready")
    with h.owner.lock:
        assert h.set.retry_delay() == 0.1


def test_timers_run_under_the_owner_lock_or_are_posted(harness, backend):
    h = harness()
    fired = threading.Event()

    def check() -> None:
        assert h.owner.lock._is_owned()  # type: ignore[attr-defined]
        fired.set()

    h.set.call_later(0.01, check)
    assert fired.wait(10)

    posted: list[Any] = []
    delivered = threading.Event()

    def post(call: Any) -> None:
        posted.append(call)
        delivered.set()

    hub = Hub(name="runtime-test-hub2")
    try:
        posting = WorkerSet(
            h.owner,
            backend=backend,
            hub=hub,
            info=lambda m: {},
            bootstrap=None,
            limits=Limits(boot_timeout=None),
            on_message=lambda w, m: None,
            on_closed=lambda w: None,
            hooks=Hooks(),
            source="pool",
            component=h.owner,
            post=post,
        )
        done = threading.Event()
        posting.call_later(0.01, done.set)
        assert delivered.wait(10)
        assert posted
        assert not done.is_set()
        posted[0]()
        assert done.is_set()
    finally:
        hub.close()
