# -*- test-case-name: tests.transport.test_framed -*-
"""
L{FramedProtocol}: the one base of every framed connection (PROTOCOL.md section 4):
the module's channels (L{pywatt_twisted._transport.channel}), the registration
client's connection and the dev orchestrator's end of a channel.

It owns what every framed connection must do the same way:

  - B{Reading}: bytes go through the wire layer's L{FrameDecoder}, which checks the
    length cap on each header before it buffers a byte of the payload. Good frames go
    to L{FramedProtocol.frameReceived}, skippable bad ones (an unknown format byte) to
    L{FramedProtocol.frameSkipped}, and an oversize header to
    L{FramedProtocol.frameTooLong}, which by default aborts the connection: the
    stream cannot be trusted past that header (like Twisted's
    C{IntNStringReceiver.lengthLimitExceeded}).
  - B{Producer/consumer flow control}, for subclasses that register as their
    transport's push producer (L{FramedProtocol.registerAsProducer}): while the
    transport's buffer is full, frames handed to L{FramedProtocol.transmit} wait in a
    bounded outbox counted in bytes; above C{high_water} unsent bytes the protocol
    stops reading its transport and holds frames already decoded, until the outbox
    drains to C{low_water}; then it resumes, in order, dropping nothing.
  - B{Write coalescing}: frames handed to L{FramedProtocol.transmit} while the frames
    of one read are dispatched (the replies to a burst of pipelined requests, the
    requests a reply's callbacks send next) are collected and handed to the transport
    in one C{writeSequence} once that read is dispatched, instead of one C{write}
    each. Twisted's transports already send what was written in one reactor turn
    with one C{send}; what this saves is the per-call cost of C{write} (the
    transport's bookkeeping, a TLS record per write). The batch is bounded: once it
    holds more than the transport's own C{bufferSize} (the point where the transport
    would pause its producer; L{COALESCE_LIMIT} at most, and when the transport does
    not say) it is handed over at once, so flow control sees the frames when it would
    have without coalescing. L{FramedProtocol.coalesce} turns it off (C{bench
    channel} compares both). Connections that share a L{CoalesceGroup} (a relay's
    connections: C{pywatt dev} forwards a frame read on one module's connection to
    another's) also collect the frames transmitted on each other while one of them
    dispatches a read: each connection written to gets its batch, all handed over
    when that read is dispatched, so the frames a relay forwards from one read to one
    target go out in one call too.
  - B{Pushing slices of a large read} (L{FramedProtocol.push_every}, 32 by default): a
    read of more than C{push_every} frames is dispatched C{push_every} frames at a time,
    and the frames transmitted during each slice (on this connection and on the others
    of its group) are handed over I{and sent} before the next slice is dispatched.
    Handing them over is not always enough: a Twisted socket transport only buffers
    what is written and sends it once the reactor finds the socket writable after the
    read (unless the batch was sent at once, see below), so each connection written to
    that still holds bytes is pushed (its C{doWrite}, what the reactor would call next;
    transports without one, such as in-memory ones, are not pushed). The point is
    overlap between processes: at 64 requests in flight a module reads 64 replies at
    once and without it sends the 64 requests they lead to in one wave, so the peer
    process idles until the whole read is dispatched and then this one idles while
    the peer works through the wave (issue 17). Pushed in slices, the peer starts on
    the first slice while this process dispatches the next.
  - B{Sending at once}: a batch handed over to a plain TCP or Unix-socket transport
    that holds nothing yet is sent there and then (the transport's C{writeSomeData},
    one C{send}) rather than on the reactor's next turn, which is where the
    transport's C{write} would send it; the rest, if the kernel takes only part, and
    any error go to C{write} as before. Each message a process writes after a read
    costs one reactor turn less (C{epoll_ctl} to watch for writability,
    C{epoll_wait}, C{epoll_ctl} again, and the reactor's Python work for that turn):
    at one request in flight that is most of what a wake-up costs besides the
    message itself. Frames written outside a read still take C{write}, so what is
    written in one turn still goes in one C{send}.
  - B{Unix sockets as plain sockets}: a framed connection passes no file
    descriptors, so on a Unix socket it reads with C{recv} and sends at once with
    C{send}, as on TCP, not with Twisted's C{recvmsg} and descriptor queue
    (L{_plain_unix}).

Subclasses say when their connection is gone (L{FramedProtocol.outputClosed}) and
react to writability changes (L{FramedProtocol.writabilityChanged}) and to the high
water mark (L{FramedProtocol.highWaterReached}).
"""

from __future__ import annotations

import socket
from collections import deque
from types import MethodType
from typing import Any

from twisted.internet.interfaces import IFileDescriptorReceiver, IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from pywatt_twisted._transport._read_size import ReadSize
from pywatt_twisted.errors import FrameError, FrameTooLarge
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH, Frame, FrameDecoder

__all__ = [
    "COALESCE_LIMIT",
    "LARGE_PAYLOAD",
    "LARGE_READ_SIZE",
    "UNIX_SEND_BUFFER",
    "CoalesceGroup",
    "FramedProtocol",
    "raise_send_buffer",
    "write_parts",
]

LARGE_PAYLOAD = 64 * 1024
"""
While at least this many bytes of a frame's payload are still to come, the transport is
read L{LARGE_READ_SIZE} bytes at a time (a 256 KiB stream chunk is a 349 KB frame:
twisted's default read of 64 KiB took six reactor turns and six decoder feeds for it).
"""

LARGE_READ_SIZE = 256 * 1024
"""
The read size while a large payload arrives (see L{LARGE_PAYLOAD}); the transport's
own size is back once it is complete.
"""

UNIX_SEND_BUFFER = 4 * 1024 * 1024
"""
The send buffer L{raise_send_buffer} asks the kernel for (C{SO_SNDBUF}; Linux doubles
what it grants, up to C{net.core.wmem_max}).
"""

COALESCE_LIMIT = 64 * 1024
"""
The most bytes of coalesced frames held before the batch goes to the transport without
waiting for the end of the read (Twisted's socket transports pause their producer
above 64 KiB buffered; a transport with a smaller C{bufferSize} lowers it).
"""


def _direct_types() -> frozenset[type]:
    """
    The transports L{_hand_over} may send on at once: Twisted's own TCP and Unix-socket
    connections (not a subclass, not a wrapper such as TLS: their C{write} may do more).
    """
    from twisted.internet import tcp

    types: set[type] = {tcp.Server, tcp.Client}
    try:
        from twisted.internet import unix
    except ImportError:  # pragma: no cover (no Unix sockets on this platform)
        pass
    else:
        types.update((unix.Server, unix.Client))
    return frozenset(types)


_DIRECT_TYPES: frozenset[type] = _direct_types()


def _plain_unix() -> dict[type, tuple[Any, Any]]:
    """
    Twisted's Unix-socket connection types, each with the C{doRead} and
    C{writeSomeData} of the plain socket connection it builds on (its TCP class: the
    same C{recv} and C{send} of C{bufferSize} and C{SEND_LIMIT}, with the same
    errors), which L{FramedProtocol} uses on them instead of their own.

    A Unix-socket transport reads with C{recvmsg} (room for passed file descriptors:
    a 4 KiB control buffer and the ancillary data's tuples per read) and sends through
    the file-descriptor queue's check and a C{memoryview} slice per send. A framed
    connection passes no file descriptors (its protocol is not an
    C{IFileDescriptorReceiver}, and it never calls C{sendFileDescriptor}): a
    C{recvmsg} read of a ~1 KB message cost more than twice a C{recv} (2.4 against 1.1
    us with the send, measured on a socket pair), once per read in each process a
    module-to-module message crosses (issue 17: the Unix-socket rows). A descriptor a
    peer passed all the same is closed by the kernel when C{recv} drops the control
    data, where Twisted closed it itself (and logged it).
    """
    try:
        from twisted.internet import unix
    except ImportError:  # pragma: no cover (no Unix sockets on this platform)
        return {}
    plain: dict[type, tuple[Any, Any]] = {}
    for kind in (unix.Server, unix.Client):
        base: Any = kind._writeSomeDataBase
        plain[kind] = (base.doRead, base.writeSomeData)
    return plain


_PLAIN_UNIX: dict[type, tuple[Any, Any]] = _plain_unix()


def _tls_type() -> type | None:
    """
    Twisted's TLS protocol (the transport a TLS connection's protocol writes to), or
    C{None} without pyOpenSSL.
    """
    try:
        from twisted.protocols.tls import TLSMemoryBIOProtocol
    except ImportError:  # pragma: no cover (twisted[tls] is a dependency)
        return None
    return TLSMemoryBIOProtocol


_TLS_TYPE: type | None = _tls_type()


def _holds_nothing(transport: Any, to_send: bool) -> bool:
    """
    Whether C{transport}, of one of L{_DIRECT_TYPES}, holds no bytes unsent (and, with
    C{to_send}, whether it may be sent on now: connected, not closing, not TLS).

    This reads Twisted's own fields of its socket transports (C{FileDescriptor}'s
    buffers and write-side flags): a Twisted that keeps them otherwise raises
    AttributeError here once, and from then on no transport is sent on directly
    (everything takes C{write}, as before).
    """
    global _DIRECT_TYPES
    try:
        if transport.dataBuffer or transport._tempDataBuffer:
            return False
        return not to_send or not (
            transport.disconnecting
            or transport._writeDisconnecting
            or transport._writeDisconnected
            or transport.TLS
            or not transport.connected
        )
    except AttributeError:
        _DIRECT_TYPES = frozenset()
        return False


def _hand_over(transport: Any, batch: list[bytes]) -> None:
    """
    Coalesced frames to their transport (nothing once the connection has no
    transport).

    On a plain TCP or Unix-socket transport with nothing buffered, they are sent at
    once, with the transport's own C{writeSomeData} (one C{send}, as its C{doWrite}
    would make on the next reactor turn): what the kernel does not take, and any
    error, goes to C{write} as before (buffered, sent when the socket is writable, an
    error seen there). At one message in flight this saves each process a reactor
    turn per message written: the C{epoll_ctl} that C{write} makes to watch for
    writability, the C{epoll_wait} that reports it, the C{epoll_ctl} that stops
    watching, and the reactor's own work for that turn. Otherwise one C{write} for
    one frame, one C{writeSequence} for more.
    """
    if transport is None:
        return
    if type(transport) in _DIRECT_TYPES:
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if _holds_nothing(transport, True):
            plain = _PLAIN_UNIX.get(type(transport))
            if plain is not None and not transport._sendmsgQueue:
                sent = plain[1](transport, data)  # (_plain_unix: no descriptors to pass)
            else:
                sent = transport.writeSomeData(data)
            if type(sent) is int and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        transport.write(data)
        return
    if len(batch) == 1:
        transport.write(batch[0])
    else:
        transport.writeSequence(batch)
    if type(transport) is _TLS_TYPE:
        # Over TLS the encrypted bytes wait in the socket transport underneath for the
        # reactor's next turn: send them now, as on a plain socket.
        _push(getattr(transport, "transport", None))


def raise_send_buffer(transport: Any) -> None:
    """
    Ask the kernel for a send buffer of L{UNIX_SEND_BUFFER} on C{transport}'s socket
    when it is a Unix socket (nothing for TCP, whose buffer the kernel grows itself up
    to C{tcp_wmem}'s maximum, and stops growing once it is set; nothing for other
    transports, or when the kernel refuses).

    A Unix socket's default (about 208 KiB) is less than one frame of a 256 KiB
    stream chunk (349 KB): a sender's window of chunks then waits in the transport's
    own buffer, which Twisted joins and copies again as it sends 128 KiB per reactor
    turn, and L{write_parts} finds it never empty. With room for the window in the
    kernel, each chunk's frame goes out whole in one C{sendmsg}, uncopied. Memory: the
    bytes are held by the kernel instead of the process, at most this buffer per
    connection (the window bounds them as before).
    """
    if type(transport) not in _DIRECT_TYPES:
        return
    try:
        sock = transport.socket
        if sock.family != socket.AF_UNIX:
            return
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < UNIX_SEND_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
    except (AttributeError, OSError):
        pass


def write_parts(transport: Any, parts: list[bytes]) -> None:
    """
    Write one large frame given in pieces (a stream chunk's frame header, JSON head,
    base64 and tail: L{encode_stream_chunk_parts
    <pywatt_twisted.wire.codec.encode_stream_chunk_parts>}) without joining them
    first: the same bytes, in the same order, as C{transport.writeSequence(parts)}.

    On a plain TCP or Unix-socket transport holding nothing (L{_holds_nothing}, as
    L{_hand_over} sends), the pieces go to the kernel at once in one C{sendmsg}
    (scatter/gather: it copies each piece from where it is), and only what it does
    not take is joined, once, and written (buffered, sent as before). Otherwise, and
    on any error (left for the transport to find on its next send, as C{_hand_over}
    does), C{writeSequence}: Twisted joins the pieces into a copy of the whole frame
    when it sends, 128 KiB per reactor turn, and copies its unsent end again with
    whatever was written behind it. The direct path needs room in the kernel for the
    frame: a loopback TCP connection has it (C{bench stream}'s channel upload, 256 MiB:
    the orchestrator's CPU 0.51-0.59 s -> 0.13-0.23 s, every chunk sent whole), a Unix
    socket once L{raise_send_buffer} made it.
    """
    if (
        type(transport) in _DIRECT_TYPES
        and _holds_nothing(transport, True)
        and not getattr(transport, "_sendmsgQueue", None)  # (file descriptors to pass)
    ):
        try:
            sent = transport.socket.sendmsg(parts)
        except OSError:
            sent = 0
        if sent:
            for index, part in enumerate(parts):
                if sent < len(part):
                    rest: list[bytes | memoryview] = [memoryview(part)[sent:]]
                    rest.extend(parts[index + 1 :])
                    transport.write(b"".join(rest))
                    return
                sent -= len(part)
            return
    transport.writeSequence(parts)


def _push(transport: Any) -> None:
    """
    Send what C{transport} holds now, as the reactor would once its socket is writable
    (see L{FramedProtocol.push_every}). Only a socket transport can (C{doWrite}, the
    reactor's own call); a connection being closed is left to the reactor (its
    C{doWrite} would then close it). A send error is the reactor's to find as well: the
    bytes stay buffered and its own C{doWrite} reports the loss. A socket transport that
    holds nothing (L{_hand_over} sent the batch at once) is not pushed: its C{doWrite}
    would make a C{send} of nothing.
    """
    push = getattr(transport, "doWrite", None)
    if push is None or not getattr(transport, "connected", False):
        return
    if transport.disconnecting or getattr(transport, "_writeDisconnecting", False):
        return
    if type(transport) in _DIRECT_TYPES and _holds_nothing(transport, False):
        return
    push()


class CoalesceGroup:
    """
    Connections that coalesce the frames transmitted on any of them while one of them
    dispatches a read (see the module docstring): set one as the
    L{FramedProtocol.group} of each.

    @ivar reading: whether a read of one of them is being dispatched.
    @ivar written: the other connections given frames during that read (each holds
        them in its batch), in the order they were first written to.
    """

    __slots__ = ("reading", "written")

    def __init__(self) -> None:
        self.reading = False
        self.written: list[FramedProtocol] = []

    def flush(self) -> None:
        """
        The read is dispatched: hand each connection's batch to its transport.
        """
        written = self.written
        if not written:
            return
        self.written = []  # (a synchronous transport may deliver a read meanwhile)
        for connection in written:
            batch = connection._batch
            connection._batch = None
            connection._batch_bytes = 0
            if batch:
                _hand_over(connection.transport, batch)


class _FrameReader:
    """
    The input side of a L{FramedProtocol}: bytes through the L{FrameDecoder}, frames
    to the protocol's hooks in order, and the frames held while the protocol's
    C{reading_paused} is set (its outbox is above the high-water mark).

    @ivar held: decoded frames (and skippable errors) not dispatched yet.
    """

    def __init__(self, protocol: FramedProtocol, max_frame_length: int) -> None:
        self.protocol = protocol
        self.decoder = FrameDecoder(max_frame_length, protocol.json_payloads)
        self.held: deque[Frame | FrameError | bytes] = deque()
        # The transport's read size, raised while a large payload arrives.
        self.read_size = ReadSize()

    def read(self, data: bytes) -> None:
        self.dispatch(self.decode(data))

    def decode(self, data: bytes) -> list[Frame | FrameError | bytes]:
        """
        The items C{data} completes (the read size adapted to a large payload).
        """
        decoder = self.decoder
        items = decoder.feed(data)
        if decoder.missing >= LARGE_PAYLOAD:
            self.read_size.raise_to(self.protocol.transport, LARGE_READ_SIZE)
        elif self.read_size.normal is not None:
            self.read_size.restore()
        return items

    def dispatch(self, items: list[Frame | FrameError | bytes]) -> None:
        """
        Hand decoded C{items} to the protocol's hooks (or hold them, see the class).
        """
        if self.held or self.protocol.reading_paused:
            # Keep the order: what was read before goes first.
            self.held.extend(items)
            self.dispatch_held()
            return
        protocol: Any = self.protocol
        frame_received = protocol.frameReceived
        # (only a protocol with json_payloads gets bytes, and defines jsonReceived)
        json_received: Any = protocol.jsonReceived if protocol.json_payloads else None
        output_closed = protocol.outputClosed
        for index, item in enumerate(items):
            # protocol.inputClosed(), inline: this runs once per frame.
            if protocol.abort_reason is not None or output_closed():
                return
            if type(item) is bytes:
                json_received(item)
            elif type(item) is Frame:
                frame_received(item)
            else:
                self._item(item)
            if protocol.reading_paused:
                # Replies are piling up: take no new work until they drain.
                self.held.extend(items[index + 1 :])
                return

    def dispatch_held(self) -> None:
        held = self.held
        protocol = self.protocol
        while held and not protocol.reading_paused:
            if protocol.inputClosed():
                held.clear()
                return
            self._item(held.popleft())

    def _item(self, item: Frame | FrameError | bytes) -> None:
        protocol: Any = self.protocol
        if type(item) is bytes:
            protocol.jsonReceived(item)
        elif type(item) is Frame:
            protocol.frameReceived(item)
        elif isinstance(item, FrameTooLarge):
            protocol.frameTooLong(item)
        else:
            protocol.frameSkipped(item)  # type: ignore[arg-type]


@implementer(IPushProducer)
class FramedProtocol(Protocol):
    """
    A connection carrying length-prefixed frames. See the module docstring.

    @ivar paused: the transport asked us to stop writing: frames handed to
        L{transmit} now wait in the outbox.
    @ivar reading_paused: the outbox holds more than C{high_water} bytes: the
        transport is not read and decoded frames are held until it drains.
    @ivar buffered: bytes of frames in the outbox (not yet handed to the transport).
    @ivar abort_reason: why this side aborted the connection, if it did.
    @cvar coalesce: collect the frames transmitted while one read is dispatched into
        one C{writeSequence} (see the module docstring).
    @cvar json_payloads: JSON frames (format 1) go to the subclass's
        C{jsonReceived(payload: bytes)} as their payload, instead of to
        L{frameReceived}: the decoder builds no L{Frame} object for them. A subclass
        that sets it must define C{jsonReceived}.
    @ivar group: the L{CoalesceGroup} this connection shares with others, or C{None}.
    @cvar push_every: with C{coalesce} on, dispatch a read of more frames than this in
        slices of this many, and send what each slice transmitted before dispatching
        the next (see the module docstring); C{0}: off, a read is one slice.
    """

    coalesce = True
    # 32 rather than 16 (issue 17, 2026-12-07, bench messaging through pywatt dev on a
    # quiet 2-CPU machine, interleaved medians, replies/s, 16 -> 32): at 48 in flight
    # 26.4k -> 28.2k, 64 24.8k -> 33.7k, 96 25.6k -> 31.1k, 128 26.3k -> 32.1k, 256
    # 32.3k-40.1k -> 41.3k; at 32 in flight 25.0k -> 21.2k-22.0k (a read of 32 is no
    # longer split), at 16 unchanged (18.3k / 17.8k). Larger slices cost fewer wake-ups
    # and sends per message (CPU per reply, 64 in flight: requester 25 -> 21 us, dev 14
    # -> 10, responder 15.5 -> 13) while still overlapping the processes.
    push_every = 32
    json_payloads = False
    group: CoalesceGroup | None = None

    def __init__(
        self,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        high_water: int | None = None,
        low_water: int | None = None,
    ) -> None:
        self._reader = _FrameReader(self, max_frame_length)
        self._high = high_water
        self._low = low_water if low_water is not None else (high_water or 0) // 4
        self.paused = False
        self.reading_paused = False
        self.buffered = 0
        self.abort_reason: Exception | None = None
        self._outbox: deque[bytes] = deque()
        # Frames transmitted while a read is dispatched (None: not dispatching a read).
        self._batch: list[bytes] | None = None
        self._batch_bytes = 0
        self._coalesce_limit = COALESCE_LIMIT

    # -- hooks ----------------------------------------------------------------------------

    def frameReceived(self, frame: Frame) -> None:
        """
        A complete frame arrived. Subclasses must override this.
        """
        raise NotImplementedError

    def frameSkipped(self, error: FrameError) -> None:
        """
        A frame was skipped (an unknown format byte); the stream stays in sync and the
        connection up. Does nothing by default.
        """

    def frameTooLong(self, error: FrameTooLarge) -> None:
        """
        A frame header announced more than the maximum frame length. The decoder has
        failed (nothing after that header can be trusted), so by default the
        connection is aborted with C{error} as the reason.
        """
        self.abortWith(error)

    def outputClosed(self) -> bool:
        """
        Whether the connection is gone for writing (the outbox is then neither filled
        nor drained). C{False} by default; subclasses that track loss override it.
        """
        return False

    def inputClosed(self) -> bool:
        """
        Whether decoded frames must no longer be dispatched: the connection is gone,
        or this side aborted it.
        """
        return self.abort_reason is not None or self.outputClosed()

    def writabilityChanged(self, writable: bool) -> None:
        """
        The transport's buffer filled (C{False}) or drained (C{True}). Does nothing by
        default.
        """

    def highWaterReached(self) -> None:
        """
        The outbox went above C{high_water} and reading was paused. Does nothing by
        default (subclasses log it).
        """

    # -- connection -----------------------------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        size = getattr(transport, "bufferSize", None)
        if type(size) is int and 0 < size < COALESCE_LIMIT:
            self._coalesce_limit = size
        plain = _PLAIN_UNIX.get(type(transport))
        if plain is not None and not IFileDescriptorReceiver.providedBy(self):
            # A Unix socket is read as a plain one (_plain_unix): this connection
            # receives no file descriptors.
            transport.doRead = MethodType(plain[0], transport)
        super().makeConnection(transport)

    def registerAsProducer(self) -> None:
        """
        Register as the transport's streaming producer: from now on a full transport
        buffer pauses writing (L{pauseProducing}).
        """
        transport: Any = self.transport
        assert transport is not None
        transport.registerProducer(self, True)

    def abortWith(self, error: Exception) -> None:
        """
        Abort the connection at once (discarding unsent bytes), recording C{error} as
        the reason unless one was recorded already.
        """
        if self.abort_reason is None:
            self.abort_reason = error
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def dropBuffers(self) -> None:
        """
        Forget the outbox and the held frames (their connection is gone).
        """
        self._outbox.clear()
        self.buffered = 0
        self._reader.held.clear()
        if self._batch:
            self._batch = []
            self._batch_bytes = 0

    def flushOutbox(self) -> None:
        """
        Hand the whole outbox to the transport at once, ignoring a pause (before a
        clean close, like the transport's own buffer).
        """
        self._flush_batch()
        transport: Any = self.transport
        outbox, self._outbox = self._outbox, deque()
        self.buffered = 0
        for frame in outbox:
            transport.write(frame)

    # -- input ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._batch is not None or not self.coalesce:
            # Not coalescing, or a read delivered while one is dispatched (a
            # synchronous in-memory peer): the outer read hands the batch over.
            self._reader.read(data)
            return
        group = self.group
        reader = self._reader
        items = reader.decode(data)
        self._batch = []
        if group is None or group.reading:
            # No group; or a read of another connection of the group being dispatched
            # (delivered by a synchronous peer: that read hands over what goes to the
            # others).
            try:
                _dispatch_read(self, items, sliced=group is None)
            finally:
                self._flush_batch()
                self._batch = None
            return
        group.reading = True
        try:
            _dispatch_read(self, items, sliced=True)
        finally:
            group.reading = False
            self._flush_batch()
            self._batch = None
            group.flush()

    # -- output ---------------------------------------------------------------------------

    def transmit(self, frame: bytes) -> None:
        """
        Hand one complete frame to the transport, or to the outbox while the
        transport is paused (or the outbox still holds earlier frames).
        """
        if self.paused or self._outbox:
            self._outbox.append(frame)
            self.buffered += len(frame)
            high = self._high
            if (
                high is not None
                and self.buffered > high
                and not self.reading_paused
                and not self.outputClosed()
            ):
                self.reading_paused = True
                self.highWaterReached()
                transport: Any = self.transport
                if transport is not None:
                    transport.pauseProducing()
            return
        batch = self._batch
        if batch is None:
            group = self.group
            if group is not None and group.reading and self.coalesce:
                # Another connection of the group dispatches a read: collect.
                batch = self._batch = []
                group.written.append(self)
        if batch is not None:
            batch.append(frame)
            self._batch_bytes += len(frame)
            if self._batch_bytes > self._coalesce_limit:
                self._flush_batch()
            return
        transport = self.transport
        assert transport is not None
        transport.write(frame)

    def _flush_batch(self) -> None:
        """
        Hand the coalesced frames to the transport (L{_hand_over}: sent at once on an
        idle socket, else one C{write} or C{writeSequence}). (The transport may pause us
        as it takes them; the frames transmitted after that wait in the outbox, behind
        these.)
        """
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._batch_bytes = 0
        _hand_over(self.transport, batch)

    def _drain(self) -> None:
        """
        Hand the outbox to the transport until it is empty or the transport pauses us
        again; resume reading once it is at or below the low-water mark.
        """
        outbox = self._outbox
        transport: Any = self.transport  # a TCP/Unix/TLS transport: also an IPushProducer
        while outbox and not self.paused and not self.outputClosed():
            frame = outbox.popleft()
            self.buffered -= len(frame)
            assert transport is not None
            transport.write(frame)  # may pause us at once
        if self.reading_paused and self.buffered <= self._low and not self.outputClosed():
            self.reading_paused = False
            if transport is not None:
                transport.resumeProducing()
            self._reader.dispatch_held()

    # -- IPushProducer --------------------------------------------------------------------

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: new frames wait in the outbox.
        """
        if self.paused or self.outputClosed():
            return
        self.paused = True
        self.writabilityChanged(False)

    def resumeProducing(self) -> None:
        """
        The transport drained: hand it the outbox, then take new frames again.
        """
        if not self.paused or self.outputClosed():
            return
        self.paused = False
        self._drain()
        if not self.paused and not self.outputClosed():
            self.writabilityChanged(True)

    def stopProducing(self) -> None:
        pass


def _dispatch_read(
    protocol: FramedProtocol, items: list[Frame | FrameError | bytes], sliced: bool
) -> None:
    """
    Dispatch the items of one read of C{protocol}: in slices of
    L{FramedProtocol.push_every} when C{sliced} and the read holds more (not for a read
    nested in another connection's), else at once.
    """
    step = protocol.push_every
    if sliced and step and len(items) > step:
        _dispatch_in_slices(protocol, items)
    else:
        protocol._reader.dispatch(items)


def _dispatch_in_slices(protocol: FramedProtocol, items: list[Frame | FrameError | bytes]) -> None:
    """
    Dispatch C{items} (of one read of C{protocol}) L{FramedProtocol.push_every} at a
    time, handing over and sending what each slice transmitted before the next (see the
    module docstring). The order of frames is kept: each batch goes to its transport in
    order, and frames held for flow control stay behind the ones before them.
    """
    reader = protocol._reader
    step = protocol.push_every
    group = protocol.group
    end = len(items)
    start = 0
    while True:
        reader.dispatch(items[start : start + step])
        start += step
        if start >= end:
            return  # the last slice: handed over by the caller, sent by the reactor
        # (only the connections given frames in this slice: an empty push is a
        # send() of nothing)
        pushed = [protocol] if protocol._batch else []
        if group is not None and group.written:
            pushed.extend(group.written)
            group.flush()
        protocol._flush_batch()
        for connection in pushed:
            _push(connection.transport)
