"""
Test doubles for the channel tests: a recording channel listener, a fake client
endpoint driven by hand, and helpers to build and read frames.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted._transport.channel import ChannelProtocol, IChannelListener
from pywatt_twisted.wire.framing import FORMAT_JSON, FrameDecoder, encode_frame


def frame(obj: Any, fmt: int = FORMAT_JSON) -> bytes:
    """
    A frame carrying C{obj} as compact JSON (or raw bytes as they are).
    """
    payload = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return encode_frame(payload, fmt, 1 << 40)


def frames_of(data: bytes) -> list[dict[str, Any]]:
    """
    Parse every complete frame in C{data} as JSON.
    """
    decoder = FrameDecoder(1 << 40)
    out = []
    for item in decoder.feed(data):
        out.append(json.loads(item.payload))  # type: ignore[union-attr]
    assert decoder.buffered == 0, "a partial frame was written"
    return out


def ops_of(data: bytes) -> list[str]:
    return [f["content"]["op"] for f in frames_of(data)]


@implementer(IChannelListener)
class RecordingListener:
    """
    Records every listener call.
    """

    def __init__(self) -> None:
        self.ready: list[ChannelProtocol] = []
        self.writable: list[bool] = []
        self.messages: list[object] = []
        self.problems: list[Exception] = []
        self.lost: list[Failure] = []
        self.undeliverable: list[object] = []

    def channel_ready(self, protocol: ChannelProtocol) -> None:
        self.ready.append(protocol)

    def channel_writable(self, protocol: ChannelProtocol, writable: bool) -> None:
        self.writable.append(writable)

    def channel_message(self, protocol: ChannelProtocol, message: object) -> None:
        self.messages.append(message)

    def channel_problem(self, protocol: ChannelProtocol, error: Exception) -> None:
        self.problems.append(error)

    def channel_lost(self, protocol: ChannelProtocol, reason: Failure) -> None:
        self.lost.append(reason)

    def channel_undeliverable(self, protocol: ChannelProtocol, message: object) -> None:
        self.undeliverable.append(message)


class FakeConnection:
    """
    One connection made through a L{FakeEndpoint}.
    """

    def __init__(self, protocol: Any, transport: StringTransportWithDisconnection) -> None:
        self.protocol = protocol  # what the factory built (maybe a ClientService proxy)
        self.transport = transport
        self._read = 0

    @property
    def channel(self) -> ChannelProtocol:
        inner = getattr(self.protocol, "_protocol", self.protocol)
        assert isinstance(inner, ChannelProtocol)
        return inner

    def written(self) -> list[dict[str, Any]]:
        return frames_of(self.transport.value())

    def new(self) -> list[dict[str, Any]]:
        """
        Frames written since the last call.
        """
        frames = self.written()
        fresh = frames[self._read :]
        self._read = len(frames)
        return fresh

    def receive(self, *objs: Any) -> None:
        for obj in objs:
            self.protocol.dataReceived(frame(obj))

    def drop(self, reason: Exception | None = None) -> None:
        self.transport.connected = False
        self.protocol.connectionLost(Failure(reason or ConnectionDone("orchestrator closed")))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint whose attempts the test completes or fails by hand.
    """

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.pending: list[tuple[Any, Deferred[Any]]] = []
        self.attempts = 0
        self.cancelled = 0
        self.connections: list[FakeConnection] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        entry: list[Any] = []

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1
            if entry and entry[0] in self.pending:
                self.pending.remove(entry[0])

        d: Deferred[Any] = Deferred(cancel)
        entry.append((factory, d))
        self.pending.append(entry[0])
        return d

    def succeed(self) -> FakeConnection:
        factory, d = self.pending.pop(0)
        protocol = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        connection = FakeConnection(protocol, transport)
        self.connections.append(connection)
        d.callback(protocol)
        return connection

    def fail(self, error: Exception | None = None) -> None:
        _factory, d = self.pending.pop(0)
        d.errback(error or ConnectionRefusedError("connection refused"))


class BufferedTransport(StringTransportWithDisconnection):
    """
    A transport whose peer reads only when the test says so, with the write-buffer
    flow control of Twisted's real transports (C{FileDescriptor}): it pauses its
    streaming producer when more than C{bufferSize} bytes wait, and resumes it once
    the peer read them all. What waits is measurable: C{len(transport.value())}.
    Its own C{producerState} says whether the protocol paused I{reading} it.
    """

    def __init__(self, bufferSize: int) -> None:
        super().__init__()
        self.bufferSize = bufferSize
        self.producerPaused = False
        self.delivered = b""

    def write(self, data: bytes) -> None:
        super().write(data)
        if (
            self.producer is not None
            and self.streaming
            and not self.producerPaused
            and len(self.value()) > self.bufferSize
        ):
            self.producerPaused = True
            self.producer.pauseProducing()

    def writeSequence(self, data: list[bytes]) -> None:
        # As a real transport: the buffer check follows the whole sequence.
        self.write(b"".join(data))

    def drain(self) -> bytes:
        """
        The peer reads everything buffered; the producer is resumed as a real
        transport would once its buffer is empty.
        """
        data = self.value()
        self.delivered += data
        self.clear()
        if self.producerPaused and self.producer is not None:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data
