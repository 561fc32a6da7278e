# -*- test-case-name: tests.dev.test_traces -*-
"""
C{pywatt dev --traces}: an OTLP/HTTP receiver on loopback that the modules export their
spans to, and a console printer showing each trace as a tree (module, span, duration)
once it has been quiet for a moment.

Bounded: a request body above L{MAX_BODY} bytes gets 413; at most L{MAX_TRACES} traces
wait to be printed (the oldest is printed early beyond that) and at most
L{MAX_SPANS_PER_TRACE} spans are kept per trace (the rest are counted, not kept).
"""

from __future__ import annotations

import gzip
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from attrs import frozen
from twisted.web.resource import Resource

#: The largest OTLP request accepted, in bytes (compressed or not).
MAX_BODY = 8 * 1024 * 1024
#: Traces waiting to be printed at once.
MAX_TRACES = 1000
#: Spans kept per trace.
MAX_SPANS_PER_TRACE = 500
#: Seconds a trace must be quiet (no new span) before it is printed.
SETTLE = 1.0

_KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@frozen
class SpanRecord:
    """
    One received span, as the printer needs it (ids as lowercase hex).
    """

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    error: bool

    @property
    def ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6


def decode_export_request(body: bytes) -> list[SpanRecord]:
    """
    The spans of an OTLP C{ExportTraceServiceRequest} (protobuf).

    @raise ValueError: the body is not one.
    """
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as e:
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {e}") from None
    spans = []
    for resource_spans in request.resource_spans:
        service = "?"
        for attribute in resource_spans.resource.attributes:
            if attribute.key == "service.name":
                service = attribute.value.string_value
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        service=service,
                        kind=_KINDS.get(span.kind, ""),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        error=span.status.code == 2,
                    )
                )
    return spans


def render_tree(spans: list[SpanRecord], dropped: int = 0) -> list[str]:
    """
    The console lines of one trace: a header, then each span indented under its
    parent (spans whose parent was not received are roots), children by start time.
    """
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        if span.parent_id and span.parent_id in ids:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    services = sorted({s.service for s in spans})
    total = max((s.end_ns for s in spans), default=0) - min((s.start_ns for s in spans), default=0)
    header = (
        f"trace {spans[0].trace_id}: {len(spans)} spans in {', '.join(services)}, "
        f"{total / 1e6:.1f} ms"
    )
    if dropped:
        header += f" ({dropped} more spans not kept)"
    lines = [header]
    width = max(len(s) for s in services)

    def walk(span: SpanRecord, depth: int) -> None:
        mark = " ERROR" if span.error else ""
        lines.append(
            f"  {span.service.ljust(width)}  {'  ' * depth}{span.name} "
            f"({span.kind}) {span.ms:.1f} ms{mark}"
        )
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines


class _Trace:
    __slots__ = ("dropped", "spans", "timer")

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.dropped = 0
        self.timer: Any = None


class TracePrinter:
    """
    Groups received spans by trace and prints each trace's tree through C{say} once no
    span of it arrived for C{settle} seconds.
    """

    def __init__(
        self,
        reactor: Any,
        say: Callable[[str], object],
        settle: float = SETTLE,
        max_traces: int = MAX_TRACES,
        max_spans: int = MAX_SPANS_PER_TRACE,
    ) -> None:
        self._reactor = reactor
        self._say = say
        self._settle = settle
        self._max_traces = max_traces
        self._max_spans = max_spans
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        #: every span received
        self.received = 0

    def add(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            self.received += 1
            trace = self._traces.get(span.trace_id)
            if trace is None:
                if len(self._traces) >= self._max_traces:
                    oldest = next(iter(self._traces))
                    self._print(oldest)
                trace = self._traces[span.trace_id] = _Trace()
            if len(trace.spans) < self._max_spans:
                trace.spans.append(span)
            else:
                trace.dropped += 1
            if trace.timer is not None and trace.timer.active():
                trace.timer.reset(self._settle)
            else:
                trace.timer = self._reactor.callLater(self._settle, self._print, span.trace_id)

    def _print(self, trace_id: str) -> None:
        trace = self._traces.pop(trace_id, None)
        if trace is None:
            return
        if trace.timer is not None and trace.timer.active():
            trace.timer.cancel()
        self._say("\n".join(render_tree(trace.spans, trace.dropped)))

    def flush(self) -> None:
        """
        Print every waiting trace now (at exit).
        """
        for trace_id in list(self._traces):
            self._print(trace_id)


class OtlpReceiver(Resource):
    """
    C{POST /v1/traces} with an OTLP protobuf body (gzip or deflate allowed): the spans go
    to C{printer}; the answer is an empty C{ExportTraceServiceResponse}. Bad bodies get
    400, other content types 415, bodies above L{MAX_BODY} 413.
    """

    isLeaf = True

    def __init__(self, printer: TracePrinter, max_body: int = MAX_BODY) -> None:
        super().__init__()
        self.printer = printer
        self.max_body = max_body

    def render_POST(self, request: Any) -> bytes:
        if request.path != b"/v1/traces":
            request.setResponseCode(404)
            return b"only /v1/traces is served here\n"
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != b"application/x-protobuf":
            request.setResponseCode(415)
            return b"send OTLP as application/x-protobuf\n"
        body = request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            request.setResponseCode(413)
            return b"body too large\n"
        encoding = (request.getHeader(b"content-encoding") or b"").strip().lower()
        try:
            if encoding == b"gzip":
                body = _bounded(gzip.GzipFile(fileobj=_Bytes(body)).read, self.max_body)
            elif encoding == b"deflate":
                body = zlib.decompressobj().decompress(body, self.max_body + 1)
            if len(body) > self.max_body:
                raise ValueError("decompressed body too large")
            spans = decode_export_request(body)
        except (OSError, ValueError, zlib.error) as e:
            request.setResponseCode(400)
            return f"{e}\n".encode()
        self.printer.add(spans)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        request.setHeader(b"content-type", b"application/x-protobuf")
        return bytes(ExportTraceServiceResponse().SerializeToString())


def _Bytes(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _bounded(read: Callable[[int], bytes], limit: int) -> bytes:
    return read(limit + 1)


def listen(reactor: Any, printer: TracePrinter, port: int = 0) -> Any:
    """
    Listen for OTLP/HTTP on C{127.0.0.1:port}; returns the listening port (its
    C{getHost().port} is where the modules export).
    """
    from twisted.web.server import Site

    site = Site(OtlpReceiver(printer))
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return reactor.listenTCP(port, site, interface="127.0.0.1")
