# -*- test-case-name: tests.web.test_bridge -*-
"""
HTTP-over-IPC: answer an C{http_request} message from the orchestrator with the
module's own resource tree, in memory, and turn the result into an C{http_response}.

The bridge builds a real L{twisted.web.server.Request} (the site's own
C{requestFactory}) on a small in-memory channel, C{BridgeChannel}, that plays the
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
L{StreamLink}, a request whose body is streamed in is spooled and routed once
complete, or routed at once for a route marked C{@incremental_body}, which reads it as
it arrives; a response whose body outgrows one chunk is streamed out when the
orchestrator enabled streaming, with the route's producer paused while the window is
full.

The parts, by concern (private modules): the in-memory channel and the request's
book-keeping (L{pywatt_twisted.web._bridge_channel}), checking the message and
building the request (L{pywatt_twisted.web._bridge_request}), the replies and error
answers (L{pywatt_twisted.web._bridge_reply}), streamed bodies
(L{pywatt_twisted.web._bridge_streams}, L{pywatt_twisted.web._body}); this module
holds L{HttpBridge} itself: admission, routing, timeouts and outcomes.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionAborted
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.server import Site
from zope.interface import Interface, implementer

from pywatt_twisted._inflight import InFlight
from pywatt_twisted.errors import PyWattError
from pywatt_twisted.streaming import StreamLink, StreamState
from pywatt_twisted.web._bridge_channel import BridgeChannel, Pending
from pywatt_twisted.web._bridge_deadlines import BridgeDeadlines
from pywatt_twisted.web._bridge_reply import (
    error_response,
    error_text,
    line_too_long_response,
    response_headers,
    send_http_reply,
    too_large_response,
)
from pywatt_twisted.web._bridge_request import MalformedHttpRequest, copy_headers, validate
from pywatt_twisted.web._bridge_streams import BridgeStreams

# The default largest request body (a larger one is answered 413; C{--max-body-size},
# C{PYWATT_MAX_BODY_SIZE}) is the one limit direct HTTP uses too: re-exported here.
from pywatt_twisted.web._http_limits import DEFAULT_MAX_BODY_SIZE
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


_log = Logger(namespace="pywatt_twisted.web.bridge")


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
        self._in_flight: InFlight[Pending] = InFlight()
        #: the route timeouts of its requests (one timer for all)
        self._deadlines = BridgeDeadlines(reactor, self._timed_out)
        #: the streamed bodies of its requests
        self.streams = BridgeStreams(self)

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
                error_response(
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
        problem = validate(message)
        if problem is None and getattr(message, "stream_id", None) is not None:
            if not isinstance(message.stream_id, str):
                problem = "expected stream_id to be a string"
            elif message.body:
                problem = "a request with a stream_id carries its body in chunks, not in 'body'"
            elif streams is None:
                problem = "this link cannot receive a streamed body"
        if problem is not None:
            self._count(transport, "bad_request")
            return error_response(request_id, 400, "bad_request", problem)
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
            return error_response(
                request_id,
                413,
                "body_too_large",
                f"the request body is {size} bytes; the limit is {self.max_body_size} bytes",
            )
        if not self.accepting:
            self._count(transport, "stopping")
            return error_response(
                request_id, 503, "stopping", "the module is stopping; retry on another instance"
            )
        if len(self._in_flight) >= self.max_concurrent:
            self._count(transport, "overloaded")
            return error_response(
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
        pending = Pending(request_id, transport, result, streams)
        channel = BridgeChannel(self, pending)
        pending.channel = channel
        web_request: Any = self.site.requestFactory(channel)  # type: ignore[no-untyped-call]
        channel.request = web_request
        pending.request = web_request

        content_length = copy_headers(web_request, message.headers)
        if message.stream_id is not None:
            assert streams is not None
            self._in_flight.add(pending)
            self.streams.start(pending, message, streams)
            return result
        body = bytes(message.body) if message.body is not None else b""
        if body or content_length is not None:
            web_request.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        content = BytesIO()
        content.write(body)  # requestReceived() reads the length from tell()
        web_request.content = content

        # Nothing above can leave state behind if it raises (handle() answers 500);
        # from here on the request is in flight until _answer() or cancellation.
        self._in_flight.add(pending)
        self._run(pending, message)
        return result

    def _run(self, pending: Pending, message: HttpRequest) -> None:
        """
        Hand the request to the resource tree, and start its route timer if the route
        is still running when the tree returns.

        The deadline counts from here, before the route runs; a route that finished
        while it ran (a plain synchronous one: most are) never needs the timer, so it
        costs no C{callLater} and no cancel.
        """
        request_id = pending.request_id
        web_request = pending.request
        timeout = self.timeout
        started = self.reactor.seconds() if timeout is not None else 0.0
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
                error_response(
                    request_id, 500, "internal_error", "the module failed to process the request"
                ),
                "error",
                abort=True,
            )
            return
        if timeout is not None and not pending.answered and not web_request.finished:
            self._deadlines.watch(pending, started + timeout)

    # outcomes

    def _done(self, pending: Pending) -> None:
        channel = pending.channel
        assert channel is not None
        if channel.stream is not None:
            # The route finished writing; the stream ends once the last chunk is acked.
            self._deadlines.unwatch(pending)
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

    def _timed_out(self, pending: Pending) -> None:
        pending.timer = None
        self._answer(
            pending,
            error_response(
                pending.request_id,
                504,
                "timeout",
                f"the route did not finish within {self.timeout:g} seconds",
            ),
            "timeout",
            abort=True,
            reason=BridgeTimeout(f"no response within {self.timeout:g} seconds"),
        )

    def _aborted(self, pending: Pending, why: str) -> None:
        self._answer(
            pending,
            error_response(
                pending.request_id,
                502,
                "connection_lost",
                f"{why} before the response was complete",
            ),
            "aborted",
            abort=True,
        )

    def _bad_body(self, pending: Pending) -> None:
        self._answer(
            pending,
            error_response(
                pending.request_id,
                400,
                "bad_request",
                "the request body could not be parsed as the form its content-type declares",
            ),
            "bad_request",
            abort=True,
        )

    def _cancelled(self, pending: Pending) -> None:
        if pending.answered:
            return
        self._finish_pending(pending, "aborted")
        self._abort_request(pending, CancelledError("the caller cancelled the request"))

    def _answer(
        self,
        pending: Pending,
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
            channel.stream.cancel(f"{response.status_code}: {error_text(response)}")
            pending.result.callback(None)
            return
        pending.result.callback(response)

    def _finish_pending(self, pending: Pending, outcome: str) -> None:
        pending.answered = True
        receiver, pending.receiver = pending.receiver, None
        if receiver is not None and receiver.state is StreamState.OPEN:
            receiver.cancel("the request was answered before its body arrived")
        self._deadlines.unwatch(pending)
        self._count(pending.transport, outcome)
        self._in_flight.discard(pending)

    def _abort_request(self, pending: Pending, reason: Exception) -> None:
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
