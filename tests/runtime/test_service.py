"""
Tests for L{pywatt_twisted._runtime.service}: the stdio protocol and the bootstrap, driven
entirely in memory.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.service import READY, describe_address
from pywatt_twisted._runtime.status import ModuleStatus
from pywatt_twisted._transport.interfaces import IOrchestratorLink
from pywatt_twisted.errors import BootstrapError, SecretError
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse
from tests.runtime.helpers import Harness, init_line, line
from tests.runtime.modules import echo_app, failing_start, plain_resource

SECRETS = {"API_KEY": "k-1234567", "DB_PASSWORD": "pw-987654"}


def started(definition=echo_app, listen="127.0.0.1:0", env=None, config=None) -> Harness:
    h = Harness(definition, config=config)
    h.start()
    h.feed(init_line(listen=listen, env=env))
    return h


def http(request_id: str, method: str, uri: str, headers=None, body: bytes | None = None) -> bytes:
    return line(
        {
            "op": "http_request",
            "request_id": request_id,
            "method": method,
            "uri": uri,
            "headers": headers or {},
            "body": list(body) if body is not None else None,
        }
    )


class BootstrapTests(SynchronousTestCase):
    def ready(self) -> Harness:
        h = started()
        h.answer_secrets(SECRETS)
        self.assertEqual(h.service.status, READY)
        return h

    def test_secrets_requested_in_order_then_announce(self) -> None:
        h = started()
        self.assertEqual(
            h.new(),
            [{"op": "get_secret", "name": "API_KEY"}, {"op": "get_secret", "name": "DB_PASSWORD"}],
        )
        ready = h.service.whenReady()
        self.assertNoResult(ready)
        h.answer_secrets(SECRETS)
        self.assertIs(self.successResultOf(ready), h.service)
        (announce,) = h.new()
        self.assertEqual(announce["op"], "announce")
        # The address actually bound (the memory reactor's fake port reports its own).
        self.assertEqual(announce["listen"], describe_address(h.service.port.getHost()))
        self.assertEqual(list(announce), ["op", "listen", "endpoints"])
        paths = {e["path"]: e for e in announce["endpoints"]}
        self.assertEqual(paths["/items/:item_id"]["methods"], ["GET"])
        self.assertEqual(paths["/echo"]["methods"], ["GET", "POST", "PUT"])
        self.assertIn("/health", paths)
        self.assertIn("/metrics", paths)
        # The listen address is really bound (on the memory reactor).
        (tcp,) = h.reactor.tcpServers
        self.assertEqual((tcp[0], tcp[3]), (0, "127.0.0.1"))

    def test_secrets_answered_out_of_order_with_other_lines_between(self) -> None:
        h = started()
        h.new()
        h.feed(line({"op": "heartbeat"}))
        h.feed(line({"op": "secret", "name": "DB_PASSWORD", "value": "pw-987654"}))
        h.feed(b"this is not json\n")
        h.feed(line({"op": "no_such_op", "x": 1}))
        self.assertEqual(h.new(), [{"op": "heartbeat_ack"}])
        h.feed(line({"op": "secret", "name": "API_KEY", "value": "k-1234567"}))
        self.assertEqual(h.service.status, READY)
        self.assertEqual(h.service.state.secret("API_KEY").expose(), "k-1234567")
        self.assertEqual(h.new()[0]["op"], "announce")

    def test_init_and_next_lines_in_one_chunk(self) -> None:
        h = Harness(echo_app)
        h.start()
        h.feed(
            init_line()
            + line({"op": "secret", "name": "API_KEY", "value": "a-1"})
            + line({"op": "secret", "name": "DB_PASSWORD", "value": "b-2"})
            + http("r0", "GET", "/items/7")
        )
        lines = h.sent()
        self.assertEqual([x.get("op") for x in lines[:3]], ["get_secret", "get_secret", "announce"])
        self.assertEqual(lines[3]["content"]["request_id"], "r0")
        self.assertEqual(bytes(lines[3]["content"]["body"]), b'{"id": 7}')

    def test_byte_at_a_time(self) -> None:
        h = Harness(echo_app)
        h.start()
        data = init_line() + line({"op": "secret", "name": "API_KEY", "value": "a-1"})
        data += line({"op": "secret", "name": "DB_PASSWORD", "value": "b-2"})
        for i in range(len(data)):
            h.feed(data[i : i + 1])
        self.assertEqual(h.service.status, READY)

    def test_env_seeds_secrets(self) -> None:
        h = started(env={"API_KEY": "from-env"})
        self.assertEqual(h.new(), [{"op": "get_secret", "name": "DB_PASSWORD"}])
        h.answer_secrets({"DB_PASSWORD": "x-1"})
        self.assertEqual(h.service.state.secret("API_KEY").expose(), "from-env")

    def test_secret_timeout_names_missing(self) -> None:
        h = started(config=RuntimeConfig(secret_timeout=5))
        ready = h.service.whenReady()
        h.answer_secrets({"API_KEY": "k-1"})
        h.reactor.advance(5)
        failure = self.failureResultOf(ready, SecretError)
        self.assertIn("'DB_PASSWORD'", str(failure.value))
        self.assertNotIn("API_KEY'", str(failure.value))
        self.assertEqual(h.exits, [1])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_eof_during_handshake(self) -> None:
        h = Harness(echo_app)
        h.start()
        ready = h.service.whenReady()
        h.service.stdio.readConnectionLost()
        failure = self.failureResultOf(ready, BootstrapError)
        self.assertIn("stdin closed before the init line", str(failure.value))
        self.assertEqual(h.exits, [1])

    def test_eof_while_waiting_for_secrets_stops(self) -> None:
        h = started()
        h.service.stdio.readConnectionLost()
        self.assertEqual(h.exits, [0])

    def test_oversize_init_line(self) -> None:
        h = Harness(echo_app, config=RuntimeConfig(max_line_length=1000))
        h.start()
        ready = h.service.whenReady()
        h.feed(b"{" + b" " * 2000 + b"}\n")
        failure = self.failureResultOf(ready, BootstrapError)
        self.assertIn("too long", str(failure.value))
        self.assertEqual(h.exits, [1])

    def test_bad_json_init(self) -> None:
        h = Harness(echo_app)
        h.start()
        ready = h.service.whenReady()
        h.feed(b'{"module_id": \n')
        self.failureResultOf(ready, BootstrapError)
        self.assertEqual(h.exits, [1])
        self.assertEqual(h.sent(), [])

    def test_init_missing_field(self) -> None:
        h = Harness(echo_app)
        h.start()
        ready = h.service.whenReady()
        h.feed(line({"orchestrator_api": "x", "listen": "127.0.0.1:1"}))
        failure = self.failureResultOf(ready, BootstrapError)
        self.assertIn("module_id", str(failure.value))

    def test_unix_listen(self) -> None:
        path = self.mktemp() + ".sock"
        h = started(listen=path)
        h.answer_secrets(SECRETS)
        announce = next(x for x in h.sent() if x.get("op") == "announce")
        self.assertEqual(announce["listen"], path)
        self.assertEqual(h.reactor.unixServers[0][0], path)

    def test_plain_resource_with_health_and_metrics_off_announces_nothing(self) -> None:
        h = started(plain_resource)
        self.assertEqual(h.service.status, READY)
        (announce,) = h.sent()
        self.assertEqual(announce["endpoints"], [])

    def test_create_app_failure_is_fatal(self) -> None:
        from pywatt_twisted import pywatt_module

        @pywatt_module
        def broken(state):
            raise ValueError("no app today")

        h = started(broken)
        failure = self.failureResultOf(h.service.whenReady(), ValueError)
        self.assertEqual(str(failure.value), "no app today")
        self.assertEqual(h.exits, [1])
        self.flushLoggedErrors(ValueError)

    def test_create_app_wrong_type(self) -> None:
        from pywatt_twisted import pywatt_module

        @pywatt_module
        def wrong(state):
            return 42

        h = started(wrong)
        failure = self.failureResultOf(h.service.whenReady(), BootstrapError)
        self.assertIn("int", str(failure.value))

    def test_state_builder_and_deferred_app(self) -> None:
        from klein import Klein

        from pywatt_twisted import pywatt_module

        seen = {}
        gate: Deferred[Klein] = Deferred()

        def builder(init, secrets):
            seen["init"] = init.module_id
            seen["secrets"] = sorted(secrets)
            return {"built": True}

        @pywatt_module(secrets=["S"], state_builder=builder)
        def deferred_app(state):
            seen["user_state"] = state.user_state
            return gate

        h = started(deferred_app)
        h.answer_secrets({"S": "v"})
        self.assertEqual(seen, {"init": "demo", "secrets": ["S"], "user_state": {"built": True}})
        self.assertNotEqual(h.service.status, READY)
        gate.callback(Klein())
        self.assertEqual(h.service.status, READY)


class DispatchTests(SynchronousTestCase):
    def ready(self, **kw) -> Harness:
        h = started(**kw)
        h.answer_secrets(SECRETS)
        h.new()
        return h

    def test_heartbeat_ack_bare(self) -> None:
        h = self.ready()
        h.feed(line({"op": "heartbeat"}))
        self.assertEqual(h.transport.value().splitlines()[-1], b'{"op":"heartbeat_ack"}')

    def test_unknown_ops_share_one_metric_label(self) -> None:
        """
        A message with an op this version does not know is counted under the op label
        C{"unknown"}, not its own string: 1000 distinct unknown ops make one series.
        """
        h = self.ready()
        for i in range(1000):
            h.feed(line({"op": f"future_op_{i}", "n": i}))
        h.feed(line({"op": "heartbeat"}))
        self.flushLoggedErrors()
        received = [
            sample
            for family in h.service.metrics.registry.collect()
            if family.name == "pywatt_messages_received"
            for sample in family.samples
            if sample.name == "pywatt_messages_received_total"
        ]
        by_op = {sample.labels["op"]: sample.value for sample in received}
        self.assertEqual(by_op["unknown"], 1000.0)
        self.assertEqual(by_op["heartbeat"], 1.0)
        self.assertEqual([op for op in by_op if op.startswith("future_op")], [])

    def test_http_request_get_with_query(self) -> None:
        h = self.ready()
        h.feed(http("r1", "GET", "/echo?a=1&b=two", headers={"x-custom": "yes"}))
        (reply,) = h.new()
        self.assertEqual(sorted(reply), ["content", "metadata"])
        self.assertEqual(reply["metadata"]["properties"], {"correlation_id": "r1"})
        self.assertEqual(reply["metadata"]["source"], "demo")
        content = reply["content"]
        self.assertEqual(content["request_id"], "r1")
        self.assertEqual(content["status_code"], 200)
        self.assertEqual(content["headers"]["x-echo"], "1")
        echoed = json.loads(bytes(content["body"]))
        self.assertEqual(echoed["method"], "GET")
        self.assertEqual(echoed["args"], {"a": ["1"], "b": ["two"]})
        self.assertEqual(echoed["headers"]["x-custom"], "yes")

    def test_http_request_post_body(self) -> None:
        h = self.ready()
        h.feed(http("r2", "POST", "/echo", {"content-type": "application/json"}, b'{"sku":"A1"}'))
        (reply,) = h.new()
        echoed = json.loads(bytes(reply["content"]["body"]))
        self.assertEqual(echoed["body"], '{"sku":"A1"}')
        self.assertEqual(echoed["method"], "POST")

    def test_http_request_before_ready_is_served_after(self) -> None:
        h = started()
        h.new()
        h.feed(http("early", "GET", "/items/3"))
        self.assertEqual(h.new(), [])
        h.answer_secrets(SECRETS)
        lines = h.new()
        self.assertEqual(lines[0]["op"], "announce")
        self.assertEqual(lines[1]["content"]["request_id"], "early")

    def test_http_requests_held_before_ready_are_bounded(self) -> None:
        """
        Before the module is ready at most C{max_concurrent_requests} HTTP-over-IPC
        requests wait for it; more are answered 503 at once (one warning naming the
        option), and the held ones are served once it is up.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = started(config=RuntimeConfig(max_concurrent_requests=2))
        h.new()
        for i in range(5):
            h.feed(http(f"early{i}", "GET", "/items/3"))
        refused = h.new()
        self.assertEqual(
            [(r["content"]["request_id"], r["content"]["status_code"]) for r in refused],
            [("early2", 503), ("early3", 503), ("early4", 503)],
        )
        self.assertEqual(len(h.service.dispatcher.held), 2)
        warnings = [
            e for e in events if "wait for the module to start" in str(e.get("log_format", ""))
        ]
        self.assertEqual(len(warnings), 1)
        self.assertIn("--max-concurrent-requests", warnings[0]["log_format"])
        h.answer_secrets(SECRETS)
        lines = h.new()
        self.assertEqual(lines[0]["op"], "announce")
        self.assertEqual(
            [(r["content"]["request_id"], r["content"]["status_code"]) for r in lines[1:]],
            [("early0", 200), ("early1", 200)],
        )

    def test_deferred_route(self) -> None:
        h = self.ready()
        h.feed(http("s", "GET", "/slow?delay=2"))
        self.assertEqual(h.new(), [])
        h.reactor.advance(2)
        (reply,) = h.new()
        self.assertEqual(bytes(reply["content"]["body"]), b"slow done")

    def test_async_route(self) -> None:
        h = self.ready()
        h.feed(http("a", "GET", "/async"))
        h.reactor.advance(0)
        (reply,) = h.new()
        self.assertEqual(bytes(reply["content"]["body"]), b"async done")

    def test_malformed_request_gets_400_and_loop_goes_on(self) -> None:
        h = self.ready()
        h.feed(http("bad", "GET", "no-leading-slash"))
        h.feed(http("bad2", "G ET", "/echo"))
        h.feed(line({"op": "http_request", "request_id": "x"}))  # missing fields
        h.feed(http("ok", "GET", "/items/1"))
        replies = {r["content"]["request_id"]: r["content"]["status_code"] for r in h.new()}
        self.assertEqual(replies["bad"], 400)
        self.assertEqual(replies["bad2"], 400)
        self.assertEqual(replies["ok"], 200)

    def test_route_exception_gives_500(self) -> None:
        h = self.ready()
        h.feed(http("b", "GET", "/boom"))
        (reply,) = h.new()
        self.assertEqual(reply["content"]["status_code"], 500)
        self.flushLoggedErrors(RuntimeError)

    def test_concurrency_limit_gives_503(self) -> None:
        h = self.ready(config=RuntimeConfig(max_concurrent_requests=2))
        for i in range(3):
            h.feed(http(f"h{i}", "GET", "/hang"))
        (reply,) = h.new()
        self.assertEqual(
            (reply["content"]["request_id"], reply["content"]["status_code"]), ("h2", 503)
        )

    def test_shutdown_requests_stop(self) -> None:
        h = self.ready()
        h.feed(line({"op": "shutdown"}))
        self.assertEqual(h.exits, [0])

    def test_graceful_stop_waits_for_in_flight(self) -> None:
        h = self.ready(config=RuntimeConfig(shutdown_deadline=10))
        h.feed(http("s", "GET", "/slow?delay=3"))
        stopped = h.service.stopService()
        self.assertNoResult(stopped)
        h.reactor.advance(3)
        (reply,) = h.new()
        self.assertEqual(reply["content"]["status_code"], 200)
        h.service.stdio.connectionLost(None)
        self.successResultOf(stopped)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_graceful_stop_deadline(self) -> None:
        h = self.ready(config=RuntimeConfig(shutdown_deadline=4, request_timeout=100))
        h.feed(http("h", "GET", "/hang"))
        stopped = h.service.stopService()
        h.reactor.advance(4)
        h.reactor.advance(5)
        self.successResultOf(stopped)

    def test_rotation_refetches_calls_back_and_acks(self) -> None:
        h = self.ready()
        calls = []

        def on_rotation(names):
            calls.append((names, h.service.state.secret("API_KEY").expose()))

        h.service.state.on_rotation(on_rotation)
        h.feed(line({"op": "rotated", "keys": ["API_KEY", "UNUSED"], "rotation_id": "rot-1"}))
        self.assertEqual(h.new(), [{"op": "get_secret", "name": "API_KEY"}])
        # The old value stays visible until the new one is in.
        self.assertEqual(h.service.state.secret("API_KEY").expose(), "k-1234567")
        h.feed(
            line({"op": "secret", "name": "API_KEY", "value": "k-new-1", "rotation_id": "rot-1"})
        )
        self.assertEqual(calls, [(("API_KEY",), "k-new-1")])
        self.assertEqual(
            h.new(), [{"op": "rotation_ack", "rotation_id": "rot-1", "status": "success"}]
        )
        h.feed(http("k", "GET", "/key"))
        self.assertEqual(bytes(h.new()[0]["content"]["body"]), b"k-new-1")

    def test_rotation_callback_failure_acks_error(self) -> None:
        h = self.ready()

        def broken(names):
            raise RuntimeError("reload failed")

        h.service.state.on_rotation(broken)
        h.feed(line({"op": "rotated", "keys": ["API_KEY"], "rotation_id": "rot-2"}))
        h.feed(line({"op": "secret", "name": "API_KEY", "value": "k-2"}))
        ack = h.new()[-1]
        self.assertEqual(ack["status"], "error")
        self.assertIn("broken", ack["message"])
        self.flushLoggedErrors(RuntimeError)

    def test_rotation_timeout_acks_error_and_keeps_old_value(self) -> None:
        h = self.ready(config=RuntimeConfig(secret_timeout=3))
        h.feed(line({"op": "rotated", "keys": ["API_KEY"], "rotation_id": "rot-3"}))
        h.reactor.advance(3)
        ack = h.new()[-1]
        self.assertEqual((ack["op"], ack["status"]), ("rotation_ack", "error"))
        self.assertIn("API_KEY", ack["message"])
        self.assertEqual(h.service.state.secret("API_KEY").expose(), "k-1234567")

    def test_secrets_registered_for_redaction(self) -> None:
        h = self.ready()
        self.assertEqual(h.redactor.redact("x k-1234567 y"), "x [REDACTED] y")

    def test_health_status(self) -> None:
        h = self.ready()
        h.reactor.advance(12)
        status = h.service.health_status()
        self.assertEqual(status["status"], "ok")
        self.assertEqual(status["module_id"], "demo")
        self.assertEqual(status["uptime_seconds"], 12)
        h.feed(http("h", "GET", "/health"))
        (reply,) = h.new()
        self.assertEqual(reply["content"]["status_code"], 200)
        self.assertEqual(json.loads(bytes(reply["content"]["body"]))["module_id"], "demo")

    def test_metrics_count_requests(self) -> None:
        h = self.ready()
        h.feed(http("1", "GET", "/items/1"))
        h.feed(http("2", "GET", "/metrics"))
        text = bytes(h.new()[-1]["content"]["body"]).decode()
        self.assertIn("/items/:item_id", text)


@implementer(IOrchestratorLink)
class FakeChannelLink:
    """
    A channel link whose connection can be lost while a request is served.
    """

    name = "tcp"

    def __init__(self) -> None:
        self.lost = False
        self.responses: list[HttpResponse] = []

    def send(self, message: object) -> None:
        pass

    def send_heartbeat_ack(self) -> None:
        pass

    def send_http_response(self, response: HttpResponse) -> None:
        self.responses.append(response)


class HttpLimitsAndCutOffRepliesTests(SynchronousTestCase):
    def ready(self, **kw) -> Harness:
        h = started(**kw)
        h.answer_secrets(SECRETS)
        h.new()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        return h

    def warnings(self) -> list[dict]:
        return [e for e in self.events if e.get("log_level") == LogLevel.warn]

    def test_limits_reach_the_site_and_the_bridge(self) -> None:
        config = RuntimeConfig(
            max_body_size=10, max_header_size=2048, http_header_timeout=5, http_idle_timeout=7
        )
        h = self.ready(config=config)
        site, bridge = h.service.site, h.service.bridge
        assert site is not None and bridge is not None
        self.assertEqual(
            (site.max_body_size, site.max_header_size, site.header_timeout, site.timeOut),
            (10, 2048, 5, 7),
        )
        self.assertEqual(bridge.max_body_size, 10)
        h.feed(http("big", "POST", "/echo", body=b"x" * 11))
        (reply,) = h.new()
        self.assertEqual(
            (reply["content"]["request_id"], reply["content"]["status_code"]), ("big", 413)
        )

    def test_reply_for_a_lost_channel_is_logged_with_its_request_id(self) -> None:
        h = self.ready()
        link = FakeChannelLink()
        h.service.message_received(
            HttpRequest(request_id="cut-1", method="GET", uri="/slow?delay=2", headers={}),
            link,
        )
        link.lost = True
        h.reactor.advance(2)
        [warning] = self.warnings()
        self.assertEqual((warning["id"], warning["link"], warning["status"]), ("cut-1", "tcp", 200))
        # Still handed to the link: a channel offers it to the other channels.
        self.assertEqual([r.request_id for r in link.responses], ["cut-1"])

    def test_reply_on_a_live_channel_logs_nothing(self) -> None:
        h = self.ready()
        link = FakeChannelLink()
        h.service.message_received(
            HttpRequest(request_id="ok-1", method="GET", uri="/items/1", headers={}), link
        )
        self.assertEqual(self.warnings(), [])
        self.assertEqual([r.status_code for r in link.responses], [200])

    def test_reply_after_stdout_closed_is_logged_with_its_request_id(self) -> None:
        h = self.ready()
        h.feed(http("cut-2", "GET", "/slow?delay=2"))
        assert h.service.stdio is not None
        h.service.stdio.writeConnectionLost()
        h.reactor.advance(2)
        ids = [e.get("id") for e in self.warnings()]
        self.assertIn("cut-2", ids)


class DescribeAddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

        self.assertEqual(describe_address(IPv4Address("TCP", "127.0.0.1", 80)), "127.0.0.1:80")
        self.assertEqual(describe_address(IPv6Address("TCP", "::1", 80)), "[::1]:80")
        self.assertEqual(describe_address(UNIXAddress(b"/tmp/x.sock")), "/tmp/x.sock")


class RedactionAtTheEdgesTests(SynchronousTestCase):
    def test_invalid_line_is_not_logged_verbatim(self) -> None:
        from twisted.logger import globalLogPublisher

        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = started()
        h.feed(b'{"op":"secret","name":"X","value":"never-registered-9","rotation_id":5}\n')
        text = repr(events)
        self.assertNotIn("never-registered-9", text)
        self.assertTrue(any("invalid stdin line" in e.get("log_format", "") for e in events))

    def test_auth_token_is_redacted(self) -> None:
        h = Harness(echo_app)
        h.start()
        h.feed(line({**json.loads(init_line()), "auth_token": "tok-secret-77"}))
        self.assertEqual(h.redactor.redact("a tok-secret-77 b"), "a [REDACTED] b")


class StdoutBackpressureConfigTests(SynchronousTestCase):
    def test_stdio_gets_the_marks_and_clock_from_the_config(self) -> None:
        """
        The stdio protocol is built with the configured stdout marks and the service's
        reactor as its clock.
        """
        h = Harness(echo_app, RuntimeConfig(stdout_high_water=8000, stdout_low_water=1000))
        h.start()
        stdio = h.service.stdio
        assert stdio is not None
        self.assertEqual((stdio.high_water, stdio.low_water), (8000, 1000))
        self.assertIs(h.transport.producer, stdio)
        h.feed(init_line())
        h.feed(b"not json\n" * 10)

        def reports() -> list[object]:
            return [
                c
                for c in h.reactor.getDelayedCalls()
                if getattr(c.func, "__name__", "") == "_report_invalid_lines"
            ]

        self.assertEqual(len(reports()), 1)
        h.reactor.advance(1)
        self.assertEqual(reports(), [])

    def test_default_low_water(self) -> None:
        h = Harness(echo_app, RuntimeConfig(stdout_high_water=8000))
        h.start()
        assert h.service.stdio is not None
        self.assertEqual(h.service.stdio.low_water, 2000)


class StatusThroughLifeTests(SynchronousTestCase):
    """
    The module status (L{pywatt_twisted._runtime.status}) as the service moves it.
    """

    def stop(self, h: Harness) -> None:
        stopped = h.service.stopService()
        assert h.service.stdio is not None
        h.service.stdio.connectionLost(None)
        self.successResultOf(stopped)

    def test_clean_life(self) -> None:
        h = started()
        self.assertIs(h.service.status, ModuleStatus.STARTING)
        self.assertEqual(h.service.health_status()["status"], "starting")
        h.answer_secrets(SECRETS)
        self.assertIs(h.service.status, ModuleStatus.READY)
        self.assertEqual(h.service.health_status()["status"], "ok")
        self.stop(h)
        self.assertIs(h.service.status, ModuleStatus.STOPPED)
        self.assertEqual(h.service.health_status()["status"], "stopped")

    def test_failed_start_stays_failed_through_the_stop(self) -> None:
        h = started(definition=failing_start)
        self.assertIs(h.service.status, ModuleStatus.FAILED)
        self.assertEqual((h.exits, h.service.exit_code), ([1], 1))
        self.stop(h)
        self.assertIs(h.service.status, ModuleStatus.FAILED)

    def test_stop_before_ready_holds_no_request(self) -> None:
        """
        A stop that begins while the module starts refuses the HTTP-over-IPC requests
        that arrive then (503) instead of holding them for a ready that never comes.
        """
        h = started()
        stopped = h.service.stopService()
        # The stop cancelled the start-up's secret requests: STOPPING -> FAILED.
        self.assertIs(h.service.status, ModuleStatus.FAILED)
        h.feed(http("late", "GET", "/items/1"))
        self.assertEqual(h.service.dispatcher.held, [])
        replies = [m["content"] for m in h.new() if "content" in m]
        self.assertEqual([(r["request_id"], r["status_code"]) for r in replies], [("late", 503)])
        assert h.service.stdio is not None
        h.service.stdio.connectionLost(None)
        self.successResultOf(stopped)

    def test_requests_after_the_stop_are_refused(self) -> None:
        h = started()
        h.answer_secrets(SECRETS)
        self.stop(h)
        link = FakeChannelLink()
        h.service.message_received(
            HttpRequest(request_id="after", method="GET", uri="/items/1", headers={}), link
        )
        self.assertEqual(h.service.dispatcher.held, [])
        self.assertEqual([r.status_code for r in link.responses], [503])


class AccessLogSwitchTests(SynchronousTestCase):
    """
    The site's access-log event follows L{ModuleService.access_log} (the module process
    sets it from its log level: on only at debug).
    """

    def test_site_follows_the_service(self) -> None:
        for on in (True, False):
            h = Harness(echo_app)
            h.service.access_log = on
            h.start()
            h.feed(init_line())
            h.answer_secrets(SECRETS)
            self.assertEqual(h.service.status, READY)
            assert h.service.site is not None
            self.assertIs(h.service.site.access_log, on)

    def test_on_by_default(self) -> None:
        self.assertIs(Harness(echo_app).service.access_log, True)
