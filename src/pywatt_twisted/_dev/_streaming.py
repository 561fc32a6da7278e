# -*- test-case-name: tests.dev.test_dev_streaming -*-
"""
Streamed bodies (EXTENSIONS.md X1) between C{pywatt dev}'s front port and a module:
the orchestrator's side of the same state machines the module uses
(L{pywatt_twisted.streaming}).

  - L{DevStreams.upload}: a request body goes to the module as chunks. A large body
    the front port reads as it arrives (L{LiveRequestBody}) is forwarded while it
    arrives: the HTTP client's connection is paused while the module's window is full
    (flow control end to end, constant memory). A body in a file (already complete)
    is read from it only as the window lets the chunks go.
  - L{DevStreams.response_started}: a response the module streams is relayed to the HTTP
    client with chunked transfer encoding; its chunks are acknowledged only as the
    client's connection takes them (the relay is the push producer of the HTTP
    response, so a slow client pauses it and the module stops after its window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from pywatt_twisted._transport._read_size import ReadSize, SendLimit
from pywatt_twisted.streaming import (
    StreamFailed,
    StreamReceiver,
    StreamSender,
    StreamState,
    StreamTable,
)
from pywatt_twisted.wire.messages import HttpResponse, StreamAck, StreamCancel, StreamChunk
from pywatt_twisted.wire.stream import StreamOptions

_log = Logger()

__all__ = ["DevStreams", "LiveRequestBody", "ResponseRelay"]


@implementer(IPushProducer)
class ResponseRelay:
    """
    The sink of a streamed response: held (its receiver paused, so at most the window
    is buffered) until the front port attaches the HTTP request, then written to it.
    """

    #: The most bytes handed to the client's connection in one C{send} while the body
    #: is relayed (L{SendLimit}; Twisted's is 128 KiB, so each 256 KiB chunk went out
    #: in two or three sends, a reactor turn each: now one, when the kernel takes it).
    send_limit = 1024 * 1024

    def __init__(self) -> None:
        self.receiver: StreamReceiver | None = None
        self.request: Any = None
        self.done = False
        self.failed: StreamFailed | None = None
        self._held: list[bytes] = []
        self._send_limit = SendLimit()

    def attach(self, request: Any) -> None:
        """
        Write the body to C{request} (a twisted.web request whose status and headers
        are set) from now on; finish it when the body ends.
        """
        self.request = request
        self._send_limit.raise_to(getattr(request, "transport", None), self.send_limit)
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
        self._send_limit.restore()
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


class LiveRequestBody:
    """
    A request body the front port reads as it arrives (it is the request's C{content}
    from the moment the headers ended): held until the front decides what to do with
    it (L{wanted}), then either collected whole (a small body, sent plain) or handed to
    a L{StreamSender} piece by piece as it arrives (L{attach}).

    Flow control: while nobody takes the body yet and more than C{threshold} bytes
    are held, and while the sender's window is full, the HTTP client's connection
    (C{transport}) is paused; so at most about C{threshold} bytes plus the window are
    ever in memory, whatever the size of the body.

    @ivar length: the C{Content-Length}, or C{None} (chunked).
    @ivar received: body bytes that arrived so far.
    @ivar ended: the whole body arrived.
    @ivar on_first_data: called (once) before the first bytes of the body are taken.
    """

    #: The most bytes read from the client's connection at once while the body arrives
    #: (twisted's default is 64 KiB: four reads, four trips through the HTTP parser,
    #: for each 256 KiB chunk).
    read_size = 256 * 1024

    #: The most body bytes read and dropped after the response was complete (a 404 or
    #: a 413 answered while the body still arrived). Reading them lets the client see
    #: the response (closing at once could reset the connection before it reads it);
    #: past this bound the connection is closed, logged, instead of reading a body of
    #: any size to its end.
    drain_limit = 4 * 1024 * 1024

    def __init__(self, transport: Any, length: int | None, threshold: int) -> None:
        self.transport = transport
        self._read_size = ReadSize()
        self._read_size.raise_to(transport, self.read_size)
        self.length = length
        self.threshold = threshold
        self.received = 0
        self.ended = False
        self.closed = False
        self.sender: StreamSender | None = None
        self.on_first_data: Callable[[], object] | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._discarding = False
        self._drained = 0
        self._collect_all = False
        self._wanted: Deferred[bytes | None] | None = None
        self._paused = False

    # -- from the HTTP request ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Bytes of the body arrived.
        """
        if self.on_first_data is not None:
            first, self.on_first_data = self.on_first_data, None
            first()
        self.received += len(data)
        if self._discarding:
            self._drained += len(data)
            if self._drained > self.drain_limit and not self.closed:
                self.closed = True
                _log.warn(
                    "front port: closing the connection after dropping {drained} bytes of "
                    "a request body whose response was already sent (drain limit "
                    "{limit} bytes)",
                    drained=self._drained,
                    limit=self.drain_limit,
                )
                self._read_size.restore()
                self.transport.loseConnection()
            return
        if self.closed:
            return
        sender = self.sender
        if sender is not None:
            if sender.state is StreamState.OPEN:
                sender.write(data)
                if not sender.writable:
                    # (again even if paused already: the HTTP channel resumes its
                    # transport when its response's send buffer drains)
                    self._pause()
            return
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > self.threshold and not self._collect_all:
            if self._wanted is not None:
                self._decide(None)
            else:
                self._pause()

    def end(self) -> None:
        """
        The whole body arrived.
        """
        if self.ended:
            return
        self.ended = True
        self.on_first_data = None
        self._resume()
        self._read_size.restore()
        if self._discarding or self.closed:
            return
        if self.sender is not None:
            if self.sender.state is StreamState.OPEN:
                self.sender.finish()
        elif self._wanted is not None:
            self._decide(self._body())

    def close(self) -> None:
        """
        The request is over (its connection was lost, or it was cleaned up): a body
        still arriving is cancelled.
        """
        if self.closed:
            return
        self.closed = True
        if not self.ended:
            self._stop("the HTTP client went away")
            self._read_size.restore()

    def discard(self, reason: str) -> None:
        """
        The response is complete before the body: cancel its stream and read the rest
        of the body without keeping it.
        """
        if not self._discarding and not self.ended:
            self._discarding = True
            self._stop(reason)
            self._resume()

    def _stop(self, reason: str) -> None:
        self._held = []
        self._held_size = 0
        sender = self.sender
        if sender is not None and sender.state is StreamState.OPEN:
            sender.cancel(reason)
        wanted, self._wanted = self._wanted, None
        if wanted is not None:
            wanted.errback(StreamFailed("aborted", reason))

    # -- for the front port -------------------------------------------------------------

    def wanted(self, streams: bool) -> Deferred[bytes | None]:
        """
        The front wants the body: fires with all of it (bytes) once it ended, if it is
        at most C{threshold} bytes or C{streams} is false (the module cannot take
        chunks: then whatever its size, as before); else with C{None}: it is to be
        streamed, L{attach} a sender. Fails with L{StreamFailed} if the request ends
        first.
        """
        if self.closed or self._discarding:
            return fail(StreamFailed("aborted", "the request is over"))
        if self._wanted is not None:
            raise RuntimeError("the body is already wanted")
        d: Deferred[bytes | None] = Deferred()
        self._wanted = d
        if not streams:
            self._collect_all = True
        elif self.length is not None and self.length > self.threshold:
            self._decide(None)
            return d
        if self.ended:
            self._decide(self._body() if not streams or self._held_size <= self.threshold else None)
        elif streams and self._held_size > self.threshold:
            self._decide(None)
        else:
            self._resume()
        return d

    def attach(self, sender: StreamSender) -> None:
        """
        Send the body through C{sender}: what is held now, the rest as it arrives.
        """
        self.sender = sender
        held, self._held, self._held_size = self._held, [], 0
        for piece in held:
            sender.write(piece)
        sender.done.addErrback(self._failed)
        if self.ended:
            sender.finish()
        elif sender.writable:
            self._resume()
        else:
            self._pause()

    def writable(self, writable: bool) -> None:
        """
        The sender's C{on_writable}: the module's window opened or filled up.
        """
        if self.ended or self._discarding or self.closed:
            return
        if writable:
            self._resume()
        else:
            self._pause()

    def _failed(self, failure: Any) -> None:  # (consumes the failure)
        # The stream ended early (the module cancelled it, answering 413 say, or it
        # stalled): the rest of the body is read and dropped; the module's response
        # says how the request ended.
        if not self.ended and not self.closed:
            self._discarding = True
            self._resume()

    def _decide(self, body: bytes | None) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is not None:
            if body is not None:
                self._held, self._held_size = [], 0
            wanted.callback(body)

    def _body(self) -> bytes:
        return b"".join(self._held)

    def _pause(self) -> None:
        self._paused = True
        self.transport.pauseProducing()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- what twisted.web asks of a request's content -------------------------------

    def tell(self) -> int:
        # (twisted.web parses form bodies when this is not 0: this one is never read
        # that way; the front port forwards it as it is)
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""


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
        self,
        link: str,
        send: Callable[[Any], None],
        stream_id: str,
        body: IO[bytes] | LiveRequestBody,
    ) -> StreamSender:
        """
        Send C{body} as the chunks of C{stream_id}: a L{LiveRequestBody} as it
        arrives, a file read from where it is.
        """
        live: LiveRequestBody | None = None
        file: IO[bytes] | None = None
        if isinstance(body, LiveRequestBody):
            live = body
        else:
            file = body

        def feed(writable: bool = True) -> None:
            assert file is not None
            while writable and sender.writable and sender.state is StreamState.OPEN:
                # (one chunk per read: the sender sends it as it is, no re-cutting)
                piece = file.read(self.options.chunk_size)
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
            on_writable=feed if live is None else live.writable,
        )
        self.table(link, send).add_sender(sender)
        if live is not None:
            live.attach(sender)  # (its errback takes a failure: the response says how it ended)
        else:
            sender.done.addErrback(lambda f: None)  # (the module's response says how it ended)
            feed()
        return sender
