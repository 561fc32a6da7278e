"""
Routes that read a streamed request body while it arrives (C{incremental_body},
C{body_stream}: C{docs/streaming.md}), through a whole module service: on stdin
(the test plays the orchestrator with the module's own state machines and checks the
window from its side) and on a TCP channel (L{FakeOrchestrator}).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.status import ModuleStatus
from pywatt_twisted.streaming import StreamFailed, StreamSender
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.codec import encode_line
from pywatt_twisted.wire.messages import HttpRequest, StreamAck, StreamCancel
from pywatt_twisted.wire.stream import StreamChunk, StreamOptions, crc32, make_chunk
from tests.runtime.helpers import Harness
from tests.runtime.modules import (
    INCREMENTAL_FAILURES,
    big_body_app,
    pattern,
    waiting_body_app,
)
from tests.runtime.test_streaming_stdio import StdioOrchestrator, expected_sha, init_line

MiB = 1024 * 1024


class IncrementalStdioTests(SynchronousTestCase):
    def setUp(self) -> None:
        del INCREMENTAL_FAILURES[:]

    def ready(self, window: int = 8, **config: Any) -> StdioOrchestrator:
        h = Harness(big_body_app, config=RuntimeConfig(**config))
        h.start()
        h.feed(init_line({"streaming": {"chunk_size": 65536, "window": window}}))
        orchestrator = StdioOrchestrator(h, window=window)
        orchestrator.read()
        return orchestrator

    def check(self, size: int, uri: str = "/incremental/sha256") -> None:
        o = self.ready()
        sender = o.upload("up", uri, size)
        self.assertEqual(self.successResultOf(sender.done), size)
        [response] = o.responses
        self.assertEqual((response.request_id, response.status_code), ("up", 200))
        self.assertEqual((response.body or b"").decode(), expected_sha(size, 1, 65536))
        self.assertLessEqual(sender.max_unacked, 8)

    def test_1_mib(self) -> None:
        """
        A 1 MiB body read with C{async for piece in body_stream(request)} is whole
        (sha256 equal), never more than the window unacknowledged.
        """
        self.check(MiB)

    def test_64_mib(self) -> None:
        self.check(64 * MiB)

    def test_deliver_body(self) -> None:
        """
        The same body through C{body_stream(request).deliverBody(protocol)}.
        """
        self.check(MiB, "/incremental/protocol")

    def slow_upload(self, uri: str) -> None:
        """
        A route that takes one piece per second: the orchestrator's sender is held at
        the window (acks come only as the route reads) and the route ran before the
        body was complete.
        """
        window = 4
        o = self.ready(window=window)
        body = pattern(MiB, 3)  # 16 chunks of 64 KiB
        sender = StreamSender("o-slow", o.send, StreamOptions(65536, window), o.h.reactor)
        o.table.add_sender(sender)
        o.h.feed(encode_line(HttpRequest("slow", "POST", uri, {}, None, "o-slow")))
        sender.write(body)
        sender.finish()
        o.read()
        # the route took chunk 0 and waits: chunks 1-4 are out, unacknowledged
        self.assertEqual(sender.unacked, window)
        self.assertEqual(sender.sent_bytes, (window + 1) * 65536)
        o.read()
        self.assertEqual(sender.sent_bytes, (window + 1) * 65536)
        self.assertEqual(o.responses, [])
        for second in range(1, 16):
            o.h.reactor.advance(1)
            o.read()
            self.assertEqual(sender.unacked, min(window, 15 - second))
            self.assertEqual(sender.sent_bytes, min(window + 1 + second, 16) * 65536)
        o.h.reactor.advance(1)
        o.read()
        self.assertEqual(self.successResultOf(sender.done), MiB)
        [response] = o.responses
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.body.decode(), hashlib.sha256(body).hexdigest())
        self.assertEqual(sender.max_unacked, window)

    def test_slow_reader_holds_the_writer(self) -> None:
        self.slow_upload("/incremental/sha256?delay=1")

    def test_paused_protocol_holds_the_writer(self) -> None:
        self.slow_upload("/incremental/protocol?delay=1")

    def test_slow_reader_is_not_a_stall(self) -> None:
        """
        While the route holds the body paused, the stall timer does not run: a route
        slower than the stall timeout per piece still gets the whole body.
        """
        o = self.ready(window=2, stream_stall_timeout=5)
        body = pattern(4 * 65536, 4)
        sender = StreamSender("o-s", o.send, StreamOptions(65536, 2), o.h.reactor)
        o.table.add_sender(sender)
        o.h.feed(
            encode_line(HttpRequest("s", "POST", "/incremental/sha256?delay=10", {}, None, "o-s"))
        )
        sender.write(body)
        sender.finish()
        for _ in range(6):
            o.read()
            o.h.reactor.advance(10)
        o.read()
        [response] = o.responses
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.body.decode(), hashlib.sha256(body).hexdigest())

    def failing(self, *chunks: Any, uri: str = "/incremental/sha256") -> Any:
        o = self.ready(stream_stall_timeout=30)
        o.h.feed(encode_line(HttpRequest("bad", "POST", uri, {}, None, "s-bad")))
        for chunk in chunks:
            o.h.feed(encode_line(chunk))
        return o

    def assert_failed(self, o: StdioOrchestrator, kind: str, text: str) -> list[Any]:
        messages = o.read()
        [response] = o.responses
        self.assertEqual((response.request_id, response.status_code), ("bad", 400))
        self.assertIn(text, json.loads(response.body)["error"]["message"])
        [error] = INCREMENTAL_FAILURES
        self.assertEqual(error.kind, kind)
        self.assertIn(text, error.reason)
        return messages

    def test_checksum_error_fails_the_read(self) -> None:
        """
        A chunk with a bad checksum: failed ack and cancel to the orchestrator, 400,
        and the route's read fails with C{StreamFailed(kind="checksum")}.
        """
        o = self.failing(
            make_chunk("s-bad", 0, b"hello"),
            StreamChunk("s-bad", 1, b"world", False, crc32(b"World"), True),
        )
        messages = self.assert_failed(o, "checksum", "checksum mismatch on chunk 1")
        self.assertIn(StreamAck("s-bad", 0), messages)
        self.assertIn(StreamCancel("s-bad", error_text(messages)), messages)

    def test_gap_fails_the_read(self) -> None:
        o = self.failing(make_chunk("s-bad", 1, b"world"))
        self.assert_failed(o, "gap", "expected chunk 0, got chunk 1")

    def test_cancel_fails_the_read(self) -> None:
        o = self.failing(
            make_chunk("s-bad", 0, b"hello"), StreamCancel("s-bad", "client went away")
        )
        self.assert_failed(o, "cancelled", "client went away")

    def test_stall_fails_the_read(self) -> None:
        o = self.failing(make_chunk("s-bad", 0, b"hello"))
        o.read()
        o.h.reactor.advance(30)
        self.assert_failed(o, "stalled", "stall")

    def test_deliver_body_sees_the_failure(self) -> None:
        o = self.failing(make_chunk("s-bad", 1, b"x"), uri="/incremental/protocol")
        self.assert_failed(o, "gap", "expected chunk 0")

    def test_route_that_does_not_read(self) -> None:
        """
        A route that answers without reading its body: the answer goes out and the
        rest of the body is cancelled.
        """
        o = self.ready()
        o.h.feed(encode_line(HttpRequest("r", "POST", "/incremental/ignore", {}, None, "s-r")))
        messages = o.read()
        [response] = o.responses
        self.assertEqual((response.status_code, response.body), (200, b"not read"))
        self.assertIn(
            StreamCancel("s-r", "the request was answered before its body arrived"),
            messages + o.others,
        )
        o.h.feed(encode_line(make_chunk("s-r", 0, b"late")))
        nack, _cancel = o.read()
        self.assertEqual((nack.stream_id, nack.success), ("s-r", False))


class EarlyStreamedRequestTests(SynchronousTestCase):
    """
    A streamed request that arrives before the module is ready is held like any
    early request: its first chunks wait unacknowledged (the orchestrator stops at
    its window), and it is served once the module is up.
    """

    def starting(self, max_concurrent_requests: int = 64) -> StdioOrchestrator:
        h = Harness(
            waiting_body_app,
            config=RuntimeConfig(
                max_concurrent_requests=max_concurrent_requests, stream_stall_timeout=10
            ),
        )
        h.start()
        h.feed(init_line({"streaming": {"chunk_size": 65536, "window": 2}}))
        o = StdioOrchestrator(h, window=2)
        o.read()
        return o

    def early(self, o: StdioOrchestrator, request_id: str, uri: str, body: bytes) -> StreamSender:
        sender = StreamSender(f"o-{request_id}", o.send, StreamOptions(65536, 2), o.h.reactor)
        o.table.add_sender(sender)
        o.h.feed(encode_line(HttpRequest(request_id, "POST", uri, {}, None, sender.stream_id)))
        sender.write(body)
        sender.finish()
        o.read()
        return sender

    def check_held_then_served(self, uri: str) -> None:
        o = self.starting()
        body = pattern(5 * 65536 + 7, 9)
        sender = self.early(o, "early", uri, body)
        self.assertEqual((sender.unacked, sender.sent_bytes), (2, 2 * 65536))
        self.assertEqual(o.responses, [])
        # (no stall timer here while it waits: 25 s > the module's 10 s, and less
        # than the 30 s the module waits for its secret)
        o.h.reactor.advance(25)
        o.read()
        self.assertEqual(o.responses, [])
        o.h.feed(encode_line_secret("API_KEY", "k"))
        o.pump()
        [response] = o.responses
        self.assertEqual((response.request_id, response.status_code), ("early", 200))
        self.assertEqual(response.body.decode(), hashlib.sha256(body).hexdigest())
        self.assertEqual(self.successResultOf(sender.done), len(body))

    def test_spooled_route(self) -> None:
        self.check_held_then_served("/sha256")

    def test_incremental_route(self) -> None:
        self.check_held_then_served("/incremental/sha256")

    def test_bounded_like_other_early_requests(self) -> None:
        """
        With C{max_concurrent_requests} requests already waiting, one more (streamed
        or not) is answered 503 at once and its stream is cancelled.
        """
        o = self.starting(max_concurrent_requests=1)
        first = self.early(o, "one", "/sha256", b"a" * 100)
        second = self.early(o, "two", "/sha256", b"b" * 100)
        [refused] = o.responses
        self.assertEqual((refused.request_id, refused.status_code), ("two", 503))
        self.failureResultOf(second.done, StreamFailed)
        o.h.feed(encode_line_secret("API_KEY", "k"))
        o.pump()
        self.assertEqual(
            [(r.request_id, r.status_code) for r in o.responses], [("two", 503), ("one", 200)]
        )
        self.successResultOf(first.done)

    def test_stopping_before_ready(self) -> None:
        """
        Once the module is stopping (before it was ready), a request is answered 503
        "the module is stopping" at once; a streamed one also has its stream cancelled
        and is told to retry after a second.
        """
        o = self.starting()
        self.assertTrue(o.h.service.status_machine.move_to(ModuleStatus.STOPPING))
        o.h.feed(encode_line(HttpRequest("plain", "GET", "/sha256", {}, b"", None)))
        streamed = self.early(o, "streamed", "/sha256", b"s" * 100)
        self.failureResultOf(streamed.done, StreamFailed)
        plain, refused = o.responses
        for response in (plain, refused):
            self.assertEqual(response.status_code, 503)
            self.assertEqual(json.loads(response.body), {"error": "the module is stopping"})
        self.assertEqual((plain.request_id, refused.request_id), ("plain", "streamed"))
        self.assertNotIn("retry-after", plain.headers)
        self.assertEqual(refused.headers["retry-after"], "1")

    def test_cancelled_while_waiting(self) -> None:
        o = self.starting()
        sender = self.early(o, "c", "/sha256", pattern(4 * 65536, 2))
        sender.cancel("the client went away")
        self.failureResultOf(sender.done, StreamFailed)
        o.read()
        [response] = o.responses
        self.assertEqual(response.status_code, 400)
        self.assertIn("the client went away", json.loads(response.body)["error"]["message"])
        o.h.feed(encode_line_secret("API_KEY", "k"))
        o.pump()
        self.assertEqual(len(o.responses), 1)


class IncrementalChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        del INCREMENTAL_FAILURES[:]
        self.orch = FakeOrchestrator(channels=["tcp"], streaming=StreamOptions(65536, 4))
        self.module = self.successResultOf(self.orch.start(big_body_app))

    def check(self, size: int) -> None:
        body = pattern(size, 5)
        d = self.module.request("POST", "/incremental/sha256", body=body, via="tcp", stream=True)
        self.assertEqual(self.successResultOf(d).text(), hashlib.sha256(body).hexdigest())
        self.assertLessEqual(self.orch.uploads[-1].max_unacked, 4)

    def test_1_mib_on_a_channel(self) -> None:
        self.check(MiB)

    def test_64_mib_on_a_channel(self) -> None:
        self.check(64 * MiB)

    def test_slow_reader_on_a_channel(self) -> None:
        """
        On a channel too, a slow route holds the orchestrator at the window.
        """
        body = pattern(MiB, 6)
        d = self.module.request(
            "POST", "/incremental/sha256?delay=1", body=body, via="tcp", stream=True
        )
        sender = self.orch.uploads[-1]
        self.assertNoResult(d)
        self.assertEqual((sender.unacked, sender.sent_bytes), (4, 5 * 65536))
        self.orch.reactor.advance(1)
        self.assertEqual((sender.unacked, sender.sent_bytes), (4, 6 * 65536))
        self.orch.reactor.pump([1] * 20)
        self.assertEqual(self.successResultOf(d).text(), hashlib.sha256(body).hexdigest())

    def test_whole_bodies_too(self) -> None:
        """
        The same route answers a body that came whole (not streamed) and direct HTTP:
        C{body_stream} then reads C{request.content}.
        """
        body = pattern(300000, 7)
        for via in ("tcp", "stdio", "http"):
            d = self.module.request("POST", "/incremental/sha256", body=body, via=via)
            self.assertEqual(self.successResultOf(d).text(), hashlib.sha256(body).hexdigest())

    def test_ordinary_routes_still_get_request_content(self) -> None:
        body = pattern(3 * MiB, 8)
        d = self.module.request("POST", "/sha256", body=body, via="tcp", stream=True)
        self.assertEqual(self.successResultOf(d).text(), hashlib.sha256(body).hexdigest())


def encode_line_secret(name: str, value: str) -> bytes:
    return json.dumps({"op": "secret", "name": name, "value": value}).encode() + b"\n"


def error_text(messages: list[Any]) -> str:
    [nack] = [m for m in messages if isinstance(m, StreamAck) and not m.success]
    return nack.error
