"""
Streamed bodies (EXTENSIONS.md X1): the per-stream state machines (window, acks,
stall timer with an injected clock, cancel) that the module's stdin and channel
paths, C{pywatt dev} and the C{FakeOrchestrator} share. The chunk codec is in
L{pywatt_twisted.wire.stream}; the guide is C{docs/streaming.md}.

For routes: L{incremental_body} and L{body_stream} read a streamed request body while it
arrives, acknowledging it only as the route consumes it.
"""

from pywatt_twisted.streaming._machine import (
    DEFAULT_MAX_STREAMED_BODY,
    IBodySink,
    StreamFailed,
    StreamLink,
    StreamReceiver,
    StreamSender,
    StreamState,
    StreamTable,
)
from pywatt_twisted.streaming._reader import BodyStream, body_stream, incremental_body

__all__ = [
    "DEFAULT_MAX_STREAMED_BODY",
    "BodyStream",
    "IBodySink",
    "StreamFailed",
    "StreamLink",
    "StreamReceiver",
    "StreamSender",
    "StreamState",
    "StreamTable",
    "body_stream",
    "incremental_body",
]
