# -*- test-case-name: tests.runtime.test_streaming_incremental -*-
"""
Reading a request body incrementally from a route (C{docs/streaming.md}).

A route marked with L{incremental_body} runs as soon as the head of a streamed
request arrives (EXTENSIONS.md X1), before its body; L{body_stream} gives it the body
as it comes, and each chunk is acknowledged to the orchestrator only when the route
takes it, so a slow route slows the orchestrator and the module holds at most the
window of chunks. Two ways to read, as a Klein user would expect:

    - C{async for piece in body_stream(request): ...} (an C{async def} route);
    - C{body_stream(request).deliverBody(protocol)}, as treq and twisted.web's client
      deliver a response body: C{dataReceived} per piece, C{connectionLost} with
      L{ResponseDone} at the end or with L{StreamFailed} if the stream failed;
      C{protocol.transport} is a push producer (C{pauseProducing} stops the acks).

For any other request (a body that came whole, direct HTTP, a route not marked)
L{body_stream} reads C{request.content} in pieces, so the same route works everywhere.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import IO, Any, Final, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

# The class twisted.web.client re-exports, from where it is defined: importing the
# client (its Agent, pools, redirects) cost every module's start-up ~10 M instructions.
from twisted.web._newclient import ResponseDone
from zope.interface import implementer

from pywatt_twisted._views import find_mark
from pywatt_twisted.streaming._machine import StreamFailed, StreamReceiver

__all__ = [
    "READ_SIZE",
    "BodyStream",
    "body_stream",
    "incremental_body",
    "is_incremental",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute L{incremental_body} sets on a view function.
INCREMENTAL_ATTRIBUTE: Final = "__pywatt_incremental_body__"

#: The request attribute through which the bridge hands a route its live body.
BODY_ATTRIBUTE: Final = "_pywatt_body_stream"

#: Bytes per piece when the body is read from C{request.content}.
READ_SIZE: Final = 65536


def incremental_body(view: F) -> F:
    """
    Mark a route as one that reads its request body with L{body_stream}: for a
    streamed request it then runs as soon as the request's head arrives, and its body
    is acknowledged only as it reads. Put it below C{@app.route}::

        @app.route("/upload", methods=["POST"])
        @incremental_body
        async def upload(request):
            async for piece in body_stream(request):
                ...

    For such a request C{request.content} is empty and there is no
    C{Content-Length}: the body is only in L{body_stream}.
    """
    setattr(view, INCREMENTAL_ATTRIBUTE, True)
    return view


def is_incremental(view: Any) -> bool:
    """
    Whether L{incremental_body} marked C{view}, looked up through Klein's wrappers
    (C{__original__}) and C{functools.wraps} chains (C{__wrapped__}).
    """
    return find_mark(view, INCREMENTAL_ATTRIBUTE, lambda mark: mark is True) is not None


def body_stream(request: Any) -> BodyStream:
    """
    The body of C{request}, to read piece by piece (see the module docstring). Calling
    it again for the same request returns the same L{BodyStream}.
    """
    existing = getattr(request, BODY_ATTRIBUTE, None)
    if isinstance(existing, BodyStream):
        return existing
    content = getattr(request, "content", None)
    stream = BodyStream()
    stream._from_file(content)
    setattr(request, BODY_ATTRIBUTE, stream)
    return stream


@implementer(IPushProducer)
class _Transport:
    """
    What a L{BodyStream.deliverBody} protocol sees as its transport: a push producer
    that pauses, resumes or stops the body.
    """

    def __init__(self, body: BodyStream) -> None:
        self._body = body

    def pauseProducing(self) -> None:
        self._body._pause()

    def resumeProducing(self) -> None:
        self._body._resume()

    def stopProducing(self) -> None:
        self._body.cancel("the route stopped reading the body")

    def loseConnection(self) -> None:
        self.stopProducing()


def _piece_or_end(piece: bytes | None) -> bytes:
    """
    A piece of the body, with the end (C{None}) read as C{b""}.
    """
    return b"" if piece is None else piece


class BodyStream:
    """
    A request body read piece by piece: an async iterator of C{bytes} pieces, or
    L{deliverBody}. At most one piece is held here besides what the stream's
    receiver holds unacknowledged (at most the window).

    @ivar received: body bytes handed to the route so far.
    """

    def __init__(self) -> None:
        self.received = 0
        self._receiver: StreamReceiver | None = None
        self._file: IO[bytes] | None = None
        self._pieces: deque[bytes] = deque()
        self._waiter: Deferred[bytes | None] | None = None
        self._done = False
        self._error: Exception | None = None
        self._protocol: Any = None
        self._paused = False
        self._pumping = False

    # -- how the body arrives ----------------------------------------------------------

    def attach(self, receiver: StreamReceiver) -> None:
        """
        Read from C{receiver} (whose sink this is); it is paused until the route reads.
        """
        self._receiver = receiver
        receiver.pauseProducing()

    def _from_file(self, content: IO[bytes] | None) -> None:
        if content is None:
            self._done = True
            return
        try:
            content.seek(0)
        except (AttributeError, OSError, ValueError):
            pass
        self._file = content

    # IBodySink (called by the receiver)

    def body_data(self, data: bytes) -> None:
        self.received += len(data)
        if self._protocol is not None:
            self._protocol.dataReceived(data)
            return
        self._pieces.append(data)
        # one piece per read: the next chunk stays unacknowledged until then
        assert self._receiver is not None
        self._receiver.pauseProducing()
        self._wake()

    def body_done(self) -> None:
        self._done = True
        if self._protocol is not None:
            self._end_protocol()
        else:
            self._wake()

    def body_failed(self, error: StreamFailed) -> None:
        self._error = error
        self._pieces.clear()
        if self._protocol is not None:
            self._end_protocol()
        else:
            self._wake()

    # -- reading -----------------------------------------------------------------------

    def read(self) -> Deferred[bytes]:
        """
        The next piece of the body, or C{b""} at its end.

        @raise StreamFailed: (through the Deferred) the body's stream failed: the
            orchestrator cancelled it, a chunk had a bad checksum or came out of
            order, no chunk came within the stall timeout, or it is above the limit;
            C{kind} says which.
        """
        return self._next().addCallback(_piece_or_end)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._next()
        if piece is None:
            raise StopAsyncIteration
        return piece

    def deliverBody(self, protocol: Any) -> None:
        """
        Hand the rest of the body to C{protocol} (an C{IProtocol}): C{dataReceived}
        per piece, then C{connectionLost(Failure(ResponseDone()))}, or
        C{connectionLost(Failure(StreamFailed(...)))} if the stream failed.
        C{protocol.transport} pauses and resumes the body.
        """
        if self._protocol is not None or self._waiter is not None:
            raise RuntimeError("the body is already being read")
        self._protocol = protocol
        protocol.makeConnection(_Transport(self))
        while self._pieces and not self._paused:
            protocol.dataReceived(self._pieces.popleft())
        if self._pieces:
            return
        if self._done or self._error is not None:
            self._end_protocol()
        else:
            self._resume()

    def cancel(self, reason: str) -> None:
        """
        Stop reading: the rest of the body is refused (the orchestrator is told with
        a C{stream_cancel}); later reads fail with L{StreamFailed}.
        """
        if self._receiver is not None:
            self._receiver.cancel(reason)
        elif not self._done and self._error is None:
            self.body_failed(StreamFailed("aborted", reason))

    # -- inside --------------------------------------------------------------------------

    def _next(self) -> Deferred[bytes | None]:
        if self._protocol is not None or self._waiter is not None:
            return fail(RuntimeError("a read of this body is already waiting"))
        if self._pieces:
            return succeed(self._pieces.popleft())
        if self._error is not None:
            return fail(self._error)
        if self._file is not None:
            return succeed(self._read_file())
        if self._done:
            return succeed(None)
        self._waiter = Deferred()
        waiter = self._waiter
        if self._receiver is not None:
            self._receiver.resumeProducing()
        return waiter

    def _read_file(self) -> bytes | None:
        assert self._file is not None
        piece = self._file.read(READ_SIZE)
        if not piece:
            self._file = None
            self._done = True
            return None
        self.received += len(piece)
        return piece

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        if self._pieces:
            self._waiter = None
            waiter.callback(self._pieces.popleft())
        elif self._error is not None:
            self._waiter = None
            waiter.errback(Failure(self._error))
        elif self._done:
            self._waiter = None
            waiter.callback(None)

    def _pause(self) -> None:
        self._paused = True
        if self._receiver is not None:
            self._receiver.pauseProducing()

    def _resume(self) -> None:
        self._paused = False
        protocol = self._protocol
        if protocol is None or protocol is _Ended or self._pumping:
            return
        self._pumping = True
        try:
            while self._pieces and not self._paused:
                protocol.dataReceived(self._pieces.popleft())
            while self._file is not None and not self._paused:
                piece = self._read_file()
                if piece is not None:
                    protocol.dataReceived(piece)
        finally:
            self._pumping = False
        if self._paused:
            return
        if self._done or self._error is not None:
            self._end_protocol()
        elif self._receiver is not None:
            self._receiver.resumeProducing()

    def _end_protocol(self) -> None:
        protocol = self._protocol
        if protocol is None or protocol is _Ended:
            return
        self._protocol = _Ended
        reason: Exception = self._error if self._error is not None else ResponseDone()
        protocol.connectionLost(Failure(reason))


class _EndedProtocol:
    """
    Stands for a L{BodyStream.deliverBody} protocol that was told the body ended.
    """

    def dataReceived(self, data: bytes) -> None:
        pass


_Ended: Final = _EndedProtocol()
