"""The consumer's failure headers name the real exception type when it had to be decoded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runtime.amqp import ERROR_MESSAGE_HEADER, ERROR_TRACEBACK_HEADER, ERROR_TYPE_HEADER, Consumer

from .conftest import URL, Broker, records, remember, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.mark.timeout(40)
def test_an_exception_decoded_from_the_worker_keeps_its_type_in_the_headers(
    backend: str, queue: str, out: Path, broker: Broker, publish: Callable[..., int]
) -> None:
    # Halt is a BaseException: the handler wrapper (which records Exceptions inside the
    # worker) lets it through, so it crosses the executor and is rebuilt in the caller.
    consumer = Consumer(
        "tests.amqp.handlers:halt", queue, url=URL, workers=1, backend=backend, max_attempts=1
    )
    remember(consumer.topology)
    with consumer:
        publish(queue, ["a"], out=str(out))
        wait_for(lambda: broker.count(f"{queue}.dead")[0] == 1, what="the dead letter")
        wait_for(lambda: consumer.statistics().inflight == 0, what="acks")
    assert [row[0] for row in records(out)] == ["a"]
    ((props, body),) = broker.get_all(f"{queue}.dead")
    assert body == b"a"
    assert props.headers[ERROR_TYPE_HEADER] == "tests.amqp.handlers.Halt"
    assert props.headers[ERROR_MESSAGE_HEADER] == "503: halted on a"
    assert "in halt" in props.headers[ERROR_TRACEBACK_HEADER]
