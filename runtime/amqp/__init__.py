"""RabbitMQ on the pool: an at-least-once :class:`Consumer`, a confirming :class:`Publisher`.

Broker I/O runs on one thread of the main interpreter (pika ``BlockingConnection``);
handlers run on the workers of a :class:`runtime.Executor`. pika is imported only
when a :class:`Consumer` or :class:`Publisher` is used, so workers that unpickle a
:class:`Message` never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._errors import AmqpError as AmqpError
from ._errors import BrokerUnreachable as BrokerUnreachable
from ._errors import ConnectionLost as ConnectionLost
from ._errors import InvalidURL as InvalidURL
from ._errors import MessageDecodeError as MessageDecodeError
from ._errors import PublishFailed as PublishFailed
from ._errors import TopologyMismatch as TopologyMismatch
from ._message import ATTEMPT_HEADER as ATTEMPT_HEADER
from ._message import ERROR_MESSAGE_HEADER as ERROR_MESSAGE_HEADER
from ._message import ERROR_TRACEBACK_HEADER as ERROR_TRACEBACK_HEADER
from ._message import ERROR_TYPE_HEADER as ERROR_TYPE_HEADER
from ._message import HandlerFailure as HandlerFailure
from ._message import Message as Message
from ._topology import Topology as Topology

if TYPE_CHECKING:
    from ._connection import DEFAULT_URL as DEFAULT_URL
    from ._consumer import Consumer as Consumer
    from ._consumer import ConsumerStatistics as ConsumerStatistics
    from ._failure_queue import FailureQueue as FailureQueue
    from ._publisher import Publisher as Publisher

__all__ = [
    "ATTEMPT_HEADER",
    "DEFAULT_URL",
    "ERROR_MESSAGE_HEADER",
    "ERROR_TRACEBACK_HEADER",
    "ERROR_TYPE_HEADER",
    "AmqpError",
    "BrokerUnreachable",
    "ConnectionLost",
    "Consumer",
    "ConsumerStatistics",
    "FailureQueue",
    "HandlerFailure",
    "InvalidURL",
    "Message",
    "MessageDecodeError",
    "PublishFailed",
    "Publisher",
    "Topology",
    "TopologyMismatch",
]

_LAZY = {
    "Consumer": "._consumer",
    "ConsumerStatistics": "._consumer",
    "DEFAULT_URL": "._connection",
    "FailureQueue": "._failure_queue",
    "Publisher": "._publisher",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)

for _obj in (
    AmqpError,
    BrokerUnreachable,
    ConnectionLost,
    InvalidURL,
    MessageDecodeError,
    PublishFailed,
    TopologyMismatch,
    HandlerFailure,
    Message,
    Topology,
):
    _obj.__module__ = __name__
del _obj
