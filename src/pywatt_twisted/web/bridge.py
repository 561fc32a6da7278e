# -*- test-case-name: tests.web.test_bridge -*-
"""
HTTP-over-IPC: answer an C{http_request} message from the orchestrator with the
module's own resource tree, in memory, and turn the result into an C{http_response}.

The bridge builds a real L{twisted.web.server.Request} (the site's own
C{requestFactory}) on a small in-memory channel, L{_BridgeChannel}, that plays the
part of L{twisted.web.http.HTTPChannel}: it hands out addresses, receives the status
line, headers and body the request writes, pumps pull producers, and reports when
the request is done. No bytes are serialised or parsed, no socket is opened, and the
request walks exactly the same resources, Klein routes, error pages and metrics as a
request that came in on the listening port. See C{docs/http.md} for why this was
chosen over pumping bytes through C{HTTPChannel}.

The bridge never fails: every outcome is an L{HttpResponse} (or C{None} when the
response went out streamed, see below). Malformed requests get
400, a body above C{max_body_size} 413, too many requests in flight 503, a route
that does not finish in time 504, a route that drops its connection 502; each with
a JSON body
C{{"error": {"kind": ..., "message": ...}}}.

Streamed bodies (EXTENSIONS.md X1, C{docs/streaming.md}): given the link's
L{StreamLink}, a request whose body is streamed in is spooled (L{SpooledBody}) and
routed once complete; a response whose body outgrows one chunk is streamed out
(L{ResponseStream}) when the orchestrator enabled streaming, with the route's producer
paused while the window is full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionAborted
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.http_headers import Headers
from twisted.web.server import Site
from zope.interface import Interface, implementer

from pywatt_twisted._inflight import InFlight
from pywatt_twisted.errors import MessageTooLarge, PyWattError
from pywatt_twisted.streaming import (
    BodyStream,
    StreamFailed,
    StreamLink,
    StreamReceiver,
    StreamState,
)
from pywatt_twisted.streaming._reader import BODY_ATTRIBUTE
from pywatt_twisted.web._body import (
    IncrementalSink,
    ResponseStream,
    SpooledBody,
    reads_incrementally,
)
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_TIMEOUT",
    "BridgeTimeout",
    "HttpBridge",
    "IHttpRequestHandler",
    "MalformedHttpRequest",
    "line_too_long_response",
    "response_headers",
    "send_http_reply",
    "too_large_response",
]

#: Default bound on requests in flight through one bridge.
DEFAULT_MAX_CONCURRENT = 64

#: Default seconds a route may take before the bridge answers 504.
DEFAULT_TIMEOUT = 60.0

#: Default largest request body in bytes; a larger one is answered 413
#: (C{--max-body-size}, C{PYWATT_MAX_BODY_SIZE}: the same limit as direct HTTP).
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024

_log = Logger(namespace="pywatt_twisted.web.bridge")

# RFC 9110 token (methods, header names) and request-target characters (visible
# ASCII, no space): anything else cannot have come from a real HTTP request line.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")

#: Response headers that describe the hop, not the message: dropped from bridged
#: responses (the body always arrives whole, with a content-length).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})

_JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


class MalformedHttpRequest(PyWattError):
    """
    An C{http_request} message cannot be an HTTP request (bad method token, target
    not starting with C{/}, CR/LF in a header...). The bridge answers it with 400.
    """


class BridgeTimeout(PyWattError):
    """
    A bridged request did not finish within the bridge's timeout (answered with
    504); it is the reason the route's C{notifyFinish()} Deferred fails with.
    """


class IHttpRequestHandler(Interface):
    """
    Something that answers HTTP-over-IPC requests (the runtime dispatches
    C{http_request} messages to one).
    """

    def handle(
        request: HttpRequest, transport: str = "stdio", streams: StreamLink | None = None
    ) -> Deferred[HttpResponse | None]:
        """
        Answer C{request}; the Deferred never fails. It fires with C{None} when the
        response went out streamed on C{streams}.
        """


def _error_response(request_id: str, status: int, kind: str, message: str) -> HttpResponse:
    body = json.dumps({"error": {"kind": kind, "message": message}}, separators=(",", ":")).encode(
        "utf-8"
    )
    return HttpResponse(
        request_id=request_id,
        status_code=status,
        headers={**_JSON_HEADERS, "content-length": str(len(body))},
        body=body,
    )


def too_large_response(request_id: str, error: MessageTooLarge) -> HttpResponse:
    """
    The 502 that replaces a response too large for the frame (or stdout line) of the
    link it must go back on, so the orchestrator can still correlate an answer to
    C{request_id}: the X1 C{response_too_large} error (EXTENSIONS.md),
    C{{"error": {"kind": "response_too_large", "message": ..., "limit": <bytes>}}}.
    """
    body = json.dumps(
        {
            "error": {
                "kind": "response_too_large",
                "message": f"the response does not fit in one {error.limit}-byte message",
                "limit": error.limit,
            }
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return HttpResponse(
        request_id=request_id,
        status_code=502,
        headers={**_JSON_HEADERS, "content-length": str(len(body))},
        body=body,
    )


def line_too_long_response(request_id: str, limit: int) -> HttpResponse:
    """
    The 413 for an C{http_request} whose stdin line was longer than the line cap
    (C{limit} bytes) and was discarded unread.
    """
    return _error_response(
        request_id,
        413,
        "body_too_large",
        f"the http_request line is longer than the {limit}-byte line cap; send a smaller "
        "body, raise the cap (PYWATT_MAX_FRAME_LENGTH), or stream the body (X1)",
    )


def send_http_reply(link: Any, response: HttpResponse, log: Logger = _log) -> None:
    """
    Send C{response} on C{link} (an C{IOrchestratorLink}). One that does not fit in the
    link's frame is answered with L{too_large_response} instead, and logged: never
    silently dropped.
    """
    try:
        link.send_http_response(response)
    except MessageTooLarge as e:
        log.error(
            "{channel}: the response to request {id} does not fit in one message "
            "({error}); answering 502 response_too_large instead",
            channel=link.name,
            id=response.request_id,
            error=str(e),
        )
        try:
            link.send_http_response(too_large_response(response.request_id, e))
        except MessageTooLarge:
            log.error(
                "{channel}: even a 502 for {id} does not fit in a {limit}-byte frame; "
                "the orchestrator gets no reply to it",
                channel=link.name,
                id=response.request_id,
                limit=e.limit,
            )


def _error_text(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.body or b"")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "the response failed"


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def response_headers(headers: Headers, *, request_id: str = "") -> dict[str, str]:
    """
    Flatten response headers into the wire's single-valued map.

    Names are lower-cased; repeated headers are joined with C{", "}; hop-by-hop
    headers (C{connection}, C{keep-alive}, C{transfer-encoding}) are dropped. Several
    C{Set-Cookie} headers cannot be joined (cookie attributes contain commas): the
    last one is kept, as the original SDK did, and a warning names the cookies that
    were dropped (names only, never values).
    """
    flat: dict[str, str] = {}
    for raw_name, values in headers.getAllRawHeaders():
        name = raw_name.lower()
        if name in _HOP_BY_HOP or not values:
            continue
        if name == b"set-cookie" and len(values) > 1:
            dropped = [_decode(value.split(b"=", 1)[0]).strip() for value in values[:-1]]
            _log.warn(
                "HTTP-over-IPC response {request_id} set {count} cookies; the wire carries "
                "one Set-Cookie value, so only the last is kept (dropped: {dropped}). "
                "Serve this route over direct HTTP to set several cookies.",
                request_id=request_id,
                count=len(values),
                dropped=dropped,
            )
            values = values[-1:]
        flat[_decode(name)] = ", ".join(_decode(value) for value in values)
    return flat


def _validate(request: Any) -> str | None:
    """
    Why C{request} cannot be an HTTP request, or C{None} when it can.
    """
    method = getattr(request, "method", None)
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        return f"expected an HTTP method token such as 'GET', got {method!r}"
    uri = getattr(request, "uri", None)
    if not isinstance(uri, str) or not _TARGET.fullmatch(uri):
        shown = uri if not isinstance(uri, str) or len(uri) <= 80 else uri[:80] + "..."
        return (
            "expected a request target that starts with '/' and contains only visible "
            f"ASCII (percent-encode the rest), got {shown!r}"
        )
    headers = getattr(request, "headers", None)
    if headers is None:
        headers = {}
    if not isinstance(headers, Mapping):
        return f"expected headers to be a map of names to strings, got {type(headers).__name__}"
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return f"expected header names to be HTTP tokens, got {name!r}"
        if not isinstance(value, str):
            return (
                f"expected the value of header {name!r} to be a string, got {type(value).__name__}"
            )
        if _BAD_VALUE_CHARS.search(value):
            return f"header {name!r} contains CR, LF or NUL, which HTTP does not allow"
    body = getattr(request, "body", None)
    if body is not None and not isinstance(body, bytes | bytearray | memoryview):
        return f"expected the body to be bytes or null, got {type(body).__name__}"
    return None


class _BridgeChannel:
    """
    The in-memory stand-in for L{twisted.web.http.HTTPChannel} behind one bridged
    request: the request writes its response here instead of to a socket.

    It is also the request's C{transport} (addresses, C{loseConnection}).
    """

    #: Not a direct HTTP connection: no gzip content-encoding (chunks carry X2).
    direct_http = False

    def __init__(self, bridge: HttpBridge, pending: _Pending) -> None:
        self.site = bridge.site
        self.factory = bridge.site
        self.requestFactory = bridge.site.requestFactory
        self.transport = self
        self._bridge = bridge
        self._pending = pending
        #: where the request came from, for its trace span (stdio, tcp or unix)
        self.pywatt_transport = pending.transport
        self.request: Any = None
        self.code = 200
        self.headers: dict[str, str] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self._producer: Any = None
        self._pull = False
        self._pumping = False
        self.stream: ResponseStream | None = None

    # addresses

    def getPeer(self) -> Any:
        return self._bridge.peer

    def getHost(self) -> Any:
        return self._bridge.host

    def isSecure(self) -> bool:
        return False

    # what Request writes

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Headers) -> None:
        self.code = int(code)
        self.headers = response_headers(headers, request_id=self._pending.request_id)

    def write(self, data: bytes) -> None:
        if self.request is not None and self.request.chunked:
            # The only direct write of a chunked response is the terminating chunk.
            return
        self._append(data)

    def writeSequence(self, data: Any) -> None:
        if self.request is not None and self.request.chunked and len(data) == 4:
            # (hex length, CRLF, payload, CRLF) from http.toChunk: keep the payload.
            self._append(data[2])
        else:
            self._append(b"".join(data))

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.stream is not None:
            self.stream.write(data)
        else:
            self.chunks.append(data)
            link = self._pending.stream_link
            if (
                link is not None
                and link.options is not None
                and self.size > link.options.chunk_size
                and self.headers is not None
                and not self._pending.answered
            ):
                self._start_stream(link)
        if self._producer is not None and self._pull and not self._pumping and self._may_write:
            # A pull producer that paused itself wrote again: ask for more soon.
            self._bridge.reactor.callLater(0, self._pump, self._producer)

    @property
    def _may_write(self) -> bool:
        return self.stream is None or self.stream.writable

    def _start_stream(self, link: StreamLink) -> None:
        """
        The body outgrew one chunk: send the head and stream the body from here on.
        """
        assert self.headers is not None
        self.stream = ResponseStream(
            link, self._pending.request_id, self.code, self.headers, self._stream_writable
        )
        buffered, self.chunks = self.chunks, []
        for piece in buffered:
            self.stream.write(piece)
        self._bridge._streaming(self._pending, self.stream)
        if not self.stream.writable:
            self._stream_writable(False)

    def _stream_writable(self, writable: bool) -> None:
        producer = self._producer
        if producer is None:
            return
        if self._pull:
            if writable:
                self._bridge.reactor.callLater(0, self._pump, producer)
        elif writable:
            producer.resumeProducing()
        else:
            producer.pauseProducing()

    def requestDone(self, request: Any) -> None:
        self._bridge._done(self._pending)

    # producers

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        self._pull = not streaming
        if self._pull:
            self._pump(producer)
        elif not self._may_write:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def _pump(self, producer: Any) -> None:
        """
        Feed a pull producer: like a transport with an always-empty buffer, ask for
        more as long as it keeps writing. One that writes nothing is asked again when
        it next writes.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._producer is producer and not self._pending.answered and self._may_write:
                before = self.size
                producer.resumeProducing()
                if self.size == before:
                    break
        finally:
            self._pumping = False

    # connection control by the application

    def loseConnection(self) -> None:
        self._bridge._aborted(self._pending, "the route closed the connection")

    def abortConnection(self) -> None:
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._bridge._bad_body(self._pending)

    def stopProducing(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.stopProducing()

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class _Pending:
    """
    Book-keeping for one bridged request.
    """

    __slots__ = (
        "answered",
        "channel",
        "receiver",
        "request",
        "request_id",
        "result",
        "stream_link",
        "timer",
        "transport",
    )

    def __init__(
        self,
        request_id: str,
        transport: str,
        result: Deferred[HttpResponse | None],
        stream_link: StreamLink | None = None,
    ) -> None:
        self.request_id = request_id
        self.transport = transport
        self.result = result
        self.stream_link = stream_link
        self.answered = False
        self.channel: _BridgeChannel | None = None
        self.request: Any = None
        self.timer: Any = None
        self.receiver: StreamReceiver | None = None


@implementer(IHttpRequestHandler)
class HttpBridge:
    """
    Answers HTTP-over-IPC requests with the resources of C{site}, in memory,
    concurrently and bounded.

    @ivar site: the site whose resource tree (and request factory) is used.
    @ivar reactor: the clock for timeouts (C{callLater}).
    @ivar max_concurrent: requests allowed in flight; one more gets 503 at once.
    @ivar timeout: seconds before an unfinished request is answered with 504 and
        its connection is reported lost to the route; C{None} for no limit.
    @ivar host: the address C{request.getHost()} returns.
    @ivar peer: the address C{request.getClientAddress()} returns.
    @ivar max_body_size: the largest request body in bytes; a larger one is answered
        413 and never reaches the route.
    """

    def __init__(
        self,
        site: Site,
        *,
        reactor: Any,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        timeout: float | None = DEFAULT_TIMEOUT,
        metrics: Any = None,
        host: Any = None,
        peer: Any = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        """
        @param site: the module's site (a L{pywatt_twisted.web.site.PyWattSite}
            normally; any L{Site} works).
        @param reactor: provides C{callLater} for timeouts.
        @param max_concurrent: the in-flight bound (at least 1).
        @param timeout: seconds per request, or C{None}.
        @param metrics: a L{pywatt_twisted.web.metrics.ModuleMetrics} for the
            C{pywatt_ipc_requests_total} counter; by default the site's C{metrics}.
        @param host: local address seen by resources (default C{127.0.0.1:0}; the
            runtime passes the address the site is bound to).
        @param peer: client address seen by resources (default C{127.0.0.1:0}: the
            orchestrator, a local process).
        @param max_body_size: bodies above this many bytes get 413 (at least 1).
        """
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if max_body_size < 1:
            raise ValueError(f"max_body_size must be at least 1, got {max_body_size}")
        self.site = site
        self.reactor = reactor
        self.max_concurrent = max_concurrent
        self.max_body_size = max_body_size
        self.timeout = timeout
        self.metrics = metrics if metrics is not None else getattr(site, "metrics", None)
        self.host = host if host is not None else IPv4Address("TCP", "127.0.0.1", 0)
        self.peer = peer if peer is not None else IPv4Address("TCP", "127.0.0.1", 0)
        self.accepting = True
        self._in_flight: InFlight[_Pending] = InFlight()

    @property
    def in_flight(self) -> int:
        """
        How many bridged requests are being processed now.
        """
        return len(self._in_flight)

    def drain(self) -> Deferred[None]:
        """
        A Deferred that fires once no bridged request is in flight (at once when none
        is). It does not stop new requests; call L{stop_accepting} first for that.
        """
        return self._in_flight.drained()

    def stop_accepting(self) -> None:
        """
        Answer every new request with 503 (C{"stopping"}) from now on; requests
        already in flight run to completion. Used for a graceful stop.
        """
        self.accepting = False

    def handle(
        self,
        request: HttpRequest,
        transport: str = "stdio",
        streams: StreamLink | None = None,
    ) -> Deferred[HttpResponse | None]:
        """
        Run C{request} through the site's resource tree and return its response.

        @param request: the C{http_request} message.
        @param transport: where it came from (C{"stdio"}, C{"tcp"}, C{"unix"}); only
            used for metrics and logs, the caller replies on that transport.
        @param streams: the link's streams: needed for a request whose body is
            streamed in (without it such a request gets 400), and to stream the
            response out when its C{options} are set.
        @return: a Deferred that always fires with an L{HttpResponse} to send, or with
            C{None} when the response already went out streamed, and never fails;
            cancelling it aborts the request.
        """
        request_id = getattr(request, "request_id", "")
        if not isinstance(request_id, str):
            request_id = str(request_id)
        try:
            return self._handle(request, request_id, transport, streams)
        except Exception:
            _log.failure(
                "HTTP-over-IPC request {request_id} failed inside the bridge",
                request_id=request_id,
            )
            self._count(transport, "error")
            return succeed(
                _error_response(
                    request_id, 500, "internal_error", "the module failed to process the request"
                )
            )

    def _count(self, transport: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.ipc_request(transport, outcome)

    def _handle(
        self,
        message: HttpRequest,
        request_id: str,
        transport: str,
        streams: StreamLink | None,
    ) -> Deferred[HttpResponse | None]:
        refused = self._refusal(message, request_id, transport, streams)
        if refused is not None:
            stream_id = getattr(message, "stream_id", None)
            if isinstance(stream_id, str) and streams is not None:
                # Its body will not be read: stop the orchestrator sending it.
                streams.refuse(stream_id, f"request refused with {refused.status_code}")
            return succeed(refused)
        return self._start(message, request_id, transport, streams)

    def _refusal(
        self,
        message: HttpRequest,
        request_id: str,
        transport: str,
        streams: StreamLink | None,
    ) -> HttpResponse | None:
        """
        The answer to give C{message} at once, or C{None} to serve it.
        """
        problem = _validate(message)
        if problem is None and getattr(message, "stream_id", None) is not None:
            if not isinstance(message.stream_id, str):
                problem = "expected stream_id to be a string"
            elif message.body:
                problem = "a request with a stream_id carries its body in chunks, not in 'body'"
            elif streams is None:
                problem = "this link cannot receive a streamed body"
        if problem is not None:
            self._count(transport, "bad_request")
            return _error_response(request_id, 400, "bad_request", problem)
        size = len(message.body) if message.body is not None else 0
        if size > self.max_body_size:
            _log.warn(
                "HTTP-over-IPC request {request_id} ({method} {path}) refused with 413: its "
                "body is {size} bytes, above the max_body_size limit of {limit} bytes; raise "
                "it with --max-body-size / PYWATT_MAX_BODY_SIZE",
                request_id=request_id,
                method=message.method,
                path=message.uri.split("?", 1)[0],
                size=size,
                limit=self.max_body_size,
            )
            self._count(transport, "too_large")
            return _error_response(
                request_id,
                413,
                "body_too_large",
                f"the request body is {size} bytes; the limit is {self.max_body_size} bytes",
            )
        if not self.accepting:
            self._count(transport, "stopping")
            return _error_response(
                request_id, 503, "stopping", "the module is stopping; retry on another instance"
            )
        if len(self._in_flight) >= self.max_concurrent:
            self._count(transport, "overloaded")
            return _error_response(
                request_id,
                503,
                "overloaded",
                f"{len(self._in_flight)} HTTP-over-IPC requests already in flight "
                f"(limit {self.max_concurrent}); retry later",
            )

        return None

    def _start(
        self,
        message: HttpRequest,
        request_id: str,
        transport: str,
        streams: StreamLink | None,
    ) -> Deferred[HttpResponse | None]:
        result: Deferred[HttpResponse | None] = Deferred(lambda _: self._cancelled(pending))
        pending = _Pending(request_id, transport, result, streams)
        channel = _BridgeChannel(self, pending)
        pending.channel = channel
        web_request: Any = self.site.requestFactory(channel)  # type: ignore[no-untyped-call]
        channel.request = web_request
        pending.request = web_request

        headers = web_request.requestHeaders
        content_length: str | None = None
        for name, value in (message.headers or {}).items():
            lower = name.lower()
            if lower == "content-length":
                content_length = value
                continue
            if lower == "transfer-encoding":
                # The body arrives whole; there is nothing left to de-chunk.
                continue
            headers.addRawHeader(name, value)
        if message.stream_id is not None:
            assert streams is not None
            if reads_incrementally(self.site, channel, message):
                # The route reads the body as it arrives (body_stream): it runs now,
                # and each chunk is acknowledged as it takes it.
                body = BodyStream()
                setattr(web_request, BODY_ATTRIBUTE, body)
                web_request.content = BytesIO()
                self._in_flight.add(pending)
                receiver = streams.receiver(
                    message.stream_id,
                    IncrementalSink(
                        body,
                        lambda: self._body_consumed(pending),
                        lambda error: self._body_failed(pending, error),
                    ),
                )
                pending.receiver = receiver
                body.attach(receiver)
                self._run(pending, message)
                return result
            sink = SpooledBody(
                lambda: self._body_arrived(pending, message, sink),
                lambda error: self._body_failed(pending, error),
            )
            self._in_flight.add(pending)
            pending.receiver = streams.receiver(message.stream_id, sink)
            # (a stream parked while the module started holds its first chunks)
            pending.receiver.resumeProducing()
            return result
        body = bytes(message.body) if message.body is not None else b""
        if body or content_length is not None:
            headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        content = BytesIO()
        content.write(body)  # requestReceived() reads the length from tell()
        web_request.content = content

        # Nothing above can leave state behind if it raises (handle() answers 500);
        # from here on the request is in flight until _answer() or cancellation.
        self._in_flight.add(pending)
        self._run(pending, message)
        return result

    def _body_arrived(self, pending: _Pending, message: HttpRequest, sink: SpooledBody) -> None:
        """
        The streamed body is complete (and spooled): route the request.
        """
        pending.receiver = None
        if pending.answered:
            sink.content.close()
            return
        request = pending.request
        request.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % sink.size])
        request.content = sink.content
        self._run(pending, message)

    def _body_consumed(self, pending: _Pending) -> None:
        """
        The route read the whole of a body streamed in incrementally.
        """
        pending.receiver = None

    def _body_failed(self, pending: _Pending, error: StreamFailed) -> None:
        pending.receiver = None
        if pending.answered:
            # (the route answered before reading all of it: the receiver was cancelled)
            return
        too_large = error.kind == "too_large"
        _log.warn(
            "HTTP-over-IPC request {request_id}: its streamed body failed ({error}); "
            "answering {status}",
            request_id=pending.request_id,
            error=str(error),
            status=413 if too_large else 400,
        )
        self._answer(
            pending,
            _error_response(
                pending.request_id,
                413 if too_large else 400,
                "body_too_large" if too_large else "bad_request",
                f"the streamed request body failed: {error.reason}",
            ),
            "too_large" if too_large else "bad_request",
        )

    def _run(self, pending: _Pending, message: HttpRequest) -> None:
        """
        Start the route timer and hand the request to the resource tree.
        """
        request_id = pending.request_id
        web_request = pending.request
        if self.timeout is not None:
            pending.timer = self.reactor.callLater(self.timeout, self._timed_out, pending)
        try:
            web_request.requestReceived(
                message.method.encode("ascii"), message.uri.encode("ascii"), b"HTTP/1.1"
            )
        except Exception:
            # Site.process() turns resource errors into a 500 page itself; this is
            # for failures around it (request factory, argument parsing...).
            _log.failure("HTTP-over-IPC request {request_id} raised", request_id=request_id)
            self._answer(
                pending,
                _error_response(
                    request_id, 500, "internal_error", "the module failed to process the request"
                ),
                "error",
                abort=True,
            )

    # outcomes

    def _done(self, pending: _Pending) -> None:
        channel = pending.channel
        assert channel is not None
        if channel.stream is not None:
            # The route finished writing; the stream ends once the last chunk is acked.
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
            channel.stream.finish()
            return
        headers = channel.headers if channel.headers is not None else {}
        body = b"".join(channel.chunks)
        method = pending.request.method
        if (
            "content-length" not in headers
            and method != b"HEAD"
            and channel.code not in NO_BODY_CODES
        ):
            headers["content-length"] = str(len(body))
        response = HttpResponse(
            request_id=pending.request_id,
            status_code=channel.code,
            headers=headers,
            body=body,
        )
        self._answer(pending, response, "completed")

    def _streaming(self, pending: _Pending, stream: ResponseStream) -> None:
        """
        C{pending}'s response went streamed: it is answered (with C{None}) when the
        stream ends, acknowledged or not.
        """

        def ended(result: object) -> None:
            if pending.answered:
                return
            failed = isinstance(result, Failure)
            if isinstance(result, Failure):
                _log.warn(
                    "HTTP-over-IPC request {request_id}: its streamed response ended early: "
                    "{error}",
                    request_id=pending.request_id,
                    error=str(result.value),
                )
            self._finish_pending(pending, "aborted" if failed else "completed")
            if failed:
                self._abort_request(pending, ConnectionAborted())
            pending.result.callback(None)

        stream.when_done(ended)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        self._answer(
            pending,
            _error_response(
                pending.request_id,
                504,
                "timeout",
                f"the route did not finish within {self.timeout:g} seconds",
            ),
            "timeout",
            abort=True,
            reason=BridgeTimeout(f"no response within {self.timeout:g} seconds"),
        )

    def _aborted(self, pending: _Pending, why: str) -> None:
        self._answer(
            pending,
            _error_response(
                pending.request_id,
                502,
                "connection_lost",
                f"{why} before the response was complete",
            ),
            "aborted",
            abort=True,
        )

    def _bad_body(self, pending: _Pending) -> None:
        self._answer(
            pending,
            _error_response(
                pending.request_id,
                400,
                "bad_request",
                "the request body could not be parsed as the form its content-type declares",
            ),
            "bad_request",
            abort=True,
        )

    def _cancelled(self, pending: _Pending) -> None:
        if pending.answered:
            return
        self._finish_pending(pending, "aborted")
        self._abort_request(pending, CancelledError("the caller cancelled the request"))

    def _answer(
        self,
        pending: _Pending,
        response: HttpResponse,
        outcome: str,
        *,
        abort: bool = False,
        reason: Exception | None = None,
    ) -> None:
        if pending.answered:
            return
        self._finish_pending(pending, outcome)
        if abort:
            self._abort_request(pending, reason or ConnectionAborted())
        channel = pending.channel
        if channel is not None and channel.stream is not None:
            # The head already went out: the stream is cancelled instead.
            channel.stream.cancel(f"{response.status_code}: {_error_text(response)}")
            pending.result.callback(None)
            return
        pending.result.callback(response)

    def _finish_pending(self, pending: _Pending, outcome: str) -> None:
        pending.answered = True
        receiver, pending.receiver = pending.receiver, None
        if receiver is not None and receiver.state is StreamState.OPEN:
            receiver.cancel("the request was answered before its body arrived")
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        self._count(pending.transport, outcome)
        self._in_flight.discard(pending)

    def _abort_request(self, pending: _Pending, reason: Exception) -> None:
        """
        Tell the route its connection is gone (what a real client disconnect does):
        its C{notifyFinish()} Deferreds fail and Klein cancels the route's Deferred.
        """
        request = pending.request
        channel = pending.channel
        if channel is not None:
            channel.stopProducing()
        if request is None or request.finished or request._disconnected:
            return
        try:
            request.connectionLost(Failure(reason))  # type: ignore[no-untyped-call]
        except Exception:
            _log.failure(
                "aborting HTTP-over-IPC request {request_id} raised",
                request_id=pending.request_id,
            )
