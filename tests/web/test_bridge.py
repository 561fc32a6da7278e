"""
Tests for L{pywatt_twisted.web.bridge}: HTTP-over-IPC requests run through the same
resource tree as direct HTTP, in memory, and always come back as an L{HttpResponse}.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.static import File

from pywatt_twisted.web.bridge import (
    DEFAULT_TIMEOUT,
    HttpBridge,
    IHttpRequestHandler,
    response_headers,
    send_http_reply,
    too_large_response,
)
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse
from tests.web._apps import Holds, build_app, build_site, direct_exchange, parse_response


def request(
    method: str = "GET",
    uri: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    request_id: str = "req-1",
) -> HttpRequest:
    return HttpRequest(
        request_id=request_id, method=method, uri=uri, headers=headers or {}, body=body
    )


class BridgeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.holds = Holds()
        self.app = build_app(self.holds, self.clock)
        self.site = build_site(self.app, self.clock)
        self.bridge = HttpBridge(self.site, reactor=self.clock)

    def answer(self, message: HttpRequest, transport: str = "stdio") -> HttpResponse:
        """
        Handle C{message} and return its response, which must be ready now.
        """
        response = self.successResultOf(self.bridge.handle(message, transport))
        self.assertIsInstance(response, HttpResponse)
        return response

    def error_of(self, response: HttpResponse) -> dict[str, str]:
        self.assertEqual(response.headers["content-type"], "application/json")
        assert response.body is not None
        self.assertEqual(response.headers["content-length"], str(len(response.body)))
        document = json.loads(response.body)
        self.assertEqual(set(document), {"error"})
        return document["error"]

    def ipc_count(self, transport: str, outcome: str) -> float:
        value = self.site.metrics.registry.get_sample_value(
            "pywatt_ipc_requests_total", {"transport": transport, "outcome": outcome}
        )
        return value or 0.0


class RoutingTests(BridgeTestCase):
    def test_provides_interface(self) -> None:
        self.assertTrue(IHttpRequestHandler.providedBy(self.bridge))

    def test_get_with_query(self) -> None:
        response = self.answer(request("GET", "/echo?a=1&a=2&b=%20x", request_id="r-7"))
        self.assertEqual(response.request_id, "r-7")
        self.assertEqual(response.status_code, 200)
        echoed = json.loads(response.body)
        self.assertEqual(echoed["method"], "GET")
        self.assertEqual(echoed["uri"], "/echo?a=1&a=2&b=%20x")
        self.assertEqual(echoed["path"], "/echo")
        self.assertEqual(echoed["args"], {"a": ["1", "2"], "b": [" x"]})
        self.assertEqual(echoed["prepath"], ["echo"])

    def test_post_body_and_headers_intact(self) -> None:
        body = bytes(range(256)) * 3
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Trace-Id": "abc-123",
            "Authorization": "Bearer t0ken",
            "Host": "module.local:9000",
            "Accept": "*/*",
            "X-Unicode": "caf\u00e9",
        }
        response = self.answer(request("POST", "/echo", headers, body))
        self.assertEqual(response.status_code, 200)
        echoed = json.loads(response.body)
        self.assertEqual(base64.b64decode(echoed["body"]), body)
        for name, value in headers.items():
            self.assertEqual(echoed["headers"][name.lower()], [value])
        self.assertEqual(echoed["headers"]["content-length"], [str(len(body))])
        self.assertEqual(echoed["client"], "127.0.0.1")

    def test_content_length_follows_the_body(self) -> None:
        """
        The body arrives whole: a stale content-length or a transfer-encoding from the
        original request cannot truncate or confuse it.
        """
        response = self.answer(
            request(
                "PUT",
                "/echo",
                {"content-length": "2", "transfer-encoding": "chunked"},
                b"0123456789",
            )
        )
        echoed = json.loads(response.body)
        self.assertEqual(base64.b64decode(echoed["body"]), b"0123456789")
        self.assertEqual(echoed["headers"]["content-length"], ["10"])
        self.assertNotIn("transfer-encoding", echoed["headers"])

    def test_no_body_means_no_content_length(self) -> None:
        echoed = json.loads(self.answer(request("GET", "/echo")).body)
        self.assertNotIn("content-length", echoed["headers"])
        self.assertEqual(echoed["body"], "")

    def test_form_post_parsed_into_args(self) -> None:
        response = self.answer(
            request(
                "POST",
                "/form",
                {"content-type": "application/x-www-form-urlencoded"},
                b"name=watt&n=1",
            )
        )
        self.assertEqual(json.loads(response.body), {"name": ["watt"], "n": ["1"]})

    def test_route_headers_and_status(self) -> None:
        response = self.answer(request("POST", "/created", body=b"{}"))
        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.headers["location"], "/items/7")
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.headers["content-length"], "8")
        self.assertEqual(response.body, b'{"id":7}')

    def test_converter_route(self) -> None:
        response = self.answer(request("GET", "/items/42"))
        self.assertEqual((response.status_code, response.body), (200, b"item 42"))
        self.assertEqual(response.headers["x-item"], "42")

    def test_not_found(self) -> None:
        response = self.answer(request("GET", "/nowhere"))
        self.assertEqual(response.status_code, 404)
        self.assertIn(b"Not Found", response.body)

    def test_method_not_allowed(self) -> None:
        response = self.answer(request("DELETE", "/items/1"))
        self.assertEqual(response.status_code, 405)
        self.assertIn("GET", response.headers["allow"])

    def test_exception_gives_the_sites_500(self) -> None:
        response = self.answer(request("GET", "/boom"))
        self.assertEqual(response.status_code, 500)
        self.assertIn(b"Processing Failed", response.body)
        self.assertNotIn(b"secret-internal-detail", response.body)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_head_has_headers_but_no_body(self) -> None:
        response = self.answer(request("HEAD", "/items/5"))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers["x-item"], "5")

    def test_health_and_metrics_through_the_bridge(self) -> None:
        health = self.answer(request("GET", "/health"))
        self.assertEqual(health.status_code, 200)
        self.assertEqual(json.loads(health.body), {"status": "ok", "module_id": "mod-1"})
        metrics = self.answer(request("GET", "/metrics"))
        self.assertEqual(
            metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8"
        )
        self.assertIn(
            b'pywatt_http_requests_total{method="GET",route="/health",status="200"} 1.0',
            metrics.body,
        )

    def test_static_file_pull_producer(self) -> None:
        """
        A resource that streams with a pull producer (L{File}) is pumped to the end.
        """
        content = os.urandom(200_000)
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "wb") as f:
            f.write(content)

        @self.app.route("/file", methods=["GET"])
        def file_route(request: Any) -> File:
            return File(path)

        response = self.answer(request("GET", "/file"))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.body, content)
        self.assertEqual(response.headers["content-length"], str(len(content)))

    def test_push_producer_left_to_push(self) -> None:
        """
        A streaming (push) producer writes on its own; the bridge never asks it for
        data, and collects what it writes until the request finishes.
        """
        calls: list[str] = []

        class Pusher:
            def resumeProducing(self) -> None:
                calls.append("resume")

            def pauseProducing(self) -> None:
                calls.append("pause")

            def stopProducing(self) -> None:
                calls.append("stop")

        @self.app.route("/push", methods=["GET"])
        def push(req: Any) -> Any:
            producer = Pusher()
            req.registerProducer(producer, True)
            req.write(b"a")
            done = self.holds.get("push")

            def end(_: object) -> bytes:
                req.write(b"b")
                req.unregisterProducer()
                return b"c"

            return done.addCallback(end)

        d = self.bridge.handle(request("GET", "/push"))
        self.clock.advance(0)
        self.holds.release("push")
        self.assertEqual(self.successResultOf(d).body, b"abc")
        self.assertEqual(calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AsynchronousRouteTests(BridgeTestCase):
    def test_deferred_route(self) -> None:
        d = self.bridge.handle(request("GET", "/held/a"))
        self.assertNoResult(d)
        self.assertEqual(self.bridge.in_flight, 1)
        self.holds.release("a", b"later")
        response = self.successResultOf(d)
        self.assertEqual((response.status_code, response.body), (200, b"later"))
        self.assertEqual(self.bridge.in_flight, 0)

    def test_async_def_route(self) -> None:
        d = self.bridge.handle(request("GET", "/async/k"))
        self.assertNoResult(d)
        self.holds.release("k", b"value")
        self.assertEqual(self.successResultOf(d).body, b"async:value")

    def test_klein_streaming_route(self) -> None:
        d = self.bridge.handle(request("GET", "/stream"))
        self.assertNoResult(d)
        self.holds.release("stream")
        response = self.successResultOf(d)
        self.assertEqual(response.body, b"part1,part2,end")
        self.assertNotIn("transfer-encoding", response.headers)
        self.assertEqual(response.headers["content-length"], str(len(response.body)))

    def test_not_done_yet_resource(self) -> None:
        d = self.bridge.handle(request("GET", "/streamer"))
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertNoResult(d)
        self.clock.advance(1)
        response = self.successResultOf(d)
        self.assertEqual(response.body, b"one,two,three")
        self.assertEqual(response.headers["content-type"], "text/plain")

    def test_twenty_concurrent(self) -> None:
        results = {
            n: self.bridge.handle(request("GET", f"/held/k{n}", request_id=f"id-{n}"))
            for n in range(20)
        }
        self.assertEqual(self.bridge.in_flight, 20)
        for d in results.values():
            self.assertNoResult(d)
        for n in reversed(range(20)):
            self.holds.release(f"k{n}", f"body-{n}".encode())
            response = self.successResultOf(results[n])
            self.assertEqual(response.request_id, f"id-{n}")
            self.assertEqual(response.body, f"body-{n}".encode())
        self.assertEqual(self.bridge.in_flight, 0)
        self.assertEqual(self.ipc_count("stdio", "completed"), 20)

    def test_timer_cancelled_when_done(self) -> None:
        """
        One timer serves every request's timeout (not one per request); it stays
        while a request waits and goes with the last one, as it does for a stopped
        bridge with nothing in flight.
        """
        held = [self.bridge.handle(request("GET", f"/held/t{n}")) for n in range(3)]
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for n, d in enumerate(held[:-1]):
            self.holds.release(f"t{n}")
            self.successResultOf(d)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.holds.release("t2")
        self.successResultOf(held[-1])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(DEFAULT_TIMEOUT)
        self.assertEqual(self.ipc_count("stdio", "timeout"), 0)
        d = self.bridge.handle(request("GET", "/held/u"))
        self.bridge.stop_accepting()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.holds.release("u")
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idle_bridge_holds_no_timer(self) -> None:
        """
        A bridge whose requests all finished leaves no delayed call behind (a trial
        test that uses one on the real reactor needs no clean-up for it).
        """
        for _ in range(3):
            self.successResultOf(self.bridge.handle(request("GET", "/")))
            self.assertEqual(self.clock.getDelayedCalls(), [])
        self.bridge.stop_accepting()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LimitTests(BridgeTestCase):
    def test_over_the_limit_is_503_at_once(self) -> None:
        bridge = HttpBridge(self.site, reactor=self.clock, max_concurrent=2)
        first = bridge.handle(request("GET", "/held/1"))
        second = bridge.handle(request("GET", "/held/2"))
        third = self.successResultOf(bridge.handle(request("GET", "/held/3", request_id="x3")))
        self.assertEqual(third.status_code, 503)
        self.assertEqual(third.request_id, "x3")
        error = self.error_of(third)
        self.assertEqual(error["kind"], "overloaded")
        self.assertIn("limit 2", error["message"])
        self.assertNotIn("3", self.holds.waiting)  # the route never ran
        self.holds.release("1")
        self.successResultOf(first)
        fourth = bridge.handle(request("GET", "/held/4"))
        self.assertNoResult(fourth)
        self.holds.release("2")
        self.holds.release("4")
        self.successResultOf(second)
        self.successResultOf(fourth)
        self.assertEqual(self.ipc_count("stdio", "overloaded"), 1)

    def test_timeout_is_504_and_aborts_the_route(self) -> None:
        d = self.bridge.handle(request("GET", "/held/slow", request_id="slow-1"), "tcp")
        self.clock.advance(DEFAULT_TIMEOUT - 0.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        response = self.successResultOf(d)
        self.assertEqual(response.status_code, 504)
        self.assertEqual(response.request_id, "slow-1")
        self.assertEqual(self.error_of(response)["kind"], "timeout")
        self.assertEqual(self.bridge.in_flight, 0)
        # The route saw its connection go: notifyFinish failed, Klein cancelled it.
        self.assertIn("finish:slow", self.holds.cancelled)
        self.assertIn("slow", self.holds.cancelled)
        self.assertEqual(self.ipc_count("tcp", "timeout"), 1)
        aborted = self.site.metrics.registry.get_sample_value(
            "pywatt_http_requests_total",
            {"route": "/held/:key", "method": "GET", "status": "aborted"},
        )
        self.assertEqual(aborted, 1.0)

    def test_each_request_times_out_at_its_own_deadline(self) -> None:
        """
        Requests started at different times time out exactly C{timeout} seconds after
        each started, whether the ones before them finished or not.
        """
        first = self.bridge.handle(request("GET", "/held/a", request_id="a"))
        self.clock.advance(10)
        second = self.bridge.handle(request("GET", "/held/b", request_id="b"))
        self.clock.advance(5)
        third = self.bridge.handle(request("GET", "/held/c", request_id="c"))
        self.holds.release("b")
        self.assertEqual(self.successResultOf(second).status_code, 200)
        self.clock.advance(DEFAULT_TIMEOUT - 15 - 0.5)
        self.assertNoResult(first)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(first).status_code, 504)
        self.clock.advance(15 - 0.5)
        self.assertNoResult(third)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(third).status_code, 504)
        self.assertEqual(self.ipc_count("stdio", "timeout"), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeouts_in_one_advance_keep_their_order(self) -> None:
        answered: list[str] = []
        for name in ("a", "b", "c"):
            d = self.bridge.handle(request("GET", f"/held/{name}", request_id=name))
            d.addCallback(lambda r: answered.append(r.request_id))
            self.clock.advance(1)
        self.clock.advance(DEFAULT_TIMEOUT)
        self.assertEqual(answered, ["a", "b", "c"])

    def test_lowered_timeout_is_still_exact(self) -> None:
        """
        A deadline earlier than one already waiting (the timeout was lowered) is kept
        exactly too.
        """
        slow = self.bridge.handle(request("GET", "/held/s", request_id="s"))
        self.bridge.timeout = 2
        quick = self.bridge.handle(request("GET", "/held/q", request_id="q"))
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(quick).status_code, 504)
        self.assertNoResult(slow)
        self.clock.advance(DEFAULT_TIMEOUT - 2)
        self.assertEqual(self.successResultOf(slow).status_code, 504)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_finished_requests_behind_a_slow_one_are_dropped(self) -> None:
        """
        Requests that finished while an older one is still running do not pile up
        in the deadline queue.
        """
        bridge = HttpBridge(self.site, reactor=self.clock, max_concurrent=1000)
        slow = bridge.handle(request("GET", "/held/slow"))
        for _ in range(500):
            self.successResultOf(bridge.handle(request("GET", "/")))
        self.assertLessEqual(len(bridge._deadlines._queue), 65)
        self.clock.advance(DEFAULT_TIMEOUT)
        self.assertEqual(self.successResultOf(slow).status_code, 504)
        self.assertEqual(len(bridge._deadlines._queue), 0)

    def test_custom_timeout_and_none(self) -> None:
        quick = HttpBridge(self.site, reactor=self.clock, timeout=2)
        d = quick.handle(request("GET", "/held/q"))
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(d).status_code, 504)
        patient = HttpBridge(self.site, reactor=self.clock, timeout=None)
        d = patient.handle(request("GET", "/held/p"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10_000)
        self.assertNoResult(d)
        self.holds.release("p")
        self.assertEqual(self.successResultOf(d).status_code, 200)

    def test_synchronous_route_sets_no_timer(self) -> None:
        """
        A route that answers while the bridge runs it never needs its deadline: no
        C{callLater} (and no cancel) is paid for it.
        """
        scheduled: list[float] = []
        call_later = self.clock.callLater

        def counting(delay: float, *args: Any, **kwargs: Any) -> Any:
            scheduled.append(delay)
            return call_later(delay, *args, **kwargs)

        self.clock.callLater = counting  # type: ignore[method-assign]
        for n in range(3):
            self.assertEqual(self.answer(request("GET", f"/items/{n}")).status_code, 200)
        self.assertEqual(scheduled, [])
        held = self.bridge.handle(request("GET", "/held/h"))
        self.assertEqual(scheduled, [DEFAULT_TIMEOUT])
        self.holds.release("h")
        self.assertEqual(self.successResultOf(held).status_code, 200)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deadline_counts_from_before_the_route_ran(self) -> None:
        """
        Time the route spends before it returns unfinished counts against its timeout:
        the timer is set late, for the deadline it would have had.
        """
        app = Klein()
        waiting: Deferred[bytes] = Deferred()

        @app.route("/slow-start")
        def slow_start(request: Any) -> Deferred[bytes]:
            self.clock.rightNow += 10  # ten seconds of work before it returns
            return waiting

        bridge = HttpBridge(build_site(app, self.clock), reactor=self.clock)
        d = bridge.handle(request("GET", "/slow-start"))
        self.clock.advance(DEFAULT_TIMEOUT - 10 - 0.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(d).status_code, 504)

    def test_deadline_already_past_when_the_route_returns(self) -> None:
        app = Klein()

        @app.route("/stuck")
        def stuck(request: Any) -> Deferred[bytes]:
            self.clock.rightNow += DEFAULT_TIMEOUT + 5
            return Deferred()

        bridge = HttpBridge(build_site(app, self.clock), reactor=self.clock)
        d = bridge.handle(request("GET", "/stuck"))
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).status_code, 504)

    def test_late_finish_after_timeout_is_harmless(self) -> None:
        d = self.bridge.handle(request("GET", "/stream"))
        self.clock.advance(DEFAULT_TIMEOUT)
        self.assertEqual(self.successResultOf(d).status_code, 504)
        # The Klein Deferred was cancelled; nothing else reaches the bridge.
        self.assertIn("stream", self.holds.cancelled)

    def test_max_concurrent_must_be_positive(self) -> None:
        self.assertRaises(ValueError, HttpBridge, self.site, reactor=self.clock, max_concurrent=0)

    def test_body_above_max_body_size_is_413_and_never_reaches_the_route(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        bridge = HttpBridge(self.site, reactor=self.clock, max_body_size=10)
        response = self.successResultOf(
            bridge.handle(request("GET", "/held/big", body=b"x" * 11, request_id="big-1"), "tcp")
        )
        self.assertEqual((response.request_id, response.status_code), ("big-1", 413))
        error = self.error_of(response)
        self.assertEqual(error["kind"], "body_too_large")
        self.assertIn("11 bytes; the limit is 10 bytes", error["message"])
        self.assertNotIn("big", self.holds.waiting)
        self.assertEqual(bridge.in_flight, 0)
        self.assertEqual(self.ipc_count("tcp", "too_large"), 1)
        [warning] = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(warning["request_id"], "big-1")
        self.assertIn("PYWATT_MAX_BODY_SIZE", warning["log_format"])

    def test_body_at_max_body_size_is_served(self) -> None:
        bridge = HttpBridge(self.site, reactor=self.clock, max_body_size=10)
        response = self.successResultOf(bridge.handle(request("POST", "/echo", body=b"x" * 10)))
        self.assertEqual(response.status_code, 200)
        assert response.body is not None
        self.assertEqual(base64.b64decode(json.loads(response.body)["body"]), b"x" * 10)

    def test_default_max_body_size_is_16_mib(self) -> None:
        self.assertEqual(self.bridge.max_body_size, 16 * 1024 * 1024)
        self.assertRaises(ValueError, HttpBridge, self.site, reactor=self.clock, max_body_size=0)

    def test_drain(self) -> None:
        self.successResultOf(self.bridge.drain())
        a = self.bridge.handle(request("GET", "/held/a"))
        b = self.bridge.handle(request("GET", "/held/b"))
        drained = self.bridge.drain()
        self.assertNoResult(drained)
        self.holds.release("a")
        self.successResultOf(a)
        self.assertNoResult(drained)
        self.holds.release("b")
        self.successResultOf(b)
        self.assertIsNone(self.successResultOf(drained))

    def test_stop_accepting(self) -> None:
        held = self.bridge.handle(request("GET", "/held/s"))
        self.bridge.stop_accepting()
        refused = self.successResultOf(self.bridge.handle(request("GET", "/items/1")))
        self.assertEqual(refused.status_code, 503)
        self.assertEqual(self.error_of(refused)["kind"], "stopping")
        self.holds.release("s")
        self.assertEqual(self.successResultOf(held).status_code, 200)

    def test_cancel_aborts_the_route(self) -> None:
        d = self.bridge.handle(request("GET", "/held/c"))
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.bridge.in_flight, 0)
        self.assertIn("c", self.holds.cancelled)

    def test_route_drops_the_connection(self) -> None:
        response = self.answer(request("GET", "/drop"))
        self.assertEqual(response.status_code, 502)
        self.assertEqual(self.error_of(response)["kind"], "connection_lost")
        self.assertEqual(self.bridge.in_flight, 0)


class MalformedRequestTests(BridgeTestCase):
    def assertBadRequest(self, message: HttpRequest, fragment: str) -> None:
        response = self.answer(message)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.request_id, message.request_id)
        error = self.error_of(response)
        self.assertEqual(error["kind"], "bad_request")
        self.assertIn(fragment, error["message"])

    def test_bad_method_token(self) -> None:
        self.assertBadRequest(request("GE T", "/echo"), "method")
        self.assertBadRequest(request("", "/echo"), "method")
        self.assertBadRequest(request("G\u00c9T", "/echo"), "method")

    def test_uri_must_start_with_slash(self) -> None:
        self.assertBadRequest(request("GET", "echo"), "starts with '/'")
        self.assertBadRequest(request("GET", "http://evil/echo"), "starts with '/'")
        self.assertBadRequest(request("GET", ""), "starts with '/'")

    def test_uri_with_space_control_or_non_ascii(self) -> None:
        self.assertBadRequest(request("GET", "/a b"), "visible ASCII")
        self.assertBadRequest(request("GET", "/a\r\nX: y"), "visible ASCII")
        self.assertBadRequest(request("GET", "/caf\u00e9"), "visible ASCII")

    def test_header_with_crlf(self) -> None:
        self.assertBadRequest(request(headers={"X-A": "1\r\nX-B: 2"}), "CR, LF")
        self.assertBadRequest(request(headers={"X-A": "nul\x00"}), "CR, LF")

    def test_bad_header_name(self) -> None:
        self.assertBadRequest(request(headers={"X A": "1"}), "header names")
        self.assertBadRequest(request(headers={"X-A\r\n": "1"}), "header names")

    def test_body_of_wrong_type(self) -> None:
        message = request("POST", "/echo")
        object.__setattr__(message, "body", "text, not bytes")
        self.assertBadRequest(message, "body")

    def test_malformed_multipart_body(self) -> None:
        """
        Where direct HTTP answers a bare 400 and drops the connection, the bridge
        answers 400 with a JSON reason.
        """
        self.assertBadRequest(
            request(
                "POST",
                "/form",
                {"content-type": "multipart/form-data; boundary=xyz"},
                b"garbage",
            ),
            "could not be parsed",
        )
        self.assertEqual(self.bridge.in_flight, 0)
        # answered before its route ran: no route timer is left behind
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_valid_multipart_body(self) -> None:
        body = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xyz--\r\n'
        response = self.answer(
            request("POST", "/form", {"content-type": "multipart/form-data; boundary=xyz"}, body)
        )
        self.assertEqual(json.loads(response.body), {"a": ["1"]})

    def test_loop_survives_malformed_requests(self) -> None:
        for _ in range(3):
            self.assertEqual(self.answer(request("BAD METHOD", "/")).status_code, 400)
        self.assertEqual(self.answer(request("GET", "/items/1")).status_code, 200)
        self.assertEqual(self.ipc_count("stdio", "bad_request"), 3)

    def test_internal_failure_is_a_500_not_an_exception(self) -> None:
        def broken(channel: Any) -> Any:
            raise RuntimeError("factory broke")

        self.site.requestFactory = broken
        response = self.answer(request("GET", "/items/1"))
        self.assertEqual(response.status_code, 500)
        self.assertEqual(self.error_of(response)["kind"], "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.bridge.in_flight, 0)


class NeverFailsTests(BridgeTestCase):
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(
        method=st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT"]), st.text(max_size=8)),
        uri=st.one_of(
            st.text(max_size=30).map(lambda t: "/" + t),
            st.text(max_size=30),
            st.sampled_from(["/echo?a=1", "/items/1", "/health", "/metrics", "/%zz", "/?&=&"]),
        ),
        headers=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
        body=st.one_of(st.none(), st.binary(max_size=64)),
    )
    def test_any_message_gets_an_answer(
        self, method: str, uri: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        """
        Whatever the message holds, handle() does not raise and answers with the
        request id and a status code; 400s carry a JSON error.
        """
        d = self.bridge.handle(request(method, uri, headers, body, request_id="any"))
        results: list[HttpResponse] = []
        d.addCallback(results.append)
        if not results:  # a held route (e.g. /held/x): let it go
            d.cancel()
            self.failureResultOf(d)
            return
        (response,) = results
        self.assertEqual(response.request_id, "any")
        self.assertTrue(100 <= response.status_code <= 599)
        if response.status_code == 400 and response.headers.get("server") is None:
            self.assertEqual(self.error_of(response)["kind"], "bad_request")
        self.flushLoggedErrors()


class HeaderTests(BridgeTestCase):
    def test_repeated_headers_joined_and_lower_case(self) -> None:
        response = self.answer(request("GET", "/multi"))
        self.assertEqual(response.headers["x-multi"], "a, b")
        self.assertNotIn("connection", response.headers)
        for name in response.headers:
            self.assertEqual(name, name.lower())

    def test_single_set_cookie_kept(self) -> None:
        response = self.answer(request("GET", "/cookie"))
        self.assertEqual(response.headers["set-cookie"], "only=1; Path=/; HttpOnly")

    def test_several_set_cookies_keep_the_last(self) -> None:
        events: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        response = self.answer(request("GET", "/cookies"))
        self.assertEqual(response.headers["set-cookie"], "second=2; Path=/")
        warnings = [e for e in events if "Set-Cookie" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["dropped"], ["first"])

    def test_response_headers_function(self) -> None:
        headers = Headers()
        headers.addRawHeader(b"X-Thing", b"1")
        headers.addRawHeader(b"x-thing", b"2")
        headers.addRawHeader(b"Transfer-Encoding", b"chunked")
        headers.addRawHeader(b"Keep-Alive", b"timeout=5")
        headers.addRawHeader(b"X-Latin", b"caf\xe9")
        self.assertEqual(response_headers(headers), {"x-thing": "1, 2", "x-latin": "caf\u00e9"})
        # the second time the names come from the memo of wire names: the same answer
        self.assertEqual(response_headers(headers), {"x-thing": "1, 2", "x-latin": "caf\u00e9"})

    def test_copy_headers_function(self) -> None:
        """
        Request headers are copied under Twisted's canonical names, without the
        message's Content-Length (returned) and Transfer-Encoding, and a value with a
        line break is sanitised by Twisted, every time (the names are memoised).
        """
        from pywatt_twisted.web._bridge_request import copy_headers

        for _ in range(2):
            target: Any = type("R", (), {})()
            target.requestHeaders = Headers()
            length = copy_headers(
                target,
                {
                    "x-trace": "t",
                    "Content-Length": "3",
                    "transfer-encoding": "chunked",
                    "X-Trace": "u",
                    "x-folded": "a\r\n b",
                },
            )
            self.assertEqual(length, "3")
            self.assertEqual(
                sorted(target.requestHeaders.getAllRawHeaders()),
                [(b"X-Folded", [b"a  b"]), (b"X-Trace", [b"t", b"u"])],
            )


class DirectEquivalenceInMemoryTests(BridgeTestCase):
    """
    The bridge's answer equals what the same site writes on an HTTP connection
    (in memory here; tests.web.test_bridge_http does it over a real socket).
    """

    ROUTES = [
        (b"GET", "/items/3", b""),
        (b"GET", "/nowhere", b""),
        (b"POST", "/created", b"{}"),
        (b"GET", "/multi", b""),
        (b"GET", "/health", b""),
        (b"DELETE", "/items/3", b""),
    ]

    def test_same_answer(self) -> None:
        for method, uri, body in self.ROUTES:
            raw = (
                method
                + b" "
                + uri.encode()
                + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            transport, _ = direct_exchange(self.site, raw)
            status, headers, direct_body = parse_response(transport.value())
            bridged = self.answer(
                request(method.decode(), uri, {"Host": "x"}, body or None, request_id="eq")
            )
            self.assertEqual(bridged.status_code, status, uri)
            self.assertEqual(bridged.body, direct_body, uri)
            for name in ("content-type", "location", "x-item", "allow", "x-multi"):
                if name in headers:
                    self.assertEqual(bridged.headers[name], ", ".join(headers[name]), uri)


class SendHttpReplyTests(SynchronousTestCase):
    """
    L{send_http_reply}: an HTTP-over-IPC reply too large for the frame of the channel it
    goes back on becomes a 502 the orchestrator can correlate.
    """

    def connect(self, max_frame_length: int) -> tuple[Any, Any]:
        from twisted.internet.testing import StringTransportWithDisconnection

        from pywatt_twisted._transport.channel import ChannelFactory, ChannelSettings
        from tests.transport.fakes import RecordingListener

        settings = ChannelSettings("tcp", "a", "demo", max_frame_length=max_frame_length)
        protocol = ChannelFactory(settings, RecordingListener(), Clock()).buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        transport.clear()
        return protocol, transport

    def replies(self, transport: Any) -> list[dict[str, Any]]:
        from tests.transport.fakes import frames_of

        return [f["content"] for f in frames_of(transport.value())]

    def test_fitting_response_is_sent_as_is(self) -> None:
        protocol, transport = self.connect(800)
        send_http_reply(protocol, HttpResponse("req-1", 200, {}, b"ok"))
        [reply] = self.replies(transport)
        self.assertEqual((reply["request_id"], reply["status_code"]), ("req-1", 200))

    def test_oversize_response_becomes_502(self) -> None:
        """
        An HTTP response too large for a frame is answered with a 502 naming the length
        and the cap, never silently dropped; the substitution is logged.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        protocol, transport = self.connect(800)
        send_http_reply(protocol, HttpResponse("req-9", 200, {}, b"y" * 1000))
        [reply] = self.replies(transport)
        self.assertEqual(reply["request_id"], "req-9")
        self.assertEqual(reply["status_code"], 502)
        self.assertEqual(reply["headers"]["content-type"], "application/json")
        body = json.loads(bytes(reply["body"]))
        self.assertEqual(body["error"]["kind"], "response_too_large")
        self.assertEqual(body["error"]["limit"], 800)
        self.assertIn("800-byte", body["error"]["message"])
        [logged] = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertIn("answering 502 response_too_large instead", logged["log_format"])
        self.assertEqual(logged["id"], "req-9")

    def test_502_too_large_is_logged(self) -> None:
        """
        When even the 502 does not fit, nothing is written and both failures are logged.
        """
        protocol, transport = self.connect(60)  # (identify does not fit either)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        send_http_reply(protocol, HttpResponse("req-9", 200, {}, b"y" * 1000))
        self.assertEqual(transport.value(), b"")
        errors = [e["log_format"] for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 2)
        self.assertIn("even a 502", errors[1])

    def test_too_large_response(self) -> None:
        from pywatt_twisted.errors import MessageTooLarge

        response = too_large_response("r", MessageTooLarge("http_response", 900, 800))
        self.assertEqual(response.status_code, 502)
        self.assertEqual(
            response.body,
            b'{"error":{"kind":"response_too_large","message":"the response does not fit '
            b'in one 800-byte message","limit":800}}',
        )
        self.assertEqual(response.headers["content-length"], str(len(response.body or b"")))
