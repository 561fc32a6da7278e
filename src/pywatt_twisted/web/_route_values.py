# -*- test-case-name: tests.web.test_route_values -*-
# mypy: disallow-untyped-calls=False
"""
What a Klein route returns, made sendable: L{klein_resource} serves a Klein app whose
routes may return a C{dict} or a C{list} (sent as JSON) and refuses, with one ERROR log
line and a L{RouteReturnError} the site answers with a 500, a value that cannot be
sent. Re-exported from L{pywatt_twisted.web.site}.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python import log as _twisted_log
from twisted.python.failure import Failure
from twisted.web.iweb import IRenderable
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import Element, Tag, TagLoader, renderElement
from werkzeug.exceptions import HTTPException

from pywatt_twisted.errors import RouteReturnError
from pywatt_twisted.web.discovery import announced_path

MATCHED_RULE_ATTRIBUTE = "_pywatt_matched_rule"
"""
The request attribute where the route a Klein endpoint was matched by is noted (in
announce style), for the metrics' route label.
"""

__all__ = ["klein_resource"]

_log = Logger(namespace="pywatt_twisted.web")

try:
    from klein import Response as KleinResponse
    from klein._resource import StandInResource as _StandInResource
    from klein._resource import URLDecodeError as _URLDecodeError
    from klein._resource import ensure_utf8_bytes
    from klein._resource import extractURLparts as _extractURLparts
    from klein.interfaces import IKleinRequest
    from klein.resource import KleinResource
except ImportError:  # pragma: no cover - klein is a dependency
    IKleinRequest = None  # type: ignore[assignment,misc]
    KleinResource = None  # type: ignore[assignment,misc]
    KleinResponse = None  # type: ignore[assignment,misc]

_KleinBase: Any = object if KleinResource is None else KleinResource


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
        # rule text -> its announce-style label; as many entries as the app has rules.
        self._pywatt_labels: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pywatt_app, name)

    # What KleinResource reads on every request, forwarded without the failed normal
    # lookup that reaching __getattr__ costs (about 0.5 us each, three per request),
    # by an attrgetter: the property's getter is then a C call, not a Python frame.

    url_map = property(attrgetter("_pywatt_app.url_map"))
    endpoints = property(attrgetter("_pywatt_app.endpoints"))
    _error_handlers = property(attrgetter("_pywatt_app._error_handlers"))

    def _note_rule(self, endpoint: str, request: Any) -> None:
        """
        Record on C{request} the rule Klein matched, when C{endpoint} has exactly one
        (the metrics' route label then needs no second URL match; see
        L{pywatt_twisted.web.site.route_label}).
        """
        url_map = self._pywatt_app.url_map
        # werkzeug's Map keeps the rules of each endpoint in a list that add() appends
        # to, always current; read it without iter_rules()'s update() and iterator
        # (a rule added later is seen at once), or through iter_rules() where a Map
        # has no such table.
        by_endpoint = getattr(url_map, "_rules_by_endpoint", None)
        if type(by_endpoint) is dict:
            rules = by_endpoint.get(endpoint)
            if rules is None:  # unknown to the map: match again later
                return
        else:
            try:
                rules = list(url_map.iter_rules(endpoint))
            except (AttributeError, KeyError):  # unknown to the map: match again later
                return
        if len(rules) != 1:  # a branch route: which one matched needs the match
            return
        text = rules[0].rule
        label = self._pywatt_labels.get(text)
        if label is None:
            label = self._pywatt_labels[text] = announced_path(text)
        setattr(request, MATCHED_RULE_ATTRIBUTE, label)

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        self._note_rule(endpoint, request)
        result = self._pywatt_app.execute_endpoint(endpoint, request, *args, **kwargs)
        if type(result) is bytes:  # the common case: as it is, no closure made for it
            return result
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
    resource: IResource = _KleinResource(_RouteValues(app))  # type: ignore[arg-type]
    return resource


def _gone(request: Any) -> bool:
    """
    Whether C{request} has finished or lost its connection: what Klein's render
    learns from a C{notifyFinish} Deferred it registers just before the route runs
    (both are false when a request is rendered, and each is set just before those
    Deferreds fire).
    """
    return bool(request.finished or request._disconnected)


class _KleinResource(_KleinBase):  # type: ignore[misc,valid-type]
    """
    C{KleinResource}, with a route that returns its body at once (C{bytes} or
    C{str}: most routes, and the dicts and lists L{_RouteValues} turns into JSON) sent
    at once, without the Deferreds Klein builds for every request (issue 20: about a
    tenth of a small GET). What Klein does with anything else (a Deferred, a
    coroutine, a resource, an element, an exception, a 404) is unchanged: the rest of
    L{render} is Klein 24.8's C{KleinResource.render} (MIT licence), step for step,
    with its "request finished" flag read from the request (L{_gone}) rather than
    from a C{notifyFinish} Deferred.
    """

    def render(self, request: Any) -> Any:
        if getattr(request, "finished", True) or getattr(request, "_disconnected", True):
            # not a twisted.web request being rendered for the first time: Klein's own
            return KleinResource.render(self, request)
        try:
            (
                url_scheme,
                server_name,
                _server_port,
                path_info,
                script_name,
            ) = _extractURLparts(request)
        except _URLDecodeError as e:
            for what, fail_ in e.errors:
                _twisted_log.err(fail_, f"Invalid encoding in {what}.")
            request.setResponseCode(400)
            return b"Non-UTF-8 encoding in URL."

        app = self._app
        mapper = app.url_map.bind(
            server_name,
            script_name,
            path_info=path_info,
            default_method=request.method.decode("utf-8"),
            url_scheme=url_scheme,
        )
        IKleinRequest(request).mapper = mapper

        # whether Klein would watch for the request's end (a notifyFinish Deferred
        # registered once the URL matched, just before the route runs)
        watching = False
        d: Deferred[Any]
        try:
            (rule, kwargs) = mapper.match(return_rule=True)
            endpoint = rule.endpoint
            segment_count = app.endpoints[endpoint].segment_count
            request.prepath.extend(request.postpath[:segment_count])
            request.postpath = request.postpath[segment_count:]
        except BaseException:
            d = fail(Failure(captureVars=Deferred.debug))
        else:
            watching = True
            try:
                result = app.execute_endpoint(endpoint, request, **kwargs)
            except BaseException:
                d = fail(Failure(captureVars=Deferred.debug))
            else:
                kind = type(result)
                if (kind is bytes or kind is str) and not (
                    request.finished or request._disconnected  # (_gone, inline)
                ):
                    # Klein's process() passes a body through, and its write_response()
                    # writes it and finishes the request.
                    try:
                        request.write(result if kind is bytes else result.encode("utf-8"))
                        if not (request.finished or request._disconnected):
                            request.finish()
                    except BaseException:
                        _twisted_log.err(Failure(), "Unhandled Error writing response")
                    return NOT_DONE_YET
                d = maybeDeferred(lambda: result)
            endpoint_d = d
            request.notifyFinish().addErrback(lambda _: endpoint_d.cancel())

        def finished() -> bool:
            # Klein's "request finished" flag, set by that Deferred
            return watching and _gone(request)

        def process(r: object) -> Any:
            if isinstance(r, KleinResponse):
                r = r._applyToRequest(request)
            if IResource.providedBy(r):
                request.render(getChildForRequest(r, request))
                return _StandInResource
            if IRenderable.providedBy(r):
                renderElement(request, r)
                return _StandInResource
            return r

        d.addCallback(process)

        def processing_failed(failure: Failure, error_handlers: Any) -> Deferred[Any] | None:
            if finished():
                if not failure.check(CancelledError):
                    _twisted_log.err(failure, "Unhandled Error Processing Request.")
                return None
            if len(error_handlers) == 0:
                if failure.check(HTTPException):
                    he = failure.value
                    request.setResponseCode(he.code)
                    resp = he.get_response({})
                    for header, value in resp.headers:
                        request.setHeader(ensure_utf8_bytes(header), ensure_utf8_bytes(value))
                    encoded = resp.iter_encoded()
                    return succeed(ensure_utf8_bytes(b"".join(encoded)))
                request.processingFailed(failure)
                return None
            error_handler = error_handlers[0]
            if failure.check(*error_handler[0]):
                handler_d = maybeDeferred(
                    app.execute_error_handler, error_handler[1], request, failure
                )
                handler_d.addCallback(process)
                return handler_d.addErrback(processing_failed, error_handlers[1:])
            return processing_failed(failure, error_handlers[1:])

        d.addErrback(processing_failed, app._error_handlers)

        def write_response(r: Any) -> None:
            if r is _StandInResource:
                return
            if isinstance(r, str):
                r = r.encode("utf-8")
            if isinstance(r, bytes):
                request.write(r)
            if not finished():
                request.finish()

        d.addCallback(write_response)
        d.addErrback(_twisted_log.err, _why="Unhandled Error writing response")
        return NOT_DONE_YET


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
    if type(result) is bytes:  # the common case, before the ABC check of Deferred
        return result
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


def _path_of(request: Any) -> str:
    """
    The request path without its query (which may carry tokens), for logs.
    """
    path = request.path if request.path is not None else request.uri.split(b"?", 1)[0]
    return bytes(path).decode("utf-8", "replace")
