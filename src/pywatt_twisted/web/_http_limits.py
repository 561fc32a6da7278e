# -*- test-case-name: tests.web.test_http_limits -*-
"""
The HTTP/1.1 connection behind the module's listening port, L{PyWattHTTPChannel}: it
bounds what a client may make the module hold: the request body (413), the header block
(431, or 414 for a request line alone), the time to send the headers (408) and an idle
connection, and refuses obsolete line folding (400).

L{pywatt_twisted.web.site.PyWattSite} sets the limits on each connection and logs the
refusals; the names here are re-exported from L{pywatt_twisted.web.site}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "REFUSAL_LINGER",
    "PyWattHTTPChannel",
]

#: Default largest request body, in bytes (C{--max-body-size}, C{PYWATT_MAX_BODY_SIZE}).
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024

#: Default largest request line plus headers, in bytes (C{--max-header-size},
#: C{PYWATT_MAX_HEADER_SIZE}).
DEFAULT_MAX_HEADER_SIZE = 16 * 1024

#: Default seconds from a request's first byte until all its headers are in
#: (C{--http-header-timeout}, C{PYWATT_HTTP_HEADER_TIMEOUT}).
DEFAULT_HEADER_TIMEOUT = 30.0

#: Default seconds a connection may stay silent between requests
#: (C{--http-idle-timeout}, C{PYWATT_HTTP_IDLE_TIMEOUT}).
DEFAULT_IDLE_TIMEOUT = 60.0

#: Seconds a refused connection keeps reading (and discarding) what the client still
#: sends after the refusal was written, so that the client reads the refusal instead of
#: a connection reset; then the connection is aborted.
REFUSAL_LINGER = 5.0


#: What each limit is called in logs: its setting, twistd option and variable.
_LIMIT_SETTINGS = {
    "max_body_size": "--max-body-size / PYWATT_MAX_BODY_SIZE",
    "max_header_size": "--max-header-size / PYWATT_MAX_HEADER_SIZE",
    "http_header_timeout": "--http-header-timeout / PYWATT_HTTP_HEADER_TIMEOUT",
    "http_idle_timeout": "--http-idle-timeout / PYWATT_HTTP_IDLE_TIMEOUT",
}


class _LeanChannel(HTTPChannel):
    """
    L{HTTPChannel} with what is the same for every request of a connection asked once
    (its addresses, whether it is TLS) and the status line and headers written as
    one piece (issue 20: each was microseconds per request).
    """

    #: a socket of its own (the bridge's in-memory channel says C{False}): gzip applies
    direct_http = True

    #: the transport L{getHost} and L{isSecure} last asked, and what it answered
    _hostOf: object = None
    _host: Any = None
    _peerOf: object = None
    _peer: Any = None
    _secureOf: object = None
    _secure = False

    def getHost(self) -> Any:
        """
        The local address of the connection, asked of the transport once: every
        request on it reads it (L{twisted.web.http.Request} at its start, Klein twice),
        and a TCP transport answers each time with a C{getsockname} system call and a
        new address object. The requests of one connection share the address object
        (a value: L{twisted.web.http.Request.setHost} replaces it, never changes it).
        """
        transport = self.transport
        if self._hostOf is not transport:
            self._host = transport.getHost()  # type: ignore[union-attr]
            self._hostOf = transport
        return self._host

    def getPeer(self) -> Any:
        """
        The remote address of the connection, as L{getHost}: asked of the transport
        once (a TCP transport builds a new address object each time).
        """
        transport = self.transport
        if self._peerOf is not transport:
            self._peer = transport.getPeer()  # type: ignore[union-attr]
            self._peerOf = transport
        return self._peer

    def isSecure(self) -> bool:
        """
        Whether the transport is TLS, decided once per connection: a connection does
        not change its security half-way (L{HTTPChannel.isSecure} adapts the transport
        to C{ISSLTransport}, microseconds through the adapter registry when it is
        plain TCP, and Klein asks twice per request).
        """
        transport = self.transport
        if self._secureOf is not transport:
            self._secure = bool(super().isSecure())
            self._secureOf = transport
        return self._secure

    # -- writing ------------------------------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """
        The status line and headers as one write of their joined bytes, the same bytes
        L{HTTPChannel.writeHeaders} writes as a sequence of 30-odd pieces (each
        type-checked and counted by the transport on the way).
        """
        if type(headers) is not Headers:
            super().writeHeaders(version, code, reason, headers)
            return
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.transport.write(b"".join(parts))  # type: ignore[union-attr]


class _IdleClockChannel(_LeanChannel):
    """
    L{HTTPChannel} with its idle timeout (L{TimeoutMixin}'s, which HTTPChannel turns
    off while a request is handled and on again after it, and resets with every piece
    of data) kept as a deadline behind one timer per connection, re-armed when it
    fires early (issue 20): turning it off and on again cancelled a timer and
    scheduled a new one for every request, and each piece of data moved the timer in
    the reactor's queue.
    """

    #: the clock of the deadlines (its C{seconds()}); the site sets its reactor, the
    #: global reactor otherwise (as L{TimeoutMixin.callLater} uses).
    clock: IReactorTime | None = None

    def _now(self) -> float:
        """
        C{seconds()} of the clock of the deadlines: the site's reactor, or the global
        reactor (as L{TimeoutMixin.callLater} uses) when no site set one.
        """
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor

            clock = self.clock = reactor  # type: ignore[assignment]
        return clock.seconds()  # type: ignore[union-attr]

    #: when the connection times out if nothing happens first (the clock's seconds), or
    #: C{None} while the timeout is off
    _idleDeadline: float | None = None
    _idleCall: IDelayedCall | None = None
    #: when L{_idleCall} is due
    _idleCallDue = 0.0

    def setTimeout(self, period: float | None) -> float | None:
        """
        L{TimeoutMixin.setTimeout}: time out C{period} seconds from now (unless data
        comes first), or never (C{None}); return the previous period.
        """
        previous: float | None = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        if period is None:
            self._idleDeadline = None  # the timer, if armed, finds nothing to do
            return previous
        deadline = self._idleDeadline = self._now() + period
        call = self._idleCall
        if call is None:
            self._idleCall = self.callLater(period, self._idleClockFired)
            self._idleCallDue = deadline
        elif self._idleCallDue > deadline:  # a shorter period than the timer's
            call.reset(period)
            self._idleCallDue = deadline
        return previous

    def resetTimeout(self) -> None:
        """
        L{TimeoutMixin.resetTimeout}: start the period again, unless the timeout is
        off or has already fired.
        """
        timeout = self.timeOut
        if self._idleDeadline is not None and timeout is not None:
            self._idleDeadline = self._now() + timeout

    def _idleClockFired(self) -> None:
        self._idleCall = None
        deadline = self._idleDeadline
        if deadline is None:  # off (a request is being handled), or closed
            return
        left = deadline - self._now()
        if left > 0:
            self._idleCall = self.callLater(left, self._idleClockFired)
            self._idleCallDue = deadline
            return
        self._idleDeadline = None
        self.timeoutConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._idleDeadline = None
        if self._idleCall is not None:
            if self._idleCall.active():
                self._idleCall.cancel()
            self._idleCall = None
        super().connectionLost(reason)


class PyWattHTTPChannel(_IdleClockChannel):
    """
    The HTTP/1.1 connection behind the listening port: L{HTTPChannel} with bounds on
    what one client can make the module hold, each answered with a status and a JSON
    body C{{"error": {"kind": ..., "message": ...}}} before the connection is closed:

      - a C{Content-Length} above L{maxBodySize}: 413 as soon as the headers are in,
        before any of the body is read (or spooled to a temporary file);
      - a chunked body that grows past L{maxBodySize}: 413 when it does;
      - a request line plus headers above C{totalHeadersSize} bytes: 431 (414 when the
        request line alone is too long);
      - headers not complete L{headerTimeout} seconds after the request's first byte:
        408, however often the client sends a byte (a slow-loris client resets the
        idle timer with every byte, not this one);
      - a header line starting with a space or tab (obsolete line folding, RFC 9112
        section 5.2): 400;
      - C{timeOut} (the idle timeout, from L{HTTPChannel}): a connection with no
        request in progress is closed; one that stalls in the middle of sending a body
        gets 408.

    After a refusal the connection's write side is closed and what the client still
    sends is read and discarded for L{REFUSAL_LINGER} seconds, so that the client
    reads the answer rather than a connection reset. The site sets the limits (see
    L{PyWattSite.buildProtocol}) and logs each kind of refusal (L{PyWattSite.limit_reached}).

    @ivar maxBodySize: the largest request body, in bytes.
    @ivar headerTimeout: seconds from a request's first byte until all its headers
        are in, or C{None} for no limit.
    """

    maxBodySize: int = DEFAULT_MAX_BODY_SIZE
    headerTimeout: float | None = DEFAULT_HEADER_TIMEOUT
    totalHeadersSize = DEFAULT_MAX_HEADER_SIZE
    MAX_LENGTH = DEFAULT_MAX_HEADER_SIZE

    _refused = False
    #: when the headers of the request being read must be in (C{clock.seconds()}), or
    #: C{None} between requests
    _headerDeadline: float | None = None
    _headerCall: IDelayedCall | None = None
    _lingerCall: IDelayedCall | None = None
    _bodyReceived = 0
    # -- reading ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        L{HTTPChannel.dataReceived} (the idle timer reset, then L{LineReceiver}'s
        split into lines) with the header clock started at a request's first byte and
        L{lineReceived}'s limits checked in the loop itself: a header line costs no
        call of ours (issue 20: three per small GET, with Twisted's two frames above
        them).
        """
        if self._refused:
            # Lingering after a refusal: read and drop, without resetting any timer.
            return
        if (
            data
            and self._headerDeadline is None
            and self.headerTimeout is not None
            and self.line_mode
            and not self._handlingRequest
        ):
            # The first byte of a request: its headers must all be in by the deadline.
            clock = self.clock
            if clock is not None and self._headerCall is not None:
                self._headerDeadline = clock.seconds() + self.headerTimeout
            else:
                self._startHeaderClock(self.headerTimeout)
        # resetTimeout(), inline
        timeout = self.timeOut
        if self._idleDeadline is not None and timeout is not None:
            clock = self.clock
            now = clock.seconds() if clock is not None else self._now()
            self._idleDeadline = now + timeout
        # LineReceiver.dataReceived, step for step, but for the limits of lineReceived
        # checked before each line goes to HTTPChannel.lineReceived.
        if self._busyReceiving:
            self._buffer += data
            return None
        delimiter = self.delimiter
        try:
            self._busyReceiving = True
            self._buffer += data
            while self._buffer and not self.paused:
                if self.line_mode:
                    try:
                        line, self._buffer = self._buffer.split(delimiter, 1)
                    except ValueError:
                        if len(self._buffer) >= (self.MAX_LENGTH + len(delimiter)):
                            line, self._buffer = self._buffer, b""
                            return self.lineLengthExceeded(line)
                        return None
                    else:
                        if len(line) > self.MAX_LENGTH:
                            exceeded = line + delimiter + self._buffer
                            self._buffer = b""
                            return self.lineLengthExceeded(exceeded)
                        if (
                            self._receivedHeaderSize + len(line) > self.totalHeadersSize
                            or line[:1] in _FOLD
                            or self._refused
                        ) and self._lineRefused(line):
                            return None
                        why = _httpLineReceived(self, line)
                        transport: Any = self.transport
                        if why or (transport and transport.disconnecting):
                            return why
                else:
                    data = self._buffer
                    self._buffer = b""
                    why = self.rawDataReceived(data)  # type: ignore[func-returns-value]
                    if why:
                        return why
        finally:
            self._busyReceiving = False
        return None

    def _startHeaderClock(self, timeout: float) -> None:
        """
        Set the deadline of the request starting now. One timer serves the requests of
        a keep-alive connection: it is armed only when none is, and when it fires
        early (set for an earlier request whose headers came in time) it is re-armed
        for the deadline of the request then being read, if any. A request costs a
        clock reading, not a timer scheduled and cancelled.
        """
        self._headerDeadline = self._now() + timeout
        if self._headerCall is None:
            self._headerCall = self.callLater(timeout, self._headerClockFired)

    def _headerClockFired(self) -> None:
        self._headerCall = None
        deadline = self._headerDeadline
        if deadline is None or self._refused:  # no request's headers are being read
            return
        left = deadline - self._now()
        if left > 0:
            self._headerCall = self.callLater(left, self._headerClockFired)
            return
        self._headersTimedOut()

    def _inHeaders(self) -> bool:
        """
        Whether the request line has been parsed and its headers are being read
        (L{HTTPChannel} sets C{_command} then and deletes it once the request is in).
        """
        return hasattr(self, "_command")

    def lineReceived(self, line: bytes) -> None:
        # (dataReceived checks the limits in its own loop; this is for direct callers)
        if self._lineRefused(line):
            return
        super().lineReceived(line)

    def _lineRefused(self, line: bytes) -> bool:
        """
        Whether C{line} of the request being read is refused (and answered): it takes
        the request line and headers past C{totalHeadersSize} (431), or it is a header
        line folded onto the one before (400). C{True} once the connection has refused
        a request: what follows is dropped.
        """
        if self._refused:
            return True
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._headersTooLarge()
            return True
        if line[:1] in _FOLD and self._inHeaders():
            self._refuse(
                400,
                b"Bad Request",
                "bad_request",
                "a header line starts with a space or tab (obsolete line folding); "
                "send each header on a single line",
            )
            return True
        return False

    def lineLengthExceeded(self, line: bytes) -> None:
        self._headersTooLarge()

    def allHeadersReceived(self) -> None:
        # The headers are in: no deadline until the next request's first byte (the
        # timer, if armed, stays for it; see _startHeaderClock).
        self._headerDeadline = None
        if self.length is not None and self.length > self.maxBodySize:
            self._bodyTooLarge(f"the request declares a body of {self.length} bytes")
            return
        super().allHeadersReceived()
        decoder = self._transferDecoder
        if self.length is None and decoder is not None:
            # Chunked: the size is only known as the chunks arrive; count them.
            self._bodyReceived = 0
            deliver = decoder.dataCallback
            limit = self.maxBodySize

            def counted(data: bytes) -> None:
                if self._refused:
                    return
                self._bodyReceived += len(data)
                if self._bodyReceived > limit:
                    self._bodyTooLarge(
                        f"the chunked request body passed {limit} bytes "
                        f"({self._bodyReceived} so far)"
                    )
                    return
                deliver(data)

            decoder.dataCallback = counted

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        super().allContentReceived()

    # -- limits -------------------------------------------------------------------------

    def _headersTooLarge(self) -> None:
        limit = self.totalHeadersSize
        if self._inHeaders():
            self._refuse(
                431,
                b"Request Header Fields Too Large",
                "header_too_large",
                f"the request line and headers exceed {limit} bytes",
                "max_header_size",
            )
        else:
            self._refuse(
                414,
                b"URI Too Long",
                "uri_too_long",
                f"the request line exceeds {limit} bytes",
                "max_header_size",
            )

    def _bodyTooLarge(self, what: str) -> None:
        self._refuse(
            413,
            b"Content Too Large",
            "body_too_large",
            f"{what}; the limit is {self.maxBodySize} bytes",
            "max_body_size",
        )

    def _headersTimedOut(self) -> None:
        self._refuse(
            408,
            b"Request Timeout",
            "timeout",
            f"the request headers were not complete within {self.headerTimeout:g} seconds",
            "http_header_timeout",
        )

    def timeoutConnection(self) -> None:
        """
        The idle timeout: close a connection between requests quietly; answer 408 to
        one that stalled in the middle of a request body.
        """
        if not self.line_mode and not self._handlingRequest and not self._refused:
            self._refuse(
                408,
                b"Request Timeout",
                "timeout",
                f"the request body stalled for {self.timeOut:g} seconds",
                "http_idle_timeout",
            )
            return
        self._limitReached("http_idle_timeout", f"idle for {self.timeOut:g} seconds")
        super().timeoutConnection()

    def _refuse(
        self, code: int, phrase: bytes, kind: str, message: str, limit: str | None = None
    ) -> None:
        """
        Answer the request being read with C{code} and a JSON error body, then close.
        """
        if self._refused:
            return
        self._refused = True
        self._cancelHeaderTimer()
        self.setTimeout(None)
        if limit is not None:
            self._limitReached(limit, message)
        body = json.dumps(
            {"error": {"kind": kind, "message": message}}, separators=(",", ":")
        ).encode("utf-8")
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (code, phrase, len(body), body)
        )
        self._networkProducer.unregisterProducer()
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None and ITCPTransport.providedBy(self.transport):
            half_close()
            self._lingerCall = self.callLater(REFUSAL_LINGER, self._lingerEnded)
        else:
            self.transport.loseConnection()

    def _lingerEnded(self) -> None:
        self._lingerCall = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _limitReached(self, limit: str, detail: str) -> None:
        site = getattr(self, "site", None)
        report = getattr(site, "limit_reached", None)
        if report is not None:
            report(limit, detail, _peer(self.transport))

    def _cancelHeaderTimer(self) -> None:
        self._headerDeadline = None
        if self._headerCall is not None:
            if self._headerCall.active():
                self._headerCall.cancel()
            self._headerCall = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancelHeaderTimer()
        if self._lingerCall is not None:
            if self._lingerCall.active():
                self._lingerCall.cancel()
            self._lingerCall = None
        super().connectionLost(reason)


#: what a folded header line starts with
_FOLD = (b" ", b"\t")

#: the line parser of the request line and headers that PyWattHTTPChannel's loop calls
_httpLineReceived = HTTPChannel.lineReceived


def _peer(transport: Any) -> str:
    try:
        return str(transport.getPeer())
    except Exception:
        return "?"
