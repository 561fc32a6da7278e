# -*- test-case-name: tests.web.test_bridge -*-
"""
The HTTP-over-IPC bridge's requests (L{pywatt_twisted.web.bridge}): checking that an
C{http_request} message can be an HTTP request at all, and copying its headers onto
the twisted.web request the bridge builds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pywatt_twisted.errors import PyWattError

__all__ = ["MalformedHttpRequest", "copy_headers", "validate"]

# RFC 9110 token (methods, header names) and request-target characters (visible
# ASCII, no space): anything else cannot have come from a real HTTP request line.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")

#: Header names already found to be tokens (an orchestrator sends the same few names
#: on every request): a set lookup instead of the regular expression. Bounded: past
#: L{_KNOWN_NAMES_MAX} names, new ones are checked each time (correct, only slower).
_KNOWN_NAMES: set[str] = set()
_KNOWN_NAMES_MAX = 1024


class MalformedHttpRequest(PyWattError):
    """
    An C{http_request} message cannot be an HTTP request (bad method token, target
    not starting with C{/}, CR/LF in a header...). The bridge answers it with 400.
    """


def validate(request: Any) -> str | None:
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
        if name not in _KNOWN_NAMES:
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                return f"expected header names to be HTTP tokens, got {name!r}"
            if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                _KNOWN_NAMES.add(name)
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


def copy_headers(web_request: Any, headers: Mapping[str, str] | None) -> str | None:
    """
    Add C{headers} (an C{http_request}'s) to C{web_request}'s request headers, except
    C{Content-Length} (returned: the bridge sets its own from the body it hands over)
    and C{Transfer-Encoding} (the body arrives whole or as X1 chunks: there is
    nothing left to de-chunk).
    """
    target = web_request.requestHeaders
    content_length: str | None = None
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower == "content-length":
            content_length = value
            continue
        if lower == "transfer-encoding":
            continue
        target.addRawHeader(name, value)
    return content_length
