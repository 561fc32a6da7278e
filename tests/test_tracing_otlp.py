"""
L{pywatt_twisted._otlp}: the OTLP/HTTP exporter the library installs sends exactly the
bytes of the SDK's exporter (its encoder compared byte for byte with the SDK's, on usual
and odd spans), falls back to the SDK's encoder, and is what the environment builds.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

try:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    from pywatt_twisted import _otlp, tracing
except ImportError:  # pragma: no cover - the [otel] extra is part of the test set-up
    _otlp = None  # type: ignore[assignment]

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)

ODD_VALUES: dict[str, Any] = {
    "empty": "",
    "unicode": "h\u00e9llo \u2603 \U0001f600",
    "true": True,
    "false": False,
    "zero": 0,
    "one": 1,
    "float_one": 1.0,
    "negative": -5,
    "int64_min": -(1 << 63),
    "int64_max": (1 << 63) - 1,
    "too_big": 1 << 64,
    "float": -0.25,
    "bytes": b"\x00\xff",
    "strings": ("a", "", "b"),
    "ints": (1, -2, 3),
    "mixed": (1, "a", True, 2.5),
    "empty_tuple": (),
    "long": "x" * 1000,
}


def provider(limits: Any = None, resource: Any = None) -> tuple[Any, Any]:
    memory = InMemorySpanExporter()
    kw: dict[str, Any] = {"resource": resource or Resource.create({"service.name": "t"})}
    if limits is not None:
        kw["span_limits"] = limits
    p = TracerProvider(**kw)
    p.add_span_processor(SimpleSpanProcessor(memory))
    return p, memory


class _Client:
    """Stands for the exporter's HTTP client: keeps the bytes it was given."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def export(self, data: bytes) -> Any:
        self.sent.append(data)

        class Result:
            success = True

        return Result()

    def shutdown(self) -> None:
        pass


class EncoderTests(SynchronousTestCase):
    def setUp(self) -> None:
        if _otlp is None:  # pragma: no cover
            raise self.skipTest("the [otel] extra is not installed")

    def assertSameBytes(self, spans: Any) -> bytes:
        ours = _otlp.encode_request(spans)
        theirs = encode_spans(spans).SerializePartialToString()
        self.assertEqual(ours, theirs)
        # (and it parses as the message the SDK builds)
        self.assertEqual(ExportTraceServiceRequest.FromString(ours), encode_spans(spans))
        return ours

    def http_spans(self, count: int) -> Any:
        p, memory = provider()
        tracer = p.get_tracer("pywatt_twisted", "1.0")
        parent = set_span_in_context(NonRecordingSpan(REMOTE))
        for i in range(count):
            span = tracer.start_span(
                "GET",
                context=parent if i % 2 else None,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": "GET",
                    "url.path": f"/items/{i}",
                    "url.scheme": "http",
                    "pywatt.transport": "stdio",
                },
            )
            span.update_name("GET /items/:id")
            span.set_attributes({"http.route": "/items/:id", "http.response.status_code": 200})
            if i % 3 == 0:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        return memory.get_finished_spans()

    def test_http_server_spans(self) -> None:
        spans = self.http_spans(50)
        self.assertEqual(len(spans), 50)
        self.assertSameBytes(spans)
        # twice: the second time from the cache of encoded attributes
        self.assertSameBytes(spans)

    def test_empty_batch(self) -> None:
        self.assertEqual(self.assertSameBytes([]), b"")

    def test_odd_attribute_values(self) -> None:
        p, memory = provider()
        tracer = p.get_tracer("scope")
        for key, value in ODD_VALUES.items():
            tracer.start_span(key, attributes={key: value, "": "empty key"}).end()
        tracer.start_span("", attributes=ODD_VALUES).end()
        spans = memory.get_finished_spans()
        encoded = self.assertSameBytes(spans)
        request = ExportTraceServiceRequest.FromString(encoded)
        by_name = {s.name: s for s in request.resource_spans[0].scope_spans[0].spans}
        # the value beyond int64 is dropped, as the SDK's encoder drops it
        self.assertEqual(list(by_name["too_big"].attributes), [])
        # 1, 1.0 and True are three values, not one cached encoding
        self.assertEqual(by_name["one"].attributes[0].value.int_value, 1)
        self.assertEqual(by_name["float_one"].attributes[0].value.double_value, 1.0)
        self.assertTrue(by_name["true"].attributes[0].value.bool_value)

    def test_events_links_status_kinds_and_limits(self) -> None:
        p, memory = provider(limits=SpanLimits(max_span_attributes=2, max_events=1, max_links=1))
        tracer = p.get_tracer("scope", "2", schema_url="https://schema/1")
        kinds = [SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]
        for i, kind in enumerate(kinds):
            span = tracer.start_span(
                f"s{i}",
                kind=kind,
                attributes={"a": 1, "b": 2, "c": 3},
                links=[
                    Link(REMOTE, {"pywatt.link": "reply", "n": (1, 2)}),
                    Link(REMOTE),
                ],
            )
            span.add_event("first", {"k": "v", "n": 1.5})
            span.add_event("dropped")
            span.set_status(Status(StatusCode.ERROR, "boom \u2603") if i else Status(StatusCode.OK))
            with_child = tracer.start_span("child", context=set_span_in_context(span))
            with_child.end()
            span.end()
        spans = memory.get_finished_spans()
        self.assertTrue(all(s.dropped_attributes for s in spans if s.name != "child"))
        self.assertSameBytes(spans)

    def test_spans_not_from_the_processor(self) -> None:
        """
        Spans handed over as the SDK's own span objects (not the copies the processors
        get) take the public properties: the same bytes.
        """
        p, _ = provider()
        tracer = p.get_tracer("scope")
        spans = []
        for i in range(3):
            span = tracer.start_span(f"s{i}", attributes={"i": i})
            span.add_event("e")
            span.end()
            spans.append(span)
        self.assertSameBytes(spans)

    def test_resources_and_scopes_group_as_the_sdk_does(self) -> None:
        """
        Equal resources that are distinct objects share a group; different resources
        and scopes get theirs, in first-seen order.
        """
        memories = []
        providers = [
            provider(resource=Resource({"service.name": "a"})),
            provider(resource=Resource({"service.name": "b"}, schema_url="https://s")),
            provider(resource=Resource({"service.name": "a"})),
        ]
        spans: list[Any] = []
        for round_ in range(2):
            for p, memory in providers:
                memories.append(memory)
                for scope in ("one", "two"):
                    p.get_tracer(scope).start_span(f"{scope}{round_}").end()
        for _, memory in providers:
            spans.extend(memory.get_finished_spans())
        encoded = self.assertSameBytes(spans)
        request = ExportTraceServiceRequest.FromString(encoded)
        self.assertEqual(len(request.resource_spans), 2)

    def test_attribute_cache_is_bounded(self) -> None:
        p, memory = provider()
        tracer = p.get_tracer("scope")
        for i in range(_otlp._KV_CACHE_SIZE + 10):
            tracer.start_span("s", attributes={"i": i}).end()
        spans = memory.get_finished_spans()
        self.assertSameBytes(spans)
        self.assertLessEqual(len(_otlp._kv_cache), _otlp._KV_CACHE_SIZE)


class ExporterTests(SynchronousTestCase):
    def setUp(self) -> None:
        if _otlp is None:  # pragma: no cover
            raise self.skipTest("the [otel] extra is not installed")
        self.exporter = _otlp.OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
        self.client = _Client()
        self.exporter._client = self.client
        self.spans = EncoderTests().http_spans(5)

    def test_sends_the_sdks_bytes(self) -> None:
        self.assertTrue(self.exporter._pywatt_fast)
        self.assertEqual(self.exporter.export(self.spans), SpanExportResult.SUCCESS)
        self.assertEqual(self.client.sent, [encode_spans(self.spans).SerializePartialToString()])

    def test_falls_back_to_the_sdks_encoder(self) -> None:
        def broken(spans: Any) -> bytes:
            raise ValueError("cannot")

        self.patch(_otlp, "encode_request", broken)
        self.assertEqual(self.exporter.export(self.spans), SpanExportResult.SUCCESS)
        self.assertEqual(self.client.sent, [encode_spans(self.spans).SerializePartialToString()])

    def test_other_sdk_exporter_uses_its_own_export(self) -> None:
        calls = []

        def counted(spans: Any) -> bytes:
            calls.append(spans)
            return b""

        self.patch(_otlp, "encode_request", counted)
        self.exporter._pywatt_fast = False
        self.assertEqual(self.exporter.export(self.spans), SpanExportResult.SUCCESS)
        self.assertEqual(calls, [])
        self.assertEqual(self.client.sent, [encode_spans(self.spans).SerializePartialToString()])

    def test_size_limit_still_applies(self) -> None:
        self.exporter._max_request_size = 10
        self.assertEqual(self.exporter.export(self.spans), SpanExportResult.FAILURE)
        self.assertEqual(self.client.sent, [])

    def test_after_shutdown_nothing_is_sent(self) -> None:
        self.exporter.shutdown()
        self.assertEqual(self.exporter.export(self.spans), SpanExportResult.FAILURE)
        self.assertEqual(self.client.sent, [])

    def test_the_environment_builds_it(self) -> None:
        exporters = list(tracing._exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}))
        self.assertEqual([type(e) for e in exporters], [_otlp.OTLPSpanExporter])
        for e in exporters:
            e.shutdown()

    def test_sdk_exporter_when_the_fast_encoder_cannot_import(self) -> None:
        """
        An SDK whose internal encoding helpers moved (the fast encoder's imports fail)
        gets the SDK's own exporter, not an error at start-up.
        """
        import sys

        from opentelemetry.exporter.otlp.proto.http import trace_exporter

        saved = sys.modules["pywatt_twisted._otlp"]
        sys.modules["pywatt_twisted._otlp"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "pywatt_twisted._otlp", saved)
        exporters = list(tracing._exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}))
        self.assertEqual([type(e) for e in exporters], [trace_exporter.OTLPSpanExporter])
        for e in exporters:
            e.shutdown()
