"""
Tests for L{pywatt_twisted.testing.FakeOrchestrator}.
"""

from __future__ import annotations

from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted.errors import PyWattError, RemoteError, RequestTimeout, SecretError
from pywatt_twisted.orchestrator import MemorySecretProvider
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import Announce, RoutedModuleReply


@pywatt_module(secrets=["TOKEN"])
def token_app(state):
    app = Klein()

    @app.route("/token", methods=["GET"])
    def token(request):
        return state.secret("TOKEN").expose()

    @app.route("/later", methods=["GET"])
    def later(request):
        return deferLater(state.reactor, 5, lambda: b"later")

    @app.route("/echo", methods=["POST"])
    def echo(request):
        request.setHeader(b"content-type", b"application/json")
        return request.content.read()

    return app


def root_app(state):
    """
    A plain C{create_app} function (no decorator) with one route, C{/}.
    """
    app = Klein()

    @app.route("/")
    def root(request):
        return b"root"

    return app


class SynchronousFakeTests(SynchronousTestCase):
    def test_start_request_rotate(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "t-1"})
        module = self.successResultOf(orch.start(token_app))
        self.assertIsInstance(orch.announcement, Announce)
        self.assertEqual(orch.secret_requests, ["TOKEN"])
        response = self.successResultOf(module.request("GET", "/token"))
        self.assertEqual((response.code, response.text()), (200, "t-1"))
        ack = self.successResultOf(orch.rotate({"TOKEN": "t-2"}))
        self.assertEqual(ack.status, "success")
        self.assertEqual(orch.acks[-1], ack)
        self.assertEqual(self.successResultOf(module.request("GET", "/token")).text(), "t-2")

    def test_clock_drives_time(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "x"})
        module = self.successResultOf(orch.start(token_app))
        d = module.request("GET", "/later")
        self.assertNoResult(d)
        orch.reactor.advance(5)
        self.assertEqual(self.successResultOf(d).body, b"later")

    def test_json_body(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "x"})
        module = self.successResultOf(orch.start(token_app))
        response = self.successResultOf(module.request("POST", "/echo", json_body={"a": 1}))
        self.assertEqual(response.json(), {"a": 1})
        self.assertEqual(response.headers["content-type"], "application/json")

    def test_missing_secret_times_out(self) -> None:
        orch = FakeOrchestrator(secrets={})
        d = orch.start(token_app)
        orch.reactor.advance(30)
        self.failureResultOf(d, SecretError)
        self.assertEqual(orch.exit_codes, [1])

    def test_scripted_secrets(self) -> None:
        orch = FakeOrchestrator(auto_secrets=False)
        d = orch.start(token_app)
        self.assertNoResult(d)
        orch.answer_secret("TOKEN", "scripted")
        module = self.successResultOf(d)
        self.assertEqual(module.state.secret("TOKEN").expose(), "scripted")

    def test_heartbeat_and_shutdown(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "x"})
        self.successResultOf(orch.start(token_app))
        self.successResultOf(orch.heartbeat())
        self.assertEqual(orch.heartbeat_acks, 1)
        self.successResultOf(orch.shutdown())
        self.assertEqual(orch.exit_codes, [0])
        self.assertEqual(orch.reactor.getDelayedCalls(), [])

    def test_plain_function_and_provider(self) -> None:
        provider = MemorySecretProvider({"TOKEN": "p"})
        orch = FakeOrchestrator(provider)
        module = self.successResultOf(orch.start(root_app))
        self.assertEqual(self.successResultOf(module.request("GET", "/")).body, b"root")

    def test_no_real_port(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "x"})
        self.successResultOf(orch.start(token_app))
        self.assertEqual(len(orch.listen_reactor.tcpServers), 1)


class RealReactorFakeTests(TestCase):
    async def test_real_reactor(self) -> None:
        orch = FakeOrchestrator(secrets={"TOKEN": "r"}, reactor=reactor)
        module = await orch.start(token_app)
        response = await module.request("GET", "/token")
        self.assertEqual(response.text(), "r")
        await orch.shutdown()


class FakeChannelTests(SynchronousTestCase):
    def start(self) -> tuple[FakeOrchestrator, object]:
        orch = FakeOrchestrator(secrets={"TOKEN": "c-1"}, channels=("tcp", "ipc"))
        module = self.successResultOf(orch.start(token_app))
        return orch, module

    def test_module_connects_both_channels_and_identifies(self) -> None:
        orch, _ = self.start()
        tcp, ipc = orch.connection("tcp"), orch.connection("ipc")
        self.assertIsNotNone(tcp)
        self.assertIsNotNone(ipc)
        self.assertEqual(tcp.identify.module_id, "test-module")
        self.assertIsNone(ipc.identify)  # identify goes on TCP only by default

    def test_requests_and_heartbeats_on_channels(self) -> None:
        orch, module = self.start()
        for via in ("tcp", "ipc"):
            response = self.successResultOf(module.request("GET", "/token", via=via))
            self.assertEqual(response.text(), "c-1")
            self.successResultOf(orch.heartbeat(via=via))
        self.assertEqual(orch.heartbeat_acks, 2)

    def test_drop_and_reconnect(self) -> None:
        orch, module = self.start()
        first = orch.connection("tcp")
        orch.drop_channel("tcp", refuse=True)
        self.assertIsNone(orch.connection("tcp"))
        # The other channel keeps serving while TCP is down.
        self.assertEqual(self.successResultOf(module.request("GET", "/token", via="ipc")).code, 200)
        self.assertNotEqual(module.service.health_status()["channels"]["tcp"]["state"], "connected")
        orch.restore_channel("tcp")
        orch.reactor.advance(31)  # past the longest backoff
        second = orch.connection("tcp")
        self.assertIsNotNone(second)
        self.assertIsNot(second, first)
        self.assertEqual(second.identify.module_id, "test-module")
        self.successResultOf(orch.shutdown())
        self.assertEqual(orch.reactor.getDelayedCalls(), [])

    def test_unknown_channel_kind(self) -> None:
        self.assertRaises(ValueError, FakeOrchestrator, channels=("udp",))


def routed_app(state):
    """
    A module with routed handlers: C{echo} answers at once, C{slow} after 5 s, C{fail}
    raises, C{out} answers with a deliberate L{RemoteError}, C{note} records.
    """
    state.notes = []

    @state.handler("echo")
    def echo(source, content):
        return {"from": source, "content": content}

    @state.handler("slow")
    def slow(source, content):
        return deferLater(state.reactor, 5, lambda: "done")

    @state.handler("fail")
    def fail(source, content):
        raise ValueError("broken")

    @state.handler("out")
    def out(source, content):
        raise RemoteError("none left", kind="out_of_stock")

    @state.handler("note")
    def note(source, content):
        state.notes.append(content)
        return "ignored"

    return Klein()


class FakeCallTests(SynchronousTestCase):
    """
    L{FakeModule.call} and L{FakeModule.notify}: a routed handler called as another
    module, with no wire message built by the test.
    """

    def start(self, channels: tuple[str, ...] = ("tcp", "ipc")) -> tuple[FakeOrchestrator, object]:
        orch = FakeOrchestrator(module_id="inventory", channels=channels)
        return orch, self.successResultOf(orch.start(routed_app))

    def test_call_fires_with_the_reply(self) -> None:
        orch, module = self.start()
        reply = self.successResultOf(module.call("echo", {"a": 1}, source="orders"))
        self.assertEqual(reply, {"from": "orders", "content": {"a": 1}})
        # It went as a real orchestrator delivers it: on TCP, the endpoint in the payload.
        (request,) = [m for m in self.received(orch, "tcp") if isinstance(m, RoutedModuleReply)]
        self.assertEqual(request.target_module_id, "orders")

    def received(self, orch: FakeOrchestrator, kind: str) -> list[object]:
        return [e.content for e in orch.connection(kind).received]

    def test_via_each_link(self) -> None:
        for channels, via in (((), None), ((), "stdio"), (("ipc",), None), (("tcp", "ipc"), "ipc")):
            _, module = self.start(channels)
            self.assertEqual(self.successResultOf(module.call("echo", 1, via=via))["content"], 1)

    def test_default_link_is_tcp_then_ipc_then_stdin(self) -> None:
        orch, _ = self.start()
        self.assertEqual(orch.routing_link(), "tcp")
        orch.drop_channel("tcp", refuse=True)
        self.assertEqual(orch.routing_link(), "ipc")
        orch.drop_channel("ipc", refuse=True)
        self.assertEqual(orch.routing_link(), "stdio")

    def test_error_replies_are_remote_errors(self) -> None:
        _, module = self.start()
        for endpoint, kind in (
            ("fail", "handler_error"),
            ("out", "out_of_stock"),
            ("nope", "unknown_endpoint"),
        ):
            failure = self.failureResultOf(module.call(endpoint, {}), RemoteError)
            self.assertEqual(failure.value.kind, kind)
            self.assertIn(f"inventory/{endpoint} failed ({kind})", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_clock_drives_the_handler(self) -> None:
        orch, module = self.start()
        d = module.call("slow", None)
        self.assertNoResult(d)
        orch.reactor.advance(5)
        self.assertEqual(self.successResultOf(d), "done")

    def test_call_times_out(self) -> None:
        orch, module = self.start()
        d = module.call("slow", None, timeout=2)
        orch.reactor.advance(2)
        self.failureResultOf(d, RequestTimeout)

    def test_call_on_a_missing_channel_fails(self) -> None:
        orch, module = self.start(("tcp",))
        self.failureResultOf(module.call("echo", 1, via="ipc"), PyWattError)
        self.assertEqual(len(orch.calls), 0)

    def test_notify_runs_the_handler_without_reply(self) -> None:
        orch, module = self.start()
        module.notify("note", {"n": 1}, source="orders")
        self.assertEqual(module.state.notes, [{"n": 1}])
        self.assertFalse(
            [m for m in self.received(orch, "tcp") if isinstance(m, RoutedModuleReply)]
        )

    def test_shutdown_drains_then_refuses_calls(self) -> None:
        orch, module = self.start()
        d = module.call("slow", None)
        stopped = orch.shutdown()
        orch.reactor.advance(5)  # the running handler finishes within the drain
        self.assertEqual(self.successResultOf(d), "done")
        self.successResultOf(stopped)
        self.failureResultOf(module.call("echo", 1), PyWattError)
        self.assertEqual(orch.reactor.getDelayedCalls(), [])


class FakeChannelControlTests(SynchronousTestCase):
    """
    L{FakeOrchestrator.refuse_channel} and the iosim connections under the channels.
    """

    def test_refuse_keeps_the_live_connection(self) -> None:
        orch = FakeOrchestrator(channels=("tcp",))
        module = self.successResultOf(orch.start(root_app))
        first = orch.connection("tcp")
        orch.refuse_channel("tcp")
        self.assertIs(orch.connection("tcp"), first)
        first.drop()
        orch.reactor.advance(31)
        self.assertIsNone(orch.connection("tcp"))  # refused while refusing
        orch.restore_channel("tcp")
        orch.reactor.advance(31)
        self.assertIsNotNone(orch.connection("tcp"))
        self.assertEqual(self.successResultOf(module.request("GET", "/", via="tcp")).code, 200)

    def test_channels_are_iosim_connections(self) -> None:
        from twisted.test.iosim import FakeTransport, IOPump

        orch = FakeOrchestrator(channels=("tcp",))
        self.successResultOf(orch.start(root_app))
        (pump,) = orch.endpoints["tcp"].pumps
        self.assertIsInstance(pump, IOPump)
        self.assertIsInstance(orch.connection("tcp").transport, FakeTransport)

    def test_abort_is_a_lost_connection(self) -> None:
        from twisted.internet.error import ConnectionDone, ConnectionLost

        orch = FakeOrchestrator(channels=("tcp", "ipc"))
        self.successResultOf(orch.start(root_app))
        tcp, ipc = orch.connection("tcp"), orch.connection("ipc")
        tcp.abort()
        ipc.drop()
        self.assertTrue(tcp.close_reason.check(ConnectionLost))
        self.assertTrue(ipc.close_reason.check(ConnectionDone))


class FakeSettingsTests(SynchronousTestCase):
    def test_channel_server_uses_the_modules_frame_cap(self) -> None:
        """
        The fake's orchestrator side caps channel frames with the same
        C{max_frame_length} setting as the module it runs, not a default of its own.
        """
        from pywatt_twisted._runtime.config import RuntimeConfig

        fake = FakeOrchestrator(config=RuntimeConfig(max_frame_length=4096), channels=["tcp"])
        self.assertEqual(fake.channel_server.max_frame_length, 4096)
        self.assertEqual(FakeOrchestrator().channel_server.max_frame_length, 16 * 1024 * 1024)


class DirectHttpTests(SynchronousTestCase):
    """
    C{module.request(..., via="http")} speaks real HTTP/1.1 to the module's own site.
    """

    def setUp(self) -> None:
        self.orch = FakeOrchestrator(secrets={"TOKEN": "t-1"})
        self.module = self.successResultOf(self.orch.start(token_app))

    def test_get(self) -> None:
        response = self.successResultOf(self.module.request("GET", "/token", via="http"))
        self.assertEqual((response.code, response.text()), (200, "t-1"))
        # Only the real HTTP server adds these.
        self.assertIn("date", response.headers)
        self.assertIn("server", response.headers)

    def test_post_body_and_json(self) -> None:
        d = self.module.request("POST", "/echo", json_body={"a": [1, 2]}, via="http")
        response = self.successResultOf(d)
        self.assertEqual(response.json(), {"a": [1, 2]})
        self.assertEqual(response.headers["content-type"], "application/json")

    def test_http_limits_apply(self) -> None:
        """
        The request goes through the module's Site, so its header limit answers 431.
        """
        d = self.module.request("GET", "/token", headers={"x-big": "a" * 70000}, via="http")
        self.assertEqual(self.successResultOf(d).code, 431)

    def test_clock_drives_a_deferred_route(self) -> None:
        d = self.module.request("GET", "/later", via="http")
        self.assertNoResult(d)
        self.orch.reactor.advance(5)
        self.assertEqual(self.successResultOf(d).text(), "later")

    def test_health(self) -> None:
        response = self.successResultOf(self.module.request("GET", "/health", via="http"))
        self.assertEqual((response.code, response.json()["status"]), (200, "ok"))

    def test_no_listen_address(self) -> None:
        self.orch.listen_reactor.tcpServers.clear()
        with self.assertRaises(PyWattError) as raised:
            self.module.request("GET", "/token", via="http")
        self.assertIn("via='http'", str(raised.exception))


def asking_app(state):
    app = Klein()

    @app.route("/ask/<name>")
    async def ask(request, name):
        try:
            reply = await state.send_request("inventory", "get_stock", {"sku": name})
        except RemoteError as e:
            request.setResponseCode(502)
            return f"{e.kind}".encode()
        return f"{reply['left']}".encode()

    return app


class AnswerRoutedTests(SynchronousTestCase):
    """
    L{FakeOrchestrator.answer_routed} answers the module's own module-to-module requests.
    """

    def start(self, channels: tuple[str, ...]) -> None:
        self.orch = FakeOrchestrator(channels=channels)
        self.module = self.successResultOf(self.orch.start(asking_app))

    def test_value_on_the_channel_it_came_on(self) -> None:
        self.start(("tcp",))
        d = self.module.request("GET", "/ask/A1")
        [request] = self.orch.routed_requests
        self.assertEqual(
            (request.target_module_id, request.target_endpoint), ("inventory", "get_stock")
        )
        self.assertEqual(request.payload.json()["content"], {"sku": "A1"})
        self.orch.answer_routed({"left": 7})
        self.assertEqual(self.successResultOf(d).text(), "7")

    def test_error_reply(self) -> None:
        self.start(("tcp",))
        d = self.module.request("GET", "/ask/A1")
        self.orch.answer_routed(error=("target_exited", "inventory exited"))
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.text()), (502, "target_exited"))

    def test_answers_a_chosen_request_and_only_once(self) -> None:
        self.start(("ipc",))
        first = self.module.request("GET", "/ask/A1")
        second = self.module.request("GET", "/ask/B2")
        older, _newer = self.orch.routed_requests
        self.orch.answer_routed({"left": 1}, request=older)
        self.assertEqual(self.successResultOf(first).text(), "1")
        self.assertNoResult(second)
        with self.assertRaises(PyWattError):
            self.orch.answer_routed({"left": 1}, request=older)
        self.orch.answer_routed({"left": 2})
        self.assertEqual(self.successResultOf(second).text(), "2")
        with self.assertRaises(PyWattError):
            self.orch.answer_routed({"left": 3})
