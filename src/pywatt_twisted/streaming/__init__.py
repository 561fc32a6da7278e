"""
Streamed bodies (EXTENSIONS.md X1): the per-stream state machines (window, acks,
stall timer with an injected clock, cancel) that the module's stdin and channel
paths, C{pywatt dev} and the C{FakeOrchestrator} share. The chunk codec is in
L{pywatt_twisted.wire.stream}; the guide is C{docs/streaming.md}.
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

__all__ = [
    "DEFAULT_MAX_STREAMED_BODY",
    "IBodySink",
    "StreamFailed",
    "StreamLink",
    "StreamReceiver",
    "StreamSender",
    "StreamState",
    "StreamTable",
]
