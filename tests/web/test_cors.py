"""
Tests for CORS (L{pywatt_twisted.web._cors}) against the Fetch standard's CORS protocol:
the policy's configuration errors, then preflights and actual requests, each one made
three ways with the same result: direct HTTP on the module's site, HTTP-over-IPC on
stdin, and HTTP-over-IPC on a framed channel.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import CorsPolicy, cors, pywatt_module
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.web import _cors
from pywatt_twisted.web.site import ROUTE_ATTRIBUTE
from tests.web._apps import direct_exchange, parse_response

APP = "https://app.example"
OTHER = "https://evil.example"
VIAS = ("direct", "stdio", "tcp")


class PolicyTests(SynchronousTestCase):
    """
    What a L{CorsPolicy} accepts; mistakes fail where the module is defined.
    """

    def test_wildcard_with_credentials_is_refused(self) -> None:
        for what in ("origins", "expose_headers"):
            kwargs: dict[str, Any] = {"origins": [APP], what: ["*"], "credentials": True}
            with self.assertRaises(ConfigurationError) as caught:
                CorsPolicy(**kwargs)
            self.assertIn(f"{what}=['*'] with credentials=True", str(caught.exception))
        # Answered with the names asked for, never a literal "*": allowed.
        CorsPolicy(origins=[APP], methods=["*"], headers=["*"], credentials=True)

    def test_refused_at_decoration(self) -> None:
        with self.assertRaises(ConfigurationError):

            @pywatt_module(cors=CorsPolicy(origins=["*"], credentials=True))
            def create_app(state: Any) -> Any:
                return Klein()

    def test_not_a_policy(self) -> None:
        with self.assertRaises(ConfigurationError) as caught:
            pywatt_module(cors={"origins": ["*"]})  # type: ignore[arg-type]
        self.assertIn("cors must be a CorsPolicy", str(caught.exception))
        with self.assertRaises(ConfigurationError):
            cors("*")  # type: ignore[arg-type]

    def test_origins_must_be_origins(self) -> None:
        for bad in ("https://a.example/", "https://a.example/x", "a.example", "https://"):
            with self.assertRaises(ConfigurationError, msg=bad):
                CorsPolicy(origins=[bad])
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins="https://a.example")
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins=[])
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins=["*", APP])

    def test_origins_kept_lower_case(self) -> None:
        policy = CorsPolicy(origins=["HTTPS://App.Example:8443", "http://[::1]:3000"])
        self.assertEqual(policy.origins, ("https://app.example:8443", "http://[::1]:3000"))
        self.assertTrue(policy.allows_origin("https://APP.example:8443"))
        self.assertFalse(policy.allows_origin("https://app.example"))

    def test_other_fields(self) -> None:
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins=[APP], max_age=-1)
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins=[APP], methods=["GET POST"])
        with self.assertRaises(ConfigurationError):
            CorsPolicy(origins=[APP], credentials="yes")  # type: ignore[arg-type]
        self.assertEqual(CorsPolicy(origins=[APP], methods=["get"]).methods, ("GET",))

    def test_route_attribute_matches_the_site(self) -> None:
        self.assertEqual(_cors._ROUTE_ATTRIBUTE, ROUTE_ATTRIBUTE)


def build_module(policy: CorsPolicy | None, calls: list[str]) -> Any:
    @pywatt_module(cors=policy)
    def create_app(state: Any) -> Any:
        app = Klein()

        @app.route("/items/<int:item_id>", methods=["GET", "PUT", "DELETE"])
        def item(request: Any, item_id: int) -> Any:
            calls.append(request.method.decode())
            request.setHeader(b"x-total", b"1")
            return {"id": item_id}

        @app.route("/varies", methods=["GET"])
        def varies(request: Any) -> bytes:
            request.setHeader(b"vary", b"Accept-Encoding")
            return b"v"

        @app.route("/options", methods=["OPTIONS"])
        def options(request: Any) -> bytes:
            calls.append("OPTIONS")
            return b"the app's own OPTIONS"

        @app.route("/public", methods=["GET"])
        @cors(CorsPolicy(origins=["*"], methods=["GET"]))
        def public(request: Any) -> bytes:
            calls.append("public")
            return b"public"

        @app.route("/private", methods=["GET"])
        @cors(None)
        def private(request: Any) -> bytes:
            return b"private"

        return app

    return create_app


class _Exchanges:
    """
    Start a module and make requests to it three ways.
    """

    policy: CorsPolicy | None = CorsPolicy(origins=[APP])

    def setUp(self) -> None:
        self.calls: list[str] = []
        self.orchestrator = FakeOrchestrator(channels=["tcp"])
        self.module = self.successResultOf(  # type: ignore[attr-defined]
            self.orchestrator.start(build_module(self.policy, self.calls))
        )

    def exchange(
        self, via: str, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if via == "direct":
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            raw = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()
            transport, _ = direct_exchange(self.module.service.site, raw)
            code, multi, body = parse_response(transport.value())
            return code, {k: ", ".join(v) for k, v in multi.items()}, body
        response = self.successResultOf(  # type: ignore[attr-defined]
            self.module.request(method, path, headers=headers, via=via)
        )
        return response.code, dict(response.headers), response.body

    def each(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> list[tuple[str, int, dict[str, str], bytes]]:
        """
        The same request three ways; the three answers must agree on status, body and
        every CORS header.
        """
        answers = []
        for via in VIAS:
            code, found, body = self.exchange(via, method, path, headers)
            answers.append((via, code, found, body))
        first = answers[0]
        for via, code, found, body in answers[1:]:
            self.assertEqual((code, body), (first[1], first[3]), via)  # type: ignore[attr-defined]
            self.assertEqual(cors_headers(found), cors_headers(first[2]), via)  # type: ignore[attr-defined]
        return answers


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    found = {k: v for k, v in headers.items() if k.startswith("access-control-")}
    # Direct HTTP may add Vary: Accept-Encoding (gzip); the bridge does not compress.
    names = [v for v in vary(headers) if v != "accept-encoding"]
    if names:
        found["vary"] = ", ".join(names)
    return found


def vary(headers: dict[str, str]) -> list[str]:
    names: list[str] = []
    for v in headers.get("vary", "").split(","):
        if v.strip() and v.strip().lower() not in names:
            names.append(v.strip().lower())
    return names


class ActualRequestTests(_Exchanges, SynchronousTestCase):
    """
    Requests that are not preflights reach the route; the response says which origin may
    read it.
    """

    def test_allowed_origin(self) -> None:
        for via, code, headers, _ in self.each("GET", "/items/3", {"origin": APP}):
            self.assertEqual(code, 200, via)
            self.assertEqual(headers["access-control-allow-origin"], APP, via)
            self.assertNotIn("access-control-allow-credentials", headers)
            self.assertNotIn("access-control-expose-headers", headers)
            self.assertIn("origin", vary(headers))
        self.assertEqual(self.calls, ["GET"] * 3)

    def test_origin_compared_without_case(self) -> None:
        (_, _, headers, _), *_ = self.each("GET", "/items/3", {"origin": "https://APP.example"})
        # The request's own serialisation is echoed (the browser compares byte for byte).
        self.assertEqual(headers["access-control-allow-origin"], "https://APP.example")

    def test_refused_origin_reaches_the_route_without_cors_headers(self) -> None:
        for via, code, headers, _ in self.each("GET", "/items/3", {"origin": OTHER}):
            self.assertEqual(code, 200, via)
            self.assertNotIn("access-control-allow-origin", headers)
            self.assertEqual([v for v in vary(headers) if v != "accept-encoding"], ["origin"])
        self.assertEqual(self.calls, ["GET"] * 3)

    def test_null_origin_refused_unless_listed(self) -> None:
        (_, _, headers, _), *_ = self.each("GET", "/items/3", {"origin": "null"})
        self.assertNotIn("access-control-allow-origin", headers)

    def test_no_origin_still_varies(self) -> None:
        # A same-origin or non-browser request: no CORS headers, but caches must know
        # the answer depends on Origin.
        for via, _, headers, _ in self.each("GET", "/items/3"):
            self.assertNotIn("access-control-allow-origin", headers, via)
            self.assertEqual([v for v in vary(headers) if v != "accept-encoding"], ["origin"])

    def test_vary_merged_with_the_routes(self) -> None:
        for via, _, headers, _ in self.each("GET", "/varies", {"origin": APP}):
            self.assertEqual(vary(headers), ["accept-encoding", "origin"], via)

    def test_errors_are_readable_too(self) -> None:
        for via, code, headers, _ in self.each("GET", "/nowhere", {"origin": APP}):
            self.assertEqual(code, 404, via)
            self.assertEqual(headers["access-control-allow-origin"], APP)

    def test_head(self) -> None:
        for via, code, headers, body in self.each("HEAD", "/items/3", {"origin": APP}):
            self.assertEqual((code, body), (200, b""), via)
            self.assertEqual(headers["access-control-allow-origin"], APP)

    def test_route_policy_wins(self) -> None:
        for via, _, headers, _ in self.each("GET", "/public", {"origin": OTHER}):
            self.assertEqual(headers["access-control-allow-origin"], "*", via)
            self.assertNotIn("origin", vary(headers))

    def test_route_opted_out(self) -> None:
        for via, _, headers, _ in self.each("GET", "/private", {"origin": APP}):
            self.assertEqual(cors_headers(headers), {}, via)


class PreflightTests(_Exchanges, SynchronousTestCase):
    """
    A preflight is answered without reaching the route.
    """

    def preflight(self, path: str, origin: str, method: str, headers: str | None = None) -> Any:
        asked = {"origin": origin, "access-control-request-method": method}
        if headers is not None:
            asked["access-control-request-headers"] = headers
        return self.each("OPTIONS", path, asked)

    def test_allowed(self) -> None:
        for via, code, headers, body in self.preflight("/items/3", APP, "PUT", "Content-Type"):
            self.assertEqual((code, body), (204, b""), via)
            self.assertEqual(headers["access-control-allow-origin"], APP)
            self.assertIn("PUT", headers["access-control-allow-methods"].split(", "))
            self.assertEqual(headers["access-control-allow-headers"].lower(), "content-type")
            self.assertEqual(headers["access-control-max-age"], "600")
            self.assertNotIn("access-control-allow-credentials", headers)
            self.assertIn("origin", vary(headers))
        self.assertEqual(self.calls, [])

    def test_refused_origin(self) -> None:
        for via, code, headers, body in self.preflight("/items/3", OTHER, "PUT"):
            self.assertEqual(code, 403, via)
            self.assertNotIn("access-control-allow-origin", headers)
            self.assertIn(b"cors_refused", body)
            self.assertIn(b"evil.example", body)
        self.assertEqual(self.calls, [])

    def test_refused_header(self) -> None:
        for via, code, headers, body in self.preflight("/items/3", APP, "PUT", "X-Secret"):
            self.assertEqual(code, 403, via)
            self.assertNotIn("access-control-allow-origin", headers)
            self.assertIn(b"X-Secret", body)

    def test_refused_method(self) -> None:
        # The route's own policy allows only GET.
        for via, code, _, body in self.preflight("/public", APP, "DELETE"):
            self.assertEqual(code, 403, via)
            self.assertIn(b"method 'DELETE' is not allowed", body)

    def test_route_policy(self) -> None:
        for via, code, headers, _ in self.preflight("/public", OTHER, "GET"):
            self.assertEqual(code, 204, via)
            self.assertEqual(headers["access-control-allow-origin"], "*")
            self.assertEqual(headers["access-control-allow-methods"], "GET")
        self.assertEqual(self.calls, [])

    def test_plain_options_reaches_the_app(self) -> None:
        # OPTIONS without Access-Control-Request-Method is not a preflight.
        for via, code, _, body in self.each("OPTIONS", "/options", {"origin": APP}):
            self.assertEqual((code, body), (200, b"the app's own OPTIONS"), via)
        self.assertEqual(self.calls, ["OPTIONS"] * 3)

    def test_preflight_counted_in_metrics(self) -> None:
        self.preflight("/items/3", APP, "PUT")
        text = self.module.service.metrics.render().decode()
        self.assertIn('route="cors_preflight"', text)

    def test_announces_options(self) -> None:
        announcement = self.orchestrator.announcement
        assert announcement is not None
        methods = {e.path: e.methods for e in announcement.endpoints}
        self.assertEqual(methods["/items/:item_id"], ("DELETE", "GET", "OPTIONS", "PUT"))
        self.assertIn("OPTIONS", methods["/health"])


class CredentialsTests(_Exchanges, SynchronousTestCase):
    policy = CorsPolicy(
        origins=[APP], credentials=True, expose_headers=["X-Total"], headers=["*"], max_age=None
    )

    def test_actual(self) -> None:
        for via, _, headers, _ in self.each("GET", "/items/3", {"origin": APP}):
            self.assertEqual(headers["access-control-allow-origin"], APP, via)
            self.assertEqual(headers["access-control-allow-credentials"], "true")
            self.assertEqual(headers["access-control-expose-headers"], "X-Total")

    def test_refused_origin_gets_no_credentials(self) -> None:
        for via, _, headers, _ in self.each("GET", "/items/3", {"origin": OTHER}):
            self.assertNotIn("access-control-allow-credentials", headers, via)
            self.assertNotIn("access-control-allow-origin", headers, via)

    def test_preflight(self) -> None:
        asked = {
            "origin": APP,
            "access-control-request-method": "DELETE",
            "access-control-request-headers": "authorization, x-trace",
        }
        for via, code, headers, _ in self.each("OPTIONS", "/items/3", asked):
            self.assertEqual(code, 204, via)
            self.assertEqual(headers["access-control-allow-origin"], APP)
            self.assertEqual(headers["access-control-allow-credentials"], "true")
            # headers=["*"] allows what was asked, named (a literal * would not cover
            # Authorization).
            self.assertEqual(headers["access-control-allow-headers"], "authorization, x-trace")
            self.assertNotIn("access-control-max-age", headers)


class WildcardTests(_Exchanges, SynchronousTestCase):
    policy = CorsPolicy(origins=["*"], methods=["*"])

    def test_any_origin_and_no_vary(self) -> None:
        for origin in (APP, OTHER, "null", None):
            asked = {"origin": origin} if origin else {}
            for via, _, headers, _ in self.each("GET", "/items/3", asked):
                self.assertEqual(headers["access-control-allow-origin"], "*", via)
                self.assertNotIn("origin", vary(headers))

    def test_preflight_any_method(self) -> None:
        asked = {"origin": OTHER, "access-control-request-method": "PATCH"}
        for via, code, headers, _ in self.each("OPTIONS", "/items/3", asked):
            self.assertEqual(code, 204, via)
            self.assertEqual(headers["access-control-allow-origin"], "*")
            self.assertEqual(headers["access-control-allow-methods"], "PATCH")


class RouteOnlyTests(_Exchanges, SynchronousTestCase):
    """
    No module policy: only the routes marked with L{cors} answer CORS.
    """

    policy = None

    def test_unmarked_routes_have_no_cors(self) -> None:
        for via, code, headers, _ in self.each("GET", "/items/3", {"origin": APP}):
            self.assertEqual(code, 200, via)
            self.assertEqual(cors_headers(headers), {})
        asked = {"origin": APP, "access-control-request-method": "PUT"}
        for via, code, headers, _ in self.each("OPTIONS", "/items/3", asked):
            # Not a CORS resource: the app answers (its route does not take OPTIONS).
            self.assertEqual(code, 405, via)
            self.assertEqual(cors_headers(headers), {})

    def test_marked_route(self) -> None:
        asked = {"origin": APP, "access-control-request-method": "GET"}
        for via, code, headers, _ in self.each("OPTIONS", "/public", asked):
            self.assertEqual(code, 204, via)
            self.assertEqual(headers["access-control-allow-origin"], "*")
        self.assertEqual(self.calls, [])

    def test_only_marked_routes_announce_options(self) -> None:
        announcement = self.orchestrator.announcement
        assert announcement is not None
        methods = {e.path: e.methods for e in announcement.endpoints}
        self.assertEqual(methods["/public"], ("GET", "OPTIONS"))
        self.assertEqual(methods["/items/:item_id"], ("DELETE", "GET", "PUT"))
        self.assertEqual(methods["/private"], ("GET",))
