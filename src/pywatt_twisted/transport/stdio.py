# -*- test-case-name: tests.transport.test_stdio -*-
"""
The stdio transport: stdin lines in, stdout lines out.

One reader, one writer for the whole process (PROTOCOL.md gap G3). L{claim_stdout} moves
the protocol's stdout to a private file descriptor and points descriptor 1 at stderr, so a
stray C{print()}, a library or twistd's own logging can never corrupt the protocol stream.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.errors import LineTooLong, ProtocolError
from pywatt_twisted.transport.interfaces import IMessageReceiver, IOrchestratorLink
from pywatt_twisted.wire.codec import (
    decode_from_orchestrator,
    decode_init,
    encode_line,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.lines import DEFAULT_MAX_LINE_LENGTH, LineDecoder
from pywatt_twisted.wire.messages import HeartbeatAck, HttpResponse

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


@implementer(IHalfCloseableProtocol, IOrchestratorLink)
class StdioProtocol(Protocol):
    """
    The stdio line protocol. The first line is the init blob; every later line an
    orchestrator-to-module message. Garbage, unknown and over-long lines after the first
    are logged and skipped; the loop never dies on input.

    @ivar source: the module id used in the C{metadata.source} of HTTP responses.
    """

    name = "stdio"
    log = Logger()

    def __init__(
        self, receiver: IMessageReceiver, max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    ) -> None:
        self._receiver = receiver
        self._decoder = LineDecoder(max_line_length)
        self._have_init = False
        self._input_closed = False
        self._flush_waiters: list[Deferred[None]] = []
        self._closing = False
        self._write_done = False
        self.source = os.environ.get("PYWATT_MODULE_ID", "unknown_module")

    # -- input ------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if self._input_closed:
                return
            if isinstance(item, LineTooLong):
                if not self._have_init:
                    self._have_init = True
                    self._receiver.init_failed(
                        ProtocolError(f"the init line is too long: {item}", field="init")
                    )
                else:
                    self.log.warn("skipping stdin line: {error}", error=str(item))
                continue
            if not self._have_init:
                self._have_init = True
                self._init_line(item)
                continue
            try:
                message = decode_from_orchestrator(item)
            except ProtocolError as e:
                # The line itself is not shown: it may carry a secret value that was never
                # registered for redaction (a malformed 'secret' line, say).
                self.log.warn(
                    "skipping an invalid stdin line of {size} bytes: {error}",
                    error=str(e),
                    size=len(item),
                )
                continue
            try:
                self._receiver.message_received(message, self)
            except Exception:
                self.log.failure("handling {op} from stdin failed", op=type(message).__name__)

    def _init_line(self, line: bytes) -> None:
        try:
            blob = decode_init(line)
        except ProtocolError as e:
            self._receiver.init_failed(e)
            return
        self.source = blob.module_id
        self._receiver.init_received(blob)

    def readConnectionLost(self) -> None:
        if self._input_closed:
            return
        self._input_closed = True
        if not self._have_init:
            self._have_init = True
            self._receiver.init_failed(
                ProtocolError("stdin closed before the init line arrived", field="init")
            )
            return
        self._receiver.input_closed(self)

    def writeConnectionLost(self) -> None:
        self._write_finished()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.readConnectionLost()
        self._write_finished()

    def _write_finished(self) -> None:
        self._write_done = True
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- output -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is None or self._write_done:
            self.log.warn("stdout is closed; dropping an outgoing line of {n} bytes", n=len(data))
            return
        self.transport.write(data)

    def send(self, message: Any) -> None:
        self._write(encode_line(message))

    def send_heartbeat_ack(self) -> None:
        self.send(HeartbeatAck())

    def send_http_response(self, response: HttpResponse) -> None:
        self._write(encode_stdout_http_response(response, source=self.source) + b"\n")

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
            lose = getattr(self.transport, "loseWriteConnection", None)
            if lose is not None:
                lose()
            else:
                self.transport.loseConnection()
        return d
