# -*- test-case-name: tests.test_tracing_otlp -*-
"""
The OTLP/HTTP span exporter the library installs (issue 16): the SDK's
C{OTLPSpanExporter}, sending the same bytes, encoded without building protobuf objects.

The SDK's exporter turns every span into protobuf message objects (a C{Span}, a
C{KeyValue} and an C{AnyValue} per attribute, a C{Status}), groups them by resource
(hashing the resource as JSON once per span) and serializes the tree: about 260,000
instructions per span, more than the request that made the span costs. L{encode_request}
writes the protobuf wire format of the same C{ExportTraceServiceRequest} directly, with
the encoded attributes kept for values that repeat (the method, the route, the status
code): about a tenth of that. The parts that are rare or that the SDK's encoder
treats specially (the resource and the scope, once per batch; events; links; an
attribute value that is not a plain C{str}, C{bool}, C{int} in int64 range or
C{float}) are encoded by the SDK's own functions and spliced in, so every byte is what
the SDK's exporter would send (the tests compare the two byte for byte), and a batch
the fast encoder cannot write goes through the SDK's encoder whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from struct import Struct
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _SPAN_KIND_MAP,
    _encode_events,
    _encode_links,
    _encode_trace_state,
    _span_flags,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter as _sdk_exporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, StatusCode

try:  # (the SDK versions whose export() this module's export mirrors)
    from opentelemetry.exporter.otlp.proto.http._common import (
        RequestPayloadTooLargeError,
        _is_request_too_large,
    )
    from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
except ImportError:  # pragma: no cover - other SDK versions: the SDK's export() runs
    _MIRRORED = False
else:
    _MIRRORED = True

__all__ = ["OTLPSpanExporter", "encode_request"]

# the SDK exporter's logger: the same messages under the same name
_logger = logging.getLogger(_sdk_exporter.__name__)

_FIXED64 = Struct("<Q").pack
_FIXED32 = Struct("<I").pack
_DOUBLE = Struct("<d").pack
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64 = (1 << 64) - 1
_SMALL = [bytes((n,)) for n in range(128)]
_STATUS_CODES = {code: code.value for code in StatusCode}
# the span's kind field (6, varint) by SpanKind, b"" for the default (0)
_KIND_FIELDS = {
    kind: b"\x30" + _SMALL[int(value)] if int(value) else b""
    for kind, value in _SPAN_KIND_MAP.items()
}
# the span's flags field (16, fixed32), as the SDK's _span_flags computes them
_LOCAL_FLAGS = b"\x85\x01" + _FIXED32(_span_flags(None))
_REMOTE_PARENT_FLAGS = b"\x85\x01" + _FIXED32(
    _span_flags(SpanContext(1, 1, is_remote=True))  # type: ignore[arg-type]
)

#: encoded span attributes (the KeyValue with the Span's field tag) by (key, value
#: type, value); cleared when full
_kv_cache: dict[tuple[str, type, object], bytes] = {}
_KV_CACHE_SIZE = 4096
_KV_CACHE_VALUE_LENGTH = 256


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: C{tag}, the length, C{payload}."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _string(tag: bytes, text: str | None) -> bytes:
    """A proto3 string field: absent when empty."""
    return _field(tag, text.encode("utf-8")) if text else b""


def _any_value(value: object) -> bytes | None:
    """
    The AnyValue of a plain value (a oneof: written even when it is the default), or
    None for anything else (the SDK's encoder handles it).
    """
    cls = value.__class__
    if cls is str:
        return _field(b"\x0a", value.encode("utf-8"))  # type: ignore[attr-defined]
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            return b"\x18" + _varint(value & _UINT64)  # type: ignore[operator]
        return None
    if cls is float:
        return b"\x21" + _DOUBLE(value)
    return None


def _attribute(key: str, value: object) -> bytes:
    """
    One encoded span attribute (a KeyValue message in the Span's C{attributes} field),
    b"" when the SDK's encoder drops it (it logs why).
    """
    cache_key = (key, value.__class__, value)
    try:
        cached = _kv_cache.get(cache_key)
    except TypeError:  # (an unhashable value: a list)
        cached = None
        cache_key = None  # type: ignore[assignment]
    if cached is not None:
        return cached
    encoded = _any_value(value)
    if encoded is None:
        # (None, sequences, mappings, subclasses, ints beyond int64: as the SDK does)
        kvs = _encode_attributes({key: value})  # type: ignore[dict-item]
        return b"".join(_field(b"\x4a", kv.SerializeToString()) for kv in kvs)
    field = _field(b"\x4a", _string(b"\x0a", key) + _field(b"\x12", encoded))
    if cache_key is not None and (
        value.__class__ is not str or len(value) <= _KV_CACHE_VALUE_LENGTH  # type: ignore[arg-type]
    ):
        if len(_kv_cache) >= _KV_CACHE_SIZE:
            _kv_cache.clear()
        _kv_cache[cache_key] = field
    return field


def _attributes(parts: list[bytes], attributes: Any) -> None:
    """Append a span's encoded C{attributes} to C{parts}."""
    if attributes.__class__ is BoundedAttributes:
        attributes = attributes._dict  # (its items without the lock and copy)
    if not attributes:
        return
    cached = _kv_cache.get
    append = parts.append
    for key, value in attributes.items():
        try:
            field = cached((key, value.__class__, value))
        except TypeError:  # (an unhashable value: a list)
            field = None
        if field is None:
            field = _attribute(key, value)
            if not field:
                continue
        append(field)


def _span(span: Any) -> bytes:
    """One C{Span} message (without its field tag)."""
    context: Any
    parent: Any
    if span.__class__ is ReadableSpan:
        # (what the batch processor hands over: its fields, without the properties'
        # copies of the attributes, events and links)
        context = span._context
        parent = span._parent
        name = span._name
        kind = span._kind
        start, end = span._start_time, span._end_time
        attributes = span._attributes
        events = span._events
        links = span._links
        status = span._status
    else:
        context = span.get_span_context()
        parent = span.parent
        name = span.name
        kind = span.kind
        start, end = span.start_time, span.end_time
        attributes = span.attributes
        events = span.events
        links = span.links
        status = span.status
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state is not None and len(trace_state):
        parts.append(_string(b"\x1a", _encode_trace_state(trace_state)))
    if parent:
        parts.append(b"\x22\x08")
        parts.append(parent.span_id.to_bytes(8, "big"))
    if name:
        parts.append(_field(b"\x2a", name.encode("utf-8")))
    kind_field = _KIND_FIELDS[kind]
    if kind_field:
        parts.append(kind_field)
    if start:
        parts.append(b"\x39" + _FIXED64(start))
    if end:
        parts.append(b"\x41" + _FIXED64(end))
    _attributes(parts, attributes)
    dropped = span.dropped_attributes
    if dropped:
        parts.append(b"\x50" + _varint(dropped))
    if events:
        for event in _encode_events(tuple(events)) or ():
            parts.append(_field(b"\x5a", event.SerializeToString()))
        dropped = span.dropped_events
        if dropped:
            parts.append(b"\x60" + _varint(dropped))
    elif span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    if links:
        for link in _encode_links(tuple(links)) or ():
            parts.append(_field(b"\x6a", link.SerializeToString()))
    dropped = span.dropped_links
    if dropped:
        parts.append(b"\x70" + _varint(dropped))
    if status is not None:
        description = status.description
        code = _STATUS_CODES[status.status_code]
        if code or description:
            parts.append(
                _field(
                    b"\x7a",
                    _string(b"\x12", description) + (b"\x18" + _varint(code) if code else b""),
                )
            )
        else:
            parts.append(b"\x7a\x00")
    if parent is not None and parent.is_remote:
        parts.append(_REMOTE_PARENT_FLAGS)
    else:
        parts.append(_LOCAL_FLAGS)
    return b"".join(parts)


def encode_request(spans: Sequence[Any]) -> bytes:
    """
    The serialized C{ExportTraceServiceRequest} of C{spans}: the bytes of the SDK's
    C{encode_spans(spans).SerializePartialToString()}. Raises what the encoding of a
    span raises (the caller then falls back to the SDK's encoder).
    """
    # Group as the SDK does: by resource, then scope, in first-seen order; the SDK keys
    # a dict by the resource (a JSON dump per span to hash it): here each distinct
    # object is looked up once, by identity, and equal resources still share a group.
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    canonical: dict[tuple[int, int], Any] = {}
    # (a batch's spans mostly share one resource and scope: the previous span's group)
    last: tuple[Any, Any, list[bytes]] = (canonical, canonical, [])
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        if resource is last[0] and scope is last[1]:
            last[2].append(_field(b"\x12", _span(span)))
            continue
        rkey = canonical.get((id(resource), 0))
        if rkey is None:
            rkey = next((g[0] for g in groups.values() if g[0] == resource), resource)
            canonical[(id(resource), 0)] = rkey
        group = groups.get(id(rkey))
        if group is None:
            group = groups[id(rkey)] = (rkey, {})
        scopes = group[1]
        skey = canonical.get((id(rkey), id(scope)), canonical)
        if skey is canonical:
            skey = next((g[0] for g in scopes.values() if g[0] == scope), scope)
            canonical[(id(rkey), id(scope))] = skey
        entry = scopes.get(id(skey))
        if entry is None:
            entry = scopes[id(skey)] = (skey, [])
        entry[1].append(_field(b"\x12", _span(span)))
        last = (resource, scope, entry[1])
    out = []
    for resource, scopes in groups.values():
        parts = [_field(b"\x0a", _encode_resource(resource).SerializeToString())]
        for scope, encoded in scopes.values():
            scope_parts = [
                _field(b"\x0a", _encode_instrumentation_scope(scope).SerializeToString())
            ]
            scope_parts.extend(encoded)
            scope_parts.append(_string(b"\x1a", scope.schema_url if scope else None))
            parts.append(_field(b"\x12", b"".join(scope_parts)))
        parts.append(_string(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(out)


class OTLPSpanExporter(_sdk_exporter.OTLPSpanExporter):
    """
    The SDK's OTLP/HTTP span exporter (same configuration, endpoint, headers,
    compression, retries, size limit and metrics) with L{encode_request} in place of
    the SDK's encoder. A batch it cannot encode goes through the SDK's encoder; an SDK
    whose exporter differs from the one this mirrors gets its own C{export}.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pywatt_fast = _MIRRORED and all(
            hasattr(self, name)
            for name in ("_shutdown", "_metrics", "_client", "_max_request_size")
        )

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if not self._pywatt_fast or self._shutdown:
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized_data = encode_request(spans)
            except Exception:
                try:
                    serialized_data = encode_spans(spans).SerializePartialToString()
                except Exception as error:
                    _logger.error("Failed to encode span batch: %s", error)
                    result.error = error
                    return SpanExportResult.FAILURE

            if _is_request_too_large(serialized_data, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d "
                    "bytes.",
                    len(serialized_data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized_data)} "
                    f"bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE

            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                    if export_result.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
