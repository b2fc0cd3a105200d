"""SignalAwareEvent: the main thread's wait wakes for set() and for a signal that another thread took."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from runtime._signals import SignalAwareEvent

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def wakeup_fd_restored():
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    yield
    assert signal.set_wakeup_fd(before) == before  # the wait put back what it found


def test_set_from_another_thread_wakes_the_main_thread(wakeup_fd_restored):
    event = SignalAwareEvent()
    timer = threading.Timer(0.05, event.set)
    timer.start()
    assert event.wait(20) is True
    assert event.is_set()
    timer.join()


def test_a_timed_wait_that_nobody_ends_returns_false(wakeup_fd_restored):
    event = SignalAwareEvent()
    assert event.wait(0.05) is False
    assert not event.is_set()
    event.set()
    assert event.wait(0) is True


def test_a_handler_for_a_signal_taken_elsewhere_runs_during_the_wait(wakeup_fd_restored):
    event = SignalAwareEvent()
    handled: list[str] = []

    def handler(signum, frame):
        handled.append(threading.current_thread().name)
        event.set()

    def take_the_signal() -> None:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # this thread, not the main one

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        taker = threading.Thread(target=take_the_signal, name="taker")
        taker.start()
        # A plain Event.wait would sleep the whole 20 s here and return False: the handler
        # runs in the main thread only once it executes bytecode again.
        assert event.wait(20) is True
        taker.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert handled == [threading.main_thread().name]


def test_signals_during_the_wait_reach_the_previous_wakeup_fd():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    event = SignalAwareEvent()
    previous_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: event.set())
    previous_fd = signal.set_wakeup_fd(w)
    try:
        threading.Thread(
            target=lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        ).start()
        assert event.wait(20) is True
        assert signal.set_wakeup_fd(w) == w  # ours again after the wait
        assert os.read(r, 64) == bytes([signal.SIGUSR1])  # an event loop there still learns of it
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGUSR1, previous_handler)
        os.close(r)
        os.close(w)


def test_off_the_main_thread_it_is_a_plain_event():
    event = SignalAwareEvent()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(event.wait(20)))
    waiter.start()
    event.set()
    waiter.join(20)
    assert results == [True]
    fds_before = len(os.listdir("/proc/self/fd"))
    assert SignalAwareEvent().wait(0) is False
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the wait's pipe is closed again
