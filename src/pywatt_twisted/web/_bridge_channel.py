# -*- test-case-name: tests.web.test_bridge -*-
"""
The in-memory stand-in for L{twisted.web.http.HTTPChannel} behind one bridged request
(L{pywatt_twisted.web.bridge}), and the bridge's book-keeping for that request.

L{BridgeChannel} receives the status line, headers and body the request writes, pumps
pull producers, pauses push producers while a streamed response's window is full,
and reports to the bridge when the request is done or drops its connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers

from pywatt_twisted.streaming import StreamLink, StreamReceiver
from pywatt_twisted.web._body import ResponseStream
from pywatt_twisted.web._bridge_reply import response_headers
from pywatt_twisted.wire.messages import HttpResponse

__all__ = ["BridgeChannel", "Pending"]


class BridgeChannel:
    """
    The in-memory stand-in for L{twisted.web.http.HTTPChannel} behind one bridged
    request: the request writes its response here instead of to a socket.

    It is also the request's C{transport} (addresses, C{loseConnection}).
    """

    #: Not a direct HTTP connection: no gzip content-encoding (chunks carry X2).
    direct_http = False

    def __init__(self, bridge: Any, pending: Pending) -> None:
        self.site = bridge.site
        self.factory = bridge.site
        self.requestFactory = bridge.site.requestFactory
        self.transport = self
        self._bridge = bridge
        self._pending = pending
        #: where the request came from, for its trace span (stdio, tcp or unix)
        self.pywatt_transport = pending.transport
        self.request: Any = None
        self.code = 200
        self.headers: dict[str, str] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.stream: ResponseStream | None = None
        #: the producer the route registered, if any
        self.producer = _RouteProducer(self, bridge.reactor)

    # addresses

    def getPeer(self) -> Any:
        return self._bridge.peer

    def getHost(self) -> Any:
        return self._bridge.host

    def isSecure(self) -> bool:
        return False

    # what Request writes

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Headers) -> None:
        self.code = int(code)
        self.headers = response_headers(headers, request_id=self._pending.request_id)

    def write(self, data: bytes) -> None:
        if self.request is not None and self.request.chunked:
            # The only direct write of a chunked response is the terminating chunk.
            return
        self._append(data)

    def writeSequence(self, data: Any) -> None:
        if self.request is not None and self.request.chunked and len(data) == 4:
            # (hex length, CRLF, payload, CRLF) from http.toChunk: keep the payload.
            self._append(data[2])
        else:
            self._append(b"".join(data))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.stream is not None:
            self.stream.write(data)
        else:
            self.chunks.append(data)
            link = self._pending.stream_link
            if (
                link is not None
                and link.options is not None
                and self.size > link.options.chunk_size
                and self.headers is not None
                and not self._pending.answered
            ):
                self._start_stream(link)
        self.producer.wrote()

    @property
    def may_write(self) -> bool:
        """
        Whether the route may write more now (a streamed response's window has room).
        """
        return self.stream is None or self.stream.writable

    @property
    def answered(self) -> bool:
        return self._pending.answered

    def _start_stream(self, link: StreamLink) -> None:
        """
        The body outgrew one chunk: send the head and stream the body from here on.
        """
        assert self.headers is not None
        self.stream = ResponseStream(
            link, self._pending.request_id, self.code, self.headers, self.producer.writable
        )
        buffered, self.chunks = self.chunks, []
        for piece in buffered:
            self.stream.write(piece)
        self._bridge.streams.response_streaming(self._pending, self.stream)
        if not self.stream.writable:
            self.producer.writable(False)

    def requestDone(self, request: Any) -> None:
        self._bridge._done(self._pending)

    # producers

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer.register(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer.unregister()

    # connection control by the application

    def loseConnection(self) -> None:
        self._bridge._aborted(self._pending, "the route closed the connection")

    def abortConnection(self) -> None:
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._bridge._bad_body(self._pending)

    def stopProducing(self) -> None:
        self.producer.stop()

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class _RouteProducer:
    """
    The producer a route registered on its L{BridgeChannel}: a push producer is
    paused while a streamed response's window is full and resumed when it has room; a
    pull producer is pumped like a transport with an always-empty buffer would.
    """

    def __init__(self, channel: BridgeChannel, reactor: Any) -> None:
        self._channel = channel
        self._reactor = reactor
        self._producer: Any = None
        self._pull = False
        self._pumping = False

    def register(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        self._pull = not streaming
        if self._pull:
            self._pump(producer)
        elif not self._channel.may_write:
            producer.pauseProducing()

    def unregister(self) -> None:
        self._producer = None

    def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.stopProducing()

    def wrote(self) -> None:
        """
        The route wrote: a pull producer that paused itself and wrote again is asked
        for more soon.
        """
        if self._producer is not None and self._pull and not self._pumping:
            if self._channel.may_write:
                self._reactor.callLater(0, self._pump, self._producer)

    def writable(self, writable: bool) -> None:
        """
        The streamed response's window filled up (C{False}) or has room (C{True}).
        """
        producer = self._producer
        if producer is None:
            return
        if self._pull:
            if writable:
                self._reactor.callLater(0, self._pump, producer)
        elif writable:
            producer.resumeProducing()
        else:
            producer.pauseProducing()

    def _pump(self, producer: Any) -> None:
        """
        Feed a pull producer: ask for more as long as it keeps writing. One that
        writes nothing is asked again when it next writes.
        """
        if self._pumping:
            return
        self._pumping = True
        channel = self._channel
        try:
            while self._producer is producer and not channel.answered and channel.may_write:
                before = channel.size
                producer.resumeProducing()
                if channel.size == before:
                    break
        finally:
            self._pumping = False


class Pending:
    """
    Book-keeping for one bridged request.
    """

    __slots__ = (
        "answered",
        "channel",
        "deadline",
        "receiver",
        "request",
        "request_id",
        "result",
        "stream_link",
        "timer",
        "transport",
    )

    def __init__(
        self,
        request_id: str,
        transport: str,
        result: Deferred[HttpResponse | None],
        stream_link: StreamLink | None = None,
    ) -> None:
        self.request_id = request_id
        self.transport = transport
        self.result = result
        self.stream_link = stream_link
        self.answered = False
        self.channel: BridgeChannel | None = None
        self.request: Any = None
        #: its route timer: a C{DelayedCall}, C{QUEUED} (its C{deadline} waits in the
        #: bridge's queue), or C{None}
        self.timer: Any = None
        self.deadline = 0.0
        self.receiver: StreamReceiver | None = None
