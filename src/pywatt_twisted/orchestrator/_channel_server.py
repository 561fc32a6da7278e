# -*- test-case-name: tests.transport.test_channel_server -*-
"""
The orchestrator's side of the framed channels: L{ChannelServer} listens on TCP and/or
a Unix socket (optionally with TLS), accepts module connections and gives each one as
a L{ModuleConnection} that can send bare orchestrator messages, heartbeats and
C{http_request}s, await the module's replies, drop or abort the connection, or send a
bogus frame header.

The integration tests use it as their orchestrator, C{pywatt dev} can serve channels
with it, and L{EphemeralPKI} (from L{pywatt_twisted.orchestrator._pki}, re-exported here)
makes the certificates for TLS set-ups on the fly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted._transport.framed import (
    CoalesceGroup,
    FramedProtocol,
    raise_send_buffer,
    write_parts,
)
from pywatt_twisted.errors import FrameError, FrameTooLarge, ProtocolError, RequestTimeout
from pywatt_twisted.orchestrator._pki import EphemeralPKI, server_tls_options
from pywatt_twisted.wire.codec import (
    decode_envelope_from_module,
    encode,
    encode_stream_chunk_parts,
)
from pywatt_twisted.wire.framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    FORMAT_JSON,
    Frame,
    build_frame,
    encode_frame,
    frame_header,
    frame_json,
)
from pywatt_twisted.wire.messages import (
    Envelope,
    Heartbeat,
    HttpRequest,
    HttpResponse,
    Identify,
    OrchestratorMessage,
    StreamChunk,
)

__all__ = ["ChannelServer", "EphemeralPKI", "ModuleConnection", "server_tls_options"]

_log = Logger()

Predicate = Callable[[Envelope], bool]


def _op_is(op: str) -> Predicate:
    return lambda envelope: getattr(envelope.content, "op", None) == op


class ModuleConnection(FramedProtocol):
    """
    One module connected to a L{ChannelServer} (a L{FramedProtocol}: an oversize
    frame header aborts the connection).

    @ivar received: every envelope the module sent, in order.
    @ivar closed: fires (with C{None}) when the connection is gone.
    @ivar close_reason: why it closed (a L{Failure}), once it has.
    @ivar bad_frames: frames that could not be decoded.
    """

    def __init__(self, server: ChannelServer) -> None:
        super().__init__(server.max_frame_length)
        self.server = server
        self.group = server.coalesce_group
        self.clock = server.clock
        self.received: list[Envelope] = []
        self.bad_frames: list[Exception] = []
        self._unclaimed: list[Envelope] = []
        self._waiters: list[tuple[Predicate, Deferred[Envelope]]] = []
        self.closed: Deferred[None] = Deferred()
        self.close_reason: Failure | None = None
        self.lost = False
        self.listener = ""

    # -- Protocol --------------------------------------------------------------------

    #: The most bytes read from the module's socket at once (twisted's default is 64 KiB:
    #: six reads, six trips through the reactor and the frame decoder, for each frame of
    #: a 256 KiB stream chunk, 349 KB once base64-coded).
    read_size = 256 * 1024

    def connectionMade(self) -> None:
        size = getattr(self.transport, "bufferSize", None)
        if type(size) is int and size < self.read_size:
            self.transport.bufferSize = self.read_size  # type: ignore[union-attr]
        # (room in the kernel for a window of stream chunks: they go out whole, uncopied)
        raise_send_buffer(self.transport)
        setter = getattr(self.transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except Exception:
                pass
        self.server._connected(self)

    def frameTooLong(self, error: FrameTooLarge) -> None:
        self.bad_frames.append(error)
        _log.error("module sent an oversize frame header: {e}", e=str(error))
        self.abortWith(error)

    def frameSkipped(self, error: FrameError) -> None:
        self.bad_frames.append(error)

    def outputClosed(self) -> bool:
        return self.lost

    #: JSON frames (format 1) come as their payload (L{jsonReceived}): no L{Frame}
    #: object for them unless an C{on_frame} hook wants one
    json_payloads = True

    def jsonReceived(self, payload: bytes) -> None:
        server = self.server
        json_hook = server.on_json
        if json_hook is not None and json_hook(self, payload):
            return
        if server.on_frame is not None:
            self.frameReceived(build_frame(FORMAT_JSON, payload))
            return
        try:
            envelope = decode_envelope_from_module(payload)
        except (ProtocolError, ValueError) as e:
            self.bad_frames.append(e)
            return
        self._deliver(envelope)

    def frameReceived(self, frame: Frame) -> None:
        raw_hook = self.server.on_frame
        if raw_hook is not None and raw_hook(self, frame):
            return
        try:
            envelope = decode_envelope_from_module(frame_json(frame))
        except (ProtocolError, ValueError) as e:
            self.bad_frames.append(e)
            return
        self._deliver(envelope)

    def _deliver(self, envelope: Envelope) -> None:
        if self.server.record or isinstance(envelope.content, Identify):
            self.received.append(envelope)
        hook = self.server.on_message
        if hook is not None and hook(self, envelope):
            return
        for i, (predicate, d) in enumerate(self._waiters):
            if predicate(envelope):
                del self._waiters[i]
                d.callback(envelope)
                return
        self._unclaimed.append(envelope)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True
        reason = reason if reason is not None else Failure(ConnectionClosed())
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(ConnectionClosed(f"the module connection closed: {reason.value}"))
        self.close_reason = reason
        self.server._disconnected(self)
        self.closed.callback(None)

    # -- reading ---------------------------------------------------------------------

    @property
    def identify(self) -> Identify | None:
        """
        The identify the module sent on this connection, if any.
        """
        for envelope in self.received:
            if isinstance(envelope.content, Identify):
                return envelope.content
        return None

    def expect(self, predicate: Predicate, timeout: float = 10.0) -> Deferred[Envelope]:
        """
        The first envelope matching C{predicate} that no earlier C{expect} claimed
        (already received or still to come); fails after C{timeout} seconds or when the
        connection closes.
        """
        for i, envelope in enumerate(self._unclaimed):
            if predicate(envelope):
                del self._unclaimed[i]
                return succeed(envelope)
        if self.lost:
            return fail(ConnectionClosed("the module connection is closed"))
        d: Deferred[Envelope] = Deferred()
        entry = (predicate, d)
        self._waiters.append(entry)

        def expire() -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)
                d.errback(RequestTimeout(f"no matching message from the module in {timeout} s"))

        timer = self.clock.callLater(timeout, expire)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(done)
        return d

    def expect_op(self, op: str, timeout: float = 10.0) -> Deferred[Envelope]:
        """
        L{expect} the next unclaimed message with op C{op}.
        """
        return self.expect(_op_is(op), timeout)

    # -- writing ---------------------------------------------------------------------

    def send(self, message: OrchestratorMessage) -> None:
        """
        Send a bare orchestrator -> module message in a JSON frame.
        """
        if type(message) is StreamChunk:
            # (its base64 written as it came from the encoder: no copy into the JSON,
            # nor into one frame, write_parts)
            head, data, tail = encode_stream_chunk_parts(message)
            length = len(head) + len(data) + len(tail)
            if length > 1 << 32:
                raise FrameTooLarge(length, 1 << 32)
            assert self.transport is not None
            self._flush_batch()  # (what was sent before goes first)
            write_parts(self.transport, [frame_header(length, FORMAT_JSON), head, data, tail])
            return
        self.send_raw(encode_frame(encode(message), FORMAT_JSON, 1 << 32))

    #: C{send_raw(data)}: write bytes as they are (partial frames, wrong format
    #: bytes...). While a read of a connection of this server's L{coalesce group
    #: <ChannelServer.coalesce_group>} is dispatched they are collected with the frames
    #: sent before them and written when it is (L{FramedProtocol.transmit}, itself: the
    #: relay's path, one call less per frame).
    send_raw = FramedProtocol.transmit

    def send_bogus_header(self, length: int = 1 << 30, format: int = FORMAT_JSON) -> None:
        """
        Write a header announcing a C{length}-byte payload, and no payload.
        """
        self.send_raw(frame_header(length, format))

    def heartbeat(self, timeout: float = 10.0) -> Deferred[Envelope]:
        """
        Send a heartbeat; fires with the module's next C{heartbeat_ack}.
        """
        d = self.expect_op("heartbeat_ack", timeout)
        self.send(Heartbeat())
        return d

    def http_request(
        self,
        method: str,
        uri: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        request_id: str | None = None,
        timeout: float = 10.0,
    ) -> Deferred[HttpResponse]:
        """
        Send an C{http_request}; fires with the module's C{http_response} to it.
        """
        rid = request_id or str(uuid.uuid4())
        d = self.expect(
            lambda e: isinstance(e.content, HttpResponse) and e.content.request_id == rid,
            timeout,
        )
        self.send(HttpRequest(rid, method, uri, headers or {}, body))
        return d.addCallback(lambda envelope: envelope.content)

    def drop(self) -> None:
        """
        Close the connection cleanly (what an orchestrator restart looks like).
        """
        if self.transport is not None:
            self._flush_batch()
            self.transport.loseConnection()

    def abort(self) -> None:
        """
        Reset the connection at once.
        """
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


class _ConnectionFactory(Factory):
    def __init__(self, server: ChannelServer, listener: str) -> None:
        self.server = server
        self.listener = listener

    def buildProtocol(self, addr: Any) -> ModuleConnection:
        connection = ModuleConnection(self.server)
        connection.factory = self
        connection.listener = self.listener
        return connection


class ChannelServer:
    """
    Accepts module channel connections (see the module docstring).

    @param on_message: C{hook(connection, envelope) -> bool}, called for every message
        before waiters see it; returning C{True} consumes it (the dev orchestrator's
        dispatch).
    @param on_json: C{hook(connection, payload) -> bool}, called with the payload of
        every JSON frame (format 1) before it is decoded, before C{on_frame}; returning
        C{True} consumes it (pywatt dev's forwarding: no L{Frame} object is made).
    @param on_frame: C{hook(connection, frame) -> bool}, called for every frame before
        it is decoded; returning C{True} consumes it (benchmarks).
    @param coalesce_group: the L{CoalesceGroup} of this server's connections: the
        frames sent on any of them while one of them dispatches a read are written when
        that read is (one call per connection); by default the group every
        L{ChannelServer} on the same reactor shares, so a relay's frames forwarded from
        one module's connection to another's are coalesced too.
    @ivar connections: the connections currently open, oldest first.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        clock: Any = None,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        record: bool = True,
        on_message: Callable[[ModuleConnection, Envelope], bool] | None = None,
        on_frame: Callable[[ModuleConnection, Frame], bool] | None = None,
        on_json: Callable[[ModuleConnection, bytes], bool] | None = None,
        coalesce_group: CoalesceGroup | None = None,
    ) -> None:
        self.reactor = reactor
        self.coalesce_group = (
            coalesce_group if coalesce_group is not None else _reactor_group(reactor)
        )
        self.clock = clock if clock is not None else reactor
        self.max_frame_length = max_frame_length
        #: keep every envelope in C{ModuleConnection.received} (the identify is kept
        #: either way); off for a long-running orchestrator (pywatt dev)
        self.record = record
        self.on_message = on_message
        self.on_frame = on_frame
        self.on_json = on_json
        self.ports: list[IListeningPort] = []
        self.connections: list[ModuleConnection] = []
        self.accepted = 0
        self._fresh: list[ModuleConnection] = []
        self._conn_waiters: list[tuple[str | None, Deferred[ModuleConnection]]] = []

    def listen_tcp(
        self, port: int = 0, interface: str = "127.0.0.1", tls: Any = None
    ) -> Deferred[str]:
        """
        Listen on TCP (with TLS when C{tls} is a server context factory, see
        L{server_tls_options}); fires with the bound C{"ip:port"}.
        """
        factory: Any = _ConnectionFactory(self, "tls" if tls is not None else "tcp")
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            # TLS write batching runs on this server's clock, not the global reactor.
            factory = TLSMemoryBIOFactory(tls, False, factory, clock=self.clock)
        d = TCP4ServerEndpoint(self.reactor, port, interface=interface).listen(factory)

        def bound(listening: IListeningPort) -> str:
            self.ports.append(listening)
            host: Any = listening.getHost()
            return f"{host.host}:{host.port}"

        return d.addCallback(bound)

    def connection_factory(self, listener: str) -> Factory:
        """
        The factory of this server's connections for a C{listener} kind (C{"tcp"},
        C{"tls"}, C{"ipc"}), for serving over a transport of your own (the testing
        toolkit connects modules to it in memory).
        """
        return _ConnectionFactory(self, listener)

    def listen_unix(self, path: str) -> Deferred[str]:
        """
        Listen on a Unix socket; fires with the path.
        """
        d = UNIXServerEndpoint(self.reactor, path).listen(_ConnectionFactory(self, "ipc"))

        def bound(listening: IListeningPort) -> str:
            self.ports.append(listening)
            return path

        return d.addCallback(bound)

    def _connected(self, connection: ModuleConnection) -> None:
        self.accepted += 1
        self.connections.append(connection)
        for i, (listener, d) in enumerate(self._conn_waiters):
            if listener is None or listener == connection.listener:
                del self._conn_waiters[i]
                d.callback(connection)
                return
        self._fresh.append(connection)

    def _disconnected(self, connection: ModuleConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        if connection in self._fresh:
            self._fresh.remove(connection)

    def next_connection(
        self, listener: str | None = None, timeout: float = 10.0
    ) -> Deferred[ModuleConnection]:
        """
        The next connection no earlier call returned (already accepted or to come).

        @param listener: C{"tcp"}, C{"tls"} or C{"ipc"} to take only connections that
            came in on that kind of listener.
        """
        for i, connection in enumerate(self._fresh):
            if listener is None or connection.listener == listener:
                del self._fresh[i]
                return succeed(connection)
        d: Deferred[ModuleConnection] = Deferred()
        entry = (listener, d)
        self._conn_waiters.append(entry)

        def expire() -> None:
            if entry in self._conn_waiters:
                self._conn_waiters.remove(entry)
                d.errback(RequestTimeout(f"no module connected ({listener}) within {timeout} s"))

        timer = self.clock.callLater(timeout, expire)
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def stop(self) -> Deferred[None]:
        """
        Stop listening and abort every connection; fires when all are closed.
        """
        waits: list[Deferred[Any]] = [
            Deferred.fromCoroutine(_await(p.stopListening())) for p in self.ports
        ]
        self.ports = []
        for connection in list(self.connections):
            waits.append(connection.closed)
            connection.abort()
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)


_groups: WeakKeyDictionary[Any, CoalesceGroup] = WeakKeyDictionary()


def _reactor_group(reactor: Any) -> CoalesceGroup:
    """
    The L{CoalesceGroup} the channel servers on C{reactor} share (reads on one reactor
    are dispatched one at a time); a fresh one for a reactor that cannot be a weak key.
    """
    try:
        group = _groups.get(reactor)
        if group is None:
            group = _groups[reactor] = CoalesceGroup()
    except TypeError:
        return CoalesceGroup()
    return group


async def _await(value: Any) -> Any:
    if isinstance(value, Deferred):
        return await value
    return value
