# -*- test-case-name: tests.wire.test_forward -*-
"""
Forwarding a module-to-module message without decoding its payload: what a relay
(C{pywatt dev}) needs of a C{route_to_module} or C{routed_module_response} frame from a
module is its routing header (target, endpoint, ids); the payload, an array of byte
values that is most of the frame, only has to reach the other module, which decodes and
validates it as it always does.

L{read_routing} cuts the payload object out of the frame by a byte search, decodes and
validates the rest exactly as L{decode_envelope_from_module
<pywatt_twisted.wire.codec.decode_envelope_from_module>} does, and keeps the payload's
JSON text. L{routed_message_frame} and L{routed_response_frame} splice that text into
the frame that goes on: the same bytes as encoding the decoded message.

Anything but the plain shape this library (and the Rust SDK) writes, an envelope with
the payload as C{{"data":[...],"format":"Json"}} and no escapes anywhere in the frame,
gives C{None}: decode it in full.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import (
    _envelope_id,
    _metadata,
    _payload,
    _str,
    _uuid,
)
from pywatt_twisted.wire.framing import FORMAT_JSON, _pack_header
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleReply,
    RouteToModule,
)

__all__ = [
    "ROUTED_REPLY",
    "ROUTE_TO_MODULE",
    "RoutingHeader",
    "read_routing",
    "routed_message_frame",
    "routed_response_frame",
]

ROUTE_TO_MODULE: Final = "route_to_module"
ROUTED_REPLY: Final = "routed_module_response"

_PAYLOAD_KEY: Final = b'"payload"'
_PAYLOAD_START: Final = b'"payload":{"data":['
_DIGITS_AND_COMMAS: Final = b"0123456789,"
# what may follow the byte array: the format, in the spelling the encoders write
_FORMAT_TAILS: Final = {
    b'],"format":"Json"}': "Json",
    b'],"format":"Binary"}': "Binary",
    b'],"format":"Base64"}': "Base64",
    b'],"format":"Auto"}': "Auto",
}
_TAIL_PREFIX: Final = b'],"format":"'
# the payload's place in the rest of the frame: an integer no payload can be
_PLACEHOLDER: Final = b"0"
# a UUID in its canonical text form (every such string is one the full decoder accepts)
_canonical_uuid: Final = re.compile(
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch
# the same, lowercase only, as bytes: the text str(uuid.UUID(text)) gives back unchanged
_lower_uuid: Final = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch

#: The largest frame L{read_routing} reads; a larger one (a stream chunk, a large routed
#: body) is decoded in full. The searches below each pass over the whole text, and a
#: 256 KiB stream chunk frame (the frames a module sends most bytes in) is never a
#: routing frame: skipping them saved ~5% of pywatt dev's work on a streamed download.
#: Module-to-module messages are small; a large one costs the full decode it cost before.
MAX_READ_SIZE: Final = 64 * 1024


class RoutingHeader:
    """
    The routing fields of a C{route_to_module} or C{routed_module_response} from a
    module, and its payload's JSON text, undecoded.

    @ivar op: L{ROUTE_TO_MODULE} or L{ROUTED_REPLY}.
    @ivar target_module_id: the module the message goes to (for a reply: the requester).
    @ivar target_endpoint: the endpoint (a request), or C{None} (a reply).
    @ivar source_module_id: the module the reply says it comes from, or C{None} (a
        request).
    @ivar request_id: the request id, in its canonical text form (lowercase, as
        C{str(uuid.UUID)} writes it) and as ASCII bytes: the key a relay correlates a
        reply by, and the bytes the forwarded frame carries (L{request_uuid} parses it).
    @ivar payload_json: the payload object's JSON text, C{{"data":[...],"format":...}}:
        the byte values are checked to be digits and commas only, not decoded.
    """

    __slots__ = (
        "op",
        "payload_json",
        "request_id",
        "source_module_id",
        "target_endpoint",
        "target_module_id",
    )

    def __init__(
        self,
        op: str,
        target_module_id: str,
        target_endpoint: str | None,
        source_module_id: str | None,
        request_id: bytes,
        payload_json: bytes,
    ) -> None:
        self.op = op
        self.target_module_id = target_module_id
        self.target_endpoint = target_endpoint
        self.source_module_id = source_module_id
        self.request_id = request_id
        self.payload_json = payload_json

    def request_uuid(self) -> uuid.UUID:
        """
        The request id as a L{uuid.UUID} (for the rare paths that need the message).
        """
        return uuid.UUID(self.request_id.decode("ascii"))

    def payload(self) -> EncodedPayload:
        """
        The payload, decoded and validated (for the rare paths that need the message).

        @raise ProtocolError: if the byte values are not bytes.
        """
        try:
            value = _json.loads(self.payload_json)
        except ValueError as e:
            raise ProtocolError(f"invalid JSON ({e})", field=f"{self.op}.payload") from None
        return _payload({"payload": value}, "payload", self.op)

    def message(self) -> RouteToModule | RoutedModuleReply:
        """
        The message, as L{decode_envelope_from_module
        <pywatt_twisted.wire.codec.decode_envelope_from_module>} gives it.

        @raise ProtocolError: if the payload's byte values are not bytes.
        """
        if self.op == ROUTE_TO_MODULE:
            assert self.target_endpoint is not None
            return RouteToModule(
                self.target_module_id, self.target_endpoint, self.request_uuid(), self.payload()
            )
        assert self.source_module_id is not None
        return RoutedModuleReply(
            self.source_module_id, self.request_uuid(), self.target_module_id, self.payload()
        )


def _cut_payload(data: bytes) -> tuple[bytes, bytes] | None:
    """
    C{(rest, payload_json)}: the frame with its one payload object replaced by
    L{_PLACEHOLDER}, and that object's text; or C{None} when the frame is not in the
    plain shape (an escape anywhere, no payload or more than one C{"payload"} key, an
    array of anything but digits and commas, another format spelling).
    """
    if b"\\" in data:
        # an escaped key could be a second "payload" the searches below do not see
        return None
    start = data.find(_PAYLOAD_START)
    if start < 0 or data.count(_PAYLOAD_KEY) != 1:
        return None
    values_at = start + len(_PAYLOAD_START)
    close = data.find(_TAIL_PREFIX, values_at)
    if close < 0:
        return None
    # Digits and commas only: the splice cannot change the frame's structure. Whether
    # they are byte values ("[1,,2]", "[01]" and "[256]" are not) is for the module
    # they go to, which decodes them (and drops a frame that does not decode).
    if data[values_at:close].translate(None, _DIGITS_AND_COMMAS):
        return None
    end = data.find(b"}", close)
    if end < 0 or data[close : end + 1] not in _FORMAT_TAILS:
        return None
    object_at = start + len(_PAYLOAD_KEY) + 1
    return (
        data[:object_at] + _PLACEHOLDER + data[end + 1 :],
        data[object_at : end + 1],
    )


def read_routing(data: bytes) -> RoutingHeader | None:
    """
    The routing header of a module's C{route_to_module} or C{routed_module_response}
    frame (the JSON text of a format-1 frame), with its payload left undecoded; C{None}
    for any other message or shape (then decode the frame in full: the result is the
    same, or the same error).

    Everything but the payload's byte values is validated as the full decoder does;
    those are checked to be digits and commas, and the module they go to decodes them.

    @raise ProtocolError: if the frame is in the plain shape and a routing field (or
        the envelope's id or metadata) is invalid, as the full decoder raises it.
    """
    if len(data) > MAX_READ_SIZE:
        return None
    cut = _cut_payload(data)
    if cut is None:
        return None
    rest, payload_json = cut
    try:
        obj = _json.backend_loads(rest)
    except _json.BACKEND_DECODE_ERROR:
        return None  # the full decode says what is wrong
    if type(obj) is not dict or "op" in obj:
        return None
    content = obj.get("content")
    if type(content) is not dict:
        return None
    op = content.get("op")
    if type(op) is not str or type(content.get(op)) is dict:
        return None  # (the Python SDK's nested shape)
    placeholder = content.get("payload")
    if type(placeholder) is not int or placeholder != 0:
        return None  # the payload was not where the frame's one "payload" key is
    if op == ROUTE_TO_MODULE:
        target = _str(content, "target_module_id", op)
        endpoint: str | None = _str(content, "target_endpoint", op)
        request_id = _request_id_text(content, op)
        source = None
    elif op == ROUTED_REPLY:
        source = _str(content, "source_module_id", op)
        request_id = _request_id_text(content, op)
        target = _str(content, "target_module_id", op)
        endpoint = None
    else:
        return None
    # The envelope's id and metadata: validated as the full decode does (a relay has
    # no use for them). An id in the canonical form is a UUID without parsing it into
    # one (a third of the cost); anything else gets the full decoder's check and error.
    envelope_id = obj.get("id")
    if envelope_id is not None and (
        type(envelope_id) is not str or _canonical_uuid(envelope_id) is None
    ):
        _envelope_id(obj)
    metadata = obj.get("metadata")
    if metadata is not None and (type(metadata) is not dict or metadata):
        _metadata(metadata)
    return RoutingHeader(op, target, endpoint, source, request_id, payload_json)


def _request_id_text(content: dict[str, object], op: str) -> bytes:
    """
    The request id of C{content} in its canonical lowercase text form: as it is when
    it is in that form, else parsed (and refused) as the full decoder does, and written
    in that form.
    """
    value = content.get("request_id")
    if type(value) is str and value.isascii():
        text = value.encode("ascii")
        if _lower_uuid(text) is not None:
            return text
    return str(_uuid(content, "request_id", op)).encode("ascii")


def _string(value: str) -> bytes:
    return _json.dumps(value)


#: the start of a frame's JSON text up to its request id, per message kind and module
#: id (and endpoint): module ids and endpoints are few; the dicts are emptied when they
#: reach L{_HEADS_LIMIT} entries, should something make up names without end
_message_heads: dict[tuple[str, str | None], tuple[bytes, bytes]] = {}
_response_heads: dict[str, bytes] = {}
_HEADS_LIMIT: Final = 1024


def _message_head(source_module_id: str, endpoint: str | None) -> tuple[bytes, bytes]:
    if len(_message_heads) >= _HEADS_LIMIT:
        _message_heads.clear()
    head = (
        b'{"op":"routed_module_message","source_module_id":'
        + _string(source_module_id)
        + b',"original_request_id":"'
    )
    tail = b"}" if endpoint is None else b',"target_endpoint":' + _string(endpoint) + b"}"
    parts = _message_heads[(source_module_id, endpoint)] = (head, tail)
    return parts


def _response_head(source_module_id: str) -> bytes:
    if len(_response_heads) >= _HEADS_LIMIT:
        _response_heads.clear()
    head = _response_heads[source_module_id] = (
        b'{"op":"routed_module_response","source_module_id":'
        + _string(source_module_id)
        + b',"request_id":"'
    )
    return head


def routed_message_frame(
    source_module_id: str, request_id: bytes, payload_json: bytes, endpoint: str | None
) -> bytes:
    """
    The frame (header and payload) of a bare C{routed_module_message} carrying
    C{payload_json} as its payload object: the bytes C{encode_frame(encode(
    RoutedModuleMessage(source_module_id, uuid.UUID(request_id), payload, endpoint)))}
    gives for the payload that text decodes to.

    @param request_id: the request id's canonical text (L{RoutingHeader.request_id}).
    """
    parts = _message_heads.get((source_module_id, endpoint))
    head, tail = parts if parts is not None else _message_head(source_module_id, endpoint)
    body = b"".join((head, request_id, b'","payload":', payload_json, tail))
    return _pack_header(len(body), FORMAT_JSON) + body


def routed_response_frame(
    source_module_id: str, request_id: bytes, payload_json: bytes
) -> bytes:
    """
    The frame of a bare C{routed_module_response} carrying C{payload_json}: the bytes
    C{encode_frame(encode(RoutedModuleResponse(source_module_id, uuid.UUID(request_id),
    payload)))} gives.

    @param request_id: the request id's canonical text (L{RoutingHeader.request_id}).
    """
    body = b"".join(
        (
            _response_heads.get(source_module_id) or _response_head(source_module_id),
            request_id,
            b'","payload":',
            payload_json,
            b"}",
        )
    )
    return _pack_header(len(body), FORMAT_JSON) + body
