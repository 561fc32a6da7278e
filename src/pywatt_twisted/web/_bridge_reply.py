# -*- test-case-name: tests.web.test_bridge -*-
"""
The HTTP-over-IPC bridge's replies (L{pywatt_twisted.web.bridge}): the JSON error
answers, the flattening of response headers into the wire's single-valued map, and
sending a reply on a link without ever dropping it silently (a reply too large for
the link's frame is replaced by the X1 C{response_too_large} 502).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from twisted.web.http_headers import Headers

from pywatt_twisted.errors import MessageTooLarge
from pywatt_twisted.wire.messages import HttpResponse

__all__ = [
    "error_response",
    "error_text",
    "line_too_long_response",
    "response_headers",
    "send_http_reply",
    "too_large_response",
]

# (the bridge's namespace: its log lines keep their name wherever the code lives)
_log = Logger(namespace="pywatt_twisted.web.bridge")

#: Response headers that describe the hop, not the message: dropped from bridged
#: responses (the body always arrives whole, with a content-length).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})

_JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


def error_response(request_id: str, status: int, kind: str, message: str) -> HttpResponse:
    body = json.dumps({"error": {"kind": kind, "message": message}}, separators=(",", ":")).encode(
        "utf-8"
    )
    return HttpResponse(
        request_id=request_id,
        status_code=status,
        headers={**_JSON_HEADERS, "content-length": str(len(body))},
        body=body,
    )


def too_large_response(request_id: str, error: MessageTooLarge) -> HttpResponse:
    """
    The 502 that replaces a response too large for the frame (or stdout line) of the
    link it must go back on, so the orchestrator can still correlate an answer to
    C{request_id}: the X1 C{response_too_large} error (EXTENSIONS.md),
    C{{"error": {"kind": "response_too_large", "message": ..., "limit": <bytes>}}}.
    """
    body = json.dumps(
        {
            "error": {
                "kind": "response_too_large",
                "message": f"the response does not fit in one {error.limit}-byte message",
                "limit": error.limit,
            }
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return HttpResponse(
        request_id=request_id,
        status_code=502,
        headers={**_JSON_HEADERS, "content-length": str(len(body))},
        body=body,
    )


def line_too_long_response(request_id: str, limit: int) -> HttpResponse:
    """
    The 413 for an C{http_request} whose stdin line was longer than the line cap
    (C{limit} bytes) and was discarded unread.
    """
    return error_response(
        request_id,
        413,
        "body_too_large",
        f"the http_request line is longer than the {limit}-byte line cap; send a smaller "
        "body, raise the cap (PYWATT_MAX_FRAME_LENGTH), or stream the body (X1)",
    )


def send_http_reply(link: Any, response: HttpResponse, log: Logger = _log) -> None:
    """
    Send C{response} on C{link} (an C{IOrchestratorLink}). One that does not fit in the
    link's frame is answered with L{too_large_response} instead, and logged: never
    silently dropped.
    """
    try:
        link.send_http_response(response)
    except MessageTooLarge as e:
        log.error(
            "{channel}: the response to request {id} does not fit in one message "
            "({error}); answering 502 response_too_large instead",
            channel=link.name,
            id=response.request_id,
            error=str(e),
        )
        try:
            link.send_http_response(too_large_response(response.request_id, e))
        except MessageTooLarge:
            log.error(
                "{channel}: even a 502 for {id} does not fit in a {limit}-byte frame; "
                "the orchestrator gets no reply to it",
                channel=link.name,
                id=response.request_id,
                limit=e.limit,
            )


def error_text(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.body or b"")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "the response failed"


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def response_headers(headers: Headers, *, request_id: str = "") -> dict[str, str]:
    """
    Flatten response headers into the wire's single-valued map.

    Names are lower-cased; repeated headers are joined with C{", "}; hop-by-hop
    headers (C{connection}, C{keep-alive}, C{transfer-encoding}) are dropped. Several
    C{Set-Cookie} headers cannot be joined (cookie attributes contain commas): the
    last one is kept, as the original SDK did, and a warning names the cookies that
    were dropped (names only, never values).
    """
    flat: dict[str, str] = {}
    names = _WIRE_NAMES
    for raw_name, values in headers.getAllRawHeaders():
        wire_name = names.get(raw_name)
        if wire_name is None:
            wire_name = _wire_name(raw_name)
        if not wire_name or not values:
            continue
        if len(values) == 1:
            # the common case, inline: one value, UTF-8 (or Latin-1, as _decode)
            value = values[0]
            try:
                flat[wire_name] = value.decode("utf-8")
            except UnicodeDecodeError:
                flat[wire_name] = value.decode("latin-1")
            continue
        if wire_name == "set-cookie":
            dropped = [_decode(value.split(b"=", 1)[0]).strip() for value in values[:-1]]
            _log.warn(
                "HTTP-over-IPC response {request_id} set {count} cookies; the wire carries "
                "one Set-Cookie value, so only the last is kept (dropped: {dropped}). "
                "Serve this route over direct HTTP to set several cookies.",
                request_id=request_id,
                count=len(values),
                dropped=dropped,
            )
            values = values[-1:]
        flat[wire_name] = ", ".join(_decode(value) for value in values)
    return flat


#: Response header names as the wire carries them (lower-cased text), by the name
#: Twisted holds; C{""} for a hop-by-hop header, which is dropped. Responses use the
#: same few names: bounded (past L{_WIRE_NAMES_MAX} names, new ones are worked out
#: each time: correct, only slower).
_WIRE_NAMES: dict[bytes, str] = {}
_WIRE_NAMES_MAX = 1024


def _wire_name(raw_name: bytes) -> str:
    name = raw_name.lower()
    wire_name = "" if name in _HOP_BY_HOP else _decode(name)
    if len(_WIRE_NAMES) < _WIRE_NAMES_MAX:
        _WIRE_NAMES[raw_name] = wire_name
    return wire_name
