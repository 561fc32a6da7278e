"""
What a route returns, as the client and the module author see it (issue 18, item 1):
a C{dict} or a C{list} is sent as JSON; a value that cannot be sent is a 500 with a
JSON body and one ERROR log line naming the route and the type, never an empty
C{200 text/html}. Direct HTTP, HTTP-over-IPC through the bridge, and a whole module
under the L{FakeOrchestrator} (stdin and both channels) give the same answers.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.template import tags
from zope.interface import implementer

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.logging import event_as_json
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted.errors import RouteReturnError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.web.site import PyWattSite, build_root_resource, klein_resource
from pywatt_twisted.wire.messages import HttpRequest
from tests.web._apps import build_site, direct_exchange, parse_response


@dataclasses.dataclass
class Note:
    text: str


def routes(app: Klein, later: dict[str, Deferred[Any]]) -> None:
    """
    Routes that return every kind of value, on C{app}.
    """

    @app.route("/notes", methods=["GET"])
    def notes(request: Any) -> Any:
        return {"notes": [{"id": 1, "text": "hi"}], "pair": (1, 2), 7: "seven"}

    @app.route("/list", methods=["GET"])
    def listing(request: Any) -> Any:
        return [1, "two", None]

    @app.route("/later/<key>", methods=["GET"])
    def deferred(request: Any, key: str) -> Any:
        later[key] = Deferred()
        return later[key]

    @app.route("/async/<key>", methods=["GET"])
    async def coroutine(request: Any, key: str) -> Any:
        later[key] = Deferred()
        value = await later[key]
        return value

    @app.route("/problem", methods=["GET"])
    def problem(request: Any) -> Any:
        request.setResponseCode(422)
        request.setHeader(b"content-type", b"application/problem+json")
        return {"title": "bad input"}

    @app.route("/count/<int:n>", methods=["GET"])
    def count(request: Any, n: int) -> Any:
        return n

    @app.route("/not-done-yet", methods=["GET"])
    def not_done_yet(request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        return NOT_DONE_YET

    @app.route("/tags", methods=["GET", "POST"])
    def tag_set(request: Any) -> Any:
        return {"a", "b"}

    @app.route("/flask", methods=["GET"])
    def flask_style(request: Any) -> Any:
        return {"error": "missing"}, 404

    @app.route("/nested", methods=["GET"])
    def nested(request: Any) -> Any:
        return {"items": [{"id": 1, "tags": {"x"}}]}

    @app.route("/record", methods=["GET"])
    def record(request: Any) -> Any:
        return [Note("n")]

    @app.route("/object", methods=["GET"])
    def an_object(request: Any) -> Any:
        return Note("n")

    @app.route("/html", methods=["GET"])
    def html(request: Any) -> Any:
        return tags.p("hello")

    @app.route("/nothing", methods=["GET"])
    def nothing(request: Any) -> Any:
        request.write(b"written")
        return None

    @app.route("/text", methods=["GET"])
    def text(request: Any) -> Any:
        return "plain"

    @app.route("/buffer", methods=["GET"])
    def buffer(request: Any) -> Any:
        return bytearray(b"buf")

    @app.route("/missing", methods=["GET"])
    def missing(request: Any) -> Any:
        raise KeyError("k")

    @app.handle_errors(KeyError)
    def not_found(request: Any, failure: Any) -> Any:
        request.setResponseCode(404)
        return {"error": "not_found"}


def build(later: dict[str, Deferred[Any]]) -> Klein:
    app = Klein()
    routes(app, later)
    return app


@implementer(ILogObserver)
class Errors:
    """
    Collects the ERROR events of the test's duration.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            self.events.append(event)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]


class DirectAndBridgedTests(SynchronousTestCase):
    """
    Every case is asked twice, over direct HTTP and through the bridge, and must get
    the same status, content type and body.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.later: dict[str, Deferred[Any]] = {}
        self.site = build_site(build(self.later), self.clock)
        self.bridge = HttpBridge(self.site, reactor=self.clock)
        self.errors = Errors(self)

    def direct(self, path: str, method: str = "GET") -> tuple[Any, Any]:
        transport, _ = direct_exchange(
            self.site, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        return transport, lambda: parse_response(transport.value())

    def both(self, path: str, method: str = "GET") -> tuple[int, str | None, bytes]:
        _, read = self.direct(path, method)
        code, headers, body = read()
        bridged = self.successResultOf(
            self.bridge.handle(
                HttpRequest(request_id="r", method=method, uri=path, headers={}, body=None)
            )
        )
        content_type = headers.get("content-type", [None])[0]
        self.assertEqual(
            (bridged.status_code, bridged.headers.get("content-type"), bridged.body or b""),
            (code, content_type, body),
            f"direct and bridged answers differ for {method} {path}",
        )
        return code, content_type, body

    # -- sent as JSON -------------------------------------------------------------------

    def test_dict_is_json(self) -> None:
        """
        A dict is JSON (orjson: tuples inside become arrays, int keys strings), with
        C{application/json}; nothing is logged.
        """
        code, content_type, body = self.both("/notes")
        self.assertEqual((code, content_type), (200, "application/json"))
        self.assertEqual(
            json.loads(body),
            {"notes": [{"id": 1, "text": "hi"}], "pair": [1, 2], "7": "seven"},
        )
        self.assertEqual(self.errors.events, [])

    def test_list_is_json(self) -> None:
        self.assertEqual(self.both("/list"), (200, "application/json", b'[1,"two",null]'))

    def test_deferred_dict(self) -> None:
        transport, read = self.direct("/later/d")
        self.assertEqual(transport.value(), b"")
        self.later["d"].callback({"ok": True})
        self.assertEqual(read()[0], 200)
        self.assertEqual(read()[1]["content-type"], ["application/json"])
        self.assertEqual(read()[2], b'{"ok":true}')

    def test_async_route_list(self) -> None:
        transport, read = self.direct("/async/a")
        self.assertEqual(transport.value(), b"")
        self.later["a"].callback([{"id": 3}])
        code, headers, body = read()
        self.assertEqual(
            (code, headers["content-type"], body), (200, ["application/json"], b'[{"id":3}]')
        )

    def test_content_type_set_by_the_route_is_kept(self) -> None:
        self.assertEqual(
            self.both("/problem"), (422, "application/problem+json", b'{"title":"bad input"}')
        )

    def test_error_handler_dict(self) -> None:
        self.assertEqual(self.both("/missing"), (404, "application/json", b'{"error":"not_found"}'))

    # -- sent as before -----------------------------------------------------------------

    def test_other_sendable_values_unchanged(self) -> None:
        self.assertEqual(self.both("/text")[2], b"plain")
        self.assertEqual(self.both("/buffer")[2], b"buf")
        self.assertEqual(self.both("/nothing")[:3:2], (200, b"written"))
        code, content_type, body = self.both("/html")
        self.assertEqual((code, content_type), (200, "text/html"))
        self.assertIn(b"<p>hello</p>", body)
        self.assertEqual(self.errors.events, [])

    # -- refused: 500, JSON body, one ERROR line ----------------------------------------

    def assertRefused(self, path: str, expected: str, type_name: str, route: str) -> None:
        """
        C{path} answers 500 with a JSON body whose message is C{expected}, over both
        paths; each request logged exactly that message once at ERROR, with the route
        and the type as fields.
        """
        code, content_type, body = self.both(path)
        self.assertEqual((code, content_type), (500, "application/json"))
        self.assertEqual(
            json.loads(body), {"error": "unsupported_return_value", "message": expected}
        )
        self.assertEqual(self.errors.messages(), [expected, expected])
        self.assertEqual(
            {(e["route"], e["return_type"], e["log_namespace"]) for e in self.errors.events},
            {(route, type_name, "pywatt_twisted.web")},
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_int(self) -> None:
        self.assertRefused(
            "/count/3",
            "GET /count/<int:n> (count) returned an int, which cannot be sent as a response: "
            "return bytes, str, a dict or list (sent as JSON), a twisted.web resource or "
            "template element, or None",
            "int",
            "GET /count/<int:n> (count)",
        )

    def test_not_done_yet(self) -> None:
        """
        Klein finishes the request when a route returns, so C{NOT_DONE_YET} (the int 1)
        from a route would cut the response short: it is refused with a hint.
        """
        self.assertRefused(
            "/not-done-yet",
            "GET /not-done-yet (not_done_yet) returned an int, which cannot be sent as a "
            "response: twisted.web.server.NOT_DONE_YET is for a Resource's render(); a Klein "
            "route that writes with request.write() later returns a Deferred that fires when "
            "it is done (or a Resource whose render() returns NOT_DONE_YET)",
            "int",
            "GET /not-done-yet (not_done_yet)",
        )

    def test_set(self) -> None:
        self.assertRefused(
            "/tags",
            "GET /tags (tag_set) returned a set, which cannot be sent as a response: return "
            "bytes, str, a dict or list (sent as JSON), a twisted.web resource or template "
            "element, or None",
            "set",
            "GET /tags (tag_set)",
        )

    def test_object(self) -> None:
        self.assertRefused(
            "/object",
            "GET /object (an_object) returned a tests.web.test_route_values.Note, which "
            "cannot be sent as a response: return bytes, str, a dict or list (sent as "
            "JSON), a twisted.web resource or template element, or None",
            "tests.web.test_route_values.Note",
            "GET /object (an_object)",
        )

    def test_flask_style_tuple(self) -> None:
        """
        C{return body, 404} is refused with the way to set a status, not sent as a
        JSON array with 200.
        """
        self.assertRefused(
            "/flask",
            "GET /flask (flask_style) returned a tuple, which cannot be sent as a response: "
            "a tuple is not (body, status) here: call request.setResponseCode(...) and "
            "return the body; return a list to send a JSON array",
            "tuple",
            "GET /flask (flask_style)",
        )

    def test_value_json_cannot_represent(self) -> None:
        """
        The message names the offending type and where it sits in the dict.
        """
        self.assertRefused(
            "/nested",
            "GET /nested (nested) returned a dict holding a set at ['items'][0]['tags'], "
            "which JSON cannot represent: convert it to a dict, list, str, number, bool or "
            "None first (dataclasses.asdict or attrs.asdict for a record)",
            "set",
            "GET /nested (nested)",
        )

    def test_dataclass_in_list(self) -> None:
        self.assertRefused(
            "/record",
            "GET /record (record) returned a list holding a "
            "tests.web.test_route_values.Note at [0], which JSON cannot represent: convert "
            "it to a dict, list, str, number, bool or None first (dataclasses.asdict or "
            "attrs.asdict for a record)",
            "tests.web.test_route_values.Note",
            "GET /record (record)",
        )

    def test_async_route_refused(self) -> None:
        transport, read = self.direct("/async/s")
        self.assertEqual(transport.value(), b"")
        self.later["s"].callback(42)
        code, headers, body = read()
        self.assertEqual((code, headers["content-type"]), (500, ["application/json"]))
        self.assertIn("GET /async/<key> (coroutine) returned an int", json.loads(body)["message"])
        self.assertEqual(len(self.errors.events), 1)

    def test_method_is_the_requests(self) -> None:
        _, read = self.direct("/tags", "POST")
        self.assertEqual(read()[0], 500)
        self.assertTrue(self.errors.messages()[0].startswith("POST /tags (tag_set) returned a set"))


class WiringTests(SynchronousTestCase):
    def test_build_root_resource_wraps_klein(self) -> None:
        """
        C{app.resource()} handed to L{build_root_resource} gets the JSON behaviour,
        with and without built-in routes in front.
        """
        app = build({})
        for health in ("/health", None):
            root = build_root_resource(
                app.resource(), health_path=health, metrics=None, status=dict
            )
            site = PyWattSite(root, reactor=Clock())
            transport, _ = direct_exchange(site, b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(parse_response(transport.value())[2], b'[1,"two",null]')

    def test_plain_resource_untouched(self) -> None:
        resource = Resource()
        self.assertIs(
            build_root_resource(resource, health_path=None, metrics=None, status=dict), resource
        )

    def test_not_wrapped_twice(self) -> None:
        resource = klein_resource(Klein())
        self.assertIs(
            build_root_resource(resource, health_path=None, metrics=None, status=dict), resource
        )

    def test_user_catch_all_handler_sees_the_error(self) -> None:
        """
        A C{handle_errors(Exception)} of the user's receives the L{RouteReturnError}
        (and may answer as it likes); the ERROR line is logged all the same.
        """
        app = Klein()
        seen: list[Any] = []

        @app.route("/n")
        def n(request: Any) -> Any:
            return 5

        @app.handle_errors(Exception)
        def catch_all(request: Any, failure: Any) -> Any:
            seen.append(failure.value)
            request.setResponseCode(500)
            return {"error": "oops"}

        errors = Errors(self)
        site = build_site(app, Clock())
        transport, _ = direct_exchange(site, b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[::2], (500, b'{"error":"oops"}'))
        self.assertIsInstance(seen[0], RouteReturnError)
        self.assertEqual(seen[0].type_name, "int")
        self.assertEqual(len(errors.events), 1)


@pywatt_module(health=None)
def json_module(state: Any) -> Klein:
    app = Klein()

    @app.route("/info", methods=["GET"])
    def info(request: Any) -> Any:
        return succeed({"module": "json", "ok": True})

    @app.route("/bad", methods=["GET"])
    def bad(request: Any) -> Any:
        return 1.5

    return app


class WholeModuleTests(SynchronousTestCase):
    """
    A module run by the L{FakeOrchestrator}: HTTP-over-IPC on stdin and on both
    channels, and direct HTTP on the site the module built.
    """

    def test_every_path(self) -> None:
        errors = Errors(self)
        orch = FakeOrchestrator(channels=("tcp", "ipc"))
        module = self.successResultOf(orch.start(json_module))
        for via in ("stdio", "tcp", "ipc"):
            response = self.successResultOf(module.request("GET", "/info", via=via))
            self.assertEqual(response.code, 200, via)
            self.assertEqual(response.headers["content-type"], "application/json", via)
            self.assertEqual(response.json(), {"module": "json", "ok": True}, via)
            bad = self.successResultOf(module.request("GET", "/bad", via=via))
            self.assertEqual(bad.code, 500, via)
            self.assertTrue(
                bad.json()["message"].startswith("GET /bad (bad) returned a float"), via
            )
        site = module.service.site
        assert site is not None
        transport, _ = direct_exchange(site, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        code, headers, body = parse_response(transport.value())
        self.assertEqual((code, headers["content-type"]), (200, ["application/json"]))
        self.assertEqual(json.loads(body), {"module": "json", "ok": True})
        self.assertEqual(len(errors.events), 3)
        # As the module's stderr shows it: one JSON line at level error.
        line = json.loads(event_as_json(errors.events[0], Redactor(), "test-module"))
        self.assertEqual(line["level"], "error")
        self.assertEqual(line["route"], "GET /bad (bad)")
        self.assertEqual(line["return_type"], "float")
        self.assertTrue(line["message"].startswith("GET /bad (bad) returned a float, which"))
        self.assertNotIn("traceback", line)
        self.successResultOf(module.stop())
