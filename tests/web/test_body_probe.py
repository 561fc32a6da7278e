"""
Tests for L{pywatt_twisted.web._body.reads_incrementally}: which streamed requests reach
a route marked L{incremental_body}, and that a failure to tell is logged, not silent.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyChannel

from pywatt_twisted.streaming import incremental_body
from pywatt_twisted.web._body import reads_incrementally
from pywatt_twisted.wire.messages import HttpRequest


def _site() -> Site:
    app = Klein()

    @app.route("/upload", methods=["POST"])
    @incremental_body
    def upload(request: Any) -> bytes:
        return b""

    @app.route("/plain", methods=["POST"])
    def plain(request: Any) -> bytes:
        return b""

    return Site(app.resource())


def _request(method: str, uri: str) -> HttpRequest:
    return HttpRequest(
        "r-1", method, uri, {"content-type": "application/octet-stream"}, None, "s-1"
    )


class _BrokenSite:
    requestFactory = Site.requestFactory

    def getResourceFor(self, request: Any) -> Any:
        raise RuntimeError("resource tree exploded")


class ReadsIncrementallyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def _errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]

    def test_marked_route(self) -> None:
        self.assertTrue(reads_incrementally(_site(), DummyChannel(), _request("POST", "/upload")))

    def test_unmarked_route(self) -> None:
        self.assertFalse(reads_incrementally(_site(), DummyChannel(), _request("POST", "/plain")))

    def test_no_route_or_wrong_method_is_quiet(self) -> None:
        """
        No matching route (werkzeug's NotFound / MethodNotAllowed): spooled, nothing logged.
        """
        site = _site()
        self.assertFalse(reads_incrementally(site, DummyChannel(), _request("POST", "/nope")))
        self.assertFalse(reads_incrementally(site, DummyChannel(), _request("GET", "/upload")))
        self.assertEqual(self._errors(), [])

    def test_failure_is_logged(self) -> None:
        """
        Any other error still spools the body, but says so: a route marked
        L{incremental_body} never falls back silently.
        """
        self.assertFalse(
            reads_incrementally(_BrokenSite(), DummyChannel(), _request("POST", "/upload"))
        )
        [event] = self._errors()
        self.assertIn("/upload", event["log_format"].format(**event))
        self.flushLoggedErrors(RuntimeError)
