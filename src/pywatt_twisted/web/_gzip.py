# -*- test-case-name: tests.web.test_gzip -*-
"""
gzip for direct HTTP responses (EXTENSIONS.md X2, C{docs/streaming.md}): a response
is gzip-encoded with twisted.web's own encoder (L{GzipEncoderFactory}) when the client's
C{Accept-Encoding} allows it, its body is at least L{GZIP_MIN_SIZE} bytes (its
C{Content-Length}, or else its first write) and its content type is compressible.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.web.http import NO_BODY_CODES
from twisted.web.server import GzipEncoderFactory

__all__ = ["GZIP_MIN_SIZE", "compressible", "maybe_gzip"]

#: Bodies smaller than this are sent as they are.
GZIP_MIN_SIZE: Final = 1024

_TEXTUAL: Final = frozenset(
    {
        b"application/json",
        b"application/javascript",
        b"application/xml",
        b"application/xhtml+xml",
        b"application/x-ndjson",
        b"image/svg+xml",
    }
)

_FACTORY: Final = GzipEncoderFactory()
_FACTORY.compressLevel = 6  # (9 costs much more CPU for a few percent)


#: content type -> whether it is compressible, for the types seen (a module answers
#: with a handful); at most L{_KNOWN_LIMIT} entries, so a client cannot grow it
_known: dict[bytes, bool] = {}
_KNOWN_LIMIT: Final = 64


def compressible(content_type: bytes | None) -> bool:
    """
    Whether a body of C{content_type} is worth compressing: text, JSON, XML,
    JavaScript, SVG (not images, archives or other already-compressed data).
    """
    if not content_type:
        return False
    if type(content_type) is not bytes:
        return _compressible(content_type)
    known = _known.get(content_type)
    if known is not None:
        return known
    answer = _compressible(content_type)
    if len(_known) < _KNOWN_LIMIT:
        _known[content_type] = answer
    return answer


def _compressible(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return (
        kind.startswith(b"text/")
        or kind in _TEXTUAL
        or kind.endswith(b"+json")
        or kind.endswith(b"+xml")
    )


def maybe_gzip(request: Any, first: bytes) -> None:
    """
    Called before the first body bytes (C{first}) of a direct HTTP response are
    written: install twisted.web's gzip encoder on C{request} when it should be used.
    """
    if request.method == b"HEAD" or request.code in NO_BODY_CODES:
        return
    # The response's Headers (twisted.web's own class: a Request always makes one)
    # keeps a dict of canonical name -> values: read it directly rather than through
    # four methods that each canonicalize the name again (issue 20); the same lookups.
    headers = request.responseHeaders
    raw: dict[bytes, list[bytes]] = getattr(headers, "_rawHeaders", None)  # type: ignore[assignment]
    copied = raw.__class__ is not dict
    if copied:
        # Not the Headers this reads directly (a Twisted that keeps them otherwise):
        # the same decision on a copy of them, and Vary added through its method.
        raw = {name: list(values) for name, values in headers.getAllRawHeaders()}
    if b"Content-Encoding" in raw:
        return
    types = raw.get(b"Content-Type")
    content_type = types[-1] if types else getattr(request, "defaultContentType", None)
    known = _known.get(content_type) if type(content_type) is bytes else None
    if not (known if known is not None else compressible(content_type)):
        return
    if copied:
        headers.addRawHeader(b"Vary", b"Accept-Encoding")
    else:
        raw.setdefault(b"Vary", []).append(b"Accept-Encoding")
    lengths = raw.get(b"Content-Length")
    size = len(first)
    if lengths:
        try:
            size = int(lengths[-1])
        except ValueError:
            return
    if size < GZIP_MIN_SIZE:
        return
    request._encoder = _FACTORY.encoderForRequest(request)
