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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRenderable
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.template import Element, Tag, TagLoader

from pywatt_twisted._inflight import InFlight
from pywatt_twisted.errors import BackendUnavailable, RouteReturnError
from pywatt_twisted.web.discovery import METRICS_PATH, announced_path
from pywatt_twisted.web.metrics import METRICS_CONTENT_TYPE, ModuleMetrics

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

#: Health statuses answered with 200; every other status gets 503.
HEALTHY_STATUSES = frozenset({"ok", "starting"})

#: Request attribute through which a resource names its route label explicitly.
ROUTE_ATTRIBUTE = "pywatt_route"

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

_log = Logger(namespace="pywatt_twisted.web")

try:
    from klein import Response as KleinResponse
    from klein.interfaces import IKleinRequest
    from klein.resource import KleinResource
except ImportError:  # pragma: no cover - klein is a dependency
    IKleinRequest = None  # type: ignore[assignment,misc]
    KleinResource = None  # type: ignore[assignment,misc]
    KleinResponse = None  # type: ignore[assignment,misc]


class _HealthResource(Resource):
    """
    C{GET health_path}: the runtime's status mapping as JSON.
    """

    isLeaf = True

    def __init__(self, status: Callable[[], Mapping[str, object]]) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Any) -> bytes:
        report = dict(self._status())
        healthy = report.get("status") in HEALTHY_STATUSES
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(report, separators=(",", ":"), default=str).encode("utf-8")


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
    status: Callable[[], Mapping[str, object]],
) -> IResource:
    """
    Put the built-in routes in front of the user's resource.

      - C{GET health_path}: C{status()} as JSON (exactly the mapping it returns),
        200 when its C{"status"} is C{"ok"} or C{"starting"}, 503 otherwise
        (C{"stopping"}, C{"degraded"}, anything else).
      - C{GET /metrics} (when C{metrics} is given): C{metrics.render()} with
        content type C{text/plain; version=0.0.4; charset=utf-8}.
      - Everything else, including other methods on those paths and paths that
        merely start with them (C{/healthz}, C{/health/x}), goes to
        C{app_resource} untouched. A user route on exactly C{GET health_path} is
        shadowed by the built-in: pass C{health=None} to serve your own.

    @param app_resource: the user's resource (for Klein, C{app.resource()}).
    @param health_path: path of the health route, or C{None} to disable it.
    @param metrics: the module's metrics, or C{None} to disable C{/metrics}.
    @param status: called on every health request.

    A C{KleinResource} (C{app.resource()}) is replaced by L{klein_resource} of its
    app, so that routes returning a C{dict} or a C{list} answer JSON and a route
    returning something that cannot be sent is a logged 500, the same over direct
    HTTP and HTTP-over-IPC.
    """
    app_resource = _with_route_values(app_resource)
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
    if not builtins:
        return app_resource
    return _RootResource(app_resource, builtins)


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
    return announced_path(rule.rule)


# -- what a route returns --------------------------------------------------------------

#: orjson options for a route's dict or list: non-str keys (ints, enums...) become
#: strings as with the standard library, and a dataclass is refused like any other
#: object (only dicts and lists become JSON, nested or not).
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS

#: What a route may return, for the error message.
_SENDABLE = (
    "return bytes, str, a dict or list (sent as JSON), a twisted.web resource or "
    "template element, or None"
)


class _RouteValues:
    """
    The user's Klein app as a L{KleinResource} sees it: every attribute is the app's,
    but what a route or an error handler returns (at once or through a Deferred or a
    coroutine) goes through L{_sendable} first.
    """

    def __init__(self, app: Any) -> None:
        self._pywatt_app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pywatt_app, name)

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._pywatt_app.execute_endpoint(endpoint, request, *args, **kwargs)
        return _when_ready(result, request, lambda: _describe_route(request, endpoint))

    def execute_error_handler(self, handler: Any, request: Any, failure: Failure) -> Any:
        result = self._pywatt_app.execute_error_handler(handler, request, failure)

        def where() -> str:
            name = getattr(handler, "__name__", "?")
            return f"the error handler {name} for {_describe_route(request, None)}"

        return _when_ready(result, request, where)


def klein_resource(app: Any) -> IResource:
    """
    The resource serving a Klein app, like C{app.resource()}, except for what routes
    (and C{handle_errors} handlers) return, at once, from a Deferred or from an
    C{async def}:

      - C{bytes}, C{str}, C{None}, a resource, an C{IRenderable}, a C{klein.Response}:
        as Klein sends them (a C{bytearray} or C{memoryview} is sent as bytes);
      - a C{twisted.web.template} tag: rendered as HTML (Klein alone sends nothing);
      - a C{dict} or a C{list}: JSON (orjson), with C{Content-Type: application/json}
        unless the route set a content type itself, which is kept;
      - anything else (an C{int}, a C{set}, a C{tuple}, a dataclass, an object), or a
        dict or list holding a value JSON cannot represent: a L{RouteReturnError}, which
        the site answers with a 500 and a JSON body, after one ERROR log line naming
        the route (method, rule, handler) and the type.

    A C{tuple} is refused rather than sent as a JSON array: in Flask C{return body,
    404} sets the status, here it would silently answer 200. Tuples inside a dict or a
    list are JSON arrays.

    @param app: a C{klein.Klein} app (bound or not).
    """
    resource: IResource = KleinResource(_RouteValues(app))  # type: ignore[arg-type]
    return resource


def _with_route_values(resource: IResource) -> IResource:
    """
    C{resource} itself, or L{klein_resource} of its app when it is exactly a
    C{KleinResource} (a subclass may render in its own way: left alone).
    """
    if KleinResource is None or type(resource) is not KleinResource:
        return resource
    app = resource._app
    if isinstance(app, _RouteValues):
        return resource
    return klein_resource(app)


def _when_ready(result: Any, request: Any, where: Callable[[], str]) -> Any:
    if isinstance(result, Deferred):
        return result.addCallback(_sendable, request, where)
    return _sendable(result, request, where)


def _sendable(value: Any, request: Any, where: Callable[[], str]) -> Any:
    """
    What Klein should send for a route's return value C{value} (see L{klein_resource}).

    @raise RouteReturnError: C{value} cannot be sent; already logged.
    """
    if value is None or isinstance(value, (bytes, str)):
        return value
    if isinstance(value, (dict, list)):
        return _json_body(value, request, where)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if IResource.providedBy(value) or IRenderable.providedBy(value):
        return value
    if KleinResponse is not None and isinstance(value, KleinResponse):
        return value
    if isinstance(value, Tag):
        return Element(loader=TagLoader(value))
    if isinstance(value, tuple):
        hint = (
            "a tuple is not (body, status) here: call request.setResponseCode(...) and "
            "return the body; return a list to send a JSON array"
        )
    elif value is NOT_DONE_YET:
        hint = (
            "twisted.web.server.NOT_DONE_YET is for a Resource's render(); a Klein route "
            "that writes with request.write() later returns a Deferred that fires when it "
            "is done (or a Resource whose render() returns NOT_DONE_YET)"
        )
    else:
        hint = _SENDABLE
    _refuse_value(where(), _type_name(value), f"which cannot be sent as a response: {hint}")


def _json_body(value: dict[Any, Any] | list[Any], request: Any, where: Callable[[], str]) -> bytes:
    offenders: list[object] = []

    def refuse(obj: object) -> None:
        offenders.append(obj)
        raise TypeError(_type_name(obj))

    try:
        body = orjson.dumps(value, default=refuse, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as e:
        kind = _type_name(value)
        if offenders:
            bad = offenders[0]
            _refuse_value(
                where(),
                _type_name(bad),
                "which JSON cannot represent: convert it to a dict, list, str, number, "
                "bool or None first (dataclasses.asdict or attrs.asdict for a record)",
                what=f"{_a(kind)} holding {_a(_type_name(bad))} at {_locate(value, bad)}",
            )
        _refuse_value(where(), kind, f"which cannot be sent as JSON: {e}")
    if not request.responseHeaders.hasHeader(b"content-type"):
        request.setHeader(b"content-type", b"application/json")
    return body


def _refuse_value(route: str, type_name: str, why: str, what: str | None = None) -> Any:
    """
    Log one ERROR line and raise the L{RouteReturnError} the site answers with a 500.
    """
    if what is None:
        what = _a(type_name)
    message = f"{route} returned {what}, {why}"
    # The message is the format itself (braces escaped), so that the JSON log line
    # carries it once, with the route and the type as fields.
    _log.error(message.replace("{", "{{").replace("}", "}}"), route=route, return_type=type_name)
    raise RouteReturnError(message, route, type_name)


def _a(name: str) -> str:
    """
    C{name} with its indefinite article: C{"a set"}, C{"an int"}.
    """
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    if module in ("builtins", None):
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


def _locate(root: object, target: object) -> str:
    """
    Where C{target} sits inside C{root}, as a subscript path (C{["tags"][0]}); C{"?"}
    when not found within a depth of 64.
    """
    seen: set[int] = set()

    def walk(node: object, path: str, depth: int) -> str | None:
        if node is target:
            return path or "the top"
        if depth > 64 or id(node) in seen:
            return None
        if isinstance(node, dict):
            seen.add(id(node))
            for key, child in node.items():
                found = walk(child, f"{path}[{key!r}]", depth + 1)
                if found is not None:
                    return found
        elif isinstance(node, (list, tuple)):
            seen.add(id(node))
            for index, child in enumerate(node):
                found = walk(child, f"{path}[{index}]", depth + 1)
                if found is not None:
                    return found
        return None

    return walk(root, "", 0) or "?"


def _describe_route(request: Any, endpoint: str | None) -> str:
    """
    The route a request reached, as the user wrote it: C{"GET /items/<int:item_id>
    (get_item)"}; the request path when no rule matched.
    """
    method = request.method.decode("ascii", "replace")
    mapper = None
    if IKleinRequest is not None:
        mapper = getattr(request.getComponent(IKleinRequest), "mapper", None)
    try:
        rule, _ = mapper.match(return_rule=True)  # type: ignore[union-attr]
    except Exception:
        return f"{method} {_path_of(request)}"
    name = endpoint if endpoint is not None else rule.endpoint
    return f"{method} {rule.rule} ({name})"


class PyWattRequest(Request):
    """
    A L{twisted.web.server.Request} that reports itself to its L{PyWattSite}: in
    flight from C{process()} until it finishes or its connection is lost (for
    L{PyWattSite.drain}), then counted in the site's L{ModuleMetrics} with route,
    method, status and latency.
    """

    def process(self) -> None:
        channel: Any = self.channel
        site = channel.site
        track = getattr(site, "_request_started", None)
        if track is not None:
            track(self)
        super().process()

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

    def _answer_json(self, code: int, document: dict[str, str]) -> None:
        body = json.dumps(document).encode("utf-8")
        self.setResponseCode(code)
        self.setHeader(b"Content-Type", b"application/json")
        self.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.write(body)
        self.finish()

    def _finished(
        self, result: object, site: PyWattSite, metrics: ModuleMetrics | None, started: float
    ) -> None:
        try:
            if metrics is not None:
                status = "aborted" if isinstance(result, Failure) else str(self.code)
                method = self.method.decode("ascii", "replace").upper()
                seconds = site.reactor.seconds() - started
                metrics.request_finished(route_label(self), method, status, seconds)
        except Exception:
            _log.failure("recording metrics for {uri} failed", uri=_path_of(self))
        finally:
            site._request_finished(self)


def _path_of(request: Any) -> str:
    """
    The request path without its query (which may carry tokens), for logs.
    """
    path = request.path if request.path is not None else request.uri.split(b"?", 1)[0]
    return bytes(path).decode("utf-8", "replace")


#: What each limit is called in logs: its setting, twistd option and variable.
_LIMIT_SETTINGS = {
    "max_body_size": "--max-body-size / PYWATT_MAX_BODY_SIZE",
    "max_header_size": "--max-header-size / PYWATT_MAX_HEADER_SIZE",
    "http_header_timeout": "--http-header-timeout / PYWATT_HTTP_HEADER_TIMEOUT",
    "http_idle_timeout": "--http-idle-timeout / PYWATT_HTTP_IDLE_TIMEOUT",
}


class PyWattHTTPChannel(HTTPChannel):
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
    _headerCall: IDelayedCall | None = None
    _lingerCall: IDelayedCall | None = None
    _bodyReceived = 0

    # -- reading ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            # Lingering after a refusal: read and drop, without resetting any timer.
            return
        if (
            data
            and self._headerCall is None
            and self.headerTimeout is not None
            and self.line_mode
            and not self._handlingRequest
        ):
            # The first byte of a request: its headers must all be in by the deadline.
            self._headerCall = self.callLater(self.headerTimeout, self._headersTimedOut)
        super().dataReceived(data)

    def _inHeaders(self) -> bool:
        """
        Whether the request line has been parsed and its headers are being read
        (L{HTTPChannel} sets C{_command} then and deletes it once the request is in).
        """
        return hasattr(self, "_command")

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._headersTooLarge()
            return
        if self._inHeaders() and line[:1] in (b" ", b"\t"):
            self._refuse(
                400,
                b"Bad Request",
                "bad_request",
                "a header line starts with a space or tab (obsolete line folding); "
                "send each header on a single line",
            )
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._headersTooLarge()

    def allHeadersReceived(self) -> None:
        self._cancelHeaderTimer()
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
        self._headerCall = None
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


def _peer(transport: Any) -> str:
    try:
        return str(transport.getPeer())
    except Exception:
        return "?"


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
        request.notifyFinish().addBoth(request._finished, self, self.metrics, started)

    def _request_finished(self, request: PyWattRequest) -> None:
        self._in_flight.discard(request)

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
