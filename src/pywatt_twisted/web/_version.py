# -*- test-case-name: tests.web.test_version -*-
"""
Versioned modules (C{@pywatt_module(version="v1")}): the app's routes are served under
C{/v1} (the built-in C{/health} and C{/metrics} are not), and announced so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import Any

from twisted.web.resource import IResource, Resource

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire.messages import Endpoint

__all__ = [
    "VERSION_ATTRIBUTE",
    "announced_endpoints",
    "check_version",
    "prefixed",
    "versioned",
]

#: The request attribute holding the version (C{"v1"}) of a request the app serves, so
#: that its metrics label is the announced path.
VERSION_ATTRIBUTE = "pywatt_route_version"

_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


def check_version(value: object) -> str | None:
    """
    C{version=} as the definition keeps it: C{None}, or one path segment (C{"v1"}; a
    leading C{"/"} is dropped).

    @raise ConfigurationError: anything else.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"version must be a string such as 'v1' or None, got {value!r}")
    segment = value[1:] if value.startswith("/") else value
    if not _SEGMENT.match(segment) or segment in (".", ".."):
        raise ConfigurationError(
            f"version must be one path segment of letters, digits, '.', '_', '~' or '-' "
            f"(e.g. 'v1' serves the routes under /v1), got {value!r}"
        )
    return segment


def prefixed(version: str | None, path: str) -> str:
    """
    C{path} (a route in announce style) as served under C{version}: C{"/items"} ->
    C{"/v1/items"}, C{"/"} -> C{"/v1"}.
    """
    if not version:
        return path
    return f"/{version}" if path == "/" else f"/{version}{path}"


def announced_endpoints(
    user: Iterable[Endpoint],
    builtins: Iterable[Endpoint],
    *,
    version: str | None,
    cors_everywhere: bool,
    cors_paths: Collection[str],
) -> tuple[Endpoint, ...]:
    """
    The endpoints as announced: the C{user} ones (the app's) under the version prefix,
    then the C{builtins} (C{/health}, C{/metrics}) as they are; C{OPTIONS} added to
    those whose preflights the CORS layer answers (every endpoint with a module
    policy, else the app's endpoints in C{cors_paths}).
    """
    result = []
    for endpoint, is_user in [*((e, True) for e in user), *((e, False) for e in builtins)]:
        methods = endpoint.methods
        if "OPTIONS" not in methods and (
            cors_everywhere or (is_user and endpoint.path in cors_paths)
        ):
            methods = tuple(sorted({*methods, "OPTIONS"}))
        path = prefixed(version, endpoint.path) if is_user else endpoint.path
        if path != endpoint.path or methods != endpoint.methods:
            endpoint = Endpoint(path=path, methods=methods, auth=endpoint.auth)
        result.append(endpoint)
    return tuple(result)


def versioned(app_resource: IResource, version: str | None) -> IResource:
    """
    C{app_resource} served under C{/<version>}, or itself when C{version} is C{None}.
    """
    if not version:
        return app_resource
    return _Versioned(app_resource, version)


class _Versioned(Resource):
    """
    Serves the app below its version segment: C{/v1/items} reaches the app as
    C{/items} (Klein sees C{/v1} as its script name, so C{url_for} builds prefixed
    URLs); any other path gets a JSON 404 that names the prefix.
    """

    def __init__(self, app: IResource, version: str) -> None:
        super().__init__()
        self._app = app
        self._version = version
        self._segment = version.encode("ascii")
        self._prefix = "/" + version

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        if path == self._segment:
            setattr(request, VERSION_ATTRIBUTE, self._version)
            if not request.postpath:
                # "/v1" is the app's "/" (as "/v1/" is).
                request.postpath.append(b"")
            return self._app
        return _NotVersioned(self._prefix)

    def render(self, request: Any) -> bytes:
        return _NotVersioned(self._prefix).render(request)


class _NotVersioned(Resource):
    isLeaf = True

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def render(self, request: Any) -> bytes:
        body = json.dumps(
            {
                "error": {
                    "kind": "not_found",
                    "message": f"no such route: this module serves its routes under "
                    f"{self._prefix}/ (and /health, /metrics)",
                }
            }
        ).encode("utf-8")
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body
