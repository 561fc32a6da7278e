"""
Tests for module-to-module messaging (L{pywatt_twisted._runtime.messaging}), through a
real L{ModuleService} whose channels are connected in memory to a L{FakeOrchestrator}.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.messaging import (
    PayloadError,
    decode_reply,
    error_payload,
    unwrap_request,
)
from pywatt_twisted._transport.channel import ChannelProtocol, ChannelSettings
from pywatt_twisted.errors import (
    ChannelError,
    NotAvailable,
    ProtocolError,
    RemoteError,
    RequestTimeout,
)
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)
from tests.transport.fakes import frames_of


def plain_app(state: Any) -> Klein:
    return Klein()


class OutOfStock(RemoteError):
    pass


@pywatt_module(secrets=["API_KEY"])
def inventory_app(state: Any) -> Klein:
    stock = {"A1": 7}

    @state.handler("get_stock")
    def get_stock(source: str, payload: Any) -> Any:
        return {"sku": payload["sku"], "in_stock": stock.get(payload["sku"], 0), "from": source}

    @state.handler("slow")
    def slow(source: str, payload: Any) -> Deferred[Any]:
        return deferLater(state.reactor, 5, lambda: {"slow": payload})

    @state.handler("coro")
    async def coro(source: str, payload: Any) -> Any:
        await deferLater(state.reactor, 1, lambda: None)
        return ["coro", payload]

    @state.handler("boom")
    def boom(source: str, payload: Any) -> Any:
        raise ValueError(f"cannot use key {state.secret('API_KEY').expose()}")

    @state.handler("reserve")
    def reserve(source: str, payload: Any) -> Any:
        raise OutOfStock("only 0 left", kind="out_of_stock")

    @state.handler("weird")
    def weird(source: str, payload: Any) -> Any:
        return object()

    return Klein()


def envelope(content: Any, endpoint: str | None = None, **properties: Any) -> EncodedPayload:
    metadata: dict[str, Any] = {}
    if endpoint is not None:
        properties["target_endpoint"] = endpoint
    if properties:
        metadata["properties"] = properties
    return EncodedPayload.from_json(
        {"id": str(uuid.uuid4()), "content": content, "metadata": metadata}
    )


def routed(payload: EncodedPayload, target_endpoint: str | None = None) -> RoutedModuleMessage:
    return RoutedModuleMessage(
        source_module_id="orders",
        original_request_id=uuid.uuid4(),
        payload=payload,
        target_endpoint=target_endpoint,
    )


class Captured:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]


class RequesterTests(SynchronousTestCase):
    """
    C{state.send_request} / C{send_message} and the replies.
    """

    def start(
        self,
        channels: tuple[str, ...] = ("tcp", "ipc"),
        preference: tuple[str, ...] = ("tcp", "ipc"),
        **config: Any,
    ) -> tuple[FakeOrchestrator, Any]:
        orch = FakeOrchestrator(
            module_id="orders",
            channels=channels,
            config=RuntimeConfig(channel_preference=preference, **config),
        )
        module = self.successResultOf(orch.start(plain_app))
        self.addCleanup(lambda: orch.shutdown())
        return orch, module

    def routes(self, orch: FakeOrchestrator, kind: str) -> list[RouteToModule]:
        connection = orch.connection(kind)
        assert connection is not None
        return [e.content for e in connection.received if isinstance(e.content, RouteToModule)]

    def test_default_preference_sends_on_the_unix_socket(self) -> None:
        orch, module = self.start(preference=("ipc", "tcp"))
        d = module.state.send_request("inventory", "get_stock", {"sku": "A1"})
        d.addErrback(lambda f: f.trap(NotAvailable))  # abandoned at the end of the test
        self.assertEqual(self.routes(orch, "tcp"), [])
        self.assertEqual(len(self.routes(orch, "ipc")), 1)

    def test_request_on_tcp_and_reply(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {"sku": "A1"})
        # The configured preference (tcp,ipc here) is honoured.
        self.assertEqual(self.routes(orch, "ipc"), [])
        (request,) = self.routes(orch, "tcp")
        self.assertEqual(
            (request.target_module_id, request.target_endpoint), ("inventory", "get_stock")
        )
        self.assertEqual(request.request_id.version, 4)
        inner = request.payload.json()
        self.assertEqual(inner["content"], {"sku": "A1"})
        # X4: the deadline (the clock starts at 0 here, the default timeout is 30 s)
        self.assertEqual(
            inner["metadata"]["properties"], {"target_endpoint": "get_stock", "deadline_ms": 30000}
        )
        self.assertEqual(inner["metadata"]["source"], "orders")
        uuid.UUID(inner["id"])
        self.assertNoResult(d)
        orch.send(
            RoutedModuleResponse(
                "inventory", request.request_id, EncodedPayload.from_json({"in_stock": 7})
            ),
            via="tcp",
        )
        self.assertEqual(self.successResultOf(d), {"in_stock": 7})
        messaging = module.service.messaging
        self.assertEqual(len(messaging.pending), 0)
        health = module.service.health_status()["messaging"]
        self.assertEqual((health["requests_sent"], health["replies_received"]), (1, 1))

    def test_enveloped_reply_is_unwrapped(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {"sku": "A1"})
        (request,) = self.routes(orch, "tcp")
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, envelope({"in_stock": 3})),
            via="ipc",  # a reply may come back on any channel
        )
        self.assertEqual(self.successResultOf(d), {"in_stock": 3})

    def test_hundred_concurrent_requests_answered_out_of_order(self) -> None:
        orch, module = self.start()
        ds = [module.state.send_request("inventory", "double", {"n": i}) for i in range(100)]
        requests = self.routes(orch, "tcp")
        self.assertEqual(len(requests), 100)
        self.assertEqual(len({r.request_id for r in requests}), 100)
        self.assertEqual(len(module.service.messaging.pending), 100)
        shuffled = list(requests)
        random.Random(7).shuffle(shuffled)
        for i, request in enumerate(shuffled):
            n = request.payload.json()["content"]["n"]
            orch.send(
                RoutedModuleResponse(
                    "inventory", request.request_id, EncodedPayload.from_json({"twice": 2 * n})
                ),
                via="tcp" if i % 2 else "ipc",
            )
            if i == 49:
                # Half answered: exactly those fired.
                fired = [d.called for d in ds]
                self.assertEqual(fired.count(True), 50)
        self.assertEqual(
            [self.successResultOf(d) for d in ds], [{"twice": 2 * i} for i in range(100)]
        )
        self.assertEqual(len(module.service.messaging.pending), 0)

    def test_stop_abandons_with_the_request_id(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {})
        [sent] = self.routes(orch, "tcp")
        module.service.messaging.stop("going away")
        failure = self.failureResultOf(d, NotAvailable)
        self.assertEqual(
            str(failure.value),
            f"the request to inventory/get_stock ({sent.request_id}) was abandoned: going away",
        )

    def test_timeout_fails_and_cleans_up(self) -> None:
        orch, module = self.start()
        messaging = module.service.messaging
        slow = module.state.send_request("inventory", "get_stock", {}, timeout=10)
        fast = module.state.send_request("inventory", "get_stock", {}, timeout=2)
        orch.reactor.advance(2)
        failure = self.failureResultOf(fast, RequestTimeout)
        self.assertIn("within 2 s", str(failure.value))
        self.assertIn("'inventory'", str(failure.value))
        # the request's id, as sent (the table keys requests by its number)
        [_, sent] = self.routes(orch, "tcp")
        self.assertIn(f"(request {sent.request_id})", str(failure.value))
        self.assertNoResult(slow)
        self.assertEqual(len(messaging.pending), 1)
        orch.reactor.advance(8)
        self.failureResultOf(slow, RequestTimeout)
        self.assertEqual(len(messaging.pending), 0)
        self.assertIsNone(messaging.pending._deadlines._timer)
        self.assertEqual(module.service.health_status()["messaging"]["timeouts"], 2)

    def test_late_reply_after_timeout_is_ignored_with_a_log_line(self) -> None:
        orch, module = self.start()
        messaging = module.service.messaging
        captured = Captured()
        messaging.requests.log = Logger(observer=captured)
        d = module.state.send_request("inventory", "get_stock", {}, timeout=1)
        (request,) = self.routes(orch, "tcp")
        orch.reactor.advance(1)
        self.failureResultOf(d, RequestTimeout)
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(1)),
            via="tcp",
        )
        self.assertEqual(messaging.requests.replies_ignored, 1)
        (text,) = captured.texts()
        self.assertIn(str(request.request_id), text)
        self.assertIn("no request waits", text)

    def test_duplicate_and_unknown_replies_are_ignored(self) -> None:
        orch, module = self.start()
        messaging = module.service.messaging
        captured = Captured()
        messaging.requests.log = Logger(observer=captured)
        d = module.state.send_request("inventory", "get_stock", {})
        (request,) = self.routes(orch, "tcp")
        reply = RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(1))
        orch.send(reply, via="tcp")
        orch.send(reply, via="tcp")
        orch.send(
            RoutedModuleResponse("inventory", uuid.uuid4(), EncodedPayload.from_json(2)), via="tcp"
        )
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(messaging.requests.replies_ignored, 2)
        self.assertEqual(len(captured.events), 2)
        self.assertTrue(all(e["log_level"].name == "warn" for e in captured.events))

    def test_error_reply_is_a_remote_error(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "reserve", {})
        (request,) = self.routes(orch, "tcp")
        orch.send(
            RoutedModuleResponse(
                "inventory", request.request_id, error_payload("out_of_stock", "only 0 left")
            ),
            via="tcp",
        )
        failure = self.failureResultOf(d, RemoteError)
        self.assertEqual(failure.value.kind, "out_of_stock")
        self.assertIn("inventory/reserve", str(failure.value))
        self.assertIn("only 0 left", str(failure.value))

    def test_an_error_key_among_others_is_a_normal_reply(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {})
        (request,) = self.routes(orch, "tcp")
        value = {"error": {"message": "domain value"}, "ok": True}
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(value)),
            via="tcp",
        )
        self.assertEqual(self.successResultOf(d), value)

    def test_non_json_reply(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {})
        (request,) = self.routes(orch, "tcp")
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload(b"{nope", "Json")),
            via="tcp",
        )
        self.failureResultOf(d, ProtocolError)

    def test_unix_socket_when_tcp_is_down(self) -> None:
        orch, module = self.start()
        orch.drop_channel("tcp", refuse=True)
        d = module.state.send_request("inventory", "get_stock", {"sku": "A1"})
        (request,) = self.routes(orch, "ipc")
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(5)),
            via="ipc",
        )
        self.assertEqual(self.successResultOf(d), 5)

    def test_unix_socket_only(self) -> None:
        orch, module = self.start(channels=("ipc",))
        d = module.state.send_request("inventory", "get_stock", {})
        self.assertEqual(len(self.routes(orch, "ipc")), 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_timeout_while_queued_withdraws_the_request(self) -> None:
        orch, module = self.start()
        orch.drop_channel("tcp", refuse=True)
        orch.drop_channel("ipc", refuse=True)
        d = module.state.send_request("inventory", "get_stock", {}, timeout=5)
        channels = module.service.channels
        self.assertEqual(channels.queued, 1)
        orch.reactor.advance(5)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(channels.queued, 0)
        orch.restore_channel("tcp")
        orch.reactor.advance(31)
        self.assertEqual(self.routes(orch, "tcp"), [])

    def test_queued_request_is_sent_when_a_channel_comes_back(self) -> None:
        orch, module = self.start()
        orch.drop_channel("tcp", refuse=True)
        orch.drop_channel("ipc", refuse=True)
        d = module.state.send_request("inventory", "get_stock", {}, timeout=60)
        orch.restore_channel("tcp")
        orch.reactor.advance(31)
        (request,) = self.routes(orch, "tcp")
        orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(9)),
            via="tcp",
        )
        self.assertEqual(self.successResultOf(d), 9)

    def test_cancel_forgets_the_request(self) -> None:
        _, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(module.service.messaging.pending), 0)

    def test_queue_full_fails_at_once(self) -> None:
        orch = FakeOrchestrator(
            module_id="orders",
            channels=("tcp",),
            config=RuntimeConfig(channel_queue_size=1),
        )
        module = self.successResultOf(orch.start(plain_app))
        orch.drop_channel("tcp", refuse=True)
        module.state.send_request("inventory", "a", {})
        d = module.state.send_request("inventory", "b", {})
        self.failureResultOf(d, ChannelError)
        self.assertEqual(len(module.service.messaging.pending), 1)

    def test_without_channels(self) -> None:
        orch = FakeOrchestrator(module_id="orders")
        module = self.successResultOf(orch.start(plain_app))
        failure = self.failureResultOf(
            module.state.send_request("inventory", "get_stock", {}), NotAvailable
        )
        self.assertIn("tcp_channel", str(failure.value))
        self.failureResultOf(module.state.send_message("inventory", "x", {}), NotAvailable)

    def test_payload_must_be_json(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {"when": object()})
        failure = self.failureResultOf(d, PayloadError)
        self.assertIn("JSON-serialisable", str(failure.value))
        self.assertEqual(self.routes(orch, "tcp"), [])
        self.assertEqual(len(module.service.messaging.pending), 0)

    def test_send_message_asks_for_no_reply(self) -> None:
        orch, module = self.start()
        self.successResultOf(module.state.send_message("inventory", "restock", {"sku": "A1"}))
        (request,) = self.routes(orch, "tcp")
        properties = request.payload.json()["metadata"]["properties"]
        self.assertEqual(
            properties, {"target_endpoint": "restock", "no_reply": True, "deadline_ms": 30000}
        )
        self.assertEqual(len(module.service.messaging.pending), 0)

    def test_stop_abandons_waiting_requests(self) -> None:
        orch, module = self.start()
        d = module.state.send_request("inventory", "get_stock", {})
        self.successResultOf(orch.shutdown())
        self.failureResultOf(d, NotAvailable)
        self.assertEqual(orch.reactor.getDelayedCalls(), [])


class HandlerTests(SynchronousTestCase):
    """
    Inbound C{routed_module_message}s, dispatched to C{state.handler}s.
    """

    def start(self, app: Any = inventory_app, **kw: Any) -> tuple[FakeOrchestrator, Any]:
        orch = FakeOrchestrator(
            secrets={"API_KEY": "sekrit-42"}, module_id="inventory", channels=("tcp", "ipc"), **kw
        )
        module = self.successResultOf(orch.start(app))
        return orch, module

    def replies(self, orch: FakeOrchestrator, kind: str) -> list[RoutedModuleReply]:
        connection = orch.connection(kind)
        assert connection is not None
        return [e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)]

    def ask(
        self, orch: FakeOrchestrator, payload: EncodedPayload, via: str = "tcp", **kw: Any
    ) -> RoutedModuleMessage:
        message = routed(payload, **kw)
        orch.send(message, via=via)
        return message

    def test_reply_on_the_channel_the_request_came_from(self) -> None:
        orch, _ = self.start()
        message = self.ask(orch, envelope({"sku": "A1"}, "get_stock"), via="ipc")
        self.assertEqual(self.replies(orch, "tcp"), [])
        (reply,) = self.replies(orch, "ipc")
        self.assertEqual(
            (reply.source_module_id, reply.request_id, reply.target_module_id),
            ("inventory", message.original_request_id, "orders"),
        )
        # The reply payload is the bare result JSON.
        self.assertEqual(reply.payload.json(), {"sku": "A1", "in_stock": 7, "from": "orders"})

    def test_deferred_and_coroutine_handlers(self) -> None:
        orch, module = self.start()
        slow, coro = module.call("slow", 1), module.call("coro", 2)
        self.assertNoResult(slow)
        self.assertNoResult(coro)
        orch.reactor.advance(1)
        self.assertEqual(self.successResultOf(coro), ["coro", 2])
        self.assertNoResult(slow)
        orch.reactor.advance(4)
        self.assertEqual(self.successResultOf(slow), {"slow": 1})

    def test_exception_becomes_a_redacted_error_reply(self) -> None:
        orch, _ = self.start()
        self.ask(orch, envelope({}, "boom"))
        (reply,) = self.replies(orch, "tcp")
        error = reply.payload.json()["error"]
        self.assertEqual(error["kind"], "handler_error")
        self.assertIn("ValueError", error["message"])
        self.assertNotIn("sekrit-42", error["message"])
        self.assertIn("[REDACTED]", error["message"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_remote_error_keeps_its_kind(self) -> None:
        orch, _ = self.start()
        self.ask(orch, envelope({}, "reserve"))
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(
            reply.payload.json(), {"error": {"kind": "out_of_stock", "message": "only 0 left"}}
        )
        # A deliberate error answer is not logged as a failure.
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_unknown_endpoint(self) -> None:
        _, module = self.start()
        error = self.failureResultOf(module.call("nope", {}), RemoteError).value
        self.assertEqual(error.kind, "unknown_endpoint")
        self.assertIn("'nope'", str(error))
        self.assertIn("get_stock", str(error))

    def test_plain_values_and_other_awaitables(self) -> None:
        """
        A handler's plain JSON value of any type is the reply as it is; an awaitable
        that is neither a Deferred nor a coroutine (nor a plain value's type) is
        awaited.
        """

        class Ready:
            def __await__(self) -> Any:
                if False:
                    yield
                return {"awaited": True}

        class AwaitableDict(dict):  # type: ignore[type-arg]
            def __await__(self) -> Any:
                if False:
                    yield
                return "awaited, not a dict"

        def app(state: Any) -> Klein:
            state.handler("echo")(lambda source, payload: payload)
            state.handler("ready")(lambda source, payload: Ready())
            state.handler("awaitable_dict")(lambda source, payload: AwaitableDict())
            return Klein()

        _, module = self.start(app)
        for value in ("s", 3, 2.5, True, None, [1, "x"], {"a": {"b": 1}}):
            self.assertEqual(self.successResultOf(module.call("echo", value)), value)
        self.assertEqual(self.successResultOf(module.call("ready", {})), {"awaited": True})
        self.assertEqual(
            self.successResultOf(module.call("awaitable_dict", {})), "awaited, not a dict"
        )

    def test_unserialisable_result(self) -> None:
        _, module = self.start()
        error = self.failureResultOf(module.call("weird", {}), RemoteError).value
        self.assertEqual(error.kind, "bad_reply")

    def test_payload_not_json(self) -> None:
        orch, _ = self.start()
        self.ask(orch, EncodedPayload(b"\xff not json", "Json"), target_endpoint="get_stock")
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json()["error"]["kind"], "bad_request")

    def test_top_level_target_endpoint_and_bare_payload(self) -> None:
        orch, _ = self.start()
        self.ask(orch, EncodedPayload.from_json({"sku": "A1"}), target_endpoint="get_stock")
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json()["in_stock"], 7)

    def test_envelope_endpoint_wins_over_top_level(self) -> None:
        orch, _ = self.start()
        self.ask(orch, envelope({"sku": "A1"}, "get_stock"), target_endpoint="nope")
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json()["in_stock"], 7)

    def test_no_endpoint(self) -> None:
        orch, _ = self.start()
        self.ask(orch, envelope({"sku": "A1"}))
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json()["error"]["kind"], "no_endpoint")

    def test_no_endpoint_with_one_handler_uses_it(self) -> None:
        def single(state: Any) -> Klein:
            state.handler("only")(lambda source, payload: {"echo": payload})
            return Klein()

        orch, _ = self.start(single)
        self.ask(orch, envelope("hi"))
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json(), {"echo": "hi"})

    def test_handler_registered_after_start(self) -> None:
        orch, module = self.start(plain_app)
        self.ask(orch, envelope(1, "late"))
        first = self.replies(orch, "tcp")[0].payload.json()["error"]["kind"]
        self.assertEqual(first, "unknown_endpoint")
        module.state.handler("late")(lambda source, payload: payload + 1)
        self.ask(orch, envelope(1, "late"))
        self.assertEqual(self.replies(orch, "tcp")[1].payload.json(), 2)

    def test_request_before_the_module_is_ready_waits_for_it(self) -> None:
        gate: Deferred[None] = Deferred()

        @pywatt_module(state_builder=lambda init, secrets: gate)
        def gated(state: Any) -> Klein:
            state.handler("ping")(lambda source, payload: "pong")
            return Klein()

        orch = FakeOrchestrator(module_id="inventory", channels=("tcp",))
        started = orch.start(gated)
        # The channels connect while the state builder runs; a request arrives early.
        self.ask(orch, envelope(None, "ping"))
        self.assertEqual(self.replies(orch, "tcp"), [])
        gate.callback(None)
        self.successResultOf(started)
        (reply,) = self.replies(orch, "tcp")
        self.assertEqual(reply.payload.json(), "pong")

    def test_notification_runs_the_handler_and_sends_no_reply(self) -> None:
        calls: list[Any] = []

        def app(state: Any) -> Klein:
            state.handler("restock")(lambda source, payload: calls.append((source, payload)))
            state.handler("other")(lambda source, payload: None)
            return Klein()

        orch, _ = self.start(app)
        self.ask(orch, envelope({"sku": "A1"}, "restock", no_reply=True))
        self.ask(orch, envelope({"sku": "A1"}, "missing", no_reply=True))
        self.assertEqual(calls, [("orders", {"sku": "A1"})])
        self.assertEqual(self.replies(orch, "tcp"), [])

    def test_replies_can_be_turned_off(self) -> None:
        orch, module = self.start(config=RuntimeConfig(routed_replies=False))
        self.ask(orch, envelope({"sku": "A1"}, "get_stock"))
        self.assertEqual(self.replies(orch, "tcp"), [])
        self.assertEqual(module.service.messaging.handling.requests_handled, 1)

    def test_stop_waits_for_running_handlers(self) -> None:
        orch, module = self.start()
        connection = orch.connection("tcp")
        self.ask(orch, envelope(1, "slow"))
        stopped = module.service.stopService()
        self.assertNoResult(stopped)
        orch.reactor.advance(5)
        self.successResultOf(stopped)
        (reply,) = [
            e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)
        ]
        self.assertEqual(reply.payload.json(), {"slow": 1})

    def test_health_lists_handlers(self) -> None:
        orch, module = self.start()
        self.ask(orch, envelope({"sku": "A1"}, "get_stock"))
        health = module.service.health_status()["messaging"]
        self.assertEqual(
            health["handlers"], ["boom", "coro", "get_stock", "reserve", "slow", "weird"]
        )
        self.assertEqual(health["requests_handled"], 1)


class TwoModulesTests(SynchronousTestCase):
    """
    A request from one in-memory module to another, relayed by the test as the
    orchestrator would relay it.
    """

    def test_round_trip(self) -> None:
        orders = FakeOrchestrator(module_id="orders", channels=("tcp",))
        inventory = FakeOrchestrator(
            secrets={"API_KEY": "k"},
            module_id="inventory",
            channels=("ipc",),
            reactor=orders.reactor,
        )
        orders_module = self.successResultOf(orders.start(plain_app))
        self.successResultOf(inventory.start(inventory_app))
        d = orders_module.state.send_request("inventory", "get_stock", {"sku": "A1"})
        (route,) = [
            e.content
            for e in orders.connection("tcp").received
            if isinstance(e.content, RouteToModule)
        ]
        inventory.send(
            RoutedModuleMessage("orders", route.request_id, route.payload, route.target_endpoint),
            via="ipc",
        )
        (reply,) = [
            e.content
            for e in inventory.connection("ipc").received
            if isinstance(e.content, RoutedModuleReply)
        ]
        orders.send(
            RoutedModuleResponse(reply.source_module_id, reply.request_id, reply.payload),
            via="tcp",
        )
        self.assertEqual(self.successResultOf(d), {"sku": "A1", "in_stock": 7, "from": "orders"})


class DecodingTests(SynchronousTestCase):
    def test_decode_reply(self) -> None:
        self.assertEqual(decode_reply(EncodedPayload.from_json([1, 2])), [1, 2])
        self.assertEqual(decode_reply(envelope({"a": 1})), {"a": 1})
        # An object with content but no id is a bare reply.
        self.assertEqual(decode_reply(EncodedPayload.from_json({"content": 1})), {"content": 1})
        base64 = EncodedPayload(b"eyJhIjoxfQ==", "Base64")
        self.assertEqual(decode_reply(base64), {"a": 1})

    def test_unwrap_request(self) -> None:
        self.assertEqual(unwrap_request(envelope(5, "x", no_reply=True), None), (5, "x", True))
        self.assertEqual(unwrap_request(EncodedPayload.from_json(5), "top"), (5, "top", False))
        payload = EncodedPayload(
            json.dumps({"id": "1", "content": 3, "metadata": None}).encode(), "Json"
        )
        self.assertEqual(unwrap_request(payload, None), (3, None, False))


class ReplyValueTests(SynchronousTestCase):
    """
    The reply a handler's plain result becomes (built through its slots) is the value
    C{RoutedModuleReply(...)} makes, with the payload C{EncodedPayload.from_json} makes.
    """

    def test_same_value(self) -> None:
        from twisted.internet.task import Clock

        from pywatt_twisted._runtime.routed_handlers import RoutedHandlers

        sent: list[object] = []

        class Link:
            name = "tcp"
            send = sent.append

        handlers = RoutedHandlers(module_id="inv", clock=Clock())
        handlers.handlers["get"] = lambda source, payload: {"sku": payload["sku"], "n": 7}
        request_id = uuid.uuid4()
        message = RoutedModuleMessage("orders", request_id, envelope({"sku": "A1"}, "get"))
        handlers.message_received(message, Link())
        expected = RoutedModuleReply(
            "inv", request_id, "orders", EncodedPayload.from_json({"sku": "A1", "n": 7})
        )
        self.assertEqual(sent, [expected])
        [reply] = sent
        self.assertIs(type(reply), RoutedModuleReply)
        self.assertEqual(repr(reply), repr(expected))
        self.assertEqual(hash(reply), hash(expected))


class _Sending(ChannelProtocol):
    """
    A channel connection whose C{send} is its own: its replies take the general path.
    """

    def send(self, message: object) -> None:
        super().send(message)


def _blank_ids(data: bytes) -> bytes:
    """
    The frames in C{data} with their envelope ids blanked (each frame gets a fresh one).
    """
    from pywatt_twisted.wire.framing import FrameDecoder

    out = []
    for item in FrameDecoder(1 << 30).feed(data):
        payload = item.payload  # type: ignore[union-attr]
        out.append(payload[:7] + b"?" * 36 + payload[43:])
    return b"|".join(out)


class ChannelReplyTests(SynchronousTestCase):
    """
    A reply on a channel connection that is up is spliced and written as its frame
    (L{pywatt_twisted.wire._forward.routed_reply_frame}): the same bytes, counts and
    flow control as sending the reply through the connection's C{send}, which a link
    class overriding C{send} still gets, for every answer.
    """

    def connections(self, **settings: Any) -> tuple[Any, Any]:
        from twisted.internet.testing import StringTransportWithDisconnection

        from tests.transport.fakes import RecordingListener

        made = []
        for kind in (ChannelProtocol, _Sending):
            protocol = kind(
                ChannelSettings("tcp", "a", "demo", identify=False, **settings),
                RecordingListener(),
                Clock(),
            )
            transport = StringTransportWithDisconnection()
            transport.protocol = protocol
            protocol.makeConnection(transport)
            transport.clear()
            made.append(protocol)
        return made[0], made[1]

    def handlers(self, max_frame_length: int = 1 << 20) -> Any:
        from pywatt_twisted._runtime.routed_handlers import RoutedHandlers

        clock = Clock()
        clock.advance(1_000_000)
        handlers = RoutedHandlers(
            module_id="inv",
            clock=clock,
            max_frame_length=max_frame_length,
            redact=lambda text: text.replace("sekrit", "[REDACTED]"),
        )
        handlers.handlers["echo"] = lambda source, payload: payload
        handlers.handlers["boom"] = lambda source, payload: 1 / 0
        handlers.handlers["secret"] = lambda source, payload: (_ for _ in ()).throw(
            ValueError("sekrit")
        )
        handlers.handlers["weird"] = lambda source, payload: object()
        handlers.handlers["remote"] = lambda source, payload: (_ for _ in ()).throw(
            OutOfStock("none left", kind="out_of_stock")
        )
        return handlers

    def answer_both(
        self,
        messages: list[RoutedModuleMessage],
        max_frame_length: int = 1 << 20,
        channel_cap: int = 1 << 20,
    ) -> tuple[Any, Any]:
        direct, general = self.connections(max_frame_length=channel_cap)
        answered = []
        for link in (direct, general):
            handlers = self.handlers(max_frame_length)
            for message in messages:
                handlers.message_received(message, link)
            answered.append(handlers)
        self.flushLoggedErrors(ZeroDivisionError, ValueError)
        from pywatt_twisted._runtime import routed_handlers

        # (the first connection's replies were spliced, the second's sent)
        self.assertIsNotNone(routed_handlers._FRAME_LINKS[type(direct)])
        self.assertIsNone(routed_handlers._FRAME_LINKS[type(general)])
        self.assertEqual(answered[0].health(), answered[1].health())
        self.assertEqual(direct.counters, general.counters)
        self.assertEqual(direct.buffered, general.buffered)
        return direct, general

    @settings(max_examples=150, deadline=None)
    @given(
        contents=st.lists(
            st.recursive(
                st.none() | st.booleans() | st.integers(-(1 << 63), 1 << 63) | st.text(),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4)
                ),
                max_leaves=12,
            ),
            min_size=1,
            max_size=5,
        ),
        endpoint=st.sampled_from(["echo", "boom", "secret", "weird", "remote", "nope"]),
        source=st.text(max_size=10),
        bare=st.booleans(),
    )
    def test_same_frames(self, contents: list[Any], endpoint: str, source: str, bare: bool) -> None:
        """
        Results, errors (redacted), unknown endpoints and expired deadlines give the
        frames the general path writes, from any requester.
        """
        messages = []
        for i, content in enumerate(contents):
            deadline = 1_000_000_000 + (-5 if i % 3 == 2 else 60_000)
            payload = (
                EncodedPayload.from_json(content)
                if bare
                else envelope(content, endpoint, deadline_ms=deadline)
            )
            messages.append(RoutedModuleMessage(source, uuid.uuid4(), payload, endpoint))
        direct, general = self.answer_both(messages)
        written = direct.transport.value()
        self.assertEqual(len(frames_of(written)), len(messages))
        self.assertEqual(_blank_ids(written), _blank_ids(general.transport.value()))

    def test_large_and_capped(self) -> None:
        """
        A reply too large for the handlers' frame cap becomes C{bad_reply}; one within
        it but above the connection's cap is logged and not written, as before.
        """
        big = envelope("x" * 3000, "echo")
        direct, general = self.answer_both(
            [RoutedModuleMessage("orders", uuid.uuid4(), big, "echo")], max_frame_length=8000
        )
        [reply] = frames_of(direct.transport.value())
        self.assertEqual(_decoded_error(reply)["kind"], "bad_reply")
        self.assertEqual(
            _blank_ids(direct.transport.value()), _blank_ids(general.transport.value())
        )
        small = envelope("x" * 1000, "echo")
        logged = Captured()
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged)
        self.addCleanup(globalLogPublisher.removeObserver, logged)
        direct, general = self.answer_both(
            [RoutedModuleMessage("orders", uuid.uuid4(), small, "echo")], channel_cap=4000
        )
        self.assertEqual(direct.transport.value(), b"")
        self.assertEqual(general.transport.value(), b"")
        too_large = [t for t in logged.texts() if "routed_module_response" in t]
        self.assertEqual(len(too_large), 2, logged.texts())

    def test_paused_and_lost(self) -> None:
        """
        A paused transport: the replies wait in the outbox, counted, as written
        replies do; a lost connection: each reply goes to the listener as
        undeliverable, not to the frame.
        """
        messages = [
            RoutedModuleMessage("orders", uuid.uuid4(), envelope(n, "echo"), "echo")
            for n in range(3)
        ]
        direct, general = self.connections()
        for link in (direct, general):
            link.pauseProducing()
            handlers = self.handlers()
            for message in messages:
                handlers.message_received(message, link)
        self.assertEqual(direct.buffered, general.buffered)
        self.assertGreater(direct.buffered, 0)
        self.assertEqual(direct.transport.value(), b"")
        direct.resumeProducing()
        general.resumeProducing()
        self.assertEqual(
            _blank_ids(direct.transport.value()), _blank_ids(general.transport.value())
        )
        self.assertEqual(len(frames_of(direct.transport.value())), 3)

        direct, general = self.connections()
        for link in (direct, general):
            link.transport.loseConnection()
            handlers = self.handlers()
            for message in messages:
                handlers.message_received(message, link)
        self.assertEqual(direct.listener.undeliverable, general.listener.undeliverable)
        self.assertEqual(len(direct.listener.undeliverable), 3)
        self.assertEqual(direct.transport.value(), b"")


def _decoded_error(frame: dict[str, Any]) -> dict[str, Any]:
    data = bytes(frame["content"]["payload"]["data"])
    return json.loads(data)["error"]  # type: ignore[no-any-return]


class ConfigTests(SynchronousTestCase):
    def test_routed_replies_setting(self) -> None:
        from pywatt_twisted.errors import ConfigurationError

        self.assertTrue(RuntimeConfig.from_environment({}).routed_replies)
        env = {"PYWATT_ROUTED_REPLIES": "off"}
        self.assertFalse(RuntimeConfig.from_environment(env).routed_replies)
        self.assertTrue(RuntimeConfig.from_environment(env, routed_replies="on").routed_replies)
        self.assertRaises(
            ConfigurationError, RuntimeConfig.from_environment, {"PYWATT_ROUTED_REPLIES": "maybe"}
        )

    def test_twistd_option(self) -> None:
        from pywatt_twisted._tap import Options

        options = Options()
        options.parseOptions(["--module=examples.orders.module", "--routed-replies=off"])
        self.assertFalse(options["config"].routed_replies)


class Hanging:
    """
    Handlers that never finish on their own: each call's Deferred is kept, and its
    cancellation recorded.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.cancelled: list[Any] = []
        self.waiting: list[Deferred[Any]] = []

    def __call__(self, source: str, payload: Any) -> Deferred[Any]:
        self.calls.append(payload)
        d: Deferred[Any] = Deferred(lambda _: self.cancelled.append(payload))
        self.waiting.append(d)
        return d


class HandlerLimitTests(SynchronousTestCase):
    """
    The in-flight bound, the bounded queue with C{overloaded} beyond it, and the
    per-handler timeout with C{deadline_exceeded} (EXTENSIONS.md X4).
    """

    def start(
        self, hanging: Hanging, timeouts: dict[str, float] | None = None, **config: Any
    ) -> tuple[FakeOrchestrator, Any]:
        def app(state: Any) -> Klein:
            state.handler("hang")(hanging)
            for endpoint, seconds in (timeouts or {}).items():
                state.handler(endpoint, timeout=seconds)(hanging)
            return Klein()

        orch = FakeOrchestrator(
            module_id="inventory", channels=("tcp",), config=RuntimeConfig(**config)
        )
        module = self.successResultOf(orch.start(app))
        self.captured = Captured()
        module.service.messaging.handling.log = Logger(observer=self.captured)
        return orch, module

    def errors(self, orch: FakeOrchestrator) -> list[tuple[str, str]]:
        connection = orch.connection("tcp")
        assert connection is not None
        replies = [
            e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)
        ]
        return [
            (r.payload.json()["error"]["kind"], r.payload.json()["error"]["message"])
            for r in replies
        ]

    def ask(self, orch: FakeOrchestrator, content: Any, endpoint: str = "hang") -> None:
        orch.send(routed(envelope(content, endpoint)), via="tcp")

    def test_hundred_thousand_messages_at_once_are_bounded(self) -> None:
        """
        100k routed messages at once to handlers that never finish: the defaults hold
        64 running and 1000 queued (their payload bytes counted), and answer the rest
        C{overloaded} at once, logging it once (then once a second with a count).
        """
        hanging = Hanging()
        orch, module = self.start(hanging)
        messaging = module.service.messaging
        for i in range(100_000):
            self.ask(orch, i)
        self.assertEqual(len(hanging.calls), 64)
        self.assertEqual((messaging.handling.running, messaging.handling.queued), (64, 1000))
        size = len(envelope(0, "hang").data)  # every queued payload holds a few bytes
        self.assertTrue(0 < messaging.handling.queued_bytes <= 1000 * (size + 8))
        self.assertEqual(
            messaging.handling.queued_bytes, sum(s for _, _, s in messaging.handling._queue)
        )
        self.assertEqual(module.service.dispatcher.held, [])
        errors = self.errors(orch)
        self.assertEqual(len(errors), 100_000 - 1064)
        self.assertEqual({kind for kind, _ in errors}, {"overloaded"})
        self.assertIn("(limit 64)", errors[0][1])
        self.assertIn("handler_queue_size limit 1000", errors[0][1])
        self.assertEqual(messaging.handling.overloaded, 100_000 - 1064)
        (line,) = self.captured.texts()
        self.assertIn("1 request(s) answered 'overloaded'", line)
        self.assertIn("--handler-queue-size / PYWATT_HANDLER_QUEUE_SIZE", line)
        # The rest are summed up a second later, in one line.
        orch.reactor.advance(1)
        self.assertEqual(len(self.captured.texts()), 2)
        self.assertIn(f"{100_000 - 1065} request(s)", self.captured.texts()[1])
        health = module.service.health_status()["messaging"]
        self.assertEqual(
            (health["handlers_running"], health["handlers_queued"], health["overloaded"]),
            (64, 1000, 100_000 - 1064),
        )

    def test_timeout_cancels_replies_and_starts_the_next(self) -> None:
        """
        At the default 30 s the handler's Deferred is cancelled, the requester gets
        C{deadline_exceeded} naming the handler and its timeout, and the freed slot
        takes the next queued call.
        """
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1, handler_queue_size=1)
        messaging = module.service.messaging
        self.ask(orch, "a")
        self.ask(orch, "b")
        self.ask(orch, "c")
        self.assertEqual(hanging.calls, ["a"])
        self.assertEqual([kind for kind, _ in self.errors(orch)], ["overloaded"])
        orch.reactor.advance(29.9)
        self.assertEqual(hanging.cancelled, [])
        orch.reactor.advance(0.1)
        self.assertEqual(hanging.cancelled, ["a"])
        kind, text = self.errors(orch)[1]
        self.assertEqual(kind, "deadline_exceeded")
        self.assertIn("'hang'", text)
        self.assertIn("30 s", text)
        self.assertEqual(hanging.calls, ["a", "b"])
        self.assertEqual((messaging.handling.running, messaging.handling.queued), (1, 0))
        self.assertEqual(messaging.handling.handler_timeouts_hit, 1)
        self.assertTrue(any("PYWATT_HANDLER_TIMEOUT" in t for t in self.captured.texts()))
        # "b" has a timeout of its own, from when it started.
        orch.reactor.advance(30)
        self.assertEqual(hanging.cancelled, ["a", "b"])
        self.assertEqual(
            [kind for kind, _ in self.errors(orch)],
            ["overloaded", "deadline_exceeded", "deadline_exceeded"],
        )
        self.assertEqual(messaging.handling.running, 0)
        self.assertEqual(module.service.messaging.handling._overload_log.timer, None)

    def test_per_handler_timeout_and_configured_default(self) -> None:
        hanging = Hanging()
        orch, _ = self.start(hanging, timeouts={"quick": 2}, handler_timeout=5)
        self.ask(orch, "slow-one", "hang")
        self.ask(orch, "quick-one", "quick")
        orch.reactor.advance(2)
        self.assertEqual(hanging.cancelled, ["quick-one"])
        ((kind, text),) = self.errors(orch)
        self.assertEqual(kind, "deadline_exceeded")
        self.assertIn("'quick'", text)
        self.assertIn("2 s", text)
        orch.reactor.advance(3)
        self.assertEqual(hanging.cancelled, ["quick-one", "slow-one"])
        self.assertIn("5 s", self.errors(orch)[1][1])

    def test_a_handler_that_finishes_in_time_keeps_its_reply(self) -> None:
        hanging = Hanging()
        orch, _ = self.start(hanging)
        self.ask(orch, "a")
        orch.reactor.advance(29)
        hanging.waiting[0].callback({"done": True})
        orch.reactor.advance(10)
        connection = orch.connection("tcp")
        (reply,) = [
            e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)
        ]
        self.assertEqual(reply.payload.json(), {"done": True})
        self.assertEqual(hanging.cancelled, [])
        self.assertEqual(orch.reactor.getDelayedCalls(), [])

    def test_coroutine_handler_is_cancelled_at_its_timeout(self) -> None:
        inner: list[Deferred[None]] = []
        cancelled: list[bool] = []

        def app(state: Any) -> Klein:
            @state.handler("coro", timeout=3)
            async def coro(source: str, payload: Any) -> Any:
                d: Deferred[None] = Deferred(lambda _: cancelled.append(True))
                inner.append(d)
                await d
                return "never"

            return Klein()

        orch = FakeOrchestrator(module_id="inventory", channels=("tcp",))
        self.successResultOf(orch.start(app))
        self.ask(orch, 1, "coro")
        orch.reactor.advance(3)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.errors(orch)[0][0], "deadline_exceeded")

    def test_overloaded_notification_is_dropped_and_counted(self) -> None:
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1, handler_queue_size=1)
        self.ask(orch, "a")
        self.ask(orch, "b")
        orch.send(routed(envelope("c", "hang", no_reply=True)), via="tcp")
        self.assertEqual(self.errors(orch), [])
        self.assertEqual(module.service.messaging.handling.overloaded, 1)
        self.assertEqual(len(self.captured.texts()), 1)

    def test_unreported_overloads_are_logged_on_stop(self) -> None:
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1, handler_queue_size=1)
        for i in range(4):
            self.ask(orch, i)
        self.assertEqual(len(self.captured.texts()), 1)
        module.service.messaging.stop()
        self.assertEqual(len(self.captured.texts()), 2)
        self.assertIn("1 request(s) answered 'overloaded'", self.captured.texts()[1])
        self.assertIn("2 in all", self.captured.texts()[1])
        self.assertIsNone(module.service.messaging.handling._overload_log.timer)

    def test_queue_is_bounded_by_payload_bytes(self) -> None:
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1, handler_queue_bytes=1000)
        messaging = module.service.messaging
        self.ask(orch, "running")
        self.ask(orch, "x" * 600)
        self.ask(orch, "y" * 600)
        self.assertEqual(messaging.handling.queued, 1)
        self.assertTrue(600 < messaging.handling.queued_bytes <= 1000)
        ((kind, text),) = self.errors(orch)
        self.assertEqual(kind, "overloaded")
        self.assertIn("handler_queue_bytes limit 1000 bytes", text)
        (line,) = self.captured.texts()
        self.assertIn("--handler-queue-bytes / PYWATT_HANDLER_QUEUE_BYTES", line)
        # An empty queue takes one call whatever its size.
        hanging.waiting[0].callback(None)
        self.assertEqual((messaging.handling.queued, messaging.handling.queued_bytes), (0, 0))
        self.ask(orch, "z" * 2000)
        self.assertEqual(messaging.handling.queued, 1)

    def test_requests_before_ready_are_bounded(self) -> None:
        gate: Deferred[None] = Deferred()
        hanging = Hanging()

        @pywatt_module(state_builder=lambda init, secrets: gate)
        def gated(state: Any) -> Klein:
            state.handler("hang")(hanging)
            return Klein()

        orch = FakeOrchestrator(
            module_id="inventory",
            channels=("tcp",),
            config=RuntimeConfig(handler_max_concurrent=2, handler_queue_size=3),
        )
        started = orch.start(gated)
        for i in range(7):
            self.ask(orch, i)
        self.assertEqual(len(self.errors(orch)), 2)
        self.assertEqual({kind for kind, _ in self.errors(orch)}, {"overloaded"})
        self.assertEqual(len(orch.module.service.dispatcher.held), 5)
        gate.callback(None)
        module = self.successResultOf(started)
        self.assertEqual(hanging.calls, [0, 1])
        self.assertEqual(module.service.messaging.handling.queued, 3)
        self.assertEqual(len(self.errors(orch)), 2)

    def test_metrics(self) -> None:
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1, handler_queue_size=1)
        for i in range(3):
            self.ask(orch, i)
        orch.reactor.advance(30)
        text = module.service.metrics.render().decode()
        self.assertIn("pywatt_routed_handlers_running 1.0", text)
        self.assertIn("pywatt_routed_handlers_queued 0.0", text)
        self.assertIn("pywatt_routed_handler_overloaded_total 1.0", text)
        self.assertIn("pywatt_routed_handler_timeouts_total 1.0", text)
        self.assertIn("pywatt_routed_handler_queue_bytes 0.0", text)

    def test_stop_waits_for_queued_calls(self) -> None:
        hanging = Hanging()
        orch, module = self.start(hanging, handler_max_concurrent=1)
        self.ask(orch, "a")
        self.ask(orch, "b")
        stopped = module.service.stopService()
        hanging.waiting[0].callback(1)
        self.assertNoResult(stopped)
        self.assertEqual(hanging.calls, ["a", "b"])
        hanging.waiting[1].callback(2)
        self.successResultOf(stopped)

    def test_handler_timeout_must_be_positive(self) -> None:
        hanging = Hanging()
        _, module = self.start(hanging)
        self.assertRaises(ValueError, module.state.handler, "x", timeout=0)
        # Registering again without a timeout goes back to the default.
        module.state.handler("y", timeout=4)(hanging)
        self.assertEqual(module.state.handler_timeouts, {"y": 4.0})
        module.state.handler("y")(hanging)
        self.assertEqual(module.state.handler_timeouts, {})

    def test_settings(self) -> None:
        config = RuntimeConfig.from_environment(
            {"PYWATT_HANDLER_QUEUE_BYTES": "4096", "PYWATT_HANDLER_TIMEOUT": "2.5"},
            handler_max_concurrent="8",
        )
        self.assertEqual(
            (config.handler_queue_bytes, config.handler_timeout, config.handler_max_concurrent),
            (4096, 2.5, 8),
        )
        self.assertEqual(RuntimeConfig().handler_queue_bytes, 64 * 1024 * 1024)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


class ReplyPathTests(SynchronousTestCase):
    """
    What a caller of L{RoutedRequests.send_request} gets for each form of reply payload.
    """

    def _module(self, slo_clock: bool) -> tuple[FakeOrchestrator, Any]:
        orch = FakeOrchestrator(
            module_id="orders",
            channels=("tcp", "ipc"),
            config=RuntimeConfig(channel_preference=("tcp", "ipc")),
        )
        module = self.successResultOf(orch.start(plain_app))
        self.addCleanup(lambda: orch.shutdown())
        if slo_clock:  # SLO windows on a clock of their own
            from twisted.internet.task import Clock

            from pywatt_twisted.link import SloMonitor

            clock = Clock()
            clock.advance(1234.5)
            module.service.messaging.requests.slo = SloMonitor(clock)
        return orch, module

    @settings(max_examples=40, deadline=None)
    @given(
        _json_values,
        st.sampled_from(["json", "envelope", "base64", "broken", "error", "content", "id"]),
    )
    def test_reply_decoded_as_decode_reply(self, value: Any, form: str) -> None:
        """
        The value a caller gets is L{decode_reply}'s (an envelope's content; a base64
        payload decoded), a payload that is not JSON fails with L{ProtocolError}, and
        an error object with L{RemoteError}, whatever the form of the payload.
        """
        import base64

        orch, module = self._module(False)
        payload = {
            "json": lambda: EncodedPayload.from_json(value),
            "envelope": lambda: envelope(value),
            "base64": lambda: EncodedPayload(
                base64.b64encode(json.dumps(value).encode()), "Base64"
            ),
            "broken": lambda: EncodedPayload(b"{" + json.dumps(value).encode(), "Json"),
            "content": lambda: EncodedPayload.from_json({"content": value}),
            "id": lambda: EncodedPayload.from_json({"id": "x", "content": value, "more": 1}),
            "error": lambda: EncodedPayload.from_json(
                {"error": {"kind": "overloaded", "message": str(value)}}
            ),
        }[form]()
        d = module.state.send_request("inventory", "get", {"sku": "A1"})
        connection = orch.connection("tcp")
        assert connection is not None
        request = connection.received[-1].content
        assert isinstance(request, RouteToModule)
        orch.send(RoutedModuleResponse("inventory", request.request_id, payload), via="tcp")
        try:
            expected = decode_reply(payload)
        except ValueError:
            self.failureResultOf(d, ProtocolError)
            return
        if type(expected) is dict and list(expected) == ["error"] and form == "error":
            self.assertEqual(self.failureResultOf(d, RemoteError).value.kind, "overloaded")
            return
        self.assertEqual(self.successResultOf(d), expected)
