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

A module sends its requests and replies in a few shapes: the same text but for the
envelope id, the request id and the byte values. Once one frame of a shape was read,
the next ones are read from what it gave, checking only their ids and byte values
(C{_read_known}): about a third of the work of reading the frame.
"""

from __future__ import annotations

import re
import uuid
from typing import Final, NamedTuple

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import (
    _envelope_id,
    _metadata,
    _payload,
    _str,
    _uuid,
)
from pywatt_twisted.wire.envelope import envelope_id_bytes
from pywatt_twisted.wire.framing import FORMAT_JSON, _pack_header
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleReply,
    RouteToModule,
)

__all__ = [
    "ROUTED_REPLY",
    "ROUTE_TO_MODULE",
    "LastShape",
    "RoutingHeader",
    "read_routing",
    "routed_message_frame",
    "routed_reply_frame",
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

#: The largest frame L{read_routing} reads; a larger one (a stream chunk, a large routed
#: body) is decoded in full. The searches below each pass over the whole text, and a
#: 256 KiB stream chunk frame (the frames a module sends most bytes in) is never a
#: routing frame: skipping them saved ~5% of pywatt dev's work on a streamed download.
#: Module-to-module messages are small; a large one costs the full decode it cost before.
MAX_READ_SIZE: Final = 64 * 1024


class RoutingHeader(NamedTuple):
    """
    The routing fields of a C{route_to_module} or C{routed_module_response} from a
    module, and its payload's JSON text, undecoded.

    (A named tuple: L{_read_known} makes one with C{tuple.__new__}, several times
    cheaper than a class's C{__init__}, and its fields are read as fast as slots.)

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

    op: str
    target_module_id: str
    target_endpoint: str | None
    source_module_id: str | None
    request_id: bytes
    payload_json: bytes

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


#: C{[None]}, or C{[(text before the request id, text after it, routing fields, where
#: the request id starts, where the byte values start, the frame's start up to the end
#: of its request id as L{_HEX_TO_ZERO} translates it)]}: the shape of the last frame
#: from one sender (see L{read_routing})
LastShape = list[
    tuple[bytes, bytes, tuple[str, str, str | None, str | None], int, int, bytes] | None
]


def read_routing(data: bytes, last: LastShape | None = None) -> RoutingHeader | None:
    """
    The routing header of a module's C{route_to_module} or C{routed_module_response}
    frame (the JSON text of a format-1 frame), with its payload left undecoded; C{None}
    for any other message or shape (then decode the frame in full: the result is the
    same, or the same error).

    Everything but the payload's byte values is validated as the full decoder does;
    those are checked to be digits and commas, and the module they go to decodes them.

    @param last: C{[None]} at first, then given back with each frame from the same
        sender (a module): it keeps the shape of the sender's last frame, which the
        next one mostly has (a module sends its requests to a peer in one shape), so
        that it is not searched for (the result is the same either way).

    @raise ProtocolError: if the frame is in the plain shape and a routing field (or
        the envelope's id or metadata) is invalid, as the full decoder raises it.
    """
    if len(data) > MAX_READ_SIZE:
        return None
    return _read_known(data, last) or _read_plain(data)


def _read_plain(data: bytes) -> RoutingHeader | None:
    """
    L{read_routing} for a frame in the plain shape: the payload cut out, the rest
    decoded and validated.
    """
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


# -- the shapes seen before ---------------------------------------------------------------

#: How the frames of this library's modules start and end: an envelope whose id comes
#: first, the payload last in the content, a "Json" payload and empty metadata.
_ENVELOPE_START: Final = b'{"id":"'
_ENVELOPE_END: Final = b'],"format":"Json"}},"metadata":{}}'
_REQUEST_ID_KEY: Final = b'"request_id":"'
_ID_AT: Final = len(_ENVELOPE_START)
_ID_END: Final = _ID_AT + 36
# the payload object's JSON text ends this far past the end of its byte values
_PAYLOAD_END: Final = len(b'],"format":"Json"}')
# (lengths as constants: a len() call per use is a builtin call per frame)
_END_LEN: Final = len(_ENVELOPE_END)
_KEY_LEN: Final = len(_REQUEST_ID_KEY)
_START_LEN: Final = len(_PAYLOAD_START)
# the payload object starts this far before its byte values
_OBJECT_BEFORE: Final = len(b'{"data":[')
#: the ids put in a sample frame (L{_learn}): any canonical id reads the same
_SAMPLE_ID: Final = b"00000000-0000-4000-8000-000000000000"
# An id is in the canonical lowercase form (the text str(uuid.UUID(text)) gives back
# unchanged) when this table turns it into _ZERO_ID (a translation is about half the
# cost of a regular expression's match here).
_HEX_TO_ZERO: Final = bytes.maketrans(b"0123456789abcdef", b"0" * 16)
_ZERO_ID: Final = b"00000000-0000-0000-0000-000000000000"
# a frame's start and envelope id as _HEX_TO_ZERO translates them (the d of "id" too)
_ZERO_START: Final = _ENVELOPE_START.translate(_HEX_TO_ZERO) + _ZERO_ID
_D: Final = ord("d")
# Byte values are digits and commas only when this table leaves them unchanged (it
# turns any other byte into a digit). A translation by a table alone runs one loop;
# one that deletes bytes (translate(None, _DIGITS_AND_COMMAS), as _cut_payload checks)
# first fills a table of 256 entries, ~550 instructions more per frame. (An unchanged
# text is given back as it is, and compared with itself at once.)
_NOT_DIGITS: Final = bytes(c if c in _DIGITS_AND_COMMAS else ord("0") for c in range(256))

#: the routing fields, or C{None} (not a routing frame, or one L{_read_plain} refuses),
#: per frame shape: the frame's text between its envelope id and its request id, and
#: between its request id and its byte values. Modules, endpoints and so shapes are few;
#: emptied at L{_HEADS_LIMIT} entries, should something make them up without end.
_Fields = tuple[str, str, str | None, str | None]
_shapes: dict[tuple[bytes, bytes], _Fields | None] = {}
# what _shapes.get gives for a shape not read yet (a shape's fields are never these)
_UNREAD: Final[_Fields] = ("", "", None, None)


def _read_known(data: bytes, last: LastShape | None) -> RoutingHeader | None:
    """
    L{read_routing} for a frame in the shape this library's modules write (see
    L{_ENVELOPE_START}), with both ids in the canonical lowercase form, whose text but
    for its ids and byte values was read before: its routing fields are taken from
    what reading that text gave (L{_shapes}), and only the ids and byte values are
    checked. C{None} for any other frame (L{_read_plain} reads it). A frame of the
    shape in C{last} (see L{read_routing}) is not even searched for its request id and
    byte values: they are where they were in the last one.

    The result is L{_read_plain}'s: a frame of a known shape differs from the one
    that was read (L{_learn}) in its ids, canonical as those were, and in its byte
    values, digits and commas as those were, and those are all L{_read_plain} reads of
    them (an escape or a second C{"payload"} key cannot be in them).
    """
    known = None if last is None else last[0]
    if known is not None:
        # The sender's last shape, where it would be in this frame (no search).
        head, middle, fields, id_at, values_at, start = known
        id_end = id_at + 36
        if data[_ID_END:id_at] == head and data[id_end:values_at] == middle:
            # The frame's start, both ids and the text between them in one translation
            # (one slice and one translation less than checking each id on its own;
            # the text between them is compared above): translated, the start reads
            # {"i0":", so its d is checked on its own (data[3] is there: the text
            # compared above is past it).
            if data[3] != _D or data[:id_end].translate(_HEX_TO_ZERO) != start:
                return None
            return _header(fields, data, id_at, values_at)
    # (slices compared, not startswith and endswith: their argument parsing costs more)
    if (
        data[:_ID_AT] != _ENVELOPE_START
        or data[-_END_LEN:] != _ENVELOPE_END
        or data[_ID_AT:_ID_END].translate(_HEX_TO_ZERO) != _ZERO_ID
    ):
        return None
    id_at = data.find(_REQUEST_ID_KEY, _ID_END) + _KEY_LEN
    id_end = id_at + 36
    values_at = data.find(_PAYLOAD_START, id_end) + _START_LEN
    if id_at < _KEY_LEN or values_at < _START_LEN:
        return None
    head = data[_ID_END:id_at]
    middle = data[id_end:values_at]
    found = _shapes.get((head, middle), _UNREAD)
    if found is _UNREAD:
        found = _learn((head, middle))
    if found is None:
        return None
    fields = found
    if last is not None:
        start = b"".join((_ZERO_START, head.translate(_HEX_TO_ZERO), _ZERO_ID))
        last[0] = (head, middle, fields, id_at, values_at, start)
    if data[id_at:id_end].translate(_HEX_TO_ZERO) != _ZERO_ID:
        return None
    return _header(fields, data, id_at, values_at)


def _header(fields: _Fields, data: bytes, id_at: int, values_at: int) -> RoutingHeader | None:
    """
    The routing header of C{data}, a frame of a known shape whose start and ids were
    checked, with the routing C{fields} of that shape, its request id at C{id_at} and
    its byte values from C{values_at}: C{None} unless the frame ends as such a frame
    ends and its byte values are digits and commas (both branches of L{_read_known}).
    """
    close = len(data) - _END_LEN
    if (
        values_at > close
        or data[close:] != _ENVELOPE_END
        or (values := data[values_at:close]).translate(_NOT_DIGITS) != values
    ):
        return None
    op, target, endpoint, source = fields
    return _new_header(
        RoutingHeader,
        (
            op,
            target,
            endpoint,
            source,
            data[id_at : id_at + 36],
            data[values_at - _OBJECT_BEFORE : close + _PAYLOAD_END],
        ),
    )


_new_header: Final = tuple.__new__


def _learn(shape: tuple[bytes, bytes]) -> _Fields | None:
    """
    The routing fields of frames of C{shape} (see L{_shapes}), read by L{_read_plain}
    from a sample frame of that shape; C{None} if it does not read it (or reads a
    request id that is not the one in the sample's place: then the shape is not what
    it looks like).
    """
    sample = b"".join(
        (_ENVELOPE_START, _SAMPLE_ID, shape[0], _SAMPLE_ID, shape[1], b"0", _ENVELOPE_END)
    )
    try:
        header = _read_plain(sample)
    except ProtocolError:
        header = None
    fields = None
    if header is not None and header.request_id == _SAMPLE_ID:
        fields = (
            header.op,
            header.target_module_id,
            header.target_endpoint,
            header.source_module_id,
        )
    if len(_shapes) >= _HEADS_LIMIT:
        _shapes.clear()
    _shapes[shape] = fields
    return fields


def _request_id_text(content: dict[str, object], op: str) -> bytes:
    """
    The request id of C{content} in its canonical lowercase text form: as it is when
    it is in that form, else parsed (and refused) as the full decoder does, and written
    in that form.
    """
    value = content.get("request_id")
    if type(value) is str and value.isascii():
        text = value.encode("ascii")
        if text.translate(_HEX_TO_ZERO) == _ZERO_ID:  # canonical and lowercase
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


def routed_response_frame(source_module_id: str, request_id: bytes, payload_json: bytes) -> bytes:
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


# -- a module's own replies ---------------------------------------------------------------

#: the start of a reply's content up to its request id, per replying module, and its
#: text from the request id to the byte values, per requester (bounded as above)
_reply_heads: dict[str, bytes] = {}
_reply_middles: dict[str, bytes] = {}
_REPLY_ENVELOPE_HEAD: Final = b'{"id":"'
_REPLY_TAIL: Final = b',"format":"Json"}},"metadata":{}}'
# The payload's length less the per-module fragments and the byte array: the envelope's
# fragments, its 36-byte id, the request id's 36 characters with their quotes.
_REPLY_FIXED: Final = len(_REPLY_ENVELOPE_HEAD) + 36 + 38 + len(_REPLY_TAIL)
_ORJSON: Final = _json.BACKEND == "orjson"
_backend_dumps: Final = _json.backend_dumps
_UUID: Final = uuid.UUID


def _reply_head(source_module_id: str) -> bytes:
    if len(_reply_heads) >= _HEADS_LIMIT:
        _reply_heads.clear()
    head = _reply_heads[source_module_id] = (
        b'","content":{"op":"routed_module_response","source_module_id":'
        + _string(source_module_id)
        + b',"request_id":'
    )
    return head


def _reply_middle(target_module_id: str) -> bytes:
    if len(_reply_middles) >= _HEADS_LIMIT:
        _reply_middles.clear()
    middle = _reply_middles[target_module_id] = (
        b',"target_module_id":' + _string(target_module_id) + b',"payload":{"data":'
    )
    return middle


def routed_reply_frame(
    source_module_id: str,
    request_id: uuid.UUID,
    target_module_id: str,
    data: bytes,
    max_frame_length: int,
) -> bytes | None:
    """
    The frame C{encode_channel_frame(RoutedModuleReply(source_module_id, request_id,
    target_module_id, EncodedPayload(data, "Json")), max_frame_length)} gives, byte for
    byte but for the envelope id (a fresh one, as every frame gets), spliced from the
    starts kept per module id, the request id and the byte array of C{data} (the JSON
    text of a C{"Json"} payload): what a module answering a C{routed_module_message}
    writes, with no reply value, content object or general encoder per reply, and no
    payload value for a handler's plain answer.

    C{None} when it cannot say so cheaply: a request id that is not exactly a
    L{uuid.UUID}, a JSON backend other than orjson, or a frame longer than
    C{max_frame_length}. Then encode the message (which raises
    L{MessageTooLarge<pywatt_twisted.errors.MessageTooLarge>} for the last).
    """
    if type(request_id) is not _UUID or not _ORJSON:
        return None
    head = _reply_heads.get(source_module_id) or _reply_head(source_module_id)
    middle = _reply_middles.get(target_module_id) or _reply_middle(target_module_id)
    array = _backend_dumps(list(data))
    length = _REPLY_FIXED + len(head) + len(middle) + len(array)
    if length > max_frame_length:
        return None
    return b"".join(
        (
            _pack_header(length, FORMAT_JSON),
            _REPLY_ENVELOPE_HEAD,
            envelope_id_bytes(),
            head,
            # (orjson writes a uuid.UUID as str() does, in quotes, as the encoder does)
            _backend_dumps(request_id),
            middle,
            array,
            _REPLY_TAIL,
        )
    )
