# -*- test-case-name: tests.wire.test_envelope -*-
"""
Building the envelopes a module sends, as plain values (no I/O):

  - the channel envelope C{{"id", "content", "metadata"}} of PROTOCOL.md 4.3, framed
    (L{encode_channel_frame}), with the metadata of identify (L{identify_metadata}) or
    of a request the orchestrator correlates by C{metadata.id}
    (L{correlated_metadata});
  - the routed envelope: the opaque payload of a C{route_to_module} request, which
    carries the target endpoint in C{metadata.properties.target_endpoint} through the
    orchestrator (L{routed_request_payload}), and how a routed request or reply payload
    is read back (L{unwrap_routed_request}, L{routed_reply_content}).

Transports move the bytes these functions return; they build no envelopes themselves.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Final

from pywatt_twisted.errors import MessageTooLarge, PayloadError
from pywatt_twisted.wire import _json
from pywatt_twisted.wire._ops import op_name
from pywatt_twisted.wire._value import unfrozen
from pywatt_twisted.wire.codec import (
    _CONTENT_JSON,
    _ENCODERS,
    _UnfrozenUUID,
    encode_stream_chunk_parts,
    to_json_object,
)
from pywatt_twisted.wire.framing import (
    FORMAT_JSON,
    _pack_header,  # the header, without a call
    frame_header,
)
from pywatt_twisted.wire.messages import EncodedPayload, HeartbeatAck, RouteToModule, StreamChunk

__all__ = [
    "correlated_metadata",
    "encode_channel_frame",
    "envelope_id",
    "error_object",
    "heartbeat_ack_frame",
    "identify_metadata",
    "op_name",
    "random_uuid4",
    "random_uuid4_int",
    "route_to_module_frame",
    "routed_reply_content",
    "routed_reply_payload",
    "routed_request_json",
    "routed_request_parts",
    "routed_request_payload",
    "routed_request_properties",
    "unwrap_routed_request",
]

_dumps = _json.dumps
_backend_dumps = _json.backend_dumps
_backend_loads = _json.backend_loads
# The JSON payloads built here (L{json_payload_of}): see L{unfrozen}.
_UnfrozenPayload: Final = unfrozen(EncodedPayload)
_join = b"".join

# Envelope ids: a random prefix drawn once per process (and again in a forked child)
# followed by a counter, laid out as a version-4 UUID: 60 random bits, the version
# nibble 4, the variant bits 10, 62 bits of counter. The counter is kept in two parts
# so that an id costs one short format and one concatenation (issue 20): the block (14
# bits, with the variant bits: the 4 hex digits of the fourth group, in _id_head with
# the prefix) and the low counter, which runs from 2**44 to 2**48 within a block so
# that b"%x" always gives exactly the 12 hex digits of the last group (a block holds
# 2.6e14 ids; 16,384 blocks, then a fresh prefix).
_LOW_START: Final = 1 << 44
_LOW_END: Final = 1 << 48
_BLOCK_FIRST: Final = 0x8000  # the variant bits 10, block 0
_BLOCK_LAST: Final = 0xBFFF
_id_prefix = b""
_id_block = _BLOCK_FIRST
_id_head = b""
_next_low = itertools.count(_LOW_START).__next__
_id_lock = threading.Lock()


def _reseed_ids() -> None:
    global _id_prefix, _pool_lock, _id_lock
    h = b"%015x" % random.getrandbits(60)
    _id_prefix = h[:8] + b"-" + h[8:12] + b"-4" + h[12:] + b"-"
    _start_block(_BLOCK_FIRST)
    # A forked child draws random ids of its own (and never waits on a lock held by
    # a thread of its parent's).
    _pool.clear()
    _pool_lock = threading.Lock()
    _id_lock = threading.Lock()


def _start_block(block: int) -> None:
    global _id_block, _id_head, _next_low
    _id_block = block
    _id_head = _id_prefix + b"%04x-" % block
    _next_low = itertools.count(_LOW_START).__next__


def _next_block() -> None:
    """
    The low counter of the current block ran out: move to the next block (a fresh
    prefix after the last one). Only one thread moves on; the others find a fresh
    counter when they come in.
    """
    with _id_lock:
        low = _next_low()
        if low < _LOW_END:  # another thread moved on meanwhile: nothing to do
            return
        if _id_block >= _BLOCK_LAST:
            _reseed_ids()
        else:
            _start_block(_id_block + 1)


# Random (version 4) UUIDs: os.urandom drawn for 256 at a time, kept as the 128-bit
# numbers of 256 UUIDs (version and variant bits set) in one list that is only
# appended to (under the lock) and popped from: list.pop is atomic, so taking one
# needs no lock, and no two callers (threads) ever get the same number.
_POOL_SIZE: Final = 16 * 256
_pool: list[int] = []
_pool_pop = _pool.pop
_pool_lock: threading.Lock
_V4_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET: Final = (0x4000 << 64) | (0x8000 << 48)
_UUID: Final = uuid.UUID
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown


_reseed_ids()
# A forked child gets a prefix of its own (the random module reseeds itself after a
# fork first), so parent and child never hand out the same id.
os.register_at_fork(after_in_child=_reseed_ids)


def _id_parts() -> tuple[bytes, bytes]:
    """
    The next envelope id in its two parts: the head (the prefix and the block, with
    their hyphens) and the 12 hex digits of the low counter. Framers that keep the
    head's encoded form (L{routed_request_frame}) take the parts; the rest join them
    (L{envelope_id_bytes}).
    """
    n = _next_low()
    if n >= _LOW_END:  # once in 2.6e14 ids: the next block
        _next_block()
        return _id_parts()
    return _id_head, b"%x" % n


def envelope_id_bytes() -> bytes:
    """
    L{envelope_id} as ASCII bytes, for the framers that write it into a frame.
    """
    head, low = _id_parts()
    return head + low


def random_uuid4() -> uuid.UUID:
    """
    A random version-4 UUID, as C{uuid.uuid4()} makes it (122 bits from
    C{os.urandom}), for the ids the protocol wants random (request ids): the random
    bytes are drawn 4 KiB at a time and the L{uuid.UUID} is built without its
    constructor's checks, several times cheaper per id. Safe from any thread; a forked
    child draws its own.
    """
    try:
        number = _pool_pop()
    except IndexError:
        number = _refill_and_pop()
    value = _UnfrozenUUID()  # codec._uuid_of(number), inline
    value.int = number
    value.is_safe = _SAFE_UNKNOWN
    value.__class__ = _UUID
    return value  # type: ignore[no-any-return]


def random_uuid4_int() -> int:
    """
    The 128-bit number of a L{random_uuid4}, from the same pool, without the
    L{uuid.UUID} (issue 17: a request id that is only keyed and written needs none).
    """
    try:
        return _pool_pop()
    except IndexError:
        return _refill_and_pop()


def _refill_and_pop() -> int:
    while True:
        with _pool_lock:
            if not _pool:
                data = os.urandom(_POOL_SIZE)
                from_bytes = int.from_bytes
                _pool.extend(
                    [
                        from_bytes(data[at : at + 16], "big") & _V4_CLEAR | _V4_SET
                        for at in range(0, _POOL_SIZE, 16)
                    ]
                )
        try:
            return _pool_pop()
        except IndexError:  # other threads took all 256 meanwhile: draw again
            continue


def envelope_id() -> str:
    """
    A unique id for an envelope, in the lowercase hyphenated form of a version-4 UUID
    (PROTOCOL.md 4.3: C{id} must be a valid UUID string).

    Envelope ids only correlate and de-duplicate frames; they are not secrets and need
    not be unpredictable, only unique. So they are a random 60-bit prefix drawn once
    per process (again in a forked child) followed by a 62-bit counter, with the
    version and variant bits of a v4 UUID: cheaper than drawing and formatting 128
    random bits per id (the heartbeat ack takes the bytes form with no decode at all),
    and unique within the process by construction (two processes collide
    only if they draw the same 60-bit prefix). Where the protocol asks for a random
    uuid4 (request ids), the callers use C{uuid.uuid4()}.
    """
    return envelope_id_bytes().decode("ascii")


def encode_channel_frame(
    message: object, max_frame_length: int, metadata: Mapping[str, object] | None = None
) -> bytes:
    """
    The full frame (header and payload) of C{message} in its module -> orchestrator
    envelope C{{"id": uuid4, "content": message, "metadata": metadata or {}}} (the
    Rust form, PROTOCOL.md 4.3).

    @param metadata: the envelope's metadata object, keys already in wire form.
    @raise MessageTooLarge: if the payload is longer than C{max_frame_length}.
    """
    if type(message) is StreamChunk and not metadata:
        return _stream_chunk_frame(message, max_frame_length)
    if metadata:
        content = to_json_object(message)  # type: ignore[arg-type]
        payload = _dumps({"id": envelope_id(), "content": content, "metadata": metadata})
        length = len(payload)
        if length > max_frame_length:
            raise MessageTooLarge(op_name(message), length, max_frame_length)
        return _pack_header(length, FORMAT_JSON) + payload
    # The common case: the content's JSON (one backend call for the hot messages,
    # _CONTENT_JSON) between pre-encoded fragments around the id (the same bytes the
    # dict above gives), joined with the header in one call.
    fast = _CONTENT_JSON.get(type(message))
    content_json = None if fast is None else fast(message)
    if content_json is None:
        encoder = _ENCODERS.get(type(message))  # to_json_object, inline
        if encoder is None:
            to_json_object(message)  # type: ignore[arg-type]  # raises its TypeError
        content = encoder(message)  # type: ignore[misc]
        try:
            content_json = _backend_dumps(content)  # _dumps, inline (its fallback below)
        except TypeError:
            content_json = _dumps(content)
    length = _ENVELOPE_FIXED + len(content_json)
    if length > max_frame_length:
        raise MessageTooLarge(op_name(message), length, max_frame_length)
    head, low = _id_parts()
    return _join(
        (
            _pack_header(length, FORMAT_JSON),
            _ENVELOPE_HEAD,
            head,
            low,
            _CONTENT,
            content_json,
            _NO_METADATA,
        )
    )


def _stream_chunk_frame(chunk: StreamChunk, max_frame_length: int) -> bytes:
    # The same bytes as the general path, joined once around the chunk's base64
    # (codec.encode_stream_chunk_parts): no str of it, no JSON encoder scanning and
    # copying it, no second concatenation for the header. 256 KiB chunk: 64 -> 24 us.
    head, data, tail = encode_stream_chunk_parts(chunk)
    id_bytes = envelope_id_bytes()
    length = _CHUNK_FIXED + len(id_bytes) + len(head) + len(data) + len(tail)
    if length > max_frame_length:
        raise MessageTooLarge(op_name(chunk), length, max_frame_length)
    return b"".join(
        (
            _pack_header(length, FORMAT_JSON),
            _ENVELOPE_HEAD,
            id_bytes,
            _CONTENT,
            head,
            data,
            tail,
            _NO_METADATA,
        )
    )


_ENVELOPE_HEAD: Final = b'{"id":"'
_CONTENT: Final = b'","content":'
_NO_METADATA: Final = b',"metadata":{}}'
_CHUNK_FIXED: Final = len(_ENVELOPE_HEAD) + len(_CONTENT) + len(_NO_METADATA)
# The payload's length less the content's: the fragments and the 36-byte id.
_ENVELOPE_FIXED: Final = len(_ENVELOPE_HEAD) + 36 + len(_CONTENT) + len(_NO_METADATA)


def _heartbeat_ack_parts() -> tuple[bytes, bytes]:
    # Encode the ack once with a placeholder id of the right length, and split the
    # frame around it: the header (the length never changes) and everything up to the
    # id, and everything after it.
    placeholder = "00000000-0000-4000-8000-000000000000"
    payload = _dumps({"id": placeholder, "content": to_json_object(HeartbeatAck()), "metadata": {}})
    frame = frame_header(len(payload)) + payload
    head, tail = frame.split(placeholder.encode("ascii"))
    return head, tail


_ACK_HEAD, _ACK_TAIL = _heartbeat_ack_parts()


def heartbeat_ack_frame() -> bytes:
    """
    The full frame of a C{heartbeat_ack} in its envelope, exactly as
    C{encode_channel_frame(HeartbeatAck(), ...)} builds it, from pre-encoded parts:
    only the envelope id differs from one ack to the next. (It is 92 bytes: it fits
    any frame cap a channel accepts.)
    """
    return _ACK_HEAD + envelope_id_bytes() + _ACK_TAIL


def identify_metadata(
    module_id: str, properties: Mapping[str, object] | None = None
) -> dict[str, object]:
    """
    The metadata of the identify envelope (PROTOCOL.md 2.5): C{{"source": module_id}},
    plus C{properties} when given.
    """
    metadata: dict[str, object] = {"source": module_id}
    if properties is not None:
        metadata["properties"] = dict(properties)
    return metadata


def correlated_metadata() -> dict[str, object]:
    """
    Metadata carrying a fresh C{id}, for requests the orchestrator answers by
    C{metadata.id} (service discovery).
    """
    return {"id": envelope_id()}


def routed_request_payload(
    content: Any,
    endpoint: str,
    source: str | None = None,
    no_reply: bool = False,
    timestamp: int | None = None,
    deadline_ms: int | None = None,
    *,
    extra_properties: Mapping[str, object] | None = None,
) -> EncodedPayload:
    """
    The payload of a routed request: the JSON envelope C{{"id", "content", "metadata":
    {"timestamp"?, "source"?, "properties": {"target_endpoint", "no_reply"?,
    "deadline_ms"?}}}} that carries C{endpoint} (and the X4 deadline: absolute, Unix
    epoch milliseconds) through the orchestrator.

    @param extra_properties: more C{metadata.properties} (the trace context of
        EXTENSIONS.md X3); they cannot replace C{target_endpoint} or C{no_reply}.

    @raise PayloadError: if C{content} is not JSON-serialisable.
    """
    return json_payload_of(
        routed_request_json(
            content,
            endpoint,
            source,
            no_reply,
            timestamp,
            deadline_ms,
            extra_properties=extra_properties,
        )
    )


def routed_request_json(
    content: Any,
    endpoint: str,
    source: str | None = None,
    no_reply: bool = False,
    timestamp: int | None = None,
    deadline_ms: int | None = None,
    *,
    extra_properties: Mapping[str, object] | None = None,
) -> bytes:
    """
    The JSON of L{routed_request_payload}'s payload (the C{"Json"} data of the
    C{route_to_module} that L{route_to_module_frame} frames).

    @raise PayloadError: if C{content} is not JSON-serialisable.
    """
    properties: dict[str, object] = dict(extra_properties) if extra_properties else {}
    properties["target_endpoint"] = endpoint
    if no_reply:
        properties["no_reply"] = True
    if deadline_ms is not None:
        properties["deadline_ms"] = deadline_ms
    metadata: dict[str, object] = {}
    if timestamp is not None:
        metadata["timestamp"] = timestamp
    if source is not None:
        metadata["source"] = source
    metadata["properties"] = properties
    envelope = {
        "id": envelope_id_bytes().decode("ascii"),
        "content": content,
        "metadata": metadata,
    }
    try:
        return _dumps(envelope)
    except (TypeError, ValueError) as e:
        raise PayloadError(
            f"the payload for {endpoint!r} must be JSON-serialisable (dicts, lists, strings, "
            f"numbers, booleans, None); got {type(content).__name__}: {e}"
        ) from None


def route_to_module_frame(
    target_module_id: str,
    endpoint: str,
    request_id: int,
    payload_json: bytes,
    max_frame_length: int,
) -> bytes:
    """
    The frame C{encode_channel_frame(RouteToModule(target_module_id, endpoint,
    uuid.UUID(int=request_id), EncodedPayload(payload_json, "Json")),
    max_frame_length)} gives, byte for byte, spliced from the start of the content kept
    per target and endpoint, the request id's hex digits and the payload's byte array
    (issue 17: no message value, no UUID, no content object to encode, per request).

    @raise MessageTooLarge: if the payload is longer than C{max_frame_length}.
    """
    return _route_frame(
        target_module_id,
        endpoint,
        request_id,
        _backend_dumps(list(payload_json)),
        max_frame_length,
    )


def _route_frame(
    target_module_id: str, endpoint: str, request_id: int, data: bytes, max_frame_length: int
) -> bytes:
    """
    L{route_to_module_frame}'s frame, from the payload's byte array C{data} (the JSON
    array of its byte values, as written).

    @raise MessageTooLarge: if the frame's payload is longer than C{max_frame_length}.
    """
    head = _route_heads.get((target_module_id, endpoint))
    if head is None:
        head = _route_head(target_module_id, endpoint)
    digits = b"%032x" % request_id
    length = _ROUTE_FIXED + len(head) + len(data)
    if length > max_frame_length:
        raise MessageTooLarge(RouteToModule.op, length, max_frame_length)
    id_head, low = _id_parts()
    return _join(
        (
            _pack_header(length, FORMAT_JSON),
            _ENVELOPE_HEAD,
            id_head,
            low,
            head,
            digits[:8],
            b"-",
            digits[8:12],
            b"-",
            digits[12:16],
            b"-",
            digits[16:20],
            b"-",
            digits[20:],
            _ROUTE_DATA,
            data,
            _ROUTE_TAIL,
        )
    )


def routed_request_frame(
    target_module_id: str,
    endpoint: str,
    request_id: int,
    content: Any,
    source: str,
    timestamp: int,
    deadline_ms: int,
    max_frame_length: int,
    extra_properties: Mapping[str, object] | None = None,
) -> bytes:
    """
    C{route_to_module_frame(target_module_id, endpoint, request_id,
    routed_request_json(content, endpoint, source, False, timestamp, deadline_ms,
    extra_properties=extra_properties), max_frame_length)}, byte for byte, in one call.

    Writing the payload's JSON array of byte values was a request's largest cost
    (issue 17: ~100 instructions a byte). Only the content, the id's 12 counter digits,
    the timestamp and the deadline change between requests: the arrays of the rest are
    kept (the timestamp's for its second), and the three others are written as one
    array, cut where each ends. A request with extra properties, or whose content or
    numbers the backend cannot write, is built the general way.

    @raise PayloadError: if C{content} is not JSON-serialisable.
    @raise MessageTooLarge: if the payload is longer than C{max_frame_length}.
    """
    if not extra_properties and type(timestamp) is int and type(deadline_ms) is int:
        try:
            content_json = _backend_dumps(content)
            deadline_json = _backend_dumps(deadline_ms)  # (digits, and "-")
            if timestamp == _last_timestamp[0]:
                timestamp_array = _last_timestamp[1]
            else:
                timestamp_array = _timestamp_array(timestamp)
        except TypeError:
            pass  # the general way below: the standard library writes it, or fails
        else:
            id_head, low = _id_parts()
            # One array for what changes, cut by its characters: the deadline's digits
            # (and "-") are "dd," each, the id's hex digits "dd," (0-9, a-c) or "ddd,".
            parts = _backend_dumps(list(deadline_json + low + content_json))
            cut = 3 * len(deadline_json)
            cut_low = cut + 3 * len(low) + len(low.translate(None, _TWO_DIGIT_HEX))
            head_array = _id_head_arrays.get(id_head)
            if head_array is None:
                head_array = _id_head_array(id_head)
            tail = _request_tails.get((source, endpoint))
            if tail is None:
                tail = _request_tail(source, endpoint)
            data = _join(
                (
                    head_array,
                    parts[cut + 1 : cut_low],  # the id's counter digits
                    _CONTENT_ARRAY,
                    parts[cut_low + 1 : -1],  # the content
                    _TIMESTAMP_ARRAY,
                    timestamp_array,
                    tail,
                    parts[1:cut],  # the deadline
                    _REQUEST_END_ARRAY,
                )
            )
            return _route_frame(target_module_id, endpoint, request_id, data, max_frame_length)
    payload_json = routed_request_json(
        content, endpoint, source, False, timestamp, deadline_ms, extra_properties=extra_properties
    )
    return route_to_module_frame(
        target_module_id, endpoint, request_id, payload_json, max_frame_length
    )


def _array(data: bytes) -> bytes:  # (the JSON array of data's byte values, no brackets)
    return _backend_dumps(list(data))[1:-1]


# The arrays of a request payload's fixed parts (routed_request_frame), with the commas
# to their neighbours; the hex digits whose byte values have two decimal digits.
_TWO_DIGIT_HEX: Final = b"0123456789abc"
_CONTENT_ARRAY: Final = b"," + _array(b'","content":') + b","
_TIMESTAMP_ARRAY: Final = b"," + _array(b',"metadata":{"timestamp":') + b","
_REQUEST_END_ARRAY: Final = b"," + _array(b"}}}") + b"]"
#: the array of the envelope's start and the id's head, by head (it changes by block)
_id_head_arrays: dict[bytes, bytes] = {}
#: the source and endpoint part's array, by (source, endpoint)
_request_tails: dict[tuple[str, str], bytes] = {}
#: the last timestamp and its array (a timestamp has one-second resolution)
_last_timestamp: tuple[int | None, bytes] = (None, b"")


def _id_head_array(id_head: bytes) -> bytes:
    if len(_id_head_arrays) >= 16:
        _id_head_arrays.clear()
    array = _id_head_arrays[id_head] = b"[" + _array(_ENVELOPE_HEAD + id_head) + b","
    return array


def _request_tail(source: str, endpoint: str) -> bytes:
    fields = (_backend_dumps(source), _backend_dumps(endpoint))
    tail = b',"source":%s,"properties":{"target_endpoint":%s,"deadline_ms":' % fields
    if len(_request_tails) >= 256:
        _request_tails.clear()
    array = _request_tails[(source, endpoint)] = b"," + _array(tail) + b","
    return array


def _timestamp_array(timestamp: int) -> bytes:  # (TypeError: over 64 bits)
    global _last_timestamp
    array = _array(_backend_dumps(timestamp))
    _last_timestamp = (timestamp, array)
    return array


def _route_head(target_module_id: str, endpoint: str) -> bytes:
    if len(_route_heads) >= 256:
        _route_heads.clear()  # (a module calls a few targets: this bounds the rest)
    head = _route_heads[(target_module_id, endpoint)] = b"".join(
        (
            _CONTENT,
            b'{"op":"route_to_module","target_module_id":',
            _dumps(target_module_id),
            b',"target_endpoint":',
            _dumps(endpoint),
            b',"request_id":"',
        )
    )
    return head


_route_heads: dict[tuple[str, str], bytes] = {}
_ROUTE_DATA: Final = b'","payload":{"data":'
_ROUTE_TAIL: Final = b',"format":"Json"}}' + _NO_METADATA
# The payload's length less the content's start and the byte array: the envelope's
# fragments, its 36-byte id, the request id's 36 characters and the payload's keys.
_ROUTE_FIXED: Final = len(_ENVELOPE_HEAD) + 36 + 36 + len(_ROUTE_DATA) + len(_ROUTE_TAIL)


def json_payload(value: Any) -> EncodedPayload:
    """
    C{EncodedPayload.from_json(value)}: the C{"Json"} payload of C{value}, C{value}
    written by L{dumps<pywatt_twisted.wire._json.dumps>} and the value built by
    L{json_payload_of} (issue 17: 6.8 k -> 2.6 k instructions).

    @raise TypeError: if C{value} is not JSON-serialisable.
    @raise ValueError: likewise (the standard library's refusals).
    """
    return json_payload_of(_dumps(value))


def json_payload_of(data: bytes) -> EncodedPayload:
    """
    C{EncodedPayload(data, "Json")}, built as an unfrozen twin whose class is then
    switched (L{unfrozen<pywatt_twisted.wire._value.unfrozen>}), as the codec builds
    the payloads it decodes: no attrs C{__init__} call, and plain slot stores instead
    of two descriptor C{__set__} calls (once per routed request and reply; the
    responder's path, callgrind: 118.9 k -> 117.9 k instructions per reply).
    """
    payload = _UnfrozenPayload()
    payload.data = data
    payload.format = "Json"
    payload.__class__ = EncodedPayload
    return payload  # type: ignore[no-any-return]


def _is_envelope(value: object) -> bool:
    return type(value) is dict and "content" in value and "id" in value


def routed_reply_payload(
    payload: EncodedPayload, properties: Mapping[str, object]
) -> EncodedPayload:
    """
    A routed reply's C{"Json"} C{payload} wrapped in an envelope C{{"id", "content",
    "metadata": {"properties": properties}}} (the callee's trace context of
    EXTENSIONS.md X3); L{routed_reply_content} unwraps it. The content's bytes are
    spliced in, not decoded again. A payload in another format is returned as it is.
    """
    if payload.format != "Json":
        return payload
    data = b"".join(
        (
            b'{"id":"',
            envelope_id_bytes(),
            b'","content":',
            payload.data,
            b',"metadata":{"properties":',
            _dumps(properties),
            b"}}",
        )
    )
    return EncodedPayload(data, "Json")


def routed_reply_content(payload: EncodedPayload) -> Any:
    """
    The content of a C{routed_module_response} payload (PROTOCOL.md 6.7, leniently):
    the JSON value, unwrapped when it is an envelope C{{"id", "content", ...}}.

    @raise ValueError: if the payload is not JSON.
    """
    # payload.json(), inline for a "Json" payload (once per reply, issue 17): the
    # backend decoder's error is a ValueError too, with the same text
    value = _backend_loads(payload.data) if payload.format == "Json" else payload.json()
    if type(value) is dict and "content" in value and "id" in value:  # _is_envelope
        return value["content"]
    return value


def unwrap_routed_request(
    payload: EncodedPayload, top_level_endpoint: str | None
) -> tuple[Any, str | None, bool]:
    """
    The C{(content, endpoint, no_reply)} of a C{routed_module_message}'s payload.

    The endpoint comes from the envelope's C{metadata.properties.target_endpoint}, else
    from C{top_level_endpoint}. A payload that is not an envelope is the content itself.

    @raise ValueError: if the payload is not JSON.
    """
    content, endpoint, no_reply, _ = routed_request_parts(payload, top_level_endpoint)
    return content, endpoint, no_reply


def routed_request_parts(
    payload: EncodedPayload, top_level_endpoint: str | None
) -> tuple[Any, str | None, bool, int | None]:
    """
    L{unwrap_routed_request} and the X4 C{metadata.properties.deadline_ms} (an integer
    number of Unix epoch milliseconds; C{None} when absent or not a number).

    @raise ValueError: if the payload is not JSON.
    """
    # payload.json(), inline for a "Json" payload (once per routed request): the backend
    # decoder's error is a ValueError too
    value = _backend_loads(payload.data) if payload.format == "Json" else payload.json()
    endpoint = top_level_endpoint
    no_reply = False
    deadline: int | None = None
    if type(value) is dict and "content" in value and "id" in value:  # _is_envelope
        metadata = value.get("metadata")
        properties = metadata.get("properties") if type(metadata) is dict else None
        if type(properties) is dict:
            named = properties.get("target_endpoint")
            if type(named) is str and named:
                endpoint = named
            no_reply = properties.get("no_reply") is True
            raw = properties.get("deadline_ms")
            if type(raw) is int:  # what every peer sends: the checks below, answered
                deadline = raw
            elif type(raw) is float and math.isfinite(raw):
                deadline = int(raw)
        return value["content"], endpoint, no_reply, deadline
    return value, endpoint, no_reply, deadline


def routed_request_properties(payload: EncodedPayload) -> Mapping[str, object] | None:
    """
    The C{metadata.properties} object of a routed request's envelope (where the trace
    context of EXTENSIONS.md X3 travels), or C{None} when it has none or is not JSON.
    """
    try:
        value = payload.json()
    except ValueError:
        return None
    if not _is_envelope(value):
        return None
    metadata = value.get("metadata")
    properties = metadata.get("properties") if type(metadata) is dict else None
    return properties if type(properties) is dict else None


def error_object(value: Any) -> tuple[str, str] | None:
    """
    C{(kind, message)} when C{value} is an error reply (an object whose only key is
    C{error}, holding an object with a string C{message}); C{None} otherwise.
    """
    if type(value) is not dict or len(value) != 1:
        return None
    error = value.get("error")
    if type(error) is not dict:
        return None
    message = error.get("message")
    if type(message) is not str:
        return None
    kind = error.get("kind")
    return (kind if type(kind) is str and kind else "remote_error"), message
