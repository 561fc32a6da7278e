# -*- test-case-name: tests.streaming.test_machine -*-
"""
One streamed body, either way (EXTENSIONS.md X1): the state machines the module's
stdin and channel paths, C{pywatt dev} and the C{FakeOrchestrator} all use.

  - L{StreamSender} cuts a body into L{StreamChunk}s and never has more than
    C{window} of them unacknowledged; while the window is full it tells its producer
    to pause (L{StreamSender.writable}). Acks are cumulative. A failed ack, a cancel
    or no ack for C{stall_timeout} seconds ends the stream (L{StreamSender.done}
    fails with L{StreamFailed}).
  - L{StreamReceiver} checks each chunk (sequence, CRC-32, gzip) and hands its bytes to
    a sink; it acks a chunk only once the sink has consumed it, so a sink that pauses
    (L{StreamReceiver.pauseProducing}) slows the sender. A bad chunk gets a failed ack
    and a cancel; no chunk for C{stall_timeout} seconds cancels; a body above
    C{max_size} cancels.
  - L{StreamTable} routes incoming chunks, acks and cancels of one link to its streams
    by id, and answers those of unknown streams.

Messages go out through a C{send} callable; time comes from an injected clock
(C{IReactorTime}), so tests drive everything with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import enum
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from pywatt_twisted.errors import PyWattError
from pywatt_twisted.wire._value import MutableValue
from pywatt_twisted.wire.stream import (
    DEFAULT_STALL_TIMEOUT,
    MAX_CHUNK_SIZE,
    MAX_WINDOW,
    ChunkError,
    StreamAck,
    StreamCancel,
    StreamChunk,
    StreamOptions,
    make_chunk,
    open_chunk,
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

_log = Logger(namespace="pywatt_twisted.streaming")

#: X1 default: the largest request body streamed in (1 GiB).
DEFAULT_MAX_STREAMED_BODY = 1024 * 1024 * 1024


class StreamFailed(PyWattError):
    """
    A stream ended before its final chunk was consumed.

    @ivar kind: C{"checksum"}, C{"gap"}, C{"compression"}, C{"too_large"},
        C{"unknown_stream"}, C{"cancelled"} (the peer cancelled), C{"stalled"},
        C{"rejected"} (the peer refused a chunk), C{"aborted"} (this side stopped),
        C{"window"} (the peer sent more than the window allows).
    @ivar reason: the text sent or received.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"stream {kind}: {reason}")
        self.kind = kind
        self.reason = reason


class StreamState(enum.Enum):
    """
    Where one stream is: L{OPEN} (chunks flow), L{DONE} (the final chunk was consumed
    and acknowledged), L{FAILED} (cancelled, either side, for any reason).
    """

    OPEN = "open"
    DONE = "done"
    FAILED = "failed"


Send = Callable[[Any], object]


class _Timer:
    """
    A restartable timeout on an injected clock: L{restart} arms it to fire C{seconds}
    from now, L{stop} disarms it, L{cancel} disarms it and drops its delayed call (for
    a stream that ended, so nothing of it stays scheduled).

    A stream restarts and stops its timer a few times per chunk on each side, so both
    are cheap: a restart while the timer's delayed call is still pending moves that
    call (C{IDelayedCall.reset}, which for a later time only records the delay: no
    new call, no insertion into the reactor's heap, no cancelled call left in it),
    and a stop only disarms, leaving the call to find the timer disarmed when it comes
    due. Cancelling and scheduling afresh cost ~8 Python calls per restart (measured
    with cProfile: callLater, the call's construction, its heap insertion and
    comparisons, cancel). The result is the same: the timeout fires C{seconds} after
    the last restart, and not at all if a stop followed it (tests/streaming: the
    stall tests, and the property test against a fresh call per restart).
    """

    def __init__(self, clock: IReactorTime, seconds: float | None, fire: Callable[[], None]):
        self._clock = clock
        self._seconds = seconds
        self._fire = fire
        self._call: IDelayedCall | None = None
        self._armed = False

    def restart(self) -> None:
        seconds = self._seconds
        if seconds is None:
            return
        self._armed = True
        call = self._call
        if call is None:
            self._call = self._clock.callLater(seconds, self._expired)
        else:
            call.reset(seconds)

    def stop(self) -> None:
        self._armed = False

    def cancel(self) -> None:
        self._armed = False
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _expired(self) -> None:
        self._call = None
        if self._armed:
            self._armed = False
            self._fire()


class StreamSender:
    """
    Sends one body as chunks (see the module docstring).

    Write with L{write} (any sizes; the bytes are cut into C{chunk_size} pieces), end
    with L{finish}. Bytes written while the window is full wait here: a writer that
    honours L{writable} (a producer paused by the C{on_writable} callback) keeps that
    below one chunk; what a writer hands over regardless is held, since it is already
    in memory.

    @ivar unacked: chunks sent and not yet acknowledged (never above C{window}).
    @ivar max_unacked: the most chunks that were ever unacknowledged at once.
    @ivar done: fires with the number of body bytes once the final chunk is
        acknowledged; fails with L{StreamFailed} if the stream ends otherwise.
    """

    def __init__(
        self,
        stream_id: str,
        send: Send,
        options: StreamOptions,
        clock: IReactorTime,
        *,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        on_writable: Callable[[bool], object] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.options = options
        self.state = StreamState.OPEN
        self._send = send
        self._on_writable = on_writable
        self._pending: deque[bytes | memoryview] = deque()
        self._pending_size = 0
        self._next_sequence = 0
        self._acked = -1
        self._finishing = False
        self._final_sequence: int | None = None
        self._writable = True
        self._pumping = False
        self.sent_bytes = 0
        self.max_unacked = 0
        self.done: Deferred[int] = Deferred()
        self._stall = _Timer(clock, stall_timeout, self._stalled)

    @property
    def unacked(self) -> int:
        return self._next_sequence - 1 - self._acked

    @property
    def writable(self) -> bool:
        """
        Whether more may be written without waiting here (the window has room).
        """
        return self._writable

    def write(self, data: bytes) -> None:
        """
        Queue C{data} for the body.

        @raise StreamFailed: the stream already ended.
        """
        if self.state is not StreamState.OPEN or self._finishing:
            raise StreamFailed("aborted", f"stream {self.stream_id} is no longer open")
        if data:
            if type(data) is not bytes:
                data = bytes(data)
            self._pending.append(data)
            self._pending_size += len(data)
            self._pump()

    def finish(self) -> None:
        """
        The body is complete: the last chunk goes out with C{is_final} once the window
        lets it.
        """
        if self.state is not StreamState.OPEN or self._finishing:
            return
        self._finishing = True
        self._pump()

    def cancel(self, reason: str) -> None:
        """
        End the stream from this side: send C{stream_cancel}, fail L{done}.
        """
        if self.state is StreamState.OPEN:
            self._send(StreamCancel(self.stream_id, reason))
            self._fail(StreamFailed("aborted", reason))

    def _take(self, size: int) -> bytes:
        pending = self._pending
        if not pending:
            return b""
        head = pending[0]
        if len(head) == size and type(head) is bytes:
            # (a write of exactly one chunk goes as it is: no copy)
            pending.popleft()
            self._pending_size -= size
            return head
        out: list[bytes | memoryview] = []
        need = size
        while need and pending:
            head = pending[0]
            if len(head) <= need:
                out.append(pending.popleft())
                need -= len(head)
            else:
                # (memoryview slices: a large write is cut without copying its rest)
                view = memoryview(head)
                out.append(view[:need])
                pending[0] = view[need:]
                need = 0
        data = b"".join(out)
        self._pending_size -= len(data)
        return data

    def _pump(self) -> None:
        if self._pumping:
            # (an ack arrived while a chunk was being sent: the loop below goes on)
            return
        self._pumping = True
        try:
            self._send_chunks()
        finally:
            self._pumping = False
        self._set_writable(
            self.unacked < self.options.window and self._pending_size < self.options.chunk_size
        )

    def _send_chunks(self) -> None:
        size = self.options.chunk_size
        window = self.options.window
        while self.state is StreamState.OPEN and self.unacked < window:
            if self._pending_size > size or (self._pending_size == size and not self._finishing):
                data = self._take(size)
                final = False
            elif self._finishing and self._final_sequence is None:
                data = self._take(self._pending_size)
                final = True
            else:
                break
            sequence = self._next_sequence
            self._next_sequence += 1
            if final:
                self._final_sequence = sequence
            self.sent_bytes += len(data)
            chunk = make_chunk(
                self.stream_id, sequence, data, is_final=final, gzip=self.options.gzip
            )
            self.max_unacked = max(self.max_unacked, self.unacked)
            self._stall.restart()
            self._send(chunk)

    def _set_writable(self, writable: bool) -> None:
        if writable != self._writable and self.state is StreamState.OPEN:
            self._writable = writable
            if self._on_writable is not None:
                self._on_writable(writable)

    # -- from the peer -------------------------------------------------------------

    def ack_received(self, ack: StreamAck) -> None:
        if self.state is not StreamState.OPEN:
            return
        if not ack.success:
            reason = ack.error or "the receiver refused a chunk"
            self._send(StreamCancel(self.stream_id, reason))
            self._fail(StreamFailed("rejected", f"chunk {ack.sequence}: {reason}"))
            return
        if ack.sequence >= self._next_sequence:
            reason = f"ack for chunk {ack.sequence}, which was not sent yet"
            self._send(StreamCancel(self.stream_id, reason))
            self._fail(StreamFailed("rejected", reason))
            return
        if ack.sequence <= self._acked:
            return
        self._acked = ack.sequence
        if self.unacked == 0:
            self._stall.stop()
        else:
            self._stall.restart()
        if self._final_sequence is not None and self._acked >= self._final_sequence:
            self.state = StreamState.DONE
            self._stall.cancel()
            self.done.callback(self.sent_bytes)
            return
        self._pump()

    def cancel_received(self, cancel: StreamCancel) -> None:
        if self.state is StreamState.OPEN:
            self._fail(StreamFailed("cancelled", cancel.reason))

    def _stalled(self) -> None:
        if self.state is StreamState.OPEN:
            reason = f"no ack for {self.unacked} chunk(s) within the stall timeout"
            self._send(StreamCancel(self.stream_id, reason))
            self._fail(StreamFailed("stalled", reason))

    def _fail(self, error: StreamFailed) -> None:
        self.state = StreamState.FAILED
        self._stall.cancel()
        self._pending.clear()
        self._pending_size = 0
        self.done.errback(error)


class IBodySink(Protocol):
    """
    Where a L{StreamReceiver} hands the body.
    """

    def body_data(self, data: bytes) -> None:
        """Bytes of the body, in order."""

    def body_done(self) -> None:
        """The final chunk arrived: the body is complete."""

    def body_failed(self, error: StreamFailed) -> None:
        """The stream ended early; no more calls follow."""


@implementer(IPushProducer)
class StreamReceiver:
    """
    Receives one body (see the module docstring). It is the push producer of its sink:
    while the sink has it paused, chunks that arrive are held (at most the sender's
    window, which it must respect: more than L{MAX_WINDOW} held cancels the stream)
    and not acknowledged, and the stall timer does not run (the wait is this side's).

    @ivar received: body bytes handed to the sink so far.
    """

    def __init__(
        self,
        stream_id: str,
        send: Send,
        sink: IBodySink,
        clock: IReactorTime,
        *,
        max_size: int,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        max_chunk_size: int = MAX_CHUNK_SIZE,
    ) -> None:
        self.stream_id = stream_id
        self.state = StreamState.OPEN
        self.max_size = max_size
        self.max_chunk_size = max_chunk_size
        self.received = 0
        self._send = send
        self._sink = sink
        self._expected = 0
        self._held: deque[tuple[int, bytes, bool]] = deque()
        self._paused = False
        self._delivering = False
        self._final_seen = False
        self._stall = _Timer(clock, stall_timeout, self._stalled)
        self._stall.restart()
        self.on_end: Callable[[StreamReceiver], object] | None = None

    # -- IPushProducer (called by the sink) ------------------------------------------

    def pauseProducing(self) -> None:
        # While the sink has the body paused, a quiet sender is waiting for acks that
        # this side holds back: not a stall (the route's own timeout bounds the wait).
        self._paused = True
        self._stall.stop()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.state is StreamState.OPEN and not self._final_seen:
            self._stall.restart()
        self._deliver()

    def stopProducing(self) -> None:
        self.cancel("the receiver stopped reading the body")

    def cancel(self, reason: str, kind: str = "aborted") -> None:
        """
        End the stream from this side: send C{stream_cancel}, tell the sink.
        """
        if self.state is StreamState.OPEN:
            self._send(StreamCancel(self.stream_id, reason))
            self._fail(StreamFailed(kind, reason))

    # -- from the peer ---------------------------------------------------------------

    def chunk_received(self, chunk: StreamChunk) -> None:
        if self.state is not StreamState.OPEN:
            return
        self._stall.restart()
        if chunk.sequence != self._expected:
            self._refuse(
                chunk,
                ChunkError("gap", f"expected chunk {self._expected}, got chunk {chunk.sequence}"),
            )
            return
        try:
            data = open_chunk(chunk, self.max_chunk_size)
        except ChunkError as e:
            self._refuse(chunk, e)
            return
        self._expected += 1
        if self.received + len(data) > self.max_size:
            self.cancel(f"the body is larger than the limit of {self.max_size} bytes", "too_large")
            return
        self.received += len(data)
        if len(self._held) >= MAX_WINDOW:
            self.cancel(
                f"more than {MAX_WINDOW} chunks arrived unacknowledged; the sender "
                "does not respect the window",
                "window",
            )
            return
        self._held.append((chunk.sequence, data, chunk.is_final))
        if chunk.is_final:
            self._final_seen = True
            self._stall.stop()
        elif self._paused:
            self._stall.stop()
        self._deliver()

    def cancel_received(self, cancel: StreamCancel) -> None:
        if self.state is StreamState.OPEN:
            self._fail(StreamFailed("cancelled", cancel.reason))

    def _refuse(self, chunk: StreamChunk, error: ChunkError) -> None:
        self._send(StreamAck(self.stream_id, chunk.sequence, False, str(error)))
        self._send(StreamCancel(self.stream_id, str(error)))
        self._fail(StreamFailed(error.kind, str(error)))

    def _deliver(self) -> None:
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._held and not self._paused and self.state is StreamState.OPEN:
                sequence, data, final = self._held.popleft()
                if data:
                    self._sink.body_data(data)
                if self.state is not StreamState.OPEN:
                    return
                self._send(StreamAck(self.stream_id, sequence))
                if final:
                    self.state = StreamState.DONE
                    self._stall.cancel()
                    self._ended()
                    self._sink.body_done()
                    return
        finally:
            self._delivering = False

    def _stalled(self) -> None:
        self.cancel("no chunk arrived within the stall timeout", "stalled")

    def _fail(self, error: StreamFailed) -> None:
        self.state = StreamState.FAILED
        self._stall.cancel()
        self._held.clear()
        self._ended()
        self._sink.body_failed(error)

    def _ended(self) -> None:
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end(self)


class StreamTable:
    """
    The open streams of one link, by id: incoming C{stream_chunk}, C{stream_ack} and
    C{stream_cancel} go to theirs. A chunk for an unknown stream is answered with a
    failed ack and a cancel (X1); an ack or a cancel for one is ignored (it is late:
    the stream already ended here).
    """

    def __init__(self, send: Send, log: Logger = _log) -> None:
        self._send = send
        self._log = log
        self.receivers: dict[str, StreamReceiver] = {}
        self.senders: dict[str, StreamSender] = {}

    def __len__(self) -> int:
        return len(self.receivers) + len(self.senders)

    def add_receiver(self, receiver: StreamReceiver) -> None:
        self.receivers[receiver.stream_id] = receiver
        receiver.on_end = lambda r: self.receivers.pop(r.stream_id, None)

    def add_sender(self, sender: StreamSender) -> None:
        self.senders[sender.stream_id] = sender

        def ended(result: object) -> object:
            self.senders.pop(sender.stream_id, None)
            return result

        sender.done.addBoth(ended)

    def received(self, message: Any) -> bool:
        """
        Handle C{message} if it is a stream message; whether it was one.
        """
        if isinstance(message, StreamChunk):
            receiver = self.receivers.get(message.stream_id)
            if receiver is None:
                self._unknown(message.stream_id, message.sequence)
            else:
                receiver.chunk_received(message)
            return True
        if isinstance(message, StreamAck):
            sender = self.senders.get(message.stream_id)
            if sender is not None:
                sender.ack_received(message)
            else:
                # (a late ack of a stream that ended here: nothing to answer)
                self._log.debug(
                    "streaming: ignoring an ack for stream {stream_id}, which is not open",
                    stream_id=message.stream_id,
                )
            return True
        if isinstance(message, StreamCancel):
            receiver = self.receivers.get(message.stream_id)
            if receiver is not None:
                receiver.cancel_received(message)
            sender = self.senders.get(message.stream_id)
            if sender is not None:
                sender.cancel_received(message)
            return True
        return False

    def _unknown(self, stream_id: str, sequence: int) -> None:
        error = f"unknown stream id {stream_id!r}"
        self._log.warn("streaming: {error} (sequence {sequence})", error=error, sequence=sequence)
        self._send(StreamAck(stream_id, sequence, False, error))
        self._send(StreamCancel(stream_id, error))

    def cancel_all(self, reason: str) -> None:
        """
        The link is gone: end every stream on it (nothing is sent; the peer is gone).
        """
        for receiver in list(self.receivers.values()):
            if receiver.state is StreamState.OPEN:
                receiver._fail(StreamFailed("aborted", reason))
        for sender in list(self.senders.values()):
            if sender.state is StreamState.OPEN:
                sender._fail(StreamFailed("aborted", reason))
        self.receivers.clear()
        self.senders.clear()


class _Parked:
    """
    The sink of a parked stream (L{StreamLink.park}): never given data (the receiver
    is paused), told if the stream fails while it waits.
    """

    def __init__(self, on_failed: Callable[[StreamFailed], object]) -> None:
        self._on_failed = on_failed

    def body_data(self, data: bytes) -> None:
        raise AssertionError("a parked stream is paused")

    def body_done(self) -> None:
        raise AssertionError("a parked stream is paused")

    def body_failed(self, error: StreamFailed) -> None:
        self._on_failed(error)


@define(eq=False, repr=False)
class StreamLink(MutableValue):
    """
    What the HTTP layer needs to stream bodies on one link (stdio, or one channel
    connection): the link to send on, its L{StreamTable}, a clock and the limits.

    @ivar link: an C{IOrchestratorLink}: C{send} for chunks, acks and cancels,
        C{send_http_response} for the head of a streamed response.
    @ivar options: the streaming options the orchestrator enabled (X0), or C{None}:
        then responses are never streamed (request bodies streamed in are still
        understood).
    @ivar stall_timeout: seconds without progress before a stream is cancelled.
    @ivar max_body_size: the largest streamed request body, in bytes.
    """

    link: Any
    table: StreamTable
    clock: IReactorTime
    options: StreamOptions | None = None
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    max_body_size: int = DEFAULT_MAX_STREAMED_BODY

    def new_stream_id(self) -> str:
        """
        A fresh id for a stream this side starts.
        """
        return f"m-{uuid.uuid4().hex}"

    def park(self, stream_id: str, on_failed: Callable[[StreamFailed], object]) -> StreamReceiver:
        """
        Accept the chunks of C{stream_id} before anything can read them (its request
        waits for the module to be ready): they are held unacknowledged, so the sender
        stops after its window, until L{receiver} hands them to a sink. C{on_failed}
        is told if the stream ends meanwhile (the peer cancels it, or sends more than
        L{MAX_WINDOW} chunks unacknowledged). No stall timer runs while it is parked.
        """
        receiver = StreamReceiver(
            stream_id,
            self.link.send,
            _Parked(on_failed),
            self.clock,
            max_size=self.max_body_size,
            stall_timeout=self.stall_timeout,
        )
        receiver.pauseProducing()
        self.table.add_receiver(receiver)
        return receiver

    def refuse(self, stream_id: str, reason: str) -> None:
        """
        The request of C{stream_id} is refused: cancel its stream (the parked
        receiver's, if L{park} took it).
        """
        receiver = self.table.receivers.get(stream_id)
        if receiver is not None and receiver.state is StreamState.OPEN:
            receiver.cancel(reason)
        else:
            self.link.send(StreamCancel(stream_id, reason))

    def receiver(self, stream_id: str, sink: IBodySink) -> StreamReceiver:
        """
        A receiver for C{stream_id} feeding C{sink}, registered in the table: the
        one L{park} made (still paused: the caller resumes it, or the sink does as it
        reads), else a new one.
        """
        parked = self.table.receivers.get(stream_id)
        if (
            parked is not None
            and isinstance(parked._sink, _Parked)
            and parked.state is StreamState.OPEN
        ):
            parked._sink = sink
            return parked
        receiver = StreamReceiver(
            stream_id,
            self.link.send,
            sink,
            self.clock,
            max_size=self.max_body_size,
            stall_timeout=self.stall_timeout,
        )
        self.table.add_receiver(receiver)
        return receiver

    def sender(self, on_writable: Callable[[bool], object] | None = None) -> StreamSender:
        """
        A sender for a new stream, registered in the table (C{options} must be set).
        """
        assert self.options is not None
        sender = StreamSender(
            self.new_stream_id(),
            self.link.send,
            self.options,
            self.clock,
            stall_timeout=self.stall_timeout,
            on_writable=on_writable,
        )
        self.table.add_sender(sender)
        return sender
