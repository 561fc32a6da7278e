# -*- test-case-name: tests.dev.test_dev_streaming -*-
"""
Streamed bodies (EXTENSIONS.md X1) between C{pywatt dev}'s front port and a module:
the orchestrator's side of the same state machines the module uses
(L{pywatt_twisted.streaming}).

  - L{DevStreams.upload}: a request body (already spooled to a temporary file by
    twisted.web) goes to the module as chunks, read from the file only as the window
    lets them go.
  - L{DevStreams.response_started}: a response the module streams is relayed to the HTTP
    client with chunked transfer encoding; its chunks are acknowledged only as the
    client's connection takes them (the relay is the push producer of the HTTP
    response, so a slow client pauses it and the module stops after its window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from pywatt_twisted.streaming import (
    StreamFailed,
    StreamReceiver,
    StreamSender,
    StreamState,
    StreamTable,
)
from pywatt_twisted.wire.messages import HttpResponse, StreamAck, StreamCancel, StreamChunk
from pywatt_twisted.wire.stream import StreamOptions

__all__ = ["DevStreams", "ResponseRelay"]


@implementer(IPushProducer)
class ResponseRelay:
    """
    The sink of a streamed response: held (its receiver paused, so at most the window
    is buffered) until the front port attaches the HTTP request, then written to it.
    """

    def __init__(self) -> None:
        self.receiver: StreamReceiver | None = None
        self.request: Any = None
        self.done = False
        self.failed: StreamFailed | None = None
        self._held: list[bytes] = []

    def attach(self, request: Any) -> None:
        """
        Write the body to C{request} (a twisted.web request whose status and headers
        are set) from now on; finish it when the body ends.
        """
        self.request = request
        request.registerProducer(self, True)
        for piece in self._held:
            request.write(piece)
        self._held = []
        if self.done or self.failed is not None:
            self._end()
            return
        if self.receiver is not None:
            self.receiver.resumeProducing()

    # sink

    def body_data(self, data: bytes) -> None:
        if self.request is None:
            self._held.append(data)
        else:
            self.request.write(data)

    def body_done(self) -> None:
        self.done = True
        if self.request is not None:
            self._end()

    def body_failed(self, error: StreamFailed) -> None:
        self.failed = error
        if self.request is not None:
            self._end()

    def _end(self) -> None:
        request, self.request = self.request, None
        if request is None or request.finished or getattr(request, "_disconnected", False):
            return
        request.unregisterProducer()
        if self.failed is not None:
            # The head already went out: the client learns it from a cut connection.
            request.loseConnection()
        else:
            request.finish()

    # producer (for the HTTP client's connection)

    def pauseProducing(self) -> None:
        if self.receiver is not None:
            self.receiver.pauseProducing()

    def resumeProducing(self) -> None:
        if self.receiver is not None:
            self.receiver.resumeProducing()

    def stopProducing(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel("the HTTP client went away")


class DevStreams:
    """
    The streams between C{pywatt dev} and one module, one L{StreamTable} per link
    (C{"stdio"}, C{"tcp"}, C{"ipc"}).
    """

    def __init__(self, reactor: Any, options: StreamOptions, stall_timeout: float = 60.0):
        self.reactor = reactor
        self.options = options
        self.stall_timeout = stall_timeout
        self.tables: dict[str, StreamTable] = {}
        self.relays: dict[str, ResponseRelay] = {}

    def table(self, link: str, send: Callable[[Any], None]) -> StreamTable:
        table = self.tables.get(link)
        if table is None:
            table = self.tables[link] = StreamTable(send)
        return table

    def received(self, message: Any, link: str, reply: Callable[[Any], None]) -> bool:
        """
        Handle a stream message from the module; whether C{message} was one.
        """
        if isinstance(message, StreamChunk | StreamAck | StreamCancel):
            self.table(link, reply).received(message)
            return True
        return False

    def response_started(
        self, message: HttpResponse, link: str, reply: Callable[[Any], None]
    ) -> ResponseRelay:
        """
        The module began a streamed response: its chunks are held (at most the window)
        until the front port attaches the client's request.
        """
        assert message.stream_id is not None
        relay = ResponseRelay()
        receiver = StreamReceiver(
            message.stream_id,
            reply,
            relay,
            self.reactor,
            max_size=2**62,
            stall_timeout=self.stall_timeout,
        )
        relay.receiver = receiver
        receiver.pauseProducing()
        self.table(link, reply).add_receiver(receiver)
        self.relays[message.request_id] = relay
        return relay

    def take_relay(self, request_id: str) -> ResponseRelay | None:
        return self.relays.pop(request_id, None)

    def upload(
        self, link: str, send: Callable[[Any], None], stream_id: str, body: IO[bytes]
    ) -> StreamSender:
        """
        Send C{body} (a file, read from where it is) as the chunks of C{stream_id}.
        """

        def feed(writable: bool = True) -> None:
            while writable and sender.writable and sender.state is StreamState.OPEN:
                # (one chunk per read: the sender sends it as it is, no re-cutting)
                piece = body.read(self.options.chunk_size)
                if not piece:
                    sender.finish()
                    return
                sender.write(piece)

        sender = StreamSender(
            stream_id,
            send,
            self.options,
            self.reactor,
            stall_timeout=self.stall_timeout,
            on_writable=feed,
        )
        self.table(link, send).add_sender(sender)
        sender.done.addErrback(lambda f: None)  # (the module's response says how it ended)
        feed()
        return sender
