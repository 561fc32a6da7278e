"""
Tests for the C{pywatt dev} dashboard (C{/_pywatt/}): what it serves and refuses, its
bounded buffers, the redaction of secret values, and the event stream (snapshot, live
events, a slow reader resynchronised by a snapshot, the stream limit).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from pywatt_twisted._dev._dashboard import Dashboard, loopback_host
from pywatt_twisted._dev.front import FrontResource
from pywatt_twisted.orchestrator._providers import MemorySecretProvider


class FakeSupervisor:
    def __init__(self, module_id: str) -> None:
        self.module_id = module_id
        self.status = "running"
        self.pid = 42
        self.restarts = 0
        self.used_secrets = {"API_KEY"}
        self.endpoints = ()
        self.reloading = False

    def describe(self) -> dict[str, Any]:
        return {
            "module_id": self.module_id,
            "status": self.status,
            "pid": self.pid,
            "restarts": self.restarts,
            "uptime": 1.0,
            "last_exit": None,
            "channels": {"stdio": "up"},
            "endpoints": [],
        }


class Request(DummyRequest):
    """
    A DummyRequest that keeps a push producer (DummyRequest drives only pull producers).
    """

    def __init__(self, path: bytes, method: bytes = b"GET", host: bytes = b"127.0.0.1:8080"):
        super().__init__([s for s in path.split(b"/")[1:]])
        self.method = method
        self.uri = self.path = path
        self.requestHeaders.setRawHeaders(b"host", [host])
        self.producer: Any = None

    @property
    def code(self) -> int:
        # twisted.web.server.Request's name for it
        return self.responseCode or 200

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


def events(request: Request) -> list[tuple[str, Any]]:
    text = b"".join(request.written).decode()
    found = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


class DashboardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.module = FakeSupervisor("counter")
        self.secrets = MemorySecretProvider({"API_KEY": "s3cr3t-value-123"})
        self.dashboard = Dashboard(
            self.clock,
            lambda: {"counter": self.module},
            self.secrets,
            max_requests=3,
            max_lines=2,
            max_clients=1,
            clock=self.clock.seconds,
        )
        self.front = FrontResource(
            lambda: {"counter": self.module},
            dashboard=self.dashboard,
            on_request=self.dashboard.record_request,
        )

    def get(self, path: bytes, **kw: Any) -> tuple[Request, Any]:
        request = Request(path, **kw)
        return request, self.front.render(request)

    def test_page_and_assets(self) -> None:
        request, body = self.get(b"/_pywatt/")
        self.assertIn(b'<script src="dashboard.js" defer></script>', body)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"]
        )
        csp = request.responseHeaders.getRawHeaders(b"content-security-policy")[0]
        self.assertIn(b"default-src 'none'", csp)
        self.assertNotIn(b"http", body.replace(b"http-equiv", b""), "no external asset")
        for name in (b"dashboard.js", b"dashboard.css"):
            request, body = self.get(b"/_pywatt/" + name)
            self.assertIn(request.responseCode, (None, 200))  # DummyRequest: None is 200
            self.assertNotIn(b"http://", body)
            self.assertNotIn(b"https://", body)
        request, body = self.get(b"/_pywatt/modules")
        self.assertEqual(json.loads(body)[0]["module_id"], "counter")
        request, body = self.get(b"/_pywatt")
        self.assertEqual(
            (request.responseCode, request.responseHeaders.getRawHeaders(b"location")),
            (301, [b"/_pywatt/"]),
        )
        request, body = self.get(b"/_pywatt/nope")
        self.assertEqual(request.responseCode, 404)

    def test_read_only_and_loopback_only(self) -> None:
        request, _ = self.get(b"/_pywatt/modules", method=b"POST")
        self.assertEqual(request.responseCode, 405)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"allow"), [b"GET, HEAD"])
        request, _body = self.get(b"/_pywatt/", host=b"evil.example:8080")
        self.assertEqual(request.responseCode, 403)
        for host in (b"127.0.0.1:8080", b"localhost", b"[::1]:80", b"LOCALHOST:1"):
            self.assertTrue(loopback_host(host), host)
        for host in (b"", b"127.0.0.1.evil.example", b"10.0.0.1:8080", b"[::2]:80"):
            self.assertFalse(loopback_host(host), host)

    def test_requests_are_recorded_and_bounded(self) -> None:
        for i in range(5):
            request, _body = self.get(b"/counter/nothing-%d" % i)
            self.assertEqual(request.responseCode, 404)
            request.finish()
        self.assertEqual(
            [r["path"] for r in self.dashboard.requests],
            ["/counter/nothing-2", "/counter/nothing-3", "/counter/nothing-4"],
        )
        self.assertEqual(self.dashboard.requests[-1]["status"], 404)
        self.assertEqual(self.dashboard.requests[-1]["method"], "GET")

    def test_log_lines_bounded_cut_and_redacted(self) -> None:
        self.dashboard.console_line("counter", "one", "info")
        self.dashboard.console_line("counter", "key is s3cr3t-value-123 here", "warn")
        self.dashboard.console_line("counter", "x" * 5000, "info")
        self.dashboard.console_line("stranger", "not kept", "info")
        self.dashboard.console_line("pywatt-dev", "started counter", "info")
        lines = [e["text"] for e in self.dashboard.lines["counter"]]
        self.assertEqual(len(lines), 2)
        self.assertNotIn("s3cr3t-value-123", lines[0])
        self.assertIn("key is ", lines[0])
        self.assertEqual(len(lines[1]), 4001)
        self.assertNotIn("stranger", self.dashboard.lines)
        self.assertEqual(self.dashboard.lines["pywatt-dev"][0]["text"], "started counter")

    def test_event_stream(self) -> None:
        self.dashboard.console_line("counter", "before", "info")
        request, body = self.get(b"/_pywatt/events")
        self.assertIs(body, NOT_DONE_YET)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/event-stream; charset=utf-8"],
        )
        ((kind, snapshot),) = events(request)
        self.assertEqual(kind, "snapshot")
        self.assertEqual(snapshot["modules"][0]["status"], "running")
        self.assertEqual(snapshot["logs"]["counter"][0]["text"], "before")
        # A second stream is over the limit of one.
        other, body = self.get(b"/_pywatt/events")
        self.assertEqual(other.responseCode, 503)

        self.dashboard.console_line("counter", "after", "info")
        self.assertEqual(events(request)[-1], ("log", self.dashboard.lines["counter"][-1]))
        # A state change is sent at the next tick, once.
        self.clock.advance(0.5)
        count = len(events(request))
        self.module.status, self.module.pid, self.module.restarts = "restarting", None, 1
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        sent = events(request)[count:]
        self.assertEqual([k for k, _ in sent], ["modules"])
        self.assertEqual(sent[0][1]["modules"][0]["status"], "restarting")

        # A reader that does not keep up gets nothing until it drains, then a snapshot.
        request.producer.pauseProducing()
        count = len(events(request))
        self.dashboard.console_line("counter", "missed", "info")
        self.module.status = "running"
        self.clock.advance(0.5)
        self.assertEqual(len(events(request)), count)
        request.producer.resumeProducing()
        kind, snapshot = events(request)[-1]
        self.assertEqual(kind, "snapshot")
        self.assertEqual(snapshot["logs"]["counter"][-1]["text"], "missed")

        # The stream closes: the tick stops, and a new stream may open.
        request.processingFailed = None  # type: ignore[assignment]
        request.finish()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        other, body = self.get(b"/_pywatt/events")
        self.assertIs(body, NOT_DONE_YET)
        self.dashboard.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
