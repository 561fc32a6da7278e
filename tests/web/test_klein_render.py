"""
Tests for L{pywatt_twisted.web._route_values._KleinResource}, the Klein resource of
L{klein_resource}: a route that returns its body at once is sent without Klein's
Deferreds (issue 20), and every route answers the same bytes, and logs the same
errors, as under Klein's own C{KleinResource}.
"""

from __future__ import annotations

from typing import Any

from klein import Klein, Response
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.template import Element, XMLString, renderer
from werkzeug.exceptions import NotFound

from pywatt_twisted.web._route_values import _KleinResource, klein_resource
from tests.web.test_http_per_request import exchange, without_date


class Boom(Exception):
    pass


class Handled(Exception):
    pass


class Leaf(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"leaf " + b"/".join(request.postpath)


class Hello(Element):
    loader = XMLString(
        '<p xmlns:t="http://twistedmatrix.com/ns/twisted.web.template/0.1" t:render="who" />'
    )

    @renderer
    def who(self, request: Any, tag: Any) -> Any:
        return tag("hello")


def build_app(later: list[Deferred[Any]], seen: list[Any]) -> Klein:
    app = Klein()

    @app.route("/bytes/<int:n>")
    def as_bytes(request: Any, n: int) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return b'{"n": %d}' % n

    @app.route("/text")
    def as_text(request: Any) -> str:
        return "caf\u00e9"

    @app.route("/none")
    def none(request: Any) -> None:
        return None

    @app.route("/written")
    def written(request: Any) -> bytes:
        request.write(b"first ")
        return b"second"

    @app.route("/finished")
    def finished(request: Any) -> None:
        request.write(b"all")
        request.finish()

    @app.route("/finished-then-bytes")
    def finished_then_bytes(request: Any) -> bytes:
        request.finish()
        return b"too late"

    @app.route("/deferred")
    def deferred(request: Any) -> Deferred[bytes]:
        return succeed(b"from a Deferred")

    @app.route("/later")
    def pending(request: Any) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        request.notifyFinish().addBoth(seen.append)
        later.append(d)
        return d

    @app.route("/coroutine")
    async def coroutine(request: Any) -> bytes:
        return b"from a coroutine"

    @app.route("/raises")
    def raises(request: Any) -> bytes:
        raise Boom("no")

    @app.route("/handled")
    def handled(request: Any) -> bytes:
        raise Handled("yes")

    @app.route("/not-found")
    def not_found(request: Any) -> bytes:
        raise NotFound()

    @app.route("/response")
    def response(request: Any) -> Response:
        return Response(code=201, headers={"x-made": "here"}, body=b"made")

    @app.route("/leaf", branch=True)
    def leaf(request: Any) -> Resource:
        return Leaf()

    @app.route("/element")
    def element(request: Any) -> Element:
        return Hello()

    @app.route("/post-only", methods=["POST"])
    def post_only(request: Any) -> bytes:
        return b"posted"

    @app.handle_errors(Handled)
    def on_handled(request: Any, failure: Any) -> bytes:
        request.setResponseCode(409)
        return b"handled: " + str(failure.value).encode()

    return app


PATHS = [
    "/bytes/7",
    "/text",
    "/none",
    "/written",
    "/finished",
    "/finished-then-bytes",
    "/deferred",
    "/coroutine",
    "/raises",
    "/handled",
    "/not-found",
    "/missing",
    "/response",
    "/leaf/a/b",
    "/element",
    "/post-only",
    "/%FF",
]


class SameAsKleinTests(SynchronousTestCase):
    def answer(self, resource: Any, path: str) -> tuple[bytes, int]:
        raw = f"GET {path} HTTP/1.1\r\nHost: module\r\n\r\n".encode()
        transport, _ = exchange(Site(resource, reactor=Clock()), raw)
        logged = len(self.flushLoggedErrors())
        return without_date(transport.value())[0], logged

    def test_same_bytes_and_errors(self) -> None:
        app = build_app([], [])
        for path in PATHS:
            theirs = self.answer(app.resource(), path)
            ours = self.answer(klein_resource(app), path)
            self.assertEqual(ours, theirs, path)

    def test_pending_route(self) -> None:
        """
        A route's Deferred that fires later is answered as Klein does, and one whose
        connection is lost first is cancelled, as Klein does.
        """
        results = []
        for make in (lambda app: app.resource(), klein_resource):
            later: list[Deferred[Any]] = []
            seen: list[Any] = []
            app = build_app(later, seen)
            transport, channel = exchange(
                Site(make(app), reactor=Clock()),
                b"GET /later HTTP/1.1\r\nHost: m\r\n\r\n" * 2,
            )
            later[0].callback(b"later")
            first = without_date(transport.value())[0]
            self.assertEqual(len(later), 2)
            channel.connectionLost(Exception("gone"))
            self.assertTrue(later[1].called)  # cancelled
            self.flushLoggedErrors()
            results.append((first, len(seen)))
        self.assertEqual(results[0], results[1])
        self.assertIn(b"later", results[1][0])


class FastPathTests(SynchronousTestCase):
    def test_body_at_once_needs_no_deferred(self) -> None:
        """
        A route that returns its body at once is sent and finished within render,
        without a notifyFinish Deferred of Klein's.
        """
        app = build_app([], [])
        resource = klein_resource(app)
        self.assertIsInstance(resource, _KleinResource)
        requests: list[Any] = []

        class Recording(Site):
            def getResourceFor(self, request: Any) -> Any:
                requests.append(request)
                return super().getResourceFor(request)

        transport, _ = exchange(
            Recording(resource, reactor=Clock()), b"GET /bytes/1 HTTP/1.1\r\nHost: m\r\n\r\n"
        )
        self.assertTrue(transport.value().endswith(b'\r\n{"n": 1}\r\n0\r\n\r\n'))
        (request,) = requests
        self.assertTrue(request.finished)
        self.assertEqual(request.notifications, [])
        # Klein's own registers two, fired at the end
        seen: list[Any] = []
        original = Site.requestFactory.notifyFinish

        def counting(self: Any) -> Any:
            seen.append(self)
            return original(self)

        self.patch(Site.requestFactory, "notifyFinish", counting)
        exchange(Site(app.resource(), reactor=Clock()), b"GET /bytes/1 HTTP/1.1\r\nHost: m\r\n\r\n")
        self.assertEqual(len(seen), 2)
        del seen[:]
        exchange(Site(resource, reactor=Clock()), b"GET /bytes/1 HTTP/1.1\r\nHost: m\r\n\r\n")
        self.assertEqual(seen, [])

    def test_not_done_yet(self) -> None:
        app = build_app([], [])
        request_seen: list[Any] = []

        class Probe(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                request_seen.append(klein_resource(app).render(request))
                return NOT_DONE_YET

        exchange(Site(Probe(), reactor=Clock()), b"GET /text HTTP/1.1\r\nHost: m\r\n\r\n")
        self.assertEqual(request_seen, [NOT_DONE_YET])
