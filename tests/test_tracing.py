"""
OpenTelemetry tracing (issue 16): spans of each path recorded with the SDK's in-memory
exporter, W3C propagation through HTTP headers and the routed envelope's
C{metadata.properties} (EXTENSIONS.md X3), and trace ids in the JSON logs.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

from klein import Klein
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted import pywatt_module, tracing
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.logging import JsonLinesObserver
from pywatt_twisted.data import Database
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)

try:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:  # pragma: no cover - the [otel] extra is part of the test extra
    TracerProvider = None

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def traceparent(trace_id: str = TRACE_ID, parent: str = PARENT_ID) -> str:
    return f"00-{trace_id}-{parent}-01"


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


class Recording:
    """
    Mixin: record the library's spans in memory for the test, off again afterwards.
    """

    def record_spans(self) -> InMemorySpanExporter:
        if TracerProvider is None:
            self.skipTest("the OpenTelemetry SDK is not installed (pip install '.[otel]')")
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing.use_provider(provider)
        self.addCleanup(tracing.use_provider, None)  # type: ignore[attr-defined]
        return exporter


def by_name(spans: Any) -> dict[str, Any]:
    named: dict[str, ReadableSpan] = {}
    for span in spans:
        assert span.name not in named, f"two spans named {span.name}"
        named[span.name] = span
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


class SwitchTests(SynchronousTestCase, Recording):
    def test_off_by_default_and_ids_absent(self) -> None:
        self.assertFalse(tracing.switch.on)
        self.assertIsNone(tracing.current_ids())

    def test_use_provider_turns_on_and_off(self) -> None:
        self.record_spans()
        self.assertTrue(tracing.switch.on)
        tracing.use_provider(None)
        self.assertFalse(tracing.switch.on)

    def test_api_no_op_provider_keeps_the_hooks_off(self) -> None:
        from opentelemetry.trace import NoOpTracerProvider

        tracing.use_provider(NoOpTracerProvider())
        self.addCleanup(tracing.use_provider, None)
        self.assertFalse(tracing.switch.on)

    def test_environment_without_variables_stays_off(self) -> None:
        self.assertFalse(tracing.configure_from_environment("m", {}))
        self.assertFalse(tracing.switch.on)

    def test_disabled_wins(self) -> None:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
        self.assertFalse(tracing.configure_from_environment("m", env, enabled=False))
        self.assertFalse(
            tracing.configure_from_environment("m", {**env, "OTEL_SDK_DISABLED": "true"})
        )
        self.assertFalse(tracing.switch.on)

    def test_grpc_protocol_is_refused_clearly(self) -> None:
        if TracerProvider is None:
            self.skipTest("the OpenTelemetry SDK is not installed")
        errors: list[str] = []
        from twisted.logger import globalLogPublisher

        def observe(event: dict[str, Any]) -> None:
            if "error" in event and "tracing stays off" in event.get("log_format", ""):
                errors.append(event["error"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        self.assertFalse(tracing.configure_from_environment("m", env))
        self.assertEqual(len(errors), 1)
        self.assertIn("http/protobuf", errors[0])


class LogTests(SynchronousTestCase, Recording):
    def test_log_lines_carry_trace_and_span_ids(self) -> None:
        self.record_spans()
        stream = io.StringIO()
        observer = JsonLinesObserver(stream)
        log = Logger(observer=observer)
        log.info("outside")
        span = tracing.internal_span("work")
        token = tracing.attach(span)
        try:
            log.info("inside")
        finally:
            tracing.detach(token)
            span.end()
        outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
        self.assertNotIn("trace_id", outside)
        context = span.get_span_context()
        self.assertEqual(inside["trace_id"], hexid(context.trace_id, 32))
        self.assertEqual(inside["span_id"], hexid(context.span_id, 16))
        self.assertRegex(inside["trace_id"], "^[0-9a-f]{32}$")
        self.assertRegex(inside["span_id"], "^[0-9a-f]{16}$")


# -- one module: HTTP in, handler, outgoing call ---------------------------------------------


@pywatt_module
def front(state: Any) -> Klein:
    app = Klein()

    @app.route("/items/<sku>")
    async def item(request: Any, sku: str) -> Any:
        reply = await state.send_request("stock", "lookup", {"sku": sku})
        return json.dumps(reply).encode()

    @app.route("/boom")
    def boom(request: Any) -> Any:
        raise RuntimeError("no")

    return app


@pywatt_module
def answering(state: Any) -> Klein:
    @state.handler("echo")
    def echo(source: str, payload: Any) -> Any:
        return payload

    return Klein()


class ReplyContextTests(SynchronousTestCase, Recording):
    """
    The callee answers in kind: its reply is an envelope with its context only when
    the request carried the caller's.
    """

    def replies_to(self, properties: dict[str, object] | None) -> Any:
        from pywatt_twisted.wire.envelope import routed_request_payload

        self.record_spans()
        orch = FakeOrchestrator(module_id="stock", channels=("tcp",))
        self.successResultOf(orch.start(answering))
        self.addCleanup(orch.shutdown)
        payload = routed_request_payload({"x": 1}, "echo", "front", extra_properties=properties)
        orch.send(RoutedModuleMessage("front", uuid.uuid4(), payload), via="tcp")
        connection = orch.connection("tcp")
        assert connection is not None
        (reply,) = [
            e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)
        ]
        return reply.payload.json()

    def test_no_context_in_the_request_gets_a_bare_reply(self) -> None:
        self.assertEqual(self.replies_to(None), {"x": 1})

    def test_context_in_the_request_gets_an_envelope(self) -> None:
        reply = self.replies_to({"traceparent": traceparent()})
        self.assertEqual(reply["content"], {"x": 1})
        properties = reply["metadata"]["properties"]
        self.assertEqual(properties["traceparent"].split("-")[1], TRACE_ID)
        self.assertNotEqual(properties["traceparent"].split("-")[2], PARENT_ID)

    def test_envelope_reply_is_unwrapped_by_the_caller(self) -> None:
        from pywatt_twisted.wire.envelope import routed_reply_content, routed_reply_payload
        from pywatt_twisted.wire.messages import EncodedPayload

        wrapped = routed_reply_payload(
            EncodedPayload.from_json([1, "two"]), {"traceparent": traceparent()}
        )
        self.assertEqual(routed_reply_content(wrapped), [1, "two"])
        binary = EncodedPayload(b"\x00", "Binary")
        self.assertIs(routed_reply_payload(binary, {"traceparent": traceparent()}), binary)


class HttpSpanTests(SynchronousTestCase, Recording):
    def test_incoming_traceparent_is_the_parent_of_the_request_span(self) -> None:
        exporter = self.record_spans()
        orch = FakeOrchestrator(module_id="front")
        module = self.successResultOf(orch.start(front))
        self.addCleanup(orch.shutdown)
        response = self.successResultOf(
            module.request("GET", "/boom", headers={"traceparent": traceparent()})
        )
        self.assertEqual(response.code, 500)
        self.flushLoggedErrors(RuntimeError)
        (span,) = exporter.get_finished_spans()
        self.assertEqual(span.name, "GET /boom")
        self.assertEqual(hexid(span.context.trace_id, 32), TRACE_ID)
        self.assertEqual(parent_of(span), int(PARENT_ID, 16))
        self.assertTrue(span.parent.is_remote)
        self.assertEqual(span.attributes["http.route"], "/boom")
        self.assertEqual(span.attributes["http.response.status_code"], 500)
        self.assertEqual(span.attributes["pywatt.transport"], "stdio")
        self.assertEqual(span.status.status_code.name, "ERROR")

    def test_request_without_context_starts_a_trace(self) -> None:
        exporter = self.record_spans()
        orch = FakeOrchestrator(module_id="front")
        module = self.successResultOf(orch.start(front))
        self.addCleanup(orch.shutdown)
        outer = tracing.internal_span("unrelated")
        token = tracing.attach(outer)
        try:
            self.successResultOf(module.request("GET", "/boom"))
        finally:
            tracing.detach(token)
            outer.end()
        self.flushLoggedErrors(RuntimeError)
        spans = by_name(exporter.get_finished_spans())
        span = spans["GET /boom"]
        self.assertIsNone(span.parent)
        self.assertNotEqual(span.context.trace_id, outer.context.trace_id)

    def test_the_global_propagators_headers_are_read(self) -> None:
        """
        The headers looked for are the configured propagator's (OTEL_PROPAGATORS), not
        a fixed list.
        """
        from opentelemetry import propagate
        from opentelemetry.propagators.textmap import TextMapPropagator
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            TraceFlags,
            set_span_in_context,
        )

        class Single(TextMapPropagator):
            # "x-parent: TRACE-SPAN" (hex), a stand-in for b3 or jaeger
            def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
                (value,) = getter.get(carrier, "x-parent") or ["-"]
                trace_id, span_id = value.split("-")
                remote = SpanContext(
                    int(trace_id, 16), int(span_id, 16), True, TraceFlags(TraceFlags.SAMPLED)
                )
                return set_span_in_context(NonRecordingSpan(remote), context)

            def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
                pass

            @property
            def fields(self) -> set[str]:
                return {"X-Parent"}

        before = propagate.get_global_textmap()
        propagate.set_global_textmap(Single())
        self.addCleanup(propagate.set_global_textmap, before)
        exporter = self.record_spans()
        orch = FakeOrchestrator(module_id="front")
        module = self.successResultOf(orch.start(front))
        self.addCleanup(orch.shutdown)
        headers = {"x-parent": f"{TRACE_ID}-{PARENT_ID}"}
        self.successResultOf(module.request("GET", "/boom", headers=headers))
        self.flushLoggedErrors(RuntimeError)
        (span,) = exporter.get_finished_spans()
        self.assertEqual(hexid(span.context.trace_id, 32), TRACE_ID)
        self.assertEqual(parent_of(span), int(PARENT_ID, 16))

    def test_outgoing_request_carries_the_context_in_properties(self) -> None:
        exporter = self.record_spans()
        orch = FakeOrchestrator(module_id="front", channels=("tcp",))
        module = self.successResultOf(orch.start(front))
        self.addCleanup(orch.shutdown)
        d = module.request("GET", "/items/A1", headers={"traceparent": traceparent()})
        connection = orch.connection("tcp")
        assert connection is not None
        (route,) = [e.content for e in connection.received if isinstance(e.content, RouteToModule)]
        properties = route.payload.json()["metadata"]["properties"]
        self.assertEqual(properties["target_endpoint"], "lookup")
        version, trace_id, span_id, flags = properties["traceparent"].split("-")
        self.assertEqual((version, trace_id, flags), ("00", TRACE_ID, "01"))
        orch.send(
            RoutedModuleResponse("stock", route.request_id, route.payload.from_json({"n": 3})),
            via="tcp",
        )
        self.assertEqual(self.successResultOf(d).json(), {"n": 3})
        spans = by_name(exporter.get_finished_spans())
        client, server = spans["stock/lookup"], spans["GET /items/:sku"]
        self.assertEqual(hexid(client.context.span_id, 16), span_id)
        self.assertEqual(parent_of(client), server.context.span_id)
        self.assertEqual(client.kind.name, "CLIENT")
        self.assertEqual(client.attributes["rpc.method"], "lookup")

    def test_no_context_in_properties_when_tracing_is_off(self) -> None:
        orch = FakeOrchestrator(module_id="front", channels=("tcp",))
        module = self.successResultOf(orch.start(front))
        self.addCleanup(orch.shutdown)
        module.request("GET", "/items/A1", headers={"traceparent": traceparent()})
        connection = orch.connection("tcp")
        assert connection is not None
        (route,) = [e.content for e in connection.received if isinstance(e.content, RouteToModule)]
        # only the endpoint and the X4 deadline: no trace context
        self.assertEqual(
            route.payload.json()["metadata"]["properties"],
            {"target_endpoint": "lookup", "deadline_ms": 30000},
        )


# -- two modules in memory, down to a SQLite statement ---------------------------------------


def stock_module(db: Database) -> Any:
    @pywatt_module
    def stock(state: Any) -> Klein:
        @state.handler("lookup")
        async def lookup(source: str, payload: Any) -> Any:
            if payload["sku"] == "none":
                raise ValueError("no such sku")
            row = await db.query_one(
                "SELECT n FROM stock_levels WHERE sku = :sku", {"sku": payload["sku"]}
            )
            return {"sku": payload["sku"], "n": row["n"] if row else 0}

        return Klein()

    return stock


def connect(front_orch: FakeOrchestrator, stock_orch: FakeOrchestrator) -> None:
    """
    Play the orchestrator's routing between two in-memory modules: A's route_to_module
    reaches B as a routed_module_message with the same payload, B's reply comes back
    to A as a routed_module_response.
    """
    front_received = front_orch._received
    stock_received = stock_orch._received

    def from_front(message: Any, reply: Any = None) -> None:
        front_received(message, reply)
        if isinstance(message, RouteToModule):
            stock_orch.send(
                RoutedModuleMessage(front_orch.module_id, message.request_id, message.payload),
                via="tcp",
            )

    def from_stock(message: Any, reply: Any = None) -> None:
        stock_received(message, reply)
        if isinstance(message, RoutedModuleReply):
            front_orch.send(
                RoutedModuleResponse(stock_orch.module_id, message.request_id, message.payload),
                via="tcp",
            )

    front_orch._received = from_front  # type: ignore[method-assign]
    stock_orch._received = from_stock  # type: ignore[method-assign]


def settled() -> Any:
    """
    One reactor turn: a span ends after the reply it covers is sent (the handler's
    after its reply, the HTTP request's after its response), in the same synchronous
    chain that fires the test's own Deferred.
    """
    return deferLater(reactor, 0, lambda: None)


class TwoModuleTests(TestCase, Recording):
    """
    front (HTTP in) -> stock (routed handler) -> SQLite, in one process and on the real
    reactor (the database runs in its thread pool).
    """

    async def start(self) -> Any:
        path = os.path.abspath(self.mktemp()) + ".db"
        db = Database.from_url(f"sqlite:///{path}")
        self.addCleanup(db.close)
        await db.execute("CREATE TABLE stock_levels (sku TEXT PRIMARY KEY, n INTEGER)")
        await db.execute("INSERT INTO stock_levels VALUES ('A1', 7)")
        front_orch = FakeOrchestrator(
            module_id="front",
            channels=("tcp",),
            reactor=reactor,
            config=RuntimeConfig(max_concurrent_requests=200),
        )
        stock_orch = FakeOrchestrator(module_id="stock", channels=("tcp",), reactor=reactor)
        connect(front_orch, stock_orch)
        module = await front_orch.start(front)
        self.addCleanup(front_orch.shutdown)
        self.stock = await stock_orch.start(stock_module(db))
        self.stock_orch = stock_orch
        self.addCleanup(stock_orch.shutdown)
        return module

    async def test_one_trace_from_traceparent_to_sqlite(self) -> None:
        exporter = self.record_spans()
        module = await self.start()
        exporter.clear()
        response = await module.request("GET", "/items/A1", headers={"traceparent": traceparent()})
        self.assertEqual(response.json(), {"sku": "A1", "n": 7})
        await settled()
        spans = list(exporter.get_finished_spans())
        self.assertEqual(len(spans), 4, [s.name for s in spans])
        kinds = {(s.name, s.kind.name): s for s in spans}
        http = kinds[("GET /items/:sku", "SERVER")]
        client = kinds[("stock/lookup", "CLIENT")]
        handler = kinds[("stock/lookup", "SERVER")]
        sql = kinds[("SELECT", "CLIENT")]
        self.assertEqual({hexid(s.context.trace_id, 32) for s in spans}, {TRACE_ID})
        self.assertEqual(parent_of(http), int(PARENT_ID, 16))
        self.assertEqual(parent_of(client), http.context.span_id)
        self.assertEqual(parent_of(handler), client.context.span_id)
        self.assertTrue(handler.parent.is_remote)
        self.assertEqual(parent_of(sql), handler.context.span_id)
        self.assertEqual(sql.attributes["db.system.name"], "sqlite")
        self.assertEqual(
            sql.attributes["db.query.text"], "SELECT n FROM stock_levels WHERE sku = :sku"
        )
        # no parameter value anywhere in the attributes
        for span in spans:
            self.assertNotIn("A1", [str(v) for v in span.attributes.values()])

    async def test_reply_carries_the_callees_context(self) -> None:
        """
        X3 on the way back: stock's reply envelope carries its handler span's context in
        metadata.properties, and front's client span links to that span.
        """
        exporter = self.record_spans()
        module = await self.start()
        replies: list[Any] = []
        stock_orch = self.stock_orch
        seen = stock_orch._received

        def spy(message: Any, reply: Any = None) -> None:
            if isinstance(message, RoutedModuleReply):
                replies.append(message.payload)
            seen(message, reply)

        stock_orch._received = spy  # type: ignore[method-assign]
        exporter.clear()
        response = await module.request("GET", "/items/A1", headers={"traceparent": traceparent()})
        self.assertEqual(response.json(), {"sku": "A1", "n": 7})
        await settled()
        kinds = {(s.name, s.kind.name): s for s in exporter.get_finished_spans()}
        client = kinds[("stock/lookup", "CLIENT")]
        handler = kinds[("stock/lookup", "SERVER")]
        (payload,) = replies
        envelope = payload.json()
        self.assertEqual(envelope["content"], {"sku": "A1", "n": 7})
        traceparent_back = envelope["metadata"]["properties"]["traceparent"]
        _, trace_id, span_id, _ = traceparent_back.split("-")
        self.assertEqual((trace_id, span_id), (TRACE_ID, hexid(handler.context.span_id, 16)))
        (link,) = client.links
        self.assertEqual(link.context.span_id, handler.context.span_id)
        self.assertEqual(link.context.trace_id, handler.context.trace_id)
        self.assertTrue(link.context.is_remote)
        self.assertEqual(link.attributes["pywatt.link"], "reply")

    async def test_error_reply_carries_the_context_and_still_fails(self) -> None:
        exporter = self.record_spans()
        module = await self.start()
        exporter.clear()
        response = await module.request(
            "GET", "/items/none", headers={"traceparent": traceparent()}
        )
        self.assertEqual(response.code, 500)
        self.flushLoggedErrors()
        await settled()
        kinds = {(s.name, s.kind.name): s for s in exporter.get_finished_spans()}
        client = kinds[("stock/lookup", "CLIENT")]
        handler = kinds[("stock/lookup", "SERVER")]
        self.assertEqual(handler.status.status_code.name, "ERROR")
        self.assertEqual(client.status.status_code.name, "ERROR")
        (link,) = client.links
        self.assertEqual(link.context.span_id, handler.context.span_id)

    async def test_hundred_interleaved_requests_keep_separate_trees(self) -> None:
        exporter = self.record_spans()
        module = await self.start()
        exporter.clear()
        ids = [(hexid(i + 1, 32), hexid(1000 + i, 16)) for i in range(100)]
        responses = await gatherResults(
            [
                module.request("GET", "/items/A1", headers={"traceparent": traceparent(t, p)})
                for t, p in ids
            ]
        )
        self.assertEqual({r.code for r in responses}, {200})
        await settled()
        spans = list(exporter.get_finished_spans())
        self.assertEqual(len(spans), 400)
        trees: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            trees.setdefault(span.context.trace_id, []).append(span)
        self.assertEqual(sorted(trees), [i + 1 for i in range(100)])
        for trace_id, parent in ids:
            tree = {(s.name, s.kind.name): s for s in trees[int(trace_id, 16)]}
            self.assertEqual(len(tree), 4)
            http = tree[("GET /items/:sku", "SERVER")]
            client = tree[("stock/lookup", "CLIENT")]
            handler = tree[("stock/lookup", "SERVER")]
            sql = tree[("SELECT", "CLIENT")]
            self.assertEqual(parent_of(http), int(parent, 16))
            self.assertEqual(parent_of(client), http.context.span_id)
            self.assertEqual(parent_of(handler), client.context.span_id)
            self.assertEqual(parent_of(sql), handler.context.span_id)

    async def test_transaction_statements_are_children_of_the_transaction(self) -> None:
        exporter = self.record_spans()
        path = os.path.abspath(self.mktemp()) + ".db"
        db = Database.from_url(f"sqlite:///{path}")
        self.addCleanup(db.close)

        def work(tx: Any) -> None:
            tx.execute("CREATE TABLE t (x INTEGER)")
            tx.execute("INSERT INTO t VALUES (:x)", {"x": 1})

        await db.run_interaction(work)
        named = {s.name: s for s in exporter.get_finished_spans()}
        self.assertEqual(sorted(named), ["CREATE", "INSERT", "transaction"])
        transaction = named["transaction"]
        self.assertEqual(parent_of(named["CREATE"]), transaction.context.span_id)
        self.assertEqual(parent_of(named["INSERT"]), transaction.context.span_id)


# -- secrets, rotation, cache, threads -------------------------------------------------------


@pywatt_module(secrets=["TOKEN"])
def secret_user(state: Any) -> Klein:
    return Klein()


class OtherPathTests(SynchronousTestCase, Recording):
    def test_secret_fetch_and_rotation_spans_name_no_value(self) -> None:
        exporter = self.record_spans()
        orch = FakeOrchestrator(secrets={"TOKEN": "s3cr3t-value"})
        module = self.successResultOf(orch.start(secret_user))
        self.addCleanup(orch.shutdown)
        exporter.clear()
        self.successResultOf(module.state.get_secret("TOKEN", mode="force-remote"))
        (fetch,) = exporter.get_finished_spans()
        self.assertEqual(fetch.name, "get_secret")
        self.assertEqual(fetch.attributes["pywatt.secret.name"], "TOKEN")
        exporter.clear()
        ack = self.successResultOf(orch.rotate({"TOKEN": "n3w-value"}))
        self.assertEqual(ack.status, "success")
        spans = {s.name: s for s in exporter.get_finished_spans()}
        self.assertEqual(sorted(spans), ["get_secret", "secret_rotation"])
        self.assertEqual(parent_of(spans["get_secret"]), spans["secret_rotation"].context.span_id)
        for span in exporter.get_finished_spans():
            for value in span.attributes.values():
                self.assertNotIn("value", str(value))

    def test_cache_operations_are_children_of_the_current_span(self) -> None:
        from twisted.internet.task import Clock

        from pywatt_twisted.data import MemoryCache

        exporter = self.record_spans()
        cache = MemoryCache(clock=Clock())
        outer = tracing.internal_span("work")
        token = tracing.attach(outer)
        try:
            self.successResultOf(cache.set("user:1", {"name": "ada"}))
            self.assertEqual(self.successResultOf(cache.get("user:1")), {"name": "ada"})
            self.successResultOf(cache.delete("user:1"))
        finally:
            tracing.detach(token)
            outer.end()
        spans = [s for s in exporter.get_finished_spans() if s.name != "work"]
        self.assertEqual([s.name for s in spans], ["cache set", "cache get", "cache delete"])
        for span in spans:
            self.assertEqual(parent_of(span), outer.context.span_id)
            self.assertNotIn("user:1", [str(v) for v in span.attributes.values()])


class CacheSpanTests(SynchronousTestCase, Recording):
    """
    Every operation of L{ICache} that talks to the store makes one span, a child of
    the current span, named C{cache OPERATION}, with the backend and the operation and
    never a key or a value.
    """

    #: the ICache names that are not operations on the store
    NOT_OPERATIONS = {"namespace", "namespace_prefix", "close", "health"}

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from pywatt_twisted.data import MemoryCache

        self.exporter = self.record_spans()
        self.clock = Clock()
        self.cache = MemoryCache(clock=self.clock)

    def within(self, fn: Any) -> tuple[Any, list[ReadableSpan]]:
        """
        Run C{fn()} (a Deferred that fires at once) under an outer span; return its
        result and the spans made, checking each is a direct child of the outer one.
        """
        self.exporter.clear()
        outer = tracing.internal_span("work")
        token = tracing.attach(outer)
        try:
            result = self.successResultOf(fn())
        finally:
            tracing.detach(token)
            outer.end()
        spans = [s for s in self.exporter.get_finished_spans() if s.name != "work"]
        for span in spans:
            self.assertEqual(span.context.trace_id, outer.context.trace_id)
            for value in span.attributes.values():
                for secret in ("user:", "ada", "grace", "job"):
                    self.assertNotIn(secret, str(value))
        return result, spans

    def only(self, fn: Any, operation: str) -> ReadableSpan:
        _, spans = self.within(fn)
        (span,) = spans
        self.assertEqual(span.name, f"cache {operation}")
        self.assertEqual(span.kind.name, "CLIENT")
        self.assertEqual(span.attributes["db.system.name"], "memory")
        self.assertEqual(span.attributes["db.operation.name"], operation)
        self.assertEqual(span.status.status_code.name, "UNSET")
        return span

    def test_every_operation(self) -> None:
        from pywatt_twisted.data import ICache

        cache = self.cache
        done = set()

        def check(operation: str, fn: Any) -> ReadableSpan:
            done.add(operation)
            return self.only(fn, operation)

        check("set", lambda: cache.set("user:1", {"name": "ada"}))
        check("get", lambda: cache.get("user:1"))
        check("exists", lambda: cache.exists("user:1"))
        check("set_nx", lambda: cache.set_nx("user:2", "grace"))
        check("increment", lambda: cache.increment("user:n", 5))
        check("increment", lambda: cache.increment("user:n", -2))  # a decrement
        many = check("set_many", lambda: cache.set_many({"user:3": "ada", "user:4": "grace"}))
        self.assertEqual(many.attributes["db.operation.batch.size"], 2)
        many = check("get_many", lambda: cache.get_many(iter(["user:3", "user:4", "user:5"])))
        self.assertEqual(many.attributes["db.operation.batch.size"], 3)
        check("delete", lambda: cache.delete("user:1"))
        check("clear", lambda: cache.namespace("job").clear())
        lock = self.successResultOf(cache.lock("job", ttl=10))
        done.add("lock")
        self.only(lambda: cache.lock("job:2", ttl=10), "lock")
        self.assertIsNotNone(lock)
        self.only(lock.release, "unlock")

        # cache_aside: its get, the loader's own spans and its set are its children
        loader_tracer = tracing.tracer()

        def loader() -> Any:
            with loader_tracer.start_as_current_span("load-user"):
                return {"name": "grace"}

        value, spans = self.within(lambda: cache.cache_aside("user:9", loader))
        done.add("cache_aside")
        self.assertEqual(value, {"name": "grace"})
        named = by_name(spans)
        self.assertEqual(
            sorted(named), ["cache cache_aside", "cache get", "cache set", "load-user"]
        )
        aside = named["cache cache_aside"]
        for child in ("cache get", "cache set", "load-user"):
            self.assertEqual(parent_of(named[child]), aside.context.span_id)

        # a method added to ICache without a span here fails this test
        self.assertEqual(done, set(ICache.names()) - self.NOT_OPERATIONS)

    def test_failed_operation_marks_its_span(self) -> None:
        from pywatt_twisted.data import CacheError

        self.exporter.clear()
        self.failureResultOf(self.cache.set("user:1", object()), CacheError)
        (span,) = self.exporter.get_finished_spans()
        self.assertEqual(span.name, "cache set")
        self.assertEqual(span.status.status_code.name, "ERROR")

    def test_no_span_when_tracing_is_off(self) -> None:
        tracing.use_provider(None)
        self.successResultOf(self.cache.set_many({"a": 1}))
        self.successResultOf(self.cache.get_many(["a"]))
        self.assertEqual(self.exporter.get_finished_spans(), ())


class PortSpanTests(SynchronousTestCase, Recording):
    """
    C{state.request_port}: one C{port_request} span per negotiation, retries
    included, a child of the current span.
    """

    def negotiate(self, answer: Any) -> tuple[ReadableSpan, ReadableSpan, Any]:
        from twisted.internet.task import Clock

        from pywatt_twisted._runtime.ports import PortNegotiator

        exporter = self.record_spans()
        clock = Clock()
        sent: list[Any] = []
        negotiator = PortNegotiator(sent.append, clock)
        outer = tracing.internal_span("start-listener")
        token = tracing.attach(outer)
        try:
            d = negotiator.request_port(8080)
        finally:
            tracing.detach(token)
        clock.advance(3)  # no answer: asked again, same span
        self.assertEqual(len(sent), 2)
        self.assertEqual(exporter.get_finished_spans(), ())
        answer(negotiator, sent[0].request_id)
        outer.end()
        named = by_name(exporter.get_finished_spans())
        return named["port_request"], named["start-listener"], d

    def test_port_request_span_is_a_child_of_the_current_span(self) -> None:
        from pywatt_twisted.wire.messages import PortResponse

        span, outer, d = self.negotiate(
            lambda n, rid: n.response_received(PortResponse(rid, True, 8080))
        )
        self.assertEqual(self.successResultOf(d), 8080)
        self.assertEqual(parent_of(span), outer.context.span_id)
        self.assertEqual(span.kind.name, "INTERNAL")
        self.assertEqual(span.attributes["pywatt.port.wanted"], "port 8080")
        self.assertEqual(span.status.status_code.name, "UNSET")

    def test_refused_port_request_span_is_an_error(self) -> None:
        from pywatt_twisted._runtime.ports import PortNegotiationFailed
        from pywatt_twisted.wire.messages import PortResponse

        span, outer, d = self.negotiate(
            lambda n, rid: n.response_received(PortResponse(rid, False, 0, "in use"))
        )
        self.failureResultOf(d, PortNegotiationFailed)
        self.assertEqual(parent_of(span), outer.context.span_id)
        self.assertEqual(span.status.status_code.name, "ERROR")
        self.assertIn("in use", span.status.description)


class ThreadTests(TestCase, Recording):
    async def test_defer_to_thread_carries_the_context(self) -> None:
        self.record_spans()
        outer = tracing.internal_span("work")
        token = tracing.attach(outer)
        try:
            d = tracing.defer_to_thread(tracing.current_ids)
        finally:
            tracing.detach(token)
        ids = await d
        outer.end()
        context = outer.get_span_context()
        self.assertEqual(ids, (hexid(context.trace_id, 32), hexid(context.span_id, 16)))
