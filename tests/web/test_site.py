"""
Tests for L{pywatt_twisted.web.site}: /health and /metrics in front of the user's
resource, per-request metrics, and an access log that never touches stdout.
Requests go over an in-memory HTTP connection (L{HTTPChannel} on a StringTransport).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import (
    PyWattSite,
    build_root_resource,
    route_label,
)
from tests.web._apps import Holds, build_app, build_site, direct_exchange, parse_response


def get(site: PyWattSite, path: str, method: str = "GET", body: bytes = b"") -> Any:
    raw = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    transport, _ = direct_exchange(site, raw)
    return parse_response(transport.value())


class Leaf(Resource):
    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    def render(self, request: Any) -> bytes:
        return self.text + b" prepath=" + b"/".join(request.prepath)


class HealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.status: dict[str, object] = {
            "status": "ok",
            "module_id": "m-1",
            "uptime_seconds": 12.5,
            "channels": {"tcp": "connected"},
        }
        self.site = build_site(build_app(Holds(), self.clock), self.clock, status=self.status)

    def test_status_mapping_as_json(self) -> None:
        code, headers, body = get(self.site, "/health")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], ["application/json"])
        self.assertEqual(json.loads(body), self.status)

    def test_codes(self) -> None:
        for status, code in [
            ("ok", 200),
            ("starting", 200),
            ("stopping", 503),
            ("degraded", 200),
            ("failing", 503),
            ("weird", 503),
        ]:
            self.status["status"] = status
            self.assertEqual(get(self.site, "/health")[0], code, status)
            self.assertEqual(json.loads(get(self.site, "/health")[2])["status"], status)

    def test_head(self) -> None:
        code, headers, body = get(self.site, "/health", "HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers["content-type"], ["application/json"])

    def test_other_methods_and_similar_paths_go_to_the_app(self) -> None:
        self.assertEqual(get(self.site, "/health", "POST")[2], b"user-post")
        self.assertEqual(get(self.site, "/health", "PUT")[0], 405)  # the Klein app's answer
        self.assertEqual(get(self.site, "/healthz")[0], 404)
        self.assertEqual(get(self.site, "/health/x")[0], 404)
        self.assertEqual(get(self.site, "/user-health")[2], b"user")

    def test_disabled(self) -> None:
        site = build_site(build_app(Holds(), self.clock), self.clock, health_path=None)
        self.assertEqual(get(site, "/health")[0], 405)  # the app only has POST /health

    def test_custom_path(self) -> None:
        site = build_site(build_app(Holds(), self.clock), self.clock, health_path="/user-health")
        code, _, body = get(site, "/user-health")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["status"], "ok")
        self.assertEqual(get(site, "/health")[0], 405)  # the app only has POST /health

    def test_bad_path(self) -> None:
        self.assertRaises(
            ConfigurationError,
            build_root_resource,
            Resource(),
            health_path="health",
            metrics=None,
            status=dict,
        )


class DelegationTests(SynchronousTestCase):
    def test_plain_resource_tree_untouched(self) -> None:
        root = Resource()
        child = Resource()
        root.putChild(b"a", child)
        child.putChild(b"b", Leaf(b"leaf"))
        root.putChild(b"", Leaf(b"index"))
        site = PyWattSite(
            build_root_resource(root, health_path="/health", metrics=None, status=dict),
            reactor=Clock(),
        )
        self.assertEqual(get(site, "/a/b")[2], b"leaf prepath=a/b")
        self.assertEqual(get(site, "/")[2], b"index prepath=")
        self.assertEqual(get(site, "/metrics")[0], 404)  # metrics off: the app's 404

    def test_leaf_app_sees_full_postpath(self) -> None:
        class Catch(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                return b"%r %r" % (request.prepath, request.postpath)

        site = PyWattSite(
            build_root_resource(Catch(), health_path="/health", metrics=None, status=dict),
            reactor=Clock(),
        )
        self.assertEqual(get(site, "/x/y?q=1")[2], b"[] [b'x', b'y']")

    def test_no_builtins_returns_the_app_itself(self) -> None:
        app = Resource()
        self.assertIs(build_root_resource(app, health_path=None, metrics=None, status=dict), app)


class SiteMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.holds = Holds()
        self.site = build_site(build_app(self.holds, self.clock), self.clock)
        self.registry = self.site.metrics.registry

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def test_metrics_text_after_requests(self) -> None:
        get(self.site, "/items/1")
        get(self.site, "/items/2")
        get(self.site, "/nowhere")
        get(self.site, "/echo", "POST", b"x")
        code, headers, body = get(self.site, "/metrics")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], ["text/plain; version=0.0.4; charset=utf-8"])
        text = body.decode()
        self.assertIn(
            'pywatt_http_requests_total{method="GET",route="/items/:item_id",status="200"} 2.0',
            text,
        )
        self.assertIn(
            'pywatt_http_requests_total{method="GET",route="unmatched",status="404"} 1.0', text
        )
        self.assertIn(
            'pywatt_http_requests_total{method="POST",route="/echo",status="200"} 1.0', text
        )
        self.assertIn(
            'pywatt_http_request_duration_seconds_count{route="/items/:item_id"} 2.0', text
        )
        self.assertIn("pywatt_http_requests_in_flight", text)

    def test_route_label_without_a_second_match(self) -> None:
        """
        The route of a request Klein served is noted when its endpoint runs, so the
        label costs no second URL match; an endpoint with two rules (two routes on one
        function) is matched again and labelled by the rule that matched.
        """
        from klein import Klein
        from werkzeug.routing import MapAdapter

        app = Klein()

        @app.route("/items/<int:item_id>")
        def item(request: Any, item_id: int) -> bytes:
            return b"item"

        @app.route("/files", branch=True)
        def files(request: Any) -> bytes:
            return b"files"

        @app.route("/a/<x>")
        @app.route("/b/<x>")
        def both(request: Any, x: str) -> bytes:
            return b"both"

        site = build_site(app, self.clock)
        matches: list[object] = []
        match = MapAdapter.match

        def counted(adapter: MapAdapter, *args: Any, **kwargs: Any) -> Any:
            matches.append(adapter.path_info)
            return match(adapter, *args, **kwargs)

        self.patch(MapAdapter, "match", counted)
        for path in ("/items/7", "/files/a/b"):
            self.assertEqual(get(site, path)[0], 200)
        self.assertEqual(len(matches), 2, "Klein's own match only")
        self.assertEqual(get(site, "/b/1")[0], 200)
        self.assertEqual(len(matches), 4, "two rules for the endpoint: matched again")
        registry = site.metrics.registry
        for route in ("/items/:item_id", "/files", "/b/:x"):
            labels = {"route": route, "method": "GET", "status": "200"}
            value = registry.get_sample_value("pywatt_http_requests_total", labels)
            self.assertEqual(value, 1.0, route)

    def test_latency_from_the_reactor_clock(self) -> None:
        transport, _ = direct_exchange(self.site, b"GET /held/k HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.sample("pywatt_http_requests_in_flight"), 1.0)
        self.clock.advance(0.3)
        self.holds.release("k")
        self.assertEqual(parse_response(transport.value())[0], 200)
        self.assertEqual(self.sample("pywatt_http_requests_in_flight"), 0.0)
        self.assertAlmostEqual(
            self.sample("pywatt_http_request_duration_seconds_sum", route="/held/:key"), 0.3
        )
        self.assertEqual(
            self.sample(
                "pywatt_http_request_duration_seconds_bucket", route="/held/:key", le="0.25"
            ),
            0.0,
        )

    def test_disconnect_counts_as_aborted(self) -> None:
        _, protocol = direct_exchange(self.site, b"GET /held/z HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.sample("pywatt_http_requests_in_flight"), 0.0)
        self.assertEqual(
            self.sample(
                "pywatt_http_requests_total", route="/held/:key", method="GET", status="aborted"
            ),
            1.0,
        )

    def test_unknown_methods_bounded(self) -> None:
        get(self.site, "/echo", "BREW")
        self.assertEqual(
            self.sample(
                "pywatt_http_requests_total", route="unmatched", method="other", status="405"
            ),
            1.0,
        )

    def test_builtin_labels(self) -> None:
        get(self.site, "/health")
        get(self.site, "/metrics")
        self.assertEqual(
            self.sample("pywatt_http_requests_total", route="/health", method="GET", status="200"),
            1.0,
        )

    def test_plain_resource_label(self) -> None:
        metrics = ModuleMetrics()
        root = Resource()
        root.putChild(b"a", Leaf(b"x"))
        site = PyWattSite(root, metrics, reactor=Clock())
        get(site, "/a")
        get(site, "/missing")
        self.assertEqual(
            metrics.registry.get_sample_value(
                "pywatt_http_requests_total", {"route": "other", "method": "GET", "status": "200"}
            ),
            1.0,
        )
        self.assertEqual(
            metrics.registry.get_sample_value(
                "pywatt_http_requests_total",
                {"route": "unmatched", "method": "GET", "status": "404"},
            ),
            1.0,
        )

    def test_route_label_prefers_explicit(self) -> None:
        class R:
            pywatt_route = "/custom"
            code = 200

        self.assertEqual(route_label(R()), "/custom")


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.holds = Holds()
        self.site = build_site(build_app(self.holds, self.clock), self.clock)

    def test_idle_drains_at_once(self) -> None:
        self.assertEqual(self.site.in_flight, 0)
        self.assertIsNone(self.successResultOf(self.site.drain()))

    def test_drain_waits_for_direct_and_bridged(self) -> None:
        from pywatt_twisted.web.bridge import HttpBridge
        from pywatt_twisted.wire.messages import HttpRequest

        transport, _ = direct_exchange(self.site, b"GET /held/a HTTP/1.1\r\nHost: x\r\n\r\n")
        bridged = HttpBridge(self.site, reactor=self.clock).handle(
            HttpRequest(request_id="b", method="GET", uri="/held/b", headers={}, body=None)
        )
        self.assertEqual(self.site.in_flight, 2)
        drained = self.site.drain()
        self.holds.release("a")
        self.assertEqual(parse_response(transport.value())[0], 200)
        self.assertNoResult(drained)
        self.holds.release("b")
        self.successResultOf(bridged)
        self.assertIsNone(self.successResultOf(drained))
        self.assertEqual(self.site.in_flight, 0)

    def test_lost_connection_counts_as_done(self) -> None:
        _, protocol = direct_exchange(self.site, b"GET /held/c HTTP/1.1\r\nHost: x\r\n\r\n")
        drained = self.site.drain()
        self.assertNoResult(drained)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(drained)

    def test_tracked_without_metrics(self) -> None:
        site = build_site(build_app(self.holds, self.clock), self.clock, metrics=False)
        direct_exchange(site, b"GET /held/d HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(site.in_flight, 1)
        self.holds.release("d")
        self.assertEqual(site.in_flight, 0)


class SiteBehaviourTests(SynchronousTestCase):
    def test_no_tracebacks(self) -> None:
        site = build_site(build_app(Holds(), Clock()), Clock())
        code, _, body = get(site, "/boom")
        self.assertEqual(code, 500)
        self.assertNotIn(b"Traceback", body)
        self.assertNotIn(b"secret-internal-detail", body)
        self.flushLoggedErrors(ValueError)

    def test_access_log_to_logger_without_query(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        site = build_site(build_app(Holds(), Clock()), Clock())
        get(site, "/items/3?token=s3cr3t")
        access = [e for e in events if e.get("log_namespace") == "pywatt_twisted.web"]
        self.assertEqual(len(access), 1)
        self.assertEqual(access[0]["path"], "/items/3")
        self.assertEqual(access[0]["code"], 200)
        self.assertNotIn("s3cr3t", repr(access[0]))

    def test_access_log_off(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        site = PyWattSite(Leaf(b"x"), reactor=Clock(), access_log=False)
        get(site, "/")
        self.assertEqual([e for e in events if e.get("log_namespace") == "pywatt_twisted.web"], [])

    def test_start_leaves_no_timer_or_log_file(self) -> None:
        clock = Clock()
        site = PyWattSite(Leaf(b"x"), reactor=clock)
        site.doStart()
        self.addCleanup(site.doStop)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNone(site._logFile)

    def test_without_metrics(self) -> None:
        site = PyWattSite(Leaf(b"plain"), reactor=Clock())
        self.assertEqual(get(site, "/")[2], b"plain prepath=")


class _Args(Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        return json.dumps({"args": args, "form_parsed": request._parsePOSTFormSubmission}).encode()


class FormParsingTests(SynchronousTestCase):
    """
    Only a POST whose Content-Type may be a form gets Twisted's form parsing (issue 20:
    the email-package parse of the type cost every JSON or binary POST); forms still
    land in request.args.
    """

    def post(self, ctype: str, body: bytes) -> dict[str, Any]:
        site = PyWattSite(_Args(), reactor=Clock(), access_log=False)
        raw = (
            f"POST /x?q=1 HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        transport, _ = direct_exchange(site, raw)
        status, _, body = parse_response(transport.value())
        self.assertEqual(status, 200, body)
        return json.loads(body)  # type: ignore[no-any-return]

    def test_forms_still_parsed(self) -> None:
        for ctype in (
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded; charset=utf-8",
        ):
            got = self.post(ctype, b"a=1&b=2")
            self.assertEqual(got["args"], {"q": ["1"], "a": ["1"], "b": ["2"]}, ctype)
            self.assertTrue(got["form_parsed"])
        body = b'--XX\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--XX--\r\n'
        got = self.post("Multipart/Form-Data; boundary=XX", body)
        self.assertEqual(got["args"], {"q": ["1"], "f": ["v"]})

    def test_other_types_skip_the_parse(self) -> None:
        for ctype in ("application/json", "application/octet-stream", "text/plain; a=b"):
            got = self.post(ctype, b"a=1&b=2")
            self.assertEqual(got["args"], {"q": ["1"]}, ctype)
            self.assertFalse(got["form_parsed"])
