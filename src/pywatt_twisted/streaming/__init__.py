"""
Streamed bodies (EXTENSIONS.md X1): the per-stream state machines (window, acks,
stall timer with an injected clock, cancel) that the module's stdin and channel
paths, C{pywatt dev} and the C{FakeOrchestrator} share. The chunk codec is in
L{pywatt_twisted.wire.stream}; the guide is C{docs/streaming.md}.
"""

from pywatt_twisted.streaming._machine import (
    IBodySink,
    StreamFailed,
    StreamReceiver,
    StreamSender,
    StreamState,
    StreamTable,
)

__all__ = [
    "IBodySink",
    "StreamFailed",
    "StreamReceiver",
    "StreamSender",
    "StreamState",
    "StreamTable",
]
