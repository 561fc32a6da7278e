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

from twisted.web.http_headers import Headers

from pywatt_twisted.errors import PyWattError

__all__ = ["MalformedHttpRequest", "copy_headers", "validate"]

# RFC 9110 token (methods, header names) and request-target characters (visible
# ASCII, no space): anything else cannot have come from a real HTTP request line.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")

#: Header names already found to be tokens (an orchestrator sends the same few names
#: on every request): a set lookup instead of the regular expression. Bounded: past
#: L{_KNOWN_NAMES_MAX} names, new ones are checked each time (correct, only slower).
_KNOWN_NAMES: set[str] = set()
_KNOWN_NAMES_MAX = 1024

#: The same for methods (a handful in practice).
_KNOWN_METHODS: set[str] = set()
_KNOWN_METHODS_MAX = 64


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
    if method.__class__ is not str or method not in _KNOWN_METHODS:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            return f"expected an HTTP method token such as 'GET', got {method!r}"
        if len(_KNOWN_METHODS) < _KNOWN_METHODS_MAX:
            _KNOWN_METHODS.add(method)
    uri = getattr(request, "uri", None)
    # (for a str: "/", then visible ASCII is _TARGET without the regular expression's
    # call: isprintable() is False for every control character, and no space)
    if not (
        uri.__class__ is str
        and uri[:1] == "/"
        and uri.isascii()
        and uri.isprintable()
        and " " not in uri
    ) and (not isinstance(uri, str) or not _TARGET.fullmatch(uri)):
        shown = uri if not isinstance(uri, str) or len(uri) <= 80 else uri[:80] + "..."
        return (
            "expected a request target that starts with '/' and contains only visible "
            f"ASCII (percent-encode the rest), got {shown!r}"
        )
    headers = getattr(request, "headers", None)
    if headers is None:
        headers = {}
    if headers.__class__ is not dict and not isinstance(headers, Mapping):
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
        if "\r" in value or "\n" in value or "\x00" in value:
            return f"header {name!r} contains CR, LF or NUL, which HTTP does not allow"
    body = getattr(request, "body", None)
    if (
        body is not None
        and body.__class__ is not bytes
        and not isinstance(body, bytes | bytearray | memoryview)
    ):
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
    # Twisted's Headers holds {canonical name: [values]}; addRawHeader canonicalises
    # the name (a Python call) and splits the value at line breaks (another) for every
    # header. Names are the same few on every request: their canonical form is worked
    # out once, through addRawHeader itself (_header_name), and a value without CR or
    # LF (all of them, after validate()) has nothing to split.
    raw = getattr(target, "_rawHeaders", None) if target.__class__ is Headers else None
    if raw.__class__ is not dict:
        raw = None  # a Twisted that keeps them otherwise: addRawHeader for every header
    content_length: str | None = None
    for name, value in (headers or {}).items():
        canonical = _HEADER_NAMES.get(name)
        if canonical is None:
            canonical = _header_name(name)
        if canonical is _CONTENT_LENGTH:
            content_length = value
            continue
        if canonical is _SKIPPED:
            continue
        if raw is not None and value.__class__ is str and "\r" not in value and "\n" not in value:
            values = raw.get(canonical)
            if values is None:
                raw[canonical] = [value.encode("utf-8")]
            else:
                values.append(value.encode("utf-8"))
        else:
            target.addRawHeader(name, value)
    return content_length


#: What L{copy_headers} does with a request header, by its name as the message has it:
#: its canonical name in L{Headers}, or one of these two markers.
_CONTENT_LENGTH = b"content-length"
_SKIPPED = b"transfer-encoding"
_HEADER_NAMES: dict[str, bytes] = {}
_HEADER_NAMES_MAX = 1024


def _header_name(name: str) -> bytes:
    lower = name.lower()
    if lower == "content-length":
        canonical = _CONTENT_LENGTH
    elif lower == "transfer-encoding":
        canonical = _SKIPPED
    else:
        probe = Headers()
        probe.addRawHeader(name, b"")
        canonical = next(iter(probe.getAllRawHeaders()))[0]
    if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
        _HEADER_NAMES[name] = canonical
    return canonical
