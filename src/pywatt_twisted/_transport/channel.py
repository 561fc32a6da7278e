# -*- test-case-name: tests.transport.test_channel -*-
"""
The framed channel transport (PROTOCOL.md section 4), shared by TCP and Unix sockets.

One L{ChannelProtocol} per connection, built by a L{ChannelFactory}. The module is the
client. The protocol is a L{FramedProtocol} (the framing, the oversize abort and the
flow control are shared with every framed connection) whose life is one explicit
L{ConnectionPhase}. It:

  - is full duplex: reading and writing share no lock and never wait for each other
    (PROTOCOL.md gap G4). Frames are read with the wire layer's L{FrameDecoder} and
    written with one C{write} each;
  - enforces the frame cap in both directions: an outgoing message that does not fit
    fails its caller with L{MessageTooLarge}; an incoming header announcing more than
    the cap aborts the connection before a byte of its payload is buffered;
  - is a push producer for its transport, and bounds what it buffers for a slow
    orchestrator: when the transport's buffer fills, the protocol tells its listener
    (the channel manager) to stop routing new sends to it, and keeps the frames still
    written to it (replies, identify) in its own outbox, counted in bytes
    (L{ChannelProtocol.buffered}). Above C{high_water} unsent bytes it stops taking
    new inbound work: it pauses reading its transport and holds frames already read
    until the outbox drains to C{low_water}; then it resumes, in order, dropping
    nothing;
  - sends the identify envelope (PROTOCOL.md 2.5) first on every connection when
    configured, and only then reports itself ready. Over TLS it writes identify once the
    handshake is done, and reports ready only once the peer has shown it accepted the
    connection (its first bytes, or C{tls_settle} seconds without an alert): a TLS 1.3
    server rejects a client certificate I{after} the client's handshake completed, and
    frames written in between would be lost. A handshake that does not complete
    within C{tls_handshake_timeout} aborts the connection (L{TlsHandshakeTimeout});
  - knows whether it proved usable (L{ChannelProtocol.healthy}: ready and one full
    inbound message, or C{healthy_after} seconds up), so the manager resets its
    reconnect backoff only after a connection that really worked;
  - optionally aborts a connection that stayed silent for longer than a liveness
    deadline (the manager then reconnects).

Decoded messages, readiness, pause/resume and loss go to an L{IChannelListener}. The
protocol is also the L{IOrchestratorLink} of its connection: replies to a message go
back on the connection it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast

from attrs import define, frozen
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from pywatt_twisted._transport.framed import FramedProtocol
from pywatt_twisted._transport.interfaces import IOrchestratorLink
from pywatt_twisted._transport.tls import TlsHandshakeTimeout
from pywatt_twisted.errors import (
    ChannelError,
    FrameError,
    FrameTooLarge,
    MessageTooLarge,
    ProtocolError,
)
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import decode_from_orchestrator
from pywatt_twisted.wire.envelope import (
    encode_channel_frame,
    envelope_id,
    heartbeat_ack_frame,
    identify_metadata,
    op_name,
)
from pywatt_twisted.wire.framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    FORMAT_AUTO,
    Frame,
    frame_json,
)
from pywatt_twisted.wire.messages import HeartbeatAck, HttpResponse, Identify

__all__ = [
    "ChannelClosed",
    "ChannelCounters",
    "ChannelFactory",
    "ChannelProtocol",
    "ChannelSettings",
    "ConnectionPhase",
    "IChannelListener",
    "LivenessTimeout",
    "MessageTooLarge",
    "encode_channel_frame",
    "envelope_id",
]

_log = Logger()

MiB = 1024 * 1024
_ACK_LENGTH = len(heartbeat_ack_frame()) - 5  # the payload: header bytes are not capped


class ChannelClosed(ChannelError):
    """
    A channel connection went away (or was never up) when a message had to go on it.
    """


class LivenessTimeout(ChannelError):
    """
    A channel carried no traffic from the orchestrator for longer than the liveness
    deadline; the module aborted the connection and reconnects.
    """


@frozen
class ChannelSettings:
    """
    What a channel connection needs to know.

    @ivar name: C{"tcp"} or C{"ipc"}; the link name seen by the runtime and in metrics.
    @ivar address: the address, for log lines and errors.
    @ivar module_id: this module's id (for identify).
    @ivar max_frame_length: the frame cap, both directions.
    @ivar identify: whether to send identify as the first frame of each connection.
    @ivar identify_properties: C{metadata.properties} of identify (C{None}: omitted).
    @ivar liveness_deadline: seconds without inbound traffic before the connection is
        aborted; C{None} turns the check off.
    @ivar tls: the connection runs over TLS: ready only after the handshake.
    @ivar tls_settle: over TLS, seconds after the handshake (or until the peer's first
        bytes) before the connection counts as accepted and becomes ready.
    @ivar tls_handshake_timeout: over TLS, seconds from the TCP connect to the end of
        the handshake before the connection is aborted; C{None} turns it off.
    @ivar high_water: unsent outbound bytes held by the connection above which it
        stops reading its transport (no new inbound work).
    @ivar low_water: unsent bytes at or below which reading resumes; C{None}: a
        quarter of C{high_water}.
    @ivar healthy_after: seconds a ready connection must stay up to count as healthy
        without an inbound message.
    """

    name: str
    address: str
    module_id: str
    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH
    identify: bool = True
    identify_properties: Mapping[str, object] | None = None
    liveness_deadline: float | None = None
    tls: bool = False
    tls_settle: float = 0.5
    tls_handshake_timeout: float | None = 10.0
    high_water: int = 4 * MiB
    low_water: int | None = None
    healthy_after: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.high_water <= 0:
            raise ValueError(f"high_water must be positive, got {self.high_water!r}")
        if self.low_water is not None and not 0 <= self.low_water < self.high_water:
            raise ValueError(
                f"low_water must be within [0, high_water), got {self.low_water!r} "
                f"(high_water {self.high_water!r})"
            )

    @property
    def resume_below(self) -> int:
        """
        The low-water mark in effect: C{low_water}, or a quarter of C{high_water}.
        """
        return self.high_water // 4 if self.low_water is None else self.low_water


@define
class ChannelCounters:
    """
    Traffic counters of one channel across its connections.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames: int = 0
    read_pauses: int = 0


class IChannelListener(Interface):
    """
    Who a L{ChannelProtocol} reports to (the channel manager).
    """

    def channel_ready(protocol: ChannelProtocol) -> None:
        """
        The connection is up (TLS handshake done) and identify was written.
        """

    def channel_writable(protocol: ChannelProtocol, writable: bool) -> None:
        """
        The transport's buffer filled (C{False}: route new sends elsewhere; frames
        still written go to the protocol's bounded outbox) or drained (C{True}).
        """

    def channel_message(protocol: ChannelProtocol, message: object) -> None:
        """
        A decoded orchestrator -> module message arrived.
        """

    def channel_problem(protocol: ChannelProtocol, error: Exception) -> None:
        """
        A frame was skipped (bad format byte, invalid JSON...); the connection stays up.
        """

    def channel_lost(protocol: ChannelProtocol, reason: Failure) -> None:
        """
        The connection is gone (whether or not it was ever ready).
        """

    def channel_undeliverable(protocol: ChannelProtocol, message: object) -> None:
        """
        A reply (C{send}, C{send_http_response}) was made on a connection that is
        already gone; the listener should deliver it another way or fail loudly.
        """


class ConnectionPhase(Enum):
    """
    Where one channel connection is in its life. The only steps are those of
    L{PHASE_STEPS}; L{ChannelProtocol} takes them in one method.
    """

    CONNECTING = "connecting"
    """Built; the transport is not connected yet."""
    HANDSHAKING = "handshaking"
    """Over TLS: connected, the handshake is under way (bounded by its timeout)."""
    SETTLING = "settling"
    """Over TLS: handshake done and identify written; waiting for the peer to accept."""
    READY = "ready"
    """Usable: identify written, the listener was told."""
    LOST = "lost"
    """The connection is gone (whether or not it was ever ready)."""


# The phases the per-message code compares with, as globals: reading an Enum member
# through its class goes through EnumType's __getattr__ hook (about 1k instructions
# where a global is a few dozen: issue 20).
_READY: Final = ConnectionPhase.READY
_LOST: Final = ConnectionPhase.LOST
_SETTLING: Final = ConnectionPhase.SETTLING

PHASE_STEPS: Mapping[ConnectionPhase, frozenset[ConnectionPhase]] = {
    ConnectionPhase.CONNECTING: frozenset(
        {ConnectionPhase.HANDSHAKING, ConnectionPhase.READY, ConnectionPhase.LOST}
    ),
    ConnectionPhase.HANDSHAKING: frozenset({ConnectionPhase.SETTLING, ConnectionPhase.LOST}),
    ConnectionPhase.SETTLING: frozenset({ConnectionPhase.READY, ConnectionPhase.LOST}),
    ConnectionPhase.READY: frozenset({ConnectionPhase.LOST}),
    ConnectionPhase.LOST: frozenset(),
}
"""The phases each phase may step to."""


class _Timer:
    """
    One optional delayed call of a connection, cancelled cleanly.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._call: Any = None

    @property
    def pending(self) -> bool:
        return self._call is not None

    def start(self, delay: float, f: Callable[[], object]) -> None:
        def fire() -> None:
            self._call = None
            f()

        self._call = self._clock.callLater(delay, fire)

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


class _ChannelOutput:
    """
    The output side of a L{ChannelProtocol}: writing frames (counted, through the
    framed base's coalescing and bounded outbox), the flow-control hooks that tell the
    listener, and the replies of L{IOrchestratorLink}. A mixin of L{ChannelProtocol}
    only; its state (phase, settings, counters, listener) is the protocol's.
    """

    # (Provided by ChannelProtocol and FramedProtocol.)
    phase: ConnectionPhase
    name: str
    settings: ChannelSettings
    counters: ChannelCounters
    listener: IChannelListener
    paused: bool
    buffered: int
    log: Logger
    _max: int
    _warned_high_water: bool
    transmit: Callable[[bytes], None]

    if TYPE_CHECKING:
        # ChannelProtocol's read-only properties (a plain annotation here would be a
        # writeable attribute, which a property may not override).
        @property
        def ready(self) -> bool: ...

        @property
        def lost(self) -> bool: ...

    def _protocol(self) -> ChannelProtocol:
        """
        This object as the L{ChannelProtocol} it is part of (what the listener is told).
        """
        return cast("ChannelProtocol", self)

    @property
    def writable(self) -> bool:
        """
        Ready, connected and not paused: new frames may be written now.
        """
        return self.ready and not self.paused

    def _write(self, frame: bytes) -> None:
        counters = self.counters
        counters.frames_out += 1
        counters.bytes_out += len(frame)
        self.transmit(frame)

    def highWaterReached(self) -> None:
        self.counters.read_pauses += 1
        if not self._warned_high_water:
            self._warned_high_water = True
            self.log.warn(
                "{channel} ({address}): {buffered} bytes wait for the orchestrator to read "
                "them, above the channel high-water mark of {high} bytes; not reading new "
                "work on this connection until they drain to {low} bytes (logged once per "
                "connection). Raise PYWATT_CHANNEL_HIGH_WATER / --channel-high-water to "
                "buffer more.",
                channel=self.name,
                address=self.settings.address,
                buffered=self.buffered,
                high=self.settings.high_water,
                low=self.settings.resume_below,
            )

    def writabilityChanged(self, writable: bool) -> None:
        """
        Tell the listener to route new sends elsewhere (C{False}) or here again.
        """
        self.listener.channel_writable(self._protocol(), writable)

    def write_frame(self, frame: bytes) -> None:
        """
        Write one complete frame produced by L{encode_channel_frame}.

        @raise ChannelClosed: if the connection is gone or not ready yet.
        """
        if self.phase is not _READY:
            raise ChannelClosed(f"the {self.name} channel connection is not up")
        counters = self.counters  # _write, inline: once per message sent
        counters.frames_out += 1
        counters.bytes_out += len(frame)
        self.transmit(frame)

    def write_message(self, message: object) -> None:
        """
        Envelope, frame and write C{message}.

        @raise MessageTooLarge: if it does not fit in a frame (nothing is written).
        @raise ChannelClosed: if the connection is gone.
        """
        self.write_frame(encode_channel_frame(message, self._max))

    def send(self, message: object) -> None:
        """
        Send a reply on this connection; if it is gone, hand it to the listener.
        """
        if self.lost or not self.ready:
            self.listener.channel_undeliverable(self._protocol(), message)
            return
        try:
            self.write_message(message)
        except MessageTooLarge as e:
            self.log.error("{channel}: {error}", channel=self.name, error=str(e))

    def send_heartbeat_ack(self) -> None:
        if self.phase is not _READY:  # lost, or not up yet
            self.log.debug(
                "{channel}: heartbeat ack not sent: its connection is gone", channel=self.name
            )
            return
        if self._max < _ACK_LENGTH:  # a cap below 92 bytes: say so (MessageTooLarge)
            self.write_message(HeartbeatAck())
            return
        frame = heartbeat_ack_frame()
        counters = self.counters  # _write, inline: once per heartbeat
        counters.frames_out += 1
        counters.bytes_out += len(frame)
        self.transmit(frame)

    def send_http_response(self, response: HttpResponse) -> None:
        """
        Send the reply to an C{http_request}; if the connection is gone, hand it to the
        listener.

        @raise MessageTooLarge: if it does not fit in a frame (nothing is written); the
            HTTP layer answers it otherwise (see
            L{pywatt_twisted.web.bridge.send_http_reply}).
        """
        if self.lost or not self.ready:
            self.listener.channel_undeliverable(self._protocol(), response)
            return
        self.write_message(response)


class _Liveness:
    """
    The liveness deadline of one connection: abort it once the orchestrator sent
    nothing for C{deadline} seconds (C{None}: never).

    @ivar last_in: when the connection last read bytes (updated while the check runs).
    """

    def __init__(self, protocol: ChannelProtocol, deadline: float | None) -> None:
        self.protocol = protocol
        self.deadline = deadline
        self.last_in = 0.0
        self._timer = _Timer(protocol.clock)

    @property
    def pending(self) -> bool:
        return self._timer.pending

    def start(self) -> None:
        self.last_in = self.protocol.clock.seconds()
        if self.deadline:
            self._timer.start(self.deadline, self._check)

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        protocol, deadline = self.protocol, self.deadline
        if deadline is None or protocol.lost:
            return
        idle = protocol.clock.seconds() - self.last_in
        if idle < deadline:
            self._timer.start(deadline - idle, self._check)
            return
        protocol.log.warn(
            "{channel} ({address}): no traffic from the orchestrator for {idle:.1f} s "
            "(liveness deadline {deadline} s); aborting the connection to reconnect. "
            "Frames still in its send buffer are lost with it.",
            channel=protocol.name,
            address=protocol.settings.address,
            idle=idle,
            deadline=deadline,
        )
        protocol.abort(
            LivenessTimeout(
                f"no traffic from the orchestrator for {deadline} s (liveness deadline); "
                "reconnecting"
            )
        )


@implementer(IOrchestratorLink, IPushProducer, IHandshakeListener)
class ChannelProtocol(_ChannelOutput, FramedProtocol):
    """
    One framed channel connection, module side. See the module docstring.

    @ivar phase: where the connection is (L{ConnectionPhase}).
    @ivar paused: the transport asked us to stop writing: frames written now wait in
        the outbox.
    @ivar reading_paused: the outbox holds more than C{high_water} bytes: the
        transport is not read and read frames are held until it drains.
    @ivar buffered: bytes of frames in the outbox (written by the module, not yet
        handed to the transport).
    @ivar ready_at: when the connection became ready.
    @ivar exchanged: a full inbound message arrived once the connection was ready.
    @ivar abort_reason: why this side aborted the connection, if it did.
    """

    log = _log
    json_payloads = True  # JSON frames come to jsonReceived, without a Frame each

    def __init__(
        self,
        settings: ChannelSettings,
        listener: IChannelListener,
        clock: IReactorTime,
        counters: ChannelCounters | None = None,
    ) -> None:
        super().__init__(settings.max_frame_length, settings.high_water, settings.resume_below)
        self.settings = settings
        self.name = settings.name
        self.listener = listener
        self.clock = clock
        self.counters = counters if counters is not None else ChannelCounters()
        self._max = settings.max_frame_length
        self.phase = ConnectionPhase.CONNECTING
        self.ready_at: float | None = None
        self.lost_at: float | None = None
        self.exchanged = False
        self._warned_high_water = False
        self._warned_auto = False
        self._liveness = _Liveness(self, settings.liveness_deadline)
        self._settle = _Timer(clock)
        self._handshake = _Timer(clock)

    # -- phase ------------------------------------------------------------------------

    def _enter(self, phase: ConnectionPhase) -> None:
        """
        Step to C{phase}: the one place the connection's phase changes.
        """
        if phase not in PHASE_STEPS[self.phase]:
            raise RuntimeError(f"{self!r}: no step from {self.phase.name} to {phase.name}")
        self.phase = phase
        if phase is ConnectionPhase.READY:
            self.ready_at = self.clock.seconds()
            self.listener.channel_ready(self)
        elif phase is ConnectionPhase.LOST:
            self.lost_at = self.clock.seconds()
            for timer in (self._liveness, self._settle, self._handshake):
                timer.cancel()

    @property
    def ready(self) -> bool:
        """
        The connection is usable (connected, TLS done, identify written).
        """
        return self.phase is _READY

    @property
    def lost(self) -> bool:
        """
        The connection is gone.
        """
        return self.phase is _LOST

    def outputClosed(self) -> bool:
        return self.phase is _LOST

    # -- connection -------------------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        assert transport is not None
        _set_no_delay(transport)
        self.registerAsProducer()
        self._liveness.start()
        if not self.settings.tls:
            self._identify()
            self._enter(ConnectionPhase.READY)
            return
        self._enter(ConnectionPhase.HANDSHAKING)
        timeout = self.settings.tls_handshake_timeout
        if timeout:
            self._handshake.start(
                timeout,
                lambda: self.abort(
                    TlsHandshakeTimeout(
                        f"the TLS handshake with {self.settings.address} did not complete "
                        f"within {timeout:g} s (tls_handshake_timeout); retrying with "
                        "backoff. Raise PYWATT_TLS_HANDSHAKE_TIMEOUT / "
                        "--tls-handshake-timeout if the orchestrator is just slow"
                    )
                ),
            )

    def handshakeCompleted(self) -> None:
        self._handshake.cancel()
        if self.phase is not ConnectionPhase.HANDSHAKING:
            return
        self._identify()
        self._enter(ConnectionPhase.SETTLING)
        self._settle.start(self.settings.tls_settle, lambda: self._enter(ConnectionPhase.READY))

    def _identify(self) -> None:
        if self.settings.identify:
            module_id = self.settings.module_id
            metadata = identify_metadata(module_id, self.settings.identify_properties)
            try:
                self._write(encode_channel_frame(Identify(module_id), self._max, metadata))
            except MessageTooLarge as e:
                self.log.error(
                    "{channel}: cannot send identify: {error}", channel=self.name, error=e
                )

    @property
    def healthy(self) -> bool:
        """
        Whether the connection proved usable: it became ready and then either carried
        one full inbound message or stayed up C{healthy_after} seconds. One that opens
        and dies before that (a TLS rejection, a peer that closes at once) is not.
        """
        if self.exchanged:
            return True
        if self.ready_at is None:
            return False
        end = self.lost_at if self.lost_at is not None else self.clock.seconds()
        return end - self.ready_at >= self.settings.healthy_after

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.lost:
            return
        if reason is None:
            reason = Failure(ChannelClosed("connection lost"))
        self._enter(ConnectionPhase.LOST)
        # Unsent frames and unread requests go with the connection.
        self.dropBuffers()
        factory = getattr(self, "factory", None)
        if isinstance(factory, ChannelFactory):
            factory.live.discard(self)
        self.listener.channel_lost(self, reason)

    def close(self) -> None:
        """
        Close cleanly: unregister as the transport's producer first (a TLS transport
        only sends its close alert once no producer is registered), then lose the
        connection once the buffered frames are written.
        """
        transport: Any = self.transport
        if self.lost or transport is None:
            return
        # The outbox goes out before the close, like the transport's own buffer.
        self.flushOutbox()
        if getattr(transport, "producer", self) is not None:
            try:
                transport.unregisterProducer()
            except Exception:
                pass
        transport.loseConnection()

    def abort(self, error: Exception) -> None:
        """
        Abort the connection at once (discarding unsent bytes), recording C{error} as
        the reason.
        """
        if not self.lost:
            self.abortWith(error)

    # -- input --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        if self._liveness.pending:
            self._liveness.last_in = self.clock.seconds()
        if self.phase is _SETTLING:
            # Over TLS: the peer's first bytes prove it accepted the connection.
            self._settle.cancel()
            self._enter(ConnectionPhase.READY)
            if self.lost:
                return
        self.counters.bytes_in += len(data)
        super().dataReceived(data)

    def frameTooLong(self, error: FrameTooLarge) -> None:
        self.counters.bad_frames += 1
        self.log.error(
            "{channel} ({address}): {error}; aborting the connection (the stream "
            "cannot be trusted past that header) and reconnecting",
            channel=self.name,
            address=self.settings.address,
            error=str(error),
        )
        self.abort(error)

    def frameSkipped(self, error: FrameError) -> None:
        self.counters.bad_frames += 1
        self.log.warn("{channel}: skipping a frame: {error}", channel=self.name, error=str(error))
        self.listener.channel_problem(self, error)

    def jsonReceived(self, payload: bytes) -> None:
        # A JSON frame (format 1), as its payload (json_payloads: no Frame object).
        self.counters.frames_in += 1
        try:
            message = decode_from_orchestrator(payload)
        except (ProtocolError, _json.JSONDecodeError, ValueError) as e:
            self._undecodable(len(payload), e)
            return
        if not self.exchanged:
            self.exchanged = self.phase is _READY
        try:
            self.listener.channel_message(self, message)
        except Exception:
            self.log.failure(
                "{channel}: handling {op} failed", channel=self.name, op=op_name(message)
            )

    def frameReceived(self, frame: Frame) -> None:
        # A frame in another format than JSON (Binary, Base64, Auto), or a JSON frame
        # handed over as a Frame: its JSON text goes the JSON frames' way.
        if frame.format == FORMAT_AUTO and not self._warned_auto:
            self._warned_auto = True
            self.log.warn(
                "{channel}: the orchestrator sends frames with format byte 0 (the "
                "Python SDK's JSON code); reading them as JSON",
                channel=self.name,
            )
        try:
            payload = frame_json(frame)
        except ProtocolError as e:
            self.counters.frames_in += 1
            self._undecodable(len(frame.payload), e)
            return
        self.jsonReceived(payload)

    def _undecodable(self, size: int, error: Exception) -> None:
        self.counters.bad_frames += 1
        self.log.warn(
            "{channel}: skipping an undecodable frame ({n} bytes): {error}",
            channel=self.name,
            n=size,
            error=str(error),
        )
        self.listener.channel_problem(self, error)

    def __repr__(self) -> str:
        return f"<ChannelProtocol {self.name} {self.settings.address}>"


def _set_no_delay(transport: Any) -> None:
    # Through TLS wrappers down to the socket: frames are small and latency-bound.
    for _ in range(4):
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except Exception:
                pass
            return
        transport = getattr(transport, "transport", None)
        if transport is None:
            return


class ChannelFactory(Factory):
    """
    Builds L{ChannelProtocol}s for one channel, all reporting to one listener and
    counting into one L{ChannelCounters}.

    @ivar live: the protocols built and not yet disconnected.
    """

    noisy = False  # the manager logs connects and losses itself

    def __init__(
        self,
        settings: ChannelSettings,
        listener: IChannelListener,
        clock: IReactorTime,
        counters: ChannelCounters | None = None,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.clock = clock
        self.counters = counters if counters is not None else ChannelCounters()
        self.live: set[ChannelProtocol] = set()

    def buildProtocol(self, addr: object) -> ChannelProtocol:
        protocol = ChannelProtocol(self.settings, self.listener, self.clock, self.counters)
        protocol.factory = self
        self.live.add(protocol)
        return protocol
