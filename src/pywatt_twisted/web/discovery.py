# -*- test-case-name: tests.web.test_discovery -*-
"""
Endpoint discovery: what a module announces to the orchestrator, read from the
routes actually registered in its Klein app (PROTOCOL.md 2.7 and 6.12; the original
SDK announced a hard-coded list, gap G13).

Rules:
  - every rule of the app's werkzeug C{url_map} is announced, its path rewritten from
    werkzeug converters to the orchestrator's C{:name} style (C{/items/<int:id>} ->
    C{/items/:id}, C{/files/<path:rest>} -> C{/files/:rest});
  - methods are upper-cased and sorted; the C{HEAD} that werkzeug adds to every C{GET}
    rule is left out. A rule declared without C{methods=} answers every method in
    Klein (werkzeug matches it for any method), so it is announced with
    L{KLEIN_DEFAULT_METHODS};
  - rules with the same path (and the same auth) are merged into one endpoint;
  - a C{branch=True} route is announced once, as its prefix;
  - C{auth} comes from the view function's C{__pywatt_auth__} attribute (see
    L{mark_auth});
  - endpoints are sorted by path; then C{GET health_path} and C{GET /metrics} are
    appended when enabled, merged into an existing endpoint of the same path.

A plain L{IResource} cannot be introspected: only the built-in endpoints are
returned, and authors pass C{endpoints=[...]} to C{@pywatt_module} themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, TypeVar

from pywatt_twisted._views import find_mark
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire.messages import Endpoint

__all__ = [
    "AUTH_ATTRIBUTE",
    "KLEIN_DEFAULT_METHODS",
    "METRICS_PATH",
    "announced_path",
    "auth_of",
    "discover_endpoints",
    "mark_auth",
]

#: The function attribute that carries a route's auth scheme (C{"jwt"}).
AUTH_ATTRIBUTE = "__pywatt_auth__"

#: Where the built-in metrics resource lives.
METRICS_PATH = "/metrics"

#: What a rule without C{methods=} is announced with: Klein routes such a rule for
#: every method, so every standard method except the implicit C{HEAD}.
KLEIN_DEFAULT_METHODS: tuple[str, ...] = ("DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT")

#: The suffix Klein adds for C{branch=True} routes.
_BRANCH_SUFFIX = "/<path:__rest__>"

_CONVERTER = re.compile(
    r"<(?:(?P<converter>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<args>[^)]*)\))?:)?"
    r"(?P<variable>[A-Za-z_][A-Za-z0-9_]*)>"
)

F = TypeVar("F", bound=Callable[..., Any])


def mark_auth(func: F, scheme: str) -> F:
    """
    Mark a route's view function as guarded by C{scheme}, so discovery announces
    the route with C{auth=scheme}. Decorators such as C{state.require_jwt} call this;
    it works whether it runs before or after C{@app.route}.

    @param func: the view function.
    @param scheme: the auth scheme to announce (C{"jwt"} is the only one in use).
    @return: C{func} itself.
    @raise ConfigurationError: when C{scheme} is not a non-empty string.
    """
    if not isinstance(scheme, str) or not scheme:
        raise ConfigurationError(
            f"mark_auth expects a non-empty auth scheme such as 'jwt', got {scheme!r}"
        )
    setattr(func, AUTH_ATTRIBUTE, scheme)
    return func


def auth_of(view: Any) -> str | None:
    """
    The auth scheme of a view function: its C{__pywatt_auth__} attribute, looked up
    through Klein's wrappers (C{__original__}) and C{functools.wraps} chains
    (C{__wrapped__}).
    """
    scheme: str | None = find_mark(
        view, AUTH_ATTRIBUTE, lambda mark: isinstance(mark, str) and bool(mark)
    )
    return scheme


@lru_cache(maxsize=1024)
def announced_path(rule: str) -> str:
    """
    Rewrite a werkzeug rule string into the orchestrator's path style.

    C{<int:id>}, C{<id>}, C{<string(length=2):code>} and C{<path:rest>} all become
    C{:name}; Klein's branch suffix C{/<path:__rest__>} is dropped, leaving the prefix.

    @param rule: a rule as written in C{@app.route} (with any submount prefix).
    """
    if rule.endswith(_BRANCH_SUFFIX):
        rule = rule[: -len(_BRANCH_SUFFIX)] or "/"
    return _CONVERTER.sub(lambda match: ":" + match["variable"], rule)


def _announced_methods(methods: Iterable[str] | None) -> set[str]:
    if methods is None:
        return set(KLEIN_DEFAULT_METHODS)
    upper = {method.upper() for method in methods}
    if "GET" in upper:
        upper.discard("HEAD")
    return upper


def _klein_app(app: Any) -> Any:
    """
    The L{klein.Klein} behind C{app} (an app or its C{resource()}), or C{None}.
    """
    try:
        from klein import Klein
        from klein.resource import KleinResource
    except ImportError:  # pragma: no cover - klein is a dependency
        return None
    if isinstance(app, Klein):
        return app
    if isinstance(app, KleinResource):
        return getattr(app, "_app", None)
    return None


def discover_endpoints(
    app: Any, *, health_path: str | None = "/health", metrics: bool = True
) -> list[Endpoint]:
    """
    The endpoints to announce for C{app}: its Klein routes, then the built-ins.

    @param app: a L{klein.Klein} app, its C{resource()}, or any other
        L{twisted.web.resource.IResource} (which yields only the built-ins).
    @param health_path: the built-in health route, or C{None} when it is off.
    @param metrics: whether the built-in C{GET /metrics} is served.
    @return: endpoints sorted by path (then auth), built-ins last; deterministic.
    """
    merged: dict[tuple[str, str | None], set[str]] = {}
    klein = _klein_app(app)
    if klein is not None:
        views = klein.endpoints
        for rule in klein.url_map.iter_rules():
            if getattr(rule, "websocket", False):
                continue
            path = announced_path(rule.rule)
            auth = auth_of(views.get(rule.endpoint))
            merged.setdefault((path, auth), set()).update(_announced_methods(rule.methods))
    keys = sorted(merged, key=lambda key: (key[0], key[1] or ""))
    builtins: list[str] = []
    if health_path is not None:
        builtins.append(health_path)
    if metrics and METRICS_PATH not in builtins:
        builtins.append(METRICS_PATH)
    extra: list[tuple[str, None]] = []
    for path in builtins:
        key = (path, None)
        if key in merged:
            merged[key].add("GET")
        else:
            merged[key] = {"GET"}
            extra.append(key)
    return [
        Endpoint(path=path, methods=tuple(sorted(merged[(path, auth)])), auth=auth)
        for path, auth in [*keys, *extra]
    ]
