"""
C{pywatt dev --traces}: the OTLP/HTTP receiver (fed by the real OTLP exporter), the
span-tree printer, and two real module processes whose one trace goes from an incoming
C{traceparent} through a routed call to a SQLite statement.
"""

from __future__ import annotations

import os
import re

import treq
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.dev.process import start_dev

try:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pywatt_twisted._dev._traces import SpanRecord, TracePrinter, listen, render_tree
except ImportError:  # pragma: no cover - the [otel] extra is part of the test extra
    TracePrinter = None  # type: ignore[assignment,misc]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def needs_otel(case: object) -> None:
    if TracePrinter is None:
        case.skipTest("the [otel] extra is not installed")  # type: ignore[attr-defined]


def record(span_id: str, parent: str, name: str, start: int, end: int, service: str = "m"):
    return SpanRecord(TRACE_ID, span_id, parent, name, service, "server", start, end, False)


class PrinterTests(SynchronousTestCase):
    def setUp(self) -> None:
        needs_otel(self)

    def test_tree_is_indented_under_parents(self) -> None:
        lines = render_tree(
            [
                record("b" * 16, "a" * 16, "child", 2_000_000, 3_000_000, "stock"),
                record("a" * 16, "f" * 16, "root", 1_000_000, 5_000_000, "front"),
                record("c" * 16, "b" * 16, "grandchild", 2_500_000, 2_600_000, "stock"),
            ]
        )
        self.assertEqual(
            lines,
            [
                f"trace {TRACE_ID}: 3 spans in front, stock, 4.0 ms",
                "  front  root (server) 4.0 ms",
                "  stock    child (server) 1.0 ms",
                "  stock      grandchild (server) 0.1 ms",
            ],
        )

    def test_printed_once_quiet_and_bounded(self) -> None:
        clock = Clock()
        said: list[str] = []
        printer = TracePrinter(clock, said.append, settle=1.0, max_traces=2, max_spans=1)
        printer.add([record("a" * 16, "", "root", 0, 1)])
        clock.advance(0.9)
        printer.add([record("b" * 16, "a" * 16, "late", 0, 1)])
        clock.advance(0.9)
        self.assertEqual(said, [])
        clock.advance(0.2)
        (text,) = said
        self.assertIn("(1 more spans not kept)", text)
        # beyond max_traces waiting, the oldest is printed at once
        for n in range(3):
            printer.add([SpanRecord(f"{n:032x}", "a" * 16, "", "r", "m", "", 0, 1, False)])
        self.assertEqual(len(said), 2)
        clock.advance(1)
        self.assertEqual(len(said), 4)


class ReceiverTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        needs_otel(self)
        self.said: list[str] = []
        self.printer = TracePrinter(reactor, self.said.append, settle=0.01)
        port = listen(reactor, self.printer)
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/v1/traces"

    async def test_real_otlp_exporter_reaches_the_receiver(self) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": "exporter-test"}))
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("outer") as outer:
            with tracer.start_as_current_span("inner"):
                pass
        trace_id = outer.get_span_context().trace_id
        # One export call with both spans, as the batch processor makes; the OTLP
        # exporter blocks on HTTP, so from a thread as there.
        exporter = OTLPSpanExporter(endpoint=self.url, timeout=10)
        result = await deferToThread(exporter.export, memory.get_finished_spans())
        self.assertEqual(result, SpanExportResult.SUCCESS)
        self.assertEqual(self.printer.received, 2)
        await deferLater(reactor, 0.05, lambda: None)
        (text,) = self.said
        self.assertEqual(text.splitlines()[0].split(":")[0], f"trace {format(trace_id, '032x')}")
        self.assertIn("2 spans in exporter-test", text)
        self.assertRegex(text, r"\n  exporter-test  outer \(internal\) [\d.]+ ms\n")
        self.assertRegex(text, r"\n  exporter-test    inner \(internal\) [\d.]+ ms$")

    async def test_bad_bodies_are_refused(self) -> None:
        response = await treq.post(
            self.url,
            data=b"\xff\xff not protobuf",
            headers={"content-type": "application/x-protobuf"},
            persistent=False,
        )
        self.assertEqual(response.code, 400)
        await response.content()
        response = await treq.post(
            self.url, data=b"{}", headers={"content-type": "application/json"}, persistent=False
        )
        self.assertEqual(response.code, 415)
        await response.content()
        self.assertEqual(self.printer.received, 0)


class DevTracesIntegrationTests(TestCase):
    """
    A real C{pywatt dev --traces} with two module processes.
    """

    timeout = 120

    async def test_one_trace_across_two_processes_to_sqlite(self) -> None:
        needs_otel(self)
        database = os.path.abspath(self.mktemp()) + ".db"
        proto, base = await start_dev(
            self,
            "--traces",
            "--module=front=tests.dev.traced_front",
            "--module=stock=tests.dev.traced_stock",
            env={"TRACED_STOCK_DB": database},
        )
        for module_id in ("front", "stock"):
            await proto.wait_for(rf"{module_id} announced")
            await proto.wait_for(rf"{module_id} identified as '{module_id}' on tcp")
        mark = len(proto.output)
        parent = "00f067aa0ba902b7"
        response = await treq.get(
            f"{base}/front/items/A1",
            headers={"traceparent": f"00-{TRACE_ID}-{parent}-01"},
            persistent=False,
        )
        self.assertEqual((response.code, await response.json()), (200, {"sku": "A1", "n": 7}))
        match = await proto.wait_for(
            rf"trace {TRACE_ID}: 4 spans in front, stock, [\d.]+ ms\n(.*\n){{4}}", after=mark
        )
        tree = [re.sub(r"^\[traces\] INFO  ", "", line) for line in match.group(0).splitlines()]
        shapes = [re.sub(r" [\d.]+ ms", "", line) for line in tree[1:]]
        self.assertEqual(
            shapes,
            [
                "  front  GET /items/:sku (server)",
                "  front    stock/lookup (client)",
                "  stock      stock/lookup (server)",
                "  stock        SELECT (client)",
            ],
        )
        # /health and /metrics of each module answer through the front port
        for module_id in ("front", "stock"):
            for path in ("health", "metrics"):
                response = await treq.get(f"{base}/{module_id}/{path}", persistent=False)
                await response.content()
                self.assertEqual(response.code, 200, f"/{module_id}/{path}")
