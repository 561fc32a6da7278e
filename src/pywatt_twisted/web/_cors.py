# -*- test-case-name: tests.web.test_cors -*-
# mypy: disallow-untyped-calls=False
"""
CORS (the Fetch standard's CORS protocol) for a module's routes: a L{CorsPolicy} for the
whole module (C{@pywatt_module(cors=...)}) or for one route (L{cors}), applied by a
resource in front of the site's root, so that direct HTTP and HTTP-over-IPC (stdin and
channels) behave the same.

  - A CORS preflight (C{OPTIONS} with C{Origin} and C{Access-Control-Request-Method}) is
    answered here and never reaches the route: C{204} with the C{Access-Control-Allow-*}
    headers when the origin, the method and every requested header are allowed, else
    C{403} with a JSON body saying which one is not.
  - Any other request goes to the route; its response gets C{Access-Control-Allow-Origin}
    (and C{-Allow-Credentials}, C{-Expose-Headers}) when the origin is allowed, just
    before its headers are sent. A refused origin gets no CORS headers: the browser then
    withholds the response from the page (the server cannot stop a simple request).
  - C{Vary: Origin} is sent on every response of a covered route whose answer depends
    on the origin (every policy except C{origins=["*"]} without credentials, which always
    answers C{*}), as the Fetch standard's "CORS protocol and HTTP caches" asks, merged
    into any C{Vary} the route sets.

Re-exported from C{pywatt_twisted}: L{CorsPolicy}, L{cors}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from attrs import field, frozen
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource, getChildForRequest
from werkzeug.exceptions import MethodNotAllowed

from pywatt_twisted._views import find_mark
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web.discovery import announced_path
from pywatt_twisted.wire._value import Value

__all__ = ["CORS_ATTRIBUTE", "CorsPolicy", "cors", "cors_of", "cors_paths", "with_cors"]

#: The function attribute that carries a route's own policy (see L{cors}).
CORS_ATTRIBUTE = "__pywatt_cors__"

#: C{pywatt_twisted.web.site.ROUTE_ATTRIBUTE}: the metrics label of a request (kept here
#: as a string so that this module does not import the site; a test checks they agree).
_ROUTE_ATTRIBUTE = "pywatt_route"

#: What L{CorsPolicy} allows by default: every standard method a JSON API uses.
DEFAULT_METHODS: tuple[str, ...] = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")

#: Request headers allowed by default beyond the CORS-safelisted ones: a JSON body's
#: C{Content-Type} (C{application/json} is not safelisted, so browsers ask for it).
DEFAULT_HEADERS: tuple[str, ...] = ("Content-Type",)

_log = Logger(namespace="pywatt_twisted.web")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# scheme "://" host [":" port], nothing after: what browsers put in an Origin header.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[^/?#:@\s\[\]]+)(:[0-9]{1,5})?$")

F = TypeVar("F", bound=Callable[..., Any])


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(
            f"CorsPolicy {what} must be a list, got the string {value!r}; write {what}=[{value!r}]"
        )
    if not isinstance(value, Iterable):
        raise ConfigurationError(f"CorsPolicy {what} must be a list of strings, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"CorsPolicy {what} must hold non-empty strings, got {item!r}")
    return items


def _origins(value: object) -> tuple[str, ...]:
    origins = _strings(value, "origins")
    if not origins:
        raise ConfigurationError(
            "CorsPolicy origins is empty: list the origins allowed, e.g. "
            "origins=['https://app.example.com'], or ['*'] for any origin"
        )
    result = []
    for origin in origins:
        if origin in ("*", "null"):
            result.append(origin)
            continue
        lowered = origin.lower()
        if not _ORIGIN.match(lowered):
            raise ConfigurationError(
                f"CorsPolicy origin {origin!r} is not an origin: write scheme://host[:port] "
                "with no path and no trailing slash, e.g. 'https://app.example.com'"
            )
        result.append(lowered)
    if "*" in result and len(result) > 1:
        raise ConfigurationError(
            f"CorsPolicy origins {list(origins)!r} mixes '*' with named origins: use ['*'] "
            "alone for any origin, or list the origins"
        )
    return tuple(result)


def _tokens(value: object, what: str, upper: bool) -> tuple[str, ...]:
    items = _strings(value, what)
    for item in items:
        if not _TOKEN.match(item):
            raise ConfigurationError(f"CorsPolicy {what}: {item!r} is not an HTTP token")
    if "*" in items and len(items) > 1:
        raise ConfigurationError(
            f"CorsPolicy {what} mixes '*' with names: use ['*'] alone, or list the names"
        )
    return tuple(item.upper() for item in items) if upper else items


def _methods(value: object) -> tuple[str, ...]:
    return _tokens(value, "methods", True)


def _headers(value: object) -> tuple[str, ...]:
    return _tokens(value, "headers", False)


def _expose_headers(value: object) -> tuple[str, ...]:
    return _tokens(value, "expose_headers", False)


def _max_age(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"CorsPolicy max_age must be a number of seconds (0 or more) or None, got {value!r}"
        )
    return value


@frozen(eq=False, repr=False)
class CorsPolicy(Value):
    """
    Which cross-origin requests browsers may make to a module's routes.

    @ivar origins: the origins allowed (C{"https://app.example.com"}, compared without
        regard to case), or C{["*"]} for any origin.
    @ivar methods: the methods a preflight may ask for (default L{DEFAULT_METHODS}),
        or C{["*"]} for any method (answered with the method asked for).
    @ivar headers: the request headers a preflight may ask for beyond the
        CORS-safelisted ones (default C{["Content-Type"]}); C{["*"]} allows whatever
        the preflight asks for.
    @ivar expose_headers: response headers the page's script may read beyond the
        safelisted ones (C{Access-Control-Expose-Headers}).
    @ivar credentials: whether the page may send cookies and C{Authorization}
        (C{Access-Control-Allow-Credentials: true}). C{"*"} in C{origins} or
        C{expose_headers} with credentials is a L{ConfigurationError}: browsers refuse
        a wildcard there. (C{"*"} in C{methods} and C{headers} is answered with the
        method and headers the preflight asked for, which browsers accept.)
    @ivar max_age: seconds a browser may cache a preflight's answer
        (C{Access-Control-Max-Age}); C{None} sends none (the browser's default, 5 s).
    """

    origins: tuple[str, ...] = field(converter=_origins)
    methods: tuple[str, ...] = field(default=DEFAULT_METHODS, converter=_methods)
    headers: tuple[str, ...] = field(default=DEFAULT_HEADERS, converter=_headers)
    expose_headers: tuple[str, ...] = field(default=(), converter=_expose_headers)
    credentials: bool = False
    max_age: int | None = field(default=600, converter=_max_age)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.credentials, bool):
            raise ConfigurationError(
                f"CorsPolicy credentials must be True or False, got {self.credentials!r}"
            )
        if self.credentials:
            # methods=["*"] and headers=["*"] are answered with the names asked for
            # (never a literal "*"), so they work with credentials.
            for what in ("origins", "expose_headers"):
                if "*" in getattr(self, what):
                    raise ConfigurationError(
                        f"CorsPolicy {what}=['*'] with credentials=True: browsers refuse a "
                        "wildcard on a request with credentials (Fetch standard, CORS "
                        f"protocol); list the {what.replace('_', ' ')} allowed instead"
                    )

    @property
    def any_origin(self) -> bool:
        """
        Whether every origin gets C{Access-Control-Allow-Origin: *} (and the answer does
        not depend on the origin).
        """
        return self.origins == ("*",)

    def allows_origin(self, origin: str) -> bool:
        """
        Whether C{origin} (an C{Origin} header's value) is allowed.
        """
        return self.any_origin or origin.lower() in self.origins

    def _allowed_headers(self) -> frozenset[str]:
        return frozenset(h.lower() for h in self.headers)


def cors(policy: CorsPolicy | None) -> Callable[[F], F]:
    """
    Give one route its own CORS policy, instead of the module's (C{@pywatt_module(cors=...)});
    C{cors(None)} turns CORS off for that route. Works above or below C{@app.route}::

        @app.route("/public", methods=["GET"])
        @cors(CorsPolicy(origins=["*"]))
        def public(request): ...

    @raise ConfigurationError: when C{policy} is neither a L{CorsPolicy} nor C{None}.
    """
    if policy is not None and not isinstance(policy, CorsPolicy):
        raise ConfigurationError(f"cors() expects a CorsPolicy or None, got {policy!r}")

    def decorate(func: F) -> F:
        setattr(func, CORS_ATTRIBUTE, _Route(policy))
        return func

    return decorate


@frozen(eq=False, repr=False)
class _Route(Value):
    """
    A route's own policy (C{None}: CORS off for the route), as L{cors} marks it.
    """

    policy: CorsPolicy | None


def cors_of(view: Any) -> tuple[bool, CorsPolicy | None]:
    """
    The route-level policy of a view function, looked up through Klein's wrappers
    (C{__original__}) and C{functools.wraps} chains (C{__wrapped__}).

    @return: C{(True, policy_or_None)} when L{cors} marked it, else C{(False, None)}.
    """
    mark = find_mark(view, CORS_ATTRIBUTE, lambda mark: isinstance(mark, _Route))
    return (False, None) if mark is None else (True, mark.policy)


def _klein_app(resource: object) -> Any:
    """
    The Klein app (or the wrapper the site puts around it) that is or is behind
    C{resource}, or C{None}.
    """
    if hasattr(resource, "url_map") and hasattr(resource, "endpoints"):
        return resource
    app = getattr(resource, "_app", None)
    if app is not None and hasattr(app, "url_map") and hasattr(app, "endpoints"):
        return app
    return None


def route_policies(app: Any) -> dict[str, tuple[bool, CorsPolicy | None]]:
    """
    The routes of a Klein C{app} that L{cors} marked: rule endpoint name to its mark.
    """
    if app is None:
        return {}
    marked: dict[str, tuple[bool, CorsPolicy | None]] = {}
    for name, view in app.endpoints.items():
        found, policy = cors_of(view)
        if found:
            marked[name] = (found, policy)
    return marked


def cors_paths(app: object) -> set[str]:
    """
    The paths (announce style, without a version prefix) of the routes of C{app} (a
    Klein app or its resource) that have a policy of their own, so their preflights
    are answered: their announced methods get C{OPTIONS}.
    """
    klein = _klein_app(app)
    routes = route_policies(klein)
    paths = set()
    if routes:
        for rule in klein.url_map.iter_rules():
            mark = routes.get(rule.endpoint)
            if mark is not None and mark[1] is not None:
                paths.add(announced_path(rule.rule))
    return paths


def with_cors(
    root: IResource,
    app_resource: IResource,
    policy: CorsPolicy | None,
    prefix: str = "",
) -> IResource:
    """
    C{root} behind the CORS layer, or C{root} itself when neither the module nor any
    route has a policy.

    @param root: the site's root resource (built-ins in front of the app).
    @param app_resource: the user's resource, for the routes' own policies.
    @param policy: the module's policy, or C{None}.
    @param prefix: the version prefix in front of the app's routes (C{"/v1"}), or C{""}.
    """
    app = _klein_app(app_resource)
    routes = route_policies(app)
    if policy is None and not routes:
        return root
    return _CorsResource(root, policy, app if routes else None, routes, prefix)


class _CorsResource(Resource):
    """
    Answers preflights and marks other requests' responses, then hands the request to
    the root it wraps exactly as if that were the site root.
    """

    def __init__(
        self,
        root: IResource,
        policy: CorsPolicy | None,
        app: Any,
        routes: dict[str, tuple[bool, CorsPolicy | None]],
        prefix: str,
    ) -> None:
        super().__init__()
        self._root = root
        self._policy = policy
        self._app = app
        self._routes = routes
        self._prefix = prefix.encode("ascii")

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        origin = request.getHeader(b"origin")
        requested = request.getHeader(b"access-control-request-method")
        if request.method == b"OPTIONS" and origin is not None and requested is not None:
            method = requested.strip().upper()
            policy = self._policy_for(request, method)
            if policy is not None:
                setattr(request, _ROUTE_ATTRIBUTE, "cors_preflight")
                return _Preflight(policy, origin, method)
        else:
            policy = self._policy_for(request, request.method)
            if policy is not None:
                hook = getattr(request, "before_headers", None)
                if hook is not None:
                    hook(lambda r: _mark_response(r, policy))
                else:  # a request class other than PyWattRequest: mark it now
                    _mark_response(request, policy)
        request.postpath.insert(0, request.prepath.pop())
        child: IResource = getChildForRequest(self._root, request)
        return child

    def render(self, request: Any) -> Any:
        return self._root.render(request)

    def _policy_for(self, request: Any, method: bytes) -> CorsPolicy | None:
        if self._app is not None:
            found, policy = self._route_policy(request, method)
            if found:
                return policy
        return self._policy

    def _route_policy(self, request: Any, method: bytes) -> tuple[bool, CorsPolicy | None]:
        """
        The policy L{cors} gave the route C{method} on this request's path reaches.
        """
        path = unquote_to_bytes(request.path)
        if self._prefix:
            if path == self._prefix:
                path = b"/"
            elif path.startswith(self._prefix + b"/"):
                path = path[len(self._prefix) :]
            else:
                return False, None
        try:
            adapter = self._app.url_map.bind("localhost", path_info=path.decode("utf-8"))
        except UnicodeDecodeError:
            return False, None
        try:
            rule = self._match(adapter, method.decode("latin-1"))
        except MethodNotAllowed as e:
            # The path is a route's, for other methods: that route's policy decides
            # (and refuses a preflight for a method it does not list).
            if not e.valid_methods:
                return False, None
            try:
                rule = self._match(adapter, sorted(e.valid_methods)[0])
            except Exception:
                return False, None
        except Exception:
            # No route (404, a redirect): the module's policy applies, and the app
            # answers as it always does.
            return False, None
        return self._routes.get(rule.endpoint, (False, None))

    @staticmethod
    def _match(adapter: Any, method: str) -> Any:
        rule, _ = adapter.match(method=method, return_rule=True)
        return rule


class _Preflight(Resource):
    """
    The answer to one CORS preflight.
    """

    isLeaf = True

    def __init__(self, policy: CorsPolicy, origin: bytes, method: bytes) -> None:
        super().__init__()
        self._policy = policy
        self._origin = origin.decode("latin-1")
        self._method = method.decode("latin-1")

    def render(self, request: Any) -> bytes:
        policy = self._policy
        if not policy.any_origin:
            _vary(request, "Origin")
        _vary(request, "Access-Control-Request-Method", "Access-Control-Request-Headers")
        asked = [
            h.strip()
            for h in (request.getHeader(b"access-control-request-headers") or b"")
            .decode("latin-1")
            .split(",")
            if h.strip()
        ]
        refusal = self._refusal(asked)
        if refusal is not None:
            _log.info(
                "CORS preflight for {method} {path} from {origin} refused: {why}",
                method=self._method,
                path=request.path.decode("latin-1"),
                origin=self._origin,
                why=refusal,
            )
            body = json.dumps({"error": {"kind": "cors_refused", "message": refusal}}).encode()
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"%d" % len(body))
            return body
        _allow_origin(request, policy, self._origin)
        if policy.methods == ("*",):
            methods = self._method
        else:
            methods = ", ".join(policy.methods)
        request.setHeader(b"access-control-allow-methods", methods.encode("latin-1"))
        if policy.headers == ("*",):
            allowed = ", ".join(asked)
        else:
            allowed = ", ".join(policy.headers)
        if allowed:
            request.setHeader(b"access-control-allow-headers", allowed.encode("latin-1"))
        if policy.max_age is not None:
            request.setHeader(b"access-control-max-age", b"%d" % policy.max_age)
        request.setResponseCode(204)
        return b""

    def _refusal(self, asked: Sequence[str]) -> str | None:
        policy = self._policy
        if not policy.allows_origin(self._origin):
            return f"origin {self._origin!r} is not allowed"
        if policy.methods != ("*",) and self._method not in policy.methods:
            return f"method {self._method!r} is not allowed (allowed: {', '.join(policy.methods)})"
        if policy.headers != ("*",):
            allowed = policy._allowed_headers()
            refused = [h for h in asked if h.lower() not in allowed]
            if refused:
                return (
                    f"request header(s) {', '.join(refused)} not allowed "
                    f"(allowed: {', '.join(policy.headers) or 'none'})"
                )
        return None


def _allow_origin(request: Any, policy: CorsPolicy, origin: str) -> None:
    if policy.any_origin:
        request.setHeader(b"access-control-allow-origin", b"*")
    else:
        request.setHeader(b"access-control-allow-origin", origin.encode("latin-1"))
    if policy.credentials:
        request.setHeader(b"access-control-allow-credentials", b"true")


def _mark_response(request: Any, policy: CorsPolicy) -> None:
    """
    The CORS headers of a response to an actual (not preflight) request, set just
    before the response's headers are sent.
    """
    if not policy.any_origin:
        _vary(request, "Origin")
    raw = request.getHeader(b"origin")
    if raw is None and not policy.any_origin:
        return
    if raw is not None and not policy.allows_origin(raw.decode("latin-1")):
        return
    _allow_origin(request, policy, raw.decode("latin-1") if raw is not None else "*")
    if policy.expose_headers:
        request.setHeader(
            b"access-control-expose-headers", ", ".join(policy.expose_headers).encode("latin-1")
        )


def _vary(request: Any, *names: str) -> None:
    """
    Add C{names} to the response's C{Vary} header, keeping what is there.
    """
    current = [
        v.strip()
        for value in request.responseHeaders.getRawHeaders(b"vary") or []
        for v in value.decode("latin-1").split(",")
        if v.strip()
    ]
    if "*" in current:
        return
    known = {v.lower() for v in current}
    added = [n for n in names if n.lower() not in known]
    if added:
        request.responseHeaders.setRawHeaders(
            b"vary", [", ".join([*current, *added]).encode("latin-1")]
        )
