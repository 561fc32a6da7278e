"""
Every HTTP-over-IPC request gets an answer, whatever its size (issue 15, "no silent
loss"): stdin runtime lines may be as long as the frame cap, an over-long request line
is answered 413 by its id, a response too large for one stdout line is answered with
the X1 C{response_too_large} 502; each is logged with the request id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from tests.runtime.helpers import Harness, init_line, line
from tests.runtime.modules import big_body_app, pattern


def request_line(request_id: str, method: str, uri: str, body: bytes | None = None) -> bytes:
    return line(
        {
            "op": "http_request",
            "request_id": request_id,
            "method": method,
            "uri": uri,
            "headers": {},
            "body": list(body) if body is not None else None,
        }
    )


class NoSilentLossTests(SynchronousTestCase):
    def ready(self, **config: Any) -> Harness:
        h = Harness(big_body_app, config=RuntimeConfig(**config))
        h.start()
        h.feed(init_line())
        h.new()
        return h

    def logged(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_request_line_above_the_init_cap_is_served(self) -> None:
        """
        A 3.7 MB request line (above the 1 MiB init-line cap, within the frame cap) is
        read and served; it used to be dropped with only a log line.
        """
        h = self.ready()
        body = pattern(1024 * 1024 + 17)
        data = request_line("big-in", "POST", "/sha256", body)
        self.assertGreater(len(data), 3 * 1024 * 1024)
        h.feed(data)
        [reply] = h.new()
        self.assertEqual(reply["content"]["request_id"], "big-in")
        self.assertEqual(reply["content"]["status_code"], 200)
        self.assertEqual(bytes(reply["content"]["body"]).decode(), hashlib.sha256(body).hexdigest())

    def test_init_line_keeps_its_own_cap(self) -> None:
        """
        The init line alone keeps the (smaller) C{max_line_length} cap.
        """
        h = Harness(big_body_app, config=RuntimeConfig(max_line_length=100))
        h.start()
        ready = h.service.whenReady()
        h.feed(init_line())
        self.assertIn("too long", str(self.failureResultOf(ready).value))

    def test_over_long_request_line_is_answered_413(self) -> None:
        """
        A request line longer than the frame cap is discarded unread (never buffered
        whole) and answered 413 by the request id read from its first bytes; the log
        names the id. Fed in pieces, the line after it is still served.
        """
        events = self.logged()
        h = self.ready(max_frame_length=64 * 1024)
        data = request_line("too-big", "POST", "/sha256", b"x" * 40000)
        for start in range(0, len(data), 5000):
            h.feed(data[start : start + 5000])
        h.feed(request_line("after", "POST", "/sha256", b"abc"))
        first, second = h.new()
        content = first["content"]
        self.assertEqual((content["request_id"], content["status_code"]), ("too-big", 413))
        error = json.loads(bytes(content["body"]))["error"]
        self.assertEqual(error["kind"], "body_too_large")
        self.assertIn("65536-byte line cap", error["message"])
        self.assertEqual(second["content"]["request_id"], "after")
        self.assertEqual(second["content"]["status_code"], 200)
        self.assertLess(h.service.stdio._decoder.buffered, 64 * 1024)
        warned = [e for e in events if e.get("request_id") == "too-big"]
        self.assertEqual(len(warned), 1)
        self.assertEqual(warned[0]["log_level"], LogLevel.warn)

    def test_over_long_line_that_is_not_a_request_is_skipped(self) -> None:
        """
        An over-long line that is not an http_request is skipped and reported, as
        before; nothing is written.
        """
        h = self.ready(max_frame_length=1000)
        h.feed(line({"op": "secret", "name": "X", "value": "v" * 2000}))
        self.assertEqual(h.new(), [])

    def test_response_too_large_for_a_line_is_answered_502(self) -> None:
        """
        Without streaming, a response that does not fit in one stdout line is replaced
        by the X1 C{response_too_large} 502 naming the limit, and the log names the id.
        """
        events = self.logged()
        h = self.ready(max_frame_length=256 * 1024)
        h.feed(request_line("big-out", "GET", "/blob?size=200000"))
        [reply] = h.new()
        content = reply["content"]
        self.assertEqual((content["request_id"], content["status_code"]), ("big-out", 502))
        error = json.loads(bytes(content["body"]))["error"]
        self.assertEqual(error["kind"], "response_too_large")
        self.assertEqual(error["limit"], 256 * 1024)
        errors = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual([e["id"] for e in errors], ["big-out"])

    def test_huge_response_is_refused_before_it_is_encoded(self) -> None:
        """
        A body whose array encoding cannot fit is refused from its length alone (a 200
        MB body is never turned into a 700 MB line first).
        """
        from pywatt_twisted.errors import MessageTooLarge
        from pywatt_twisted.wire.messages import HttpResponse

        h = self.ready(max_frame_length=1000)
        stdio = h.service.stdio
        assert stdio is not None
        response = HttpResponse("r", 200, {}, b"\0" * 501)
        error = self.assertRaises(MessageTooLarge, stdio.send_http_response, response)
        self.assertEqual((error.length, error.limit), (1001, 1000))
        self.assertEqual(h.new(), [])

    def test_response_that_fits_is_sent(self) -> None:
        h = self.ready()
        h.feed(request_line("fits", "GET", "/blob?size=100000"))
        [reply] = h.new()
        self.assertEqual(bytes(reply["content"]["body"]), pattern(100000))
