# -*- test-case-name: tests.web.test_site -*-
# mypy: disallow-untyped-calls=False
"""
The module's web site: the user's resource behind the built-in C{/health} and
C{/metrics} routes, in a L{twisted.web.server.Site} that records per-request metrics
and never writes an access log to stdout (stdout is the protocol channel).

Direct HTTP (the listening port) and HTTP-over-IPC (L{pywatt_twisted.web.bridge})
both go through the same L{PyWattSite}, so they see the same resources and are
measured the same way.

Connections on the listening port are served by L{PyWattHTTPChannel}, which bounds
what a client may make the module hold: the request body (413), the header block
(431, or 414 for a request line alone), the time to send the headers (408) and an
idle connection.

The connection limits live in L{pywatt_twisted.web._http_limits} and the handling of
what a Klein route returns (L{klein_resource}) in L{pywatt_twisted.web._route_values};
both are re-exported here, the public path.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server as _server
from twisted.web.http import datetimeToString, unquote
from twisted.web.resource import IResource, Resource, _IEncodingResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request, Site

from pywatt_twisted import tracing
from pywatt_twisted._inflight import InFlight
from pywatt_twisted.errors import BackendUnavailable, RouteReturnError
from pywatt_twisted.streaming import StreamFailed
from pywatt_twisted.web._cors import CorsPolicy, with_cors
from pywatt_twisted.web._gzip import maybe_gzip
from pywatt_twisted.web._http_limits import (
    _LIMIT_SETTINGS,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    PyWattHTTPChannel,
)
from pywatt_twisted.web._http_limits import (
    REFUSAL_LINGER as REFUSAL_LINGER,  # re-exported: tests import it from here
)
from pywatt_twisted.web._route_values import (
    MATCHED_RULE_ATTRIBUTE,
    IKleinRequest,
    _path_of,
    _with_route_values,
    klein_resource,
)
from pywatt_twisted.web._version import VERSION_ATTRIBUTE, prefixed, versioned
from pywatt_twisted.web.discovery import METRICS_PATH, announced_path
from pywatt_twisted.web.metrics import METRICS_CONTENT_TYPE, STANDARD_METHODS, ModuleMetrics

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "HEALTHY_STATUSES",
    "ROUTE_ATTRIBUTE",
    "PyWattHTTPChannel",
    "PyWattRequest",
    "PyWattSite",
    "build_root_resource",
    "klein_resource",
    "route_label",
]

#: Health statuses answered with 200 (a module that is C{degraded} still serves: a load
#: balancer must not pull it because an optional part, such as its cache, is down); every
#: other status (C{failing}, C{stopping}, ...) gets 503.
HEALTHY_STATUSES = frozenset({"ok", "starting", "degraded"})

#: Request attribute through which a resource names its route label explicitly.
ROUTE_ATTRIBUTE = "pywatt_route"

_log = Logger(namespace="pywatt_twisted.web")


class _HealthResource(Resource):
    """
    C{GET health_path}: the runtime's status mapping as JSON; C{status()} may return it
    through a Deferred (the health checks run first, each bounded by its timeout).
    """

    isLeaf = True

    def __init__(self, status: Callable[[], Mapping[str, object] | Deferred[Any]]) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Any) -> bytes | int:
        report = self._status()
        if not isinstance(report, Deferred):
            return self._body(request, report)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(value: Mapping[str, object]) -> None:
            if gone:
                return
            request.write(self._body(request, value))
            request.finish()

        def broken(failure: Failure) -> None:
            _log.failure("building the /health report failed", failure)
            if gone:
                return
            request.write(
                self._body(request, {"status": "failing", "error": "health report failed"})
            )
            request.finish()

        report.addCallbacks(write, broken)
        return NOT_DONE_YET

    @staticmethod
    def _body(request: Any, report: Mapping[str, object]) -> bytes:
        body = dict(report)
        healthy = body.get("status") in HEALTHY_STATUSES
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")


class _MetricsResource(Resource):
    """
    C{GET /metrics}: Prometheus text exposition.
    """

    isLeaf = True

    def __init__(self, metrics: ModuleMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", METRICS_CONTENT_TYPE.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return self._metrics.render()


class _RootResource(Resource):
    """
    Serves the built-ins on their exact paths (for C{GET}/C{HEAD}) and hands every
    other request to the user's resource exactly as if it were the site root.
    """

    def __init__(
        self,
        app_resource: IResource,
        builtins: dict[bytes, tuple[str, IResource]],
    ) -> None:
        super().__init__()
        self._app = app_resource
        self._builtins = builtins

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        if request.method in (b"GET", b"HEAD"):
            builtin = self._builtins.get(request.path)
            if builtin is not None:
                label, resource = builtin
                setattr(request, ROUTE_ATTRIBUTE, label)
                return resource
        # Undo the traversal step the site just made, then traverse the user's
        # resource from its root: prepath/postpath end up exactly as they would
        # with the user's resource as the site root.
        request.postpath.insert(0, request.prepath.pop())
        child: IResource = getChildForRequest(self._app, request)
        return child

    def render(self, request: Any) -> Any:
        return self._app.render(request)


def build_root_resource(
    app_resource: IResource,
    *,
    health_path: str | None,
    metrics: ModuleMetrics | None,
    status: Callable[[], Mapping[str, object] | Deferred[Any]],
    version: str | None = None,
    cors: CorsPolicy | None = None,
) -> IResource:
    """
    Put the built-in routes in front of the user's resource.

      - C{GET health_path}: C{status()} as JSON (exactly the mapping it returns,
        directly or through a Deferred), 200 when its C{"status"} is C{"ok"},
        C{"starting"} or C{"degraded"}, 503 otherwise (C{"failing"}, C{"stopping"},
        anything else).
      - C{GET /metrics} (when C{metrics} is given): C{metrics.render()} with
        content type C{text/plain; version=0.0.4; charset=utf-8}.
      - Everything else, including other methods on those paths and paths that
        merely start with them (C{/healthz}, C{/health/x}), goes to
        C{app_resource} untouched. A user route on exactly C{GET health_path} is
        shadowed by the built-in: pass C{health=None} to serve your own.

    A C{KleinResource} (C{app.resource()}) is replaced by L{klein_resource} of its
    app, so that routes returning a C{dict} or a C{list} answer JSON and a route
    returning something that cannot be sent is a logged 500, the same over direct
    HTTP and HTTP-over-IPC.

    @param app_resource: the user's resource (for Klein, C{app.resource()}).
    @param health_path: path of the health route, or C{None} to disable it.
    @param metrics: the module's metrics, or C{None} to disable C{/metrics}.
    @param status: called on every health request.
    @param version: serve the app's routes under C{/<version>} (the built-ins stay
        where they are); see L{pywatt_twisted.web._version}.
    @param cors: the module's CORS policy; routes marked with C{cors(...)} have their
        own. See L{pywatt_twisted.web._cors}.
    """
    user_resource = app_resource
    app_resource = versioned(_with_route_values(app_resource), version)
    builtins: dict[bytes, tuple[str, IResource]] = {}
    if metrics is not None:
        builtins[METRICS_PATH.encode("ascii")] = (METRICS_PATH, _MetricsResource(metrics))
    if health_path is not None:
        if not health_path.startswith("/"):
            from pywatt_twisted.errors import ConfigurationError

            raise ConfigurationError(
                f"health path must start with '/', got {health_path!r}; use e.g. '/health'"
            )
        builtins[health_path.encode("utf-8")] = (health_path, _HealthResource(status))
    root = _RootResource(app_resource, builtins) if builtins else app_resource
    return with_cors(root, user_resource, cors, f"/{version}" if version else "")


def route_label(request: Any) -> str:
    """
    The bounded route label of a finished request, for metrics.

    An explicit C{request.pywatt_route} wins (the built-ins set it). Otherwise, when
    a Klein app handled the request, the rule it matched in announce style
    (C{"/items/:id"}); C{"unmatched"} when no rule matched (404, 405, redirect); for
    requests no Klein app saw, C{"unmatched"} for a 404 and C{"other"} for the rest.
    Never the raw path, which would make the label set unbounded.
    """
    label = getattr(request, ROUTE_ATTRIBUTE, None)
    if label:
        return str(label)
    matched = getattr(request, MATCHED_RULE_ATTRIBUTE, None)
    if matched is not None:  # noted when Klein ran the endpoint: no second match
        version = getattr(request, VERSION_ATTRIBUTE, None)
        return str(matched) if version is None else prefixed(version, str(matched))
    mapper = None
    if IKleinRequest is not None and hasattr(request, "getComponent"):
        klein_request = request.getComponent(IKleinRequest)
        mapper = getattr(klein_request, "mapper", None)
    if mapper is None:
        return "unmatched" if request.code == 404 else "other"
    try:
        rule, _ = mapper.match(return_rule=True)
    except Exception:
        return "unmatched"
    return prefixed(getattr(request, VERSION_ATTRIBUTE, None), announced_path(rule.rule))


#: the second and the C{Date} header text of the last response (see L{_http_date})
_date_cache: list[Any] = [None, b""]


def _http_date() -> bytes:
    """
    C{datetimeToString()}, the C{Date} header of a response, formatted once a second:
    the text has a resolution of one second (C{time.gmtime} drops the fraction), so
    the text of the current second is the same for every response in it.
    """
    now = time.time()
    second = int(now)
    if _date_cache[0] != second:
        _date_cache[1] = datetimeToString(now)
        _date_cache[0] = second
    text: bytes = _date_cache[1]
    return text


class PyWattRequest(Request):
    """
    A L{twisted.web.server.Request} that reports itself to its L{PyWattSite}: in
    flight from C{process()} until it finishes or its connection is lost (for
    L{PyWattSite.drain}), then counted in the site's L{ModuleMetrics} with route,
    method, status and latency.
    """

    # Twisted's Request hashes by identity (C{id(self)}, as its C{__eq__} is identity)
    # through a Python method; the object's own identity hash is the same contract in
    # C, and the site's in-flight set hashes every request twice.
    __hash__ = object.__hash__

    # What the route label reads, absent until set: class defaults, so that reading
    # them costs a lookup and not a failed one (an AttributeError made and dropped).
    pywatt_route: str | None = None
    pywatt_route_version: str | None = None
    _pywatt_matched_rule: str | None = None

    def before_headers(self, callback: Callable[[PyWattRequest], object]) -> None:
        """
        Call C{callback(request)} just before the response's status and headers are
        sent (at the first C{write}, or at C{finish} for an empty body), so it may
        still set headers whatever the route did (the CORS layer merges its C{Vary}
        into the route's this way). Once they are sent it is too late: the callback
        is then not called.
        """
        if self.startedWriting:
            return
        self.__dict__.setdefault("_pywatt_before_headers", []).append(callback)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # Twisted parses a POST's Content-Type with the email package (tens of
        # microseconds) only to find out whether the body is a form to read into
        # request.args. A type that does not even contain "form" is neither
        # application/x-www-form-urlencoded nor multipart/form-data: skip the parse for
        # it (JSON and binary bodies); forms are read exactly as before.
        if command == b"POST":  # (Twisted looks for a form in a POST only)
            ctype = self.requestHeaders.getRawHeaders(b"content-type")
            if ctype and b"form" not in ctype[0].lower():
                self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        """
        Write body bytes; before the first ones, run the L{before_headers} callbacks,
        then (for a direct HTTP response) decide on gzip
        (L{pywatt_twisted.web._gzip.maybe_gzip}).
        """
        if not self.startedWriting:
            callbacks = self.__dict__.pop("_pywatt_before_headers", None)
            for callback in callbacks or ():
                try:
                    callback(self)
                except Exception:
                    _log.failure("a before-headers callback failed for {uri}", uri=_path_of(self))
        if not self.startedWriting and self._encoder is None:
            if getattr(self.channel, "direct_http", True):
                maybe_gzip(self, data)
        super().write(data)

    def process(self) -> None:
        """
        L{twisted.web.server.Request.process}, step for step, with the C{Date}
        header's text made once a second (L{_http_date}) rather than for every
        request (the C{*} request goes to Twisted's own), the request reported to its
        site first (in flight, metrics) and, when tracing is on, its SERVER span
        current while the resource runs.
        """
        channel: Any = self.channel
        site = channel.site
        track = getattr(site, "_request_started", None)
        if track is not None:
            track(self)
        token = self._start_span(channel, track is not None) if tracing.switch.on else None
        try:
            path = self.path
            if path == b"*":
                super().process()
                return
            self.site = site
            self.setHeader(b"Server", _server.version)
            self.setHeader(b"Date", _http_date())
            self.prepath = []
            self.postpath = list(map(unquote, path[1:].split(b"/")))
            try:
                resrc = site.getResourceFor(self)
                if _IEncodingResource.providedBy(resrc):
                    encoder = resrc.getEncoder(self)
                    if encoder is not None:
                        self._encoder = encoder
                self.render(resrc)
            except BaseException:
                self.processingFailed(Failure())
        finally:
            if token is not None:
                tracing.detach(token)

    def _start_span(self, channel: Any, tracked: bool) -> object:
        """
        Start the request's SERVER span and make it current (coroutine routes keep
        it); return the token for L{tracing.detach}. The span ends when the request
        finishes: in L{_finished}, with the route label the metrics use, when the
        site tracks the request, or else on its own L{notifyFinish} callback.
        """
        span = tracing.http_server_span(self, getattr(channel, "pywatt_transport", "http"))
        if tracked:
            self._pywatt_span = span
        else:
            self.notifyFinish().addBoth(self._end_span, span)
        return tracing.attach(span)

    def _end_span(self, result: object, span: Any) -> None:
        tracing.end_http_server_span(result, span, self, route_label(self))

    def processingFailed(self, reason: Failure) -> Failure:
        """
        Answer a route that raised: a L{BackendUnavailable} (the database or the cache
        cannot be reached) gets C{503} with a JSON body naming the backend, so clients
        and the orchestrator know to retry later; anything else gets Twisted's C{500}.
        The backend logs its own WARNING when it becomes unavailable; the 503 is logged
        here at info with the error (no password: the library's errors never hold one).

        A L{RouteReturnError} (the route returned something that cannot be sent, logged
        as an ERROR where it was found) gets C{500} with a JSON body carrying the same
        message, so that whoever tries the route sees what is wrong.
        """
        if reason.check(StreamFailed):
            return self._body_stream_failed(reason)
        if self.startedWriting or self.finished:
            result: Failure = super().processingFailed(reason)
            return result
        if reason.check(RouteReturnError):
            self._answer_json(
                500,
                {"error": "unsupported_return_value", "message": str(reason.value)},
            )
            return reason
        if not reason.check(BackendUnavailable):
            result = super().processingFailed(reason)
            return result
        error = reason.value
        backend = getattr(error, "backend", "backend")
        _log.info(
            "{method} {path} answered 503: {error}",
            method=self.method.decode("ascii", "replace"),
            path=_path_of(self),
            error=str(error),
        )
        self._answer_json(
            503,
            {
                "error": "backend_unavailable",
                "backend": backend,
                "message": f"the {backend} this module uses is unavailable; try again later",
            },
        )
        return reason

    def _body_stream_failed(self, reason: Failure) -> Failure:
        """
        The route re-raised the L{StreamFailed} its read of a streamed request body
        failed with (C{body_stream}): the bridge already answered the orchestrator
        (400, or 413 above the limit) and logged why; answer the same here, without
        a traceback, so the request ends.
        """
        error: Any = reason.value
        _log.info(
            "{method} {path}: the route stopped on its failed request body: {error}",
            method=self.method.decode("ascii", "replace"),
            path=_path_of(self),
            error=str(error),
        )
        if self.finished:
            return reason
        if self.startedWriting:
            self.finish()
            return reason
        too_large = error.kind == "too_large"
        self._answer_json(
            413 if too_large else 400,
            {
                "error": "body_too_large" if too_large else "bad_request",
                "message": f"the streamed request body failed: {error.reason}",
            },
        )
        return reason

    def _answer_json(self, code: int, document: dict[str, str]) -> None:
        body = json.dumps(document).encode("utf-8")
        self.setResponseCode(code)
        self.setHeader(b"Content-Type", b"application/json")
        self.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.write(body)
        self.finish()

    #: (site, metrics, start time) from the site's C{_request_started} until the request
    #: is recorded as finished
    _pywatt_track: tuple[PyWattSite, ModuleMetrics | None, float] | None = None

    def finish(self) -> None:
        """
        L{Request.finish}, then the request recorded as done (metrics, in flight): where
        Twisted fires the L{notifyFinish} Deferreds, without one of its own.
        """
        super().finish()
        track = self._pywatt_track
        if track is not None and self.finished:
            self._pywatt_track = None
            self._finished(None, *track)

    def connectionLost(self, reason: Failure) -> None:
        """
        L{Request.connectionLost}, then the request recorded as aborted.
        """
        super().connectionLost(reason)
        track = self._pywatt_track
        if track is not None:
            self._pywatt_track = None
            self._finished(reason, *track)

    #: the SERVER span of the request, when tracing is on and its site tracks it
    _pywatt_span: Any = None

    def _finished(
        self, result: object, site: PyWattSite, metrics: ModuleMetrics | None, started: float
    ) -> None:
        label = None
        try:
            if metrics is not None:
                status = "aborted" if isinstance(result, Failure) else str(self.code)
                method = _METHOD_LABELS.get(self.method)
                if method is None:
                    method = self.method.decode("ascii", "replace").upper()
                seconds = site.reactor.seconds() - started
                # route_label(self), without a call for the common cases: a built-in's
                # label, or the rule Klein matched outside a versioned app
                label = self.pywatt_route
                if not label:
                    label = self._pywatt_matched_rule
                    if label is None or self.pywatt_route_version is not None:
                        label = route_label(self)
                elif type(label) is not str:
                    label = route_label(self)
                metrics.request_finished(label, method, status, seconds)
        except Exception:
            _log.failure("recording metrics for {uri} failed", uri=_path_of(self))
        finally:
            span = self._pywatt_span
            if span is not None:
                self._pywatt_span = None
                try:
                    tracing.end_http_server_span(
                        result, span, self, route_label(self) if label is None else label
                    )
                except Exception:
                    _log.failure("ending the span of {uri} failed", uri=_path_of(self))
            site._in_flight.discard(self)


#: the method label of the standard methods' tokens (as C{_finished} would decode them)
_METHOD_LABELS = {m.encode("ascii"): m for m in STANDARD_METHODS}


class PyWattSite(Site):
    """
    The module's site: a L{Site} that uses L{PyWattRequest} for metrics, hides
    tracebacks, and sends its access log to C{twisted.logger} (debug level, path
    without query string) instead of a file or stdout.

    Requests in flight (direct and bridged) are tracked for a graceful stop: see
    L{in_flight} and L{drain}.

    Connections on the listening port are L{PyWattHTTPChannel}s with this site's
    limits.

    @ivar metrics: the L{ModuleMetrics} requests report to, or C{None}.
    @ivar max_body_size: the largest request body in bytes, direct or bridged.
    @ivar max_header_size: the largest request line plus headers in bytes.
    @ivar header_timeout: seconds a client has to send a request's headers.
    """

    requestFactory = PyWattRequest
    displayTracebacks = False
    protocol = PyWattHTTPChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        metrics: ModuleMetrics | None = None,
        reactor: Any = None,
        *,
        access_log: bool = True,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        """
        @param resource: the root resource (usually from L{build_root_resource}).
        @param metrics: where to record requests; C{None} records nothing.
        @param reactor: clock for latency and connection timeouts; the global
            reactor when C{None}.
        @param access_log: emit one debug event per request on C{twisted.logger}.
        @param max_body_size: bodies above this many bytes get 413.
        @param max_header_size: a request line plus headers above this many bytes
            gets 431.
        @param header_timeout: seconds from a request's first byte until its headers
            are in before 408; C{None} for no limit.
        @param idle_timeout: seconds a connection may stay silent; C{None} for none.
        """
        super().__init__(resource, reactor=reactor, timeout=idle_timeout)  # type: ignore[arg-type]
        self.metrics = metrics
        self.access_log = access_log
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.header_timeout = header_timeout
        self._in_flight: InFlight[PyWattRequest] = InFlight()
        self._limits_logged: set[str] = set()

    def buildProtocol(self, addr: Any) -> Any:
        """
        A L{PyWattHTTPChannel} with this site's limits.
        """
        channel = super().buildProtocol(addr)
        if isinstance(channel, PyWattHTTPChannel):
            channel.maxBodySize = self.max_body_size
            channel.totalHeadersSize = self.max_header_size
            channel.MAX_LENGTH = self.max_header_size
            channel.headerTimeout = self.header_timeout
            channel.clock = self.reactor
        return channel

    def limit_reached(self, limit: str, detail: str, peer: str = "?") -> None:
        """
        Log that a connection hit C{limit} (a L{RuntimeConfig} field name): a warning
        naming the option and variable that raise it the first time for each limit,
        debug events after that (a misbehaving client must not flood the log). The
        idle timeout is routine and only ever logged at debug level.

        @param limit: C{"max_body_size"}, C{"max_header_size"},
            C{"http_header_timeout"} or C{"http_idle_timeout"}.
        @param detail: what happened, for the log line.
        @param peer: the client's address.
        """
        setting = _LIMIT_SETTINGS.get(limit, limit)
        if limit == "http_idle_timeout" or limit in self._limits_logged:
            _log.debug(
                "HTTP connection from {peer} closed at the {limit} limit: {detail}",
                peer=peer,
                limit=limit,
                detail=detail,
            )
            return
        self._limits_logged.add(limit)
        _log.warn(
            "HTTP request from {peer} refused at the {limit} limit: {detail}. Raise it "
            "with {setting} if legitimate clients need more (further refusals at this "
            "limit are logged at debug level).",
            peer=peer,
            limit=limit,
            detail=detail,
            setting=setting,
        )

    @property
    def in_flight(self) -> int:
        """
        Requests (direct and bridged) being processed now.
        """
        return len(self._in_flight)

    def drain(self) -> Deferred[None]:
        """
        A Deferred that fires once no request (direct or bridged) is being processed;
        at once when none is. Stop the listening port first so no new ones arrive.
        """
        return self._in_flight.drained()

    def _request_started(self, request: PyWattRequest) -> None:
        self._in_flight.add(request)
        started = self.reactor.seconds()
        if self.metrics is not None:
            self.metrics.request_started()
        # recorded when the request finishes or its connection is lost (see
        # PyWattRequest.finish and connectionLost), without a notifyFinish Deferred
        request._pywatt_track = (self, self.metrics, started)

    def getResourceFor(self, request: Any) -> Any:
        """
        L{Site.getResourceFor}, with the site path copied as the list it is (Twisted
        goes through C{copy.copy}) and, when the root is the built-ins in front of the
        user's resource (L{build_root_resource}), the user's resource traversed from
        its root directly.
        """
        request.site = self
        prepath = request.prepath
        request.sitepath = prepath[:] if type(prepath) is list else copy.copy(prepath)
        root = self.resource
        if type(root) is _RootResource and request.postpath:
            # The built-ins in front of the user's resource: what the first traversal
            # step (_RootResource.getChildWithDefault) would do, without taking the
            # step and undoing it for every request that is not a built-in.
            if request.method in (b"GET", b"HEAD"):
                builtin = root._builtins.get(request.path)
                if builtin is not None:
                    prepath.append(request.postpath.pop(0))
                    label, resource = builtin
                    request.pywatt_route = label
                    return resource
            return getChildForRequest(root._app, request)
        return getChildForRequest(root, request)

    def startFactory(self) -> None:
        # No log file and no once-a-second timer for the cached log date: the access
        # log goes through twisted.logger (see log()).
        pass

    def stopFactory(self) -> None:
        pass

    def log(self, request: Any) -> None:
        """
        Emit the access-log event for a finished request (never to stdout).
        """
        if not self.access_log:
            return
        _log.debug(
            "{method} {path} {code} {length}",
            method=request.method.decode("ascii", "replace"),
            path=_path_of(request),
            code=request.code,
            length=request.sentLength,
        )
