"""runtime.Channel: semantics in one interpreter, and across every backend."""

from __future__ import annotations

import threading

import pytest

import runtime
from tests.helpers import chan

pytestmark = pytest.mark.timeout(60)


def test_fifo_order_and_nowait():
    ch = runtime.Channel()
    for i in range(100):
        ch.send(i)
    assert [ch.recv() for _ in range(100)] == list(range(100))
    with pytest.raises(runtime.ChannelEmpty):
        ch.recv_nowait()
    ch.send_nowait({"a": [1, 2]})
    assert ch.recv_nowait() == {"a": [1, 2]}


def test_bounded_capacity_gives_back_pressure():
    ch = runtime.Channel(capacity=2)
    ch.send(1)
    ch.send_nowait(2)
    with pytest.raises(runtime.ChannelFull):
        ch.send_nowait(3)
    with pytest.raises(runtime.ChannelTimeout) as info:
        ch.send(3, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert ch.recv() == 1
    ch.send_nowait(3)
    assert [ch.recv(), ch.recv()] == [2, 3]


def test_blocked_sender_wakes_when_a_receiver_makes_room():
    ch = runtime.Channel(capacity=1)
    ch.send("first")
    sent = threading.Event()

    def sender() -> None:
        ch.send("second", timeout=10)
        sent.set()

    t = threading.Thread(target=sender)
    t.start()
    assert not sent.wait(0.05)
    assert ch.recv() == "first"
    assert sent.wait(10)
    assert ch.recv() == "second"
    t.join()


def test_recv_timeout():
    ch = runtime.Channel()
    with pytest.raises(runtime.ChannelTimeout):
        ch.recv(timeout=0.05)


def test_close_drains_then_raises():
    ch = runtime.Channel()
    ch.send(1)
    ch.send(2)
    ch.close()
    assert ch.closed
    with pytest.raises(runtime.ChannelClosed):
        ch.send(3)
    assert list(ch) == [1, 2]
    with pytest.raises(runtime.ChannelClosed):
        ch.recv()
    with pytest.raises(runtime.ChannelClosed):
        ch.recv_nowait()


def test_close_wakes_a_blocked_receiver_and_sender():
    ch = runtime.Channel(capacity=1)
    ch.send(0)
    errors: list[BaseException] = []

    def blocked_send() -> None:
        try:
            ch.send(1, timeout=10)
        except runtime.ChannelClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=blocked_send)
    t.start()
    ch.close()
    t.join(10)
    assert len(errors) == 1
    assert ch.recv() == 0
    with pytest.raises(runtime.ChannelClosed):
        ch.recv(timeout=10)


def test_many_senders_and_receivers_lose_and_duplicate_nothing():
    ch = runtime.Channel(capacity=8)
    received: list[int] = []
    lock = threading.Lock()

    def recv_loop() -> None:
        for item in ch:
            with lock:
                received.append(item)

    receivers = [threading.Thread(target=recv_loop) for _ in range(3)]
    senders = [threading.Thread(target=chan.produce, args=(ch, k * 1000, 500)) for k in range(4)]
    for t in receivers + senders:
        t.start()
    for t in senders:
        t.join()
    ch.close()
    for t in receivers:
        t.join(20)
    assert sorted(received) == sorted(i for k in range(4) for i in range(k * 1000, k * 1000 + 500))


def test_objects_that_cannot_travel():
    ch = runtime.Channel()
    with pytest.raises(runtime.NotTransferable, match=r"_thread\.lock") as info:
        ch.send(threading.Lock())
    assert isinstance(info.value, TypeError)


def test_bad_capacity():
    with pytest.raises(runtime.ConfigurationError):
        runtime.Channel(capacity=0)


def test_large_messages():
    ch = runtime.Channel()
    blob = bytes(range(256)) * 8192  # 2 MiB: bigger than the pipe buffer
    t = threading.Thread(target=ch.send, args=(blob,))
    t.start()
    assert ch.recv(timeout=20) == blob
    t.join()


def test_channel_between_main_and_executor_workers(backend):
    inbox, outbox = runtime.Channel(), runtime.Channel()
    with runtime.Executor(2, backend=backend) as ex:
        forwarded = ex.submit(chan.echo, inbox, outbox)
        for i in range(200):
            inbox.send(i)
        got = [outbox.recv(timeout=20) for _ in range(200)]
        inbox.close()
        assert forwarded.result(timeout=20) == 200
    assert got == list(range(200))


def test_workers_talk_to_each_other(backend):
    ch = runtime.Channel(capacity=4)
    with runtime.Executor(2, backend=backend) as ex:
        consumer = ex.submit(chan.consume, ch, 300)
        producer = ex.submit(chan.produce, ch, 0, 300)
        assert producer.result(timeout=30) == 300
        assert consumer.result(timeout=30) == list(range(300))


def test_channel_as_a_task_argument(backend):
    inbox, outbox = runtime.Channel(), runtime.Channel()
    pool = runtime.Pool(chan.Pipeline(inbox, outbox), workers=2, backend=backend).start()
    try:
        for i in range(50):
            inbox.send(i)
        results = [outbox.recv(timeout=20) for _ in range(50)]
    finally:
        inbox.close()
        report = pool.stop(timeout=20)
    assert sorted(value for _, value in results) == [i * 2 for i in range(50)]
    assert report.completed == 2


def test_a_receiver_killed_while_waiting_does_not_wedge_the_channel():
    # A process worker blocked in recv() is SIGKILLed: the receive lock must not go with it.
    import os
    import signal

    announce, ch = runtime.Channel(), runtime.Channel()
    with runtime.Executor(1, backend="process") as ex:
        future = ex.submit(chan.announce_then_recv, announce, ch)
        pid = announce.recv(timeout=30)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(runtime.WorkerCrashed):
            future.result(timeout=30)
        ch.send("after the kill")
        assert ch.recv(timeout=10) == "after the kill"
