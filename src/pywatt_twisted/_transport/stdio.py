# -*- test-case-name: tests.transport.test_stdio -*-
"""
The stdio transport: stdin lines in, stdout lines out.

One reader, one writer for the whole process (PROTOCOL.md gap G3). L{claim_stdout} moves
the protocol's stdout to a private file descriptor and points descriptor 1 at stderr, so a
stray C{print()}, a library or twistd's own logging can never corrupt the protocol stream.

Backpressure: L{StdioProtocol} registers itself as a streaming producer on its transport
and hands it lines only while the transport asks for more; the lines it holds back are
counted in L{StdioProtocol.unsent}. Above the high-water mark it stops reading stdin (and
stops dispatching lines already read) until the unsent bytes drop below the low-water
mark. Nothing is dropped, and memory stays bounded when the orchestrator stops reading
stdout.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted._transport.interfaces import IMessageReceiver, IOrchestratorLink
from pywatt_twisted.errors import LineTooLong, MessageTooLarge, ProtocolError
from pywatt_twisted.wire.codec import (
    decode_from_orchestrator,
    decode_init,
    encode_line,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.envelope import envelope_id
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.lines import DEFAULT_MAX_INIT_LENGTH, LineDecoder, http_request_id
from pywatt_twisted.wire.messages import HeartbeatAck, HttpResponse, OversizedHttpRequest

#: Default unsent stdout bytes above which stdin is no longer read (4 MiB).
DEFAULT_HIGH_WATER: Final = 4 * 1024 * 1024

#: Invalid stdin lines are reported at most once per this many seconds, with a count.
INVALID_LINE_REPORT_INTERVAL: Final = 1.0

_claimed_fd: int | None = None


def claim_stdout() -> int:
    """
    Reserve the process's stdout for protocol lines: duplicate descriptor 1 to a private
    descriptor (returned) and point descriptor 1 at stderr. Idempotent.
    """
    global _claimed_fd
    if _claimed_fd is None:
        _claimed_fd = os.dup(1)
        os.dup2(2, 1)
    return _claimed_fd


@implementer(IHalfCloseableProtocol, IOrchestratorLink, IPushProducer)
class StdioProtocol(Protocol):
    """
    The stdio line protocol. The first line is the init blob; every later line an
    orchestrator-to-module message. Garbage, unknown and over-long lines after the first
    are skipped and reported at most once per L{INVALID_LINE_REPORT_INTERVAL} seconds
    with a count; the loop never dies on input. An over-long C{http_request} line is not
    silently lost: its id is read from its first bytes and the receiver gets an
    L{OversizedHttpRequest} to answer.

    Lines after the init line may be as long as C{max_line_length} (the frame cap by
    default) in both directions: a longer stdout line is refused with
    L{MessageTooLarge}, as a channel refuses a frame that is too long.

    It is also the streaming producer of its transport's output (see the module
    docstring): C{pauseProducing} / C{resumeProducing} come from the transport when its
    own write buffer fills and drains.

    @ivar source: the module id used in the C{metadata.source} of HTTP responses.
    @ivar unsent: stdout bytes written by the module and not yet handed to the transport.
    @ivar reading_paused: whether stdin reading is paused because C{unsent} went above
        the high-water mark.
    """

    name = "stdio"
    log = Logger()

    def __init__(
        self,
        receiver: IMessageReceiver,
        max_line_length: int = DEFAULT_MAX_FRAME_LENGTH,
        *,
        max_init_length: int = DEFAULT_MAX_INIT_LENGTH,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int | None = None,
        clock: Any = None,
        source: str = "unknown_module",
    ) -> None:
        """
        @param receiver: gets the decoded messages.
        @param max_line_length: the longest line after the init line, in bytes, both
            directions (stdin lines and stdout lines).
        @param max_init_length: the longest init line accepted, in bytes.
        @param high_water: unsent stdout bytes above which stdin is no longer read.
        @param low_water: unsent stdout bytes below which reading resumes; a quarter of
            C{high_water} when C{None}.
        @param clock: an L{IReactorTime} for the invalid-line report (the global reactor
            when C{None}).
        @param source: the module id for the C{metadata.source} of HTTP responses until
            the init blob names it (the service passes C{$PYWATT_MODULE_ID}).
        """
        if low_water is None:
            low_water = high_water // 4
        if not 0 <= low_water < high_water:
            raise ValueError(
                f"the stdout low-water mark ({low_water}) must be below the high-water "
                f"mark ({high_water})"
            )
        if clock is None:
            from twisted.internet import reactor as clock
        self._receiver = receiver
        self.max_line_length = max_line_length
        self._decoder = LineDecoder(max_line_length, first_line_length=max_init_length)
        self._clock = clock
        self._have_init = False
        self._input_closed = False
        self._flush_waiters: list[Deferred[None]] = []
        self._closing = False
        self._lose_called = False
        self._write_done = False
        self.source = source
        # input
        self._lines: deque[bytes | LineTooLong] = deque()
        self._eof = False
        self._dispatching = False
        self.reading_paused = False
        self._paused_at = 0.0
        # output
        self.high_water = high_water
        self.low_water = low_water
        self._outgoing: deque[bytes] = deque()
        self.unsent = 0
        self._consumer_paused = False
        self._invalid = _InvalidLineReport(self)

    def connectionMade(self) -> None:
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            register(self, True)

    # -- input ------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._lines.extend(self._decoder.feed(data))
        self._dispatch()

    def _dispatch(self) -> None:
        """
        Handle the lines read so far, in order, until reading is paused.
        """
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._lines and not self.reading_paused and not self._input_closed:
                self._handle(self._lines.popleft())
        finally:
            self._dispatching = False
        if self._eof and not self._lines:
            self._input_ended()

    def _handle(self, item: bytes | LineTooLong) -> None:
        if isinstance(item, LineTooLong):
            if not self._have_init:
                self._have_init = True
                self._receiver.init_failed(
                    ProtocolError(f"the init line is too long: {item}", field="init")
                )
                return
            request_id = http_request_id(item.head)
            if request_id is None:
                self._invalid.skipped(f"line too long: {item}")
                return
            self.log.warn(
                "stdin: the http_request line of request {request_id} is longer than the "
                "{limit}-byte line cap; it was discarded and is answered 413 (raise "
                "--max-frame-length / PYWATT_MAX_FRAME_LENGTH, or have the orchestrator "
                "stream the body: docs/streaming.md)",
                request_id=request_id,
                limit=item.limit,
            )
            try:
                self._receiver.message_received(OversizedHttpRequest(request_id, item.limit), self)
            except Exception:
                self.log.failure("handling an over-long http_request from stdin failed")
            return
        if not self._have_init:  # the init line
            self._have_init = True
            try:
                blob = decode_init(item)
            except ProtocolError as e:
                self._receiver.init_failed(e)
                return
            self.source = blob.module_id
            self._receiver.init_received(blob)
            return
        try:
            message = decode_from_orchestrator(item)
        except ProtocolError as e:
            # The line itself is not shown: it may carry a secret value that was never
            # registered for redaction (a malformed 'secret' line, say).
            self._invalid.skipped(f"{len(item)} bytes: {e}")
            return
        try:
            self._receiver.message_received(message, self)
        except Exception:
            self.log.failure("handling {op} from stdin failed", op=type(message).__name__)

    def readConnectionLost(self) -> None:
        # Lines held back by backpressure are still handled, then the EOF.
        self._eof = True
        self._dispatch()

    def _input_ended(self) -> None:
        if self._input_closed:
            return
        self._input_closed = True
        self._invalid.close()
        if not self._have_init:
            self._have_init = True
            self._receiver.init_failed(
                ProtocolError("stdin closed before the init line arrived", field="init")
            )
            return
        self._receiver.input_closed(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        # Both directions are gone: lines not handled yet could not be answered.
        self._lines.clear()
        self.writeConnectionLost()
        self.readConnectionLost()

    def writeConnectionLost(self) -> None:
        if not self._write_done and self._outgoing:
            self.log.warn(
                "stdout closed with {n} bytes not yet written; they are lost", n=self.unsent
            )
        self._write_done = True
        self._outgoing.clear()
        self.unsent = 0
        if self.reading_paused:
            self._resume_reading()
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- IPushProducer (called by the transport about its output) ------------------------

    def pauseProducing(self) -> None:
        """
        The transport's write buffer is full: hold lines back until it asks for more.
        """
        self._consumer_paused = True

    def resumeProducing(self) -> None:
        """
        The transport drained its write buffer: hand it the lines held back.
        """
        self._consumer_paused = False
        self._pump()

    def stopProducing(self) -> None:
        """
        The transport's output is gone; L{writeConnectionLost} follows.
        """
        self._consumer_paused = True

    # -- output -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is None or self._write_done:
            self.log.warn("stdout is closed; dropping an outgoing line of {n} bytes", n=len(data))
            return
        self._outgoing.append(data)
        self.unsent += len(data)
        self._pump()
        if not self.reading_paused and self.unsent > self.high_water:
            self._pause_reading()

    def _pump(self) -> None:
        """
        Hand held-back lines to the transport while it accepts them; resume reading
        stdin below the low-water mark; close stdout once everything went out after a
        L{flush}.
        """
        transport = self.transport
        while self._outgoing and not self._consumer_paused and not self._write_done:
            data = self._outgoing.popleft()
            self.unsent -= len(data)
            assert transport is not None
            transport.write(data)
        if self.reading_paused and self.unsent < self.low_water:
            self._resume_reading()
        if self._closing and not self._outgoing and not self._lose_called:
            self._lose_called = True
            assert transport is not None
            lose = getattr(transport, "loseWriteConnection", None)
            if lose is not None:
                lose()
            else:
                transport.loseConnection()

    def _pause_reading(self) -> None:
        self.reading_paused = True
        self._paused_at = self._clock.seconds()
        self.log.warn(
            "stdout backpressure: {unsent} bytes wait to be written to stdout, above the "
            "high-water mark of {high_water} bytes; stdin is not read until they drop "
            "below {low_water} bytes (the orchestrator is not reading stdout; raise the "
            "marks with --stdout-high-water / PYWATT_STDOUT_HIGH_WATER and "
            "--stdout-low-water / PYWATT_STDOUT_LOW_WATER)",
            unsent=self.unsent,
            high_water=self.high_water,
            low_water=self.low_water,
        )
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None:
            pause()

    def _resume_reading(self) -> None:
        self.reading_paused = False
        self.log.info(
            "stdout drained below {low_water} bytes after {seconds} s; reading stdin again",
            low_water=self.low_water,
            seconds=round(self._clock.seconds() - self._paused_at, 3),
        )
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None and not self._eof:
            resume()
        # (Inside a dispatch already, its loop carries on with the next line.)
        self._dispatch()

    def send(self, message: Any) -> None:
        """
        Write C{message} as one bare stdout line. One longer than C{max_line_length} is
        not written and is logged (as a channel does with a frame that is too long).
        """
        line = encode_line(message)
        if len(line) - 1 > self.max_line_length:
            self.log.error(
                "stdout: {error}",
                error=str(
                    MessageTooLarge(
                        getattr(message, "op", "?"), len(line) - 1, self.max_line_length
                    )
                ),
            )
            return
        self._write(line)

    def send_heartbeat_ack(self) -> None:
        self.send(HeartbeatAck())

    def send_http_response(self, response: HttpResponse) -> None:
        """
        Write the reply to an C{http_request} as one stdout line.

        @raise MessageTooLarge: if the line would be longer than C{max_line_length}
            (nothing is written; the HTTP layer answers otherwise). A body whose array
            encoding cannot fit is refused before it is encoded.
        """
        limit = self.max_line_length
        body = response.body or b""
        # Each body byte takes at least two bytes in the array encoding ("0,").
        if 2 * len(body) - 1 > limit:
            raise MessageTooLarge(response.op, 2 * len(body) - 1, limit)
        # metadata.id is an envelope id (PROTOCOL.md 4.3: a valid UUID string; it only
        # correlates), not a fresh uuid4: 0.4 us against 3.7 us per response (issue 20)
        line = encode_stdout_http_response(response, source=self.source, message_id=envelope_id())
        if len(line) > limit:
            raise MessageTooLarge(response.op, len(line), limit)
        self._write(line + b"\n")

    def flush(self) -> Deferred[None]:
        """
        Close stdout once everything written so far has been delivered. Fires when done.
        """
        if self._write_done or self.transport is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._flush_waiters.append(d)
        if not self._closing:
            self._closing = True
            self._pump()
        return d


class _InvalidLineReport:
    """
    The report of skipped stdin lines: the first at once, then at most one line per
    L{INVALID_LINE_REPORT_INTERVAL} seconds, with a count and the last error.
    """

    def __init__(self, protocol: StdioProtocol) -> None:
        self._protocol = protocol  # its clock and its log (which a test may replace)
        self._clock = protocol._clock
        self._reported_at: float | None = None
        self._skipped = 0
        self._last_error = ""
        self._timer: IDelayedCall | None = None

    def skipped(self, error: str) -> None:
        """
        Report a skipped stdin line: at once if none was reported in the last
        L{INVALID_LINE_REPORT_INTERVAL} seconds, else counted into the next report.
        """
        now = self._clock.seconds()
        last = self._reported_at
        if last is None or now - last >= INVALID_LINE_REPORT_INTERVAL:
            self._reported_at = now
            self._protocol.log.warn(
                "skipping an invalid stdin line ({error}); further invalid lines are "
                "reported at most once a second, with a count",
                error=error,
            )
            return
        self._skipped += 1
        self._last_error = error
        if self._timer is None:
            self._timer = self._clock.callLater(
                last + INVALID_LINE_REPORT_INTERVAL - now, self._report_invalid_lines
            )

    def _report_invalid_lines(self) -> None:
        self._timer = None
        count, self._skipped = self._skipped, 0
        if count:
            self._reported_at = self._clock.seconds()
            self._protocol.log.warn(
                "skipped {count} more invalid stdin line(s) (the last: {error})",
                count=count,
                error=self._last_error,
            )

    def close(self) -> None:
        """
        Input ended: report what is still counted now, and stop the timer.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._report_invalid_lines()
