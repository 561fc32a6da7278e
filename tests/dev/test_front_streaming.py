"""
Tests for how C{pywatt dev}'s front port streams a large request body to a module as
it arrives (L{FrontRequest}, L{LiveRequestBody}): through a real twisted.web channel on
a L{StringTransport}, with a fake supervisor whose streams are the real L{DevStreams}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from pywatt_twisted._dev import _streaming
from pywatt_twisted._dev._streaming import DevStreams, LiveRequestBody
from pywatt_twisted._dev.front import STREAM_ABOVE, FrontRequest, FrontResource
from pywatt_twisted.streaming import StreamState
from pywatt_twisted.wire.messages import Endpoint, HttpResponse
from pywatt_twisted.wire.stream import (
    StreamAck,
    StreamCancel,
    StreamChunk,
    StreamOptions,
    make_chunk,
    open_chunk,
)

CHUNK = 64 * 1024
WINDOW = 2


def pattern(size: int) -> bytes:
    block = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(size // 32 + 1))
    return block[:size]


class FakeRequests:
    def __init__(self, supervisor: FakeSupervisor) -> None:
        self.supervisor = supervisor
        self.calls: list[dict[str, Any]] = []

    def http(
        self, method: str, uri: str, headers: Any, body: bytes | None, body_file: Any = None
    ) -> Deferred[HttpResponse]:
        d: Deferred[HttpResponse] = Deferred()
        self.calls.append(
            {"method": method, "uri": uri, "headers": headers, "body": body, "file": body_file}
        )
        self.supervisor.answers.append(d)
        if body_file is not None:
            sup = self.supervisor
            sup.sender = sup.streams.upload("stdio", sup.sent.append, "s-1", body_file)
        return d


class FakeSupervisor:
    status = "running"
    reloading = False
    endpoints = (Endpoint(path="/up", methods=("POST",)),)

    def __init__(self, clock: Any, streams: bool = True) -> None:
        self.sent: list[Any] = []
        self.answers: list[Deferred[HttpResponse]] = []
        self.sender: Any = None
        if streams:
            self.streams = DevStreams(clock, StreamOptions(CHUNK, WINDOW))
        self.requests = FakeRequests(self)

    def describe(self) -> dict[str, Any]:
        return {}

    def chunks(self) -> list[StreamChunk]:
        return [m for m in self.sent if isinstance(m, StreamChunk)]

    def body(self) -> bytes:
        return b"".join(open_chunk(c, CHUNK) for c in self.chunks())

    def ack_all(self) -> None:
        chunks = self.chunks()
        if chunks:
            self.streams.received(StreamAck("s-1", chunks[-1].sequence), "stdio", self.sent.append)


class FrontStreamingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.supervisor = FakeSupervisor(self.clock)
        self.connect()

    def connect(self) -> None:
        site = Site(
            FrontResource(lambda: {"m": self.supervisor}),
            requestFactory=FrontRequest,
            reactor=self.clock,
        )
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def head(self, path: bytes = b"/m/up", length: int | None = None, extra: bytes = b"") -> None:
        framing = (
            b"Transfer-Encoding: chunked\r\n"
            if length is None
            else b"Content-Length: %d\r\n" % length
        )
        self.channel.dataReceived(
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + framing + extra + b"\r\n"
        )

    def feed(self, data: bytes, piece: int = 65536, chunked: bool = False) -> None:
        for i in range(0, len(data), piece):
            part = data[i : i + piece]
            if chunked:
                part = b"%x\r\n%s\r\n" % (len(part), part)
            self.channel.dataReceived(part)

    def answer(self, status: int = 200, body: bytes = b"ok") -> None:
        self.supervisor.answers[-1].callback(HttpResponse("r", status, {}, body))

    def test_forwarded_before_the_body_ends(self) -> None:
        """
        A body above L{STREAM_ABOVE} goes to the module as chunks while it arrives; the
        chunks carry exactly its bytes; the response goes out once the body ended.
        """
        body = pattern(3 * STREAM_ABOVE + 1234)
        self.head(length=len(body))
        half = len(body) // 2
        sent = 0
        while sent < half:
            self.feed(body[sent : sent + CHUNK])
            sent += CHUNK
            self.supervisor.ack_all()
        (call,) = self.supervisor.requests.calls
        self.assertIsInstance(call["file"], LiveRequestBody)
        self.assertIsNone(call["body"])
        self.assertGreater(len(self.supervisor.body()), STREAM_ABOVE)
        self.assertFalse([c for c in self.supervisor.chunks() if c.is_final])
        self.assertEqual(self.transport.value(), b"")
        while sent < len(body):
            self.feed(body[sent : sent + CHUNK])
            sent += CHUNK
            self.supervisor.ack_all()
        self.supervisor.ack_all()
        self.assertTrue(self.supervisor.chunks()[-1].is_final)
        self.assertEqual(self.supervisor.body(), body)
        self.assertEqual(self.supervisor.sender.state, StreamState.DONE)
        self.answer(200, b"done")
        self.assertIn(b"HTTP/1.1 200 OK", self.transport.value())
        self.assertTrue(self.transport.value().endswith(b"4\r\ndone\r\n0\r\n\r\n"))
        self.assertNotIn(b"connection: close", self.transport.value().lower())
        self.assertFalse(self.transport.disconnecting)  # (persistent, as any request)

    def test_paused_while_the_window_is_full(self) -> None:
        """
        The client's connection is paused while the module's window is full, resumed
        by its acks: never more than the window plus a read is held.
        """
        body = pattern(2 * STREAM_ABOVE + 10)
        self.head(length=len(body))
        sent = pauses = 0
        piece = 16 * 1024
        while sent < len(body):
            if self.transport.producerState == "paused":
                pauses += 1
                self.assertEqual(
                    len(self.supervisor.chunks()),
                    self.supervisor.sender.unacked + (self.supervisor.sender._acked + 1),
                )
                self.assertEqual(self.supervisor.sender.unacked, WINDOW)
                # (what waits here: less than a chunk)
                self.assertLess(self.supervisor.sender._pending_size, CHUNK + piece)
                self.supervisor.ack_all()
                self.assertEqual(self.transport.producerState, "producing")
            self.feed(body[sent : sent + piece])
            sent += piece
        self.assertGreater(pauses, 10)
        while not self.supervisor.chunks()[-1].is_final:
            self.supervisor.ack_all()
        self.supervisor.ack_all()
        self.assertEqual(self.supervisor.body(), body)

    def test_held_until_the_module_takes_it(self) -> None:
        """
        While nobody takes the body yet (the request waits for its module), at most
        about L{STREAM_ABOVE} bytes are held and the connection is paused.
        """
        body = pattern(STREAM_ABOVE + 5)
        live = LiveRequestBody(self.transport, len(body) * 2, STREAM_ABOVE)
        live.write(body[:STREAM_ABOVE])
        self.assertEqual(self.transport.producerState, "producing")
        live.write(body[STREAM_ABOVE:])
        self.assertEqual(self.transport.producerState, "paused")
        wanted = live.wanted(streams=True)
        self.assertIsNone(self.successResultOf(wanted))
        self.supervisor.requests.http("POST", "/up", {}, None, live)
        acks = 0
        while self.transport.producerState == "paused":  # (until what was held went)
            self.supervisor.ack_all()
            acks += 1
        self.assertEqual(acks, (STREAM_ABOVE + 5) // CHUNK // WINDOW)
        self.assertEqual(self.supervisor.body(), body[: len(self.supervisor.body())])

    def test_client_disconnects_mid_upload(self) -> None:
        """
        The client going away cancels the module's stream.
        """
        body = pattern(2 * STREAM_ABOVE)
        self.head(length=len(body))
        self.feed(body[:STREAM_ABOVE])
        sender = self.supervisor.sender
        self.assertEqual(sender.state, StreamState.OPEN)
        self.channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(sender.state, StreamState.FAILED)
        (cancel,) = [m for m in self.supervisor.sent if isinstance(m, StreamCancel)]
        self.assertEqual(cancel.stream_id, "s-1")
        self.assertIn("went away", cancel.reason)

    def test_module_answers_413_mid_upload(self) -> None:
        """
        The module refuses the body while it arrives (cancels its stream, answers
        413): the 413 goes out at once with C{Connection: close}, the rest of the body
        is read and dropped, and the connection closes once it ended.
        """
        body = pattern(3 * STREAM_ABOVE)
        self.head(length=len(body))
        self.feed(body[: STREAM_ABOVE + 3 * CHUNK])
        self.assertEqual(self.transport.producerState, "paused")
        self.supervisor.streams.received(
            StreamCancel("s-1", "too large"), "stdio", self.supervisor.sent.append
        )
        self.assertEqual(self.transport.producerState, "producing")
        self.answer(413, b"too large")
        out = self.transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "))
        self.assertIn(b"connection: close", out.lower())
        self.assertFalse(self.transport.disconnecting)
        forwarded = len(self.supervisor.chunks())
        self.feed(body[STREAM_ABOVE + 3 * CHUNK :])
        self.assertEqual(len(self.supervisor.chunks()), forwarded)
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.channel._channel.requests)

    def test_unknown_module_answered_early(self) -> None:
        """
        A large body to a module that does not exist gets its 404 before the body
        ends; no bytes are forwarded, nothing is held, the connection closes after.
        """
        body = pattern(2 * STREAM_ABOVE)
        self.head(path=b"/nope/up", length=len(body))
        self.feed(body[:CHUNK])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 404 "))
        self.assertIn(b"connection: close", self.transport.value().lower())
        self.feed(body[CHUNK:])
        self.assertEqual(self.transport.producerState, "producing")
        self.assertTrue(self.transport.disconnecting)

    def test_drain_is_bounded(self) -> None:
        """
        After an early answer, at most L{LiveRequestBody.drain_limit} bytes of the rest
        of the body are read and dropped; then the connection closes (the response is
        out), with a warning, instead of reading a body of any size to its end.
        """
        self.patch(LiveRequestBody, "drain_limit", 4 * CHUNK)
        logged: list[dict[str, Any]] = []
        self.patch(_streaming, "_log", Logger(observer=logged.append))
        body = pattern(4 * STREAM_ABOVE)
        self.head(path=b"/nope/up", length=len(body))
        self.feed(body[:CHUNK])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 404 "))
        # (the first piece counts too: the 404 went out while it was being taken)
        self.feed(body[CHUNK : 4 * CHUNK])
        self.assertFalse(self.transport.disconnecting)
        self.feed(body[4 * CHUNK : 4 * CHUNK + 1])
        self.assertTrue(self.transport.disconnecting)
        self.feed(body[4 * CHUNK + 1 : 5 * CHUNK])
        self.assertEqual(self.supervisor.chunks(), [])
        warnings = [e for e in logged if "drain limit" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["limit"], 4 * CHUNK)

    def test_chunked_small_body_goes_plain(self) -> None:
        """
        A chunked body that ends at or below L{STREAM_ABOVE} is sent plain, in the
        request, as it was before.
        """
        body = pattern(3000)
        self.head(length=None)
        self.feed(body, piece=1000, chunked=True)
        self.assertFalse(self.supervisor.requests.calls)  # (routed: body still held)
        self.channel.dataReceived(b"0\r\n\r\n")
        (call,) = self.supervisor.requests.calls
        self.assertEqual(call["body"], body)
        self.assertIsNone(call["file"])
        self.answer()
        self.assertIn(b"200 OK", self.transport.value())

    def test_chunked_empty_body(self) -> None:
        self.head(length=None)
        self.channel.dataReceived(b"0\r\n\r\n")
        (call,) = self.supervisor.requests.calls
        self.assertIsNone(call["body"])
        self.assertIsNone(call["file"])

    def test_chunked_large_body_streams(self) -> None:
        """
        A chunked body above L{STREAM_ABOVE} is streamed while it arrives, and the
        chunks carry its exact bytes.
        """
        body = pattern(2 * STREAM_ABOVE + 77)
        self.head(length=None)
        for i in range(0, len(body), 10000):
            self.feed(body[i : i + 10000], piece=10000, chunked=True)
            self.supervisor.ack_all()
        self.assertIsInstance(self.supervisor.requests.calls[0]["file"], LiveRequestBody)
        self.assertFalse(self.supervisor.chunks()[-1].is_final)
        self.channel.dataReceived(b"0\r\n\r\n")
        while not self.supervisor.chunks()[-1].is_final:
            self.supervisor.ack_all()
        self.assertEqual(self.supervisor.body(), body)

    def test_expect_100_continue(self) -> None:
        """
        C{Expect: 100-continue} is answered as before (by twisted.web), then the body
        is streamed.
        """
        body = pattern(STREAM_ABOVE + 10)
        self.head(length=len(body), extra=b"Expect: 100-continue\r\n")
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.feed(body)
        while not self.supervisor.chunks()[-1].is_final:
            self.supervisor.ack_all()
        self.assertEqual(self.supervisor.body(), body)

    def test_small_and_dashboard_bodies_are_spooled(self) -> None:
        """
        Bodies of at most L{STREAM_ABOVE} bytes, and bodies to C{/_pywatt/...}, are read
        whole by twisted.web, as before.
        """
        body = pattern(1000)
        self.head(length=len(body))
        self.feed(body)
        (call,) = self.supervisor.requests.calls
        self.assertEqual(call["body"], body)
        self.assertIsNone(call["file"])
        request = self.channel._channel.requests[0]
        self.assertNotIsInstance(request.content, LiveRequestBody)
        self.connect()
        self.head(path=b"/_pywatt/modules", length=STREAM_ABOVE + 1)
        self.assertNotIsInstance(self.channel._channel.requests[0].content, LiveRequestBody)

    def test_module_without_streams_gets_it_whole(self) -> None:
        """
        A module that cannot take chunks gets the whole body plain once it ended.
        """
        self.supervisor = FakeSupervisor(self.clock, streams=False)
        self.connect()
        body = pattern(STREAM_ABOVE + 100)
        self.head(length=len(body))
        self.feed(body)
        self.assertEqual(self.transport.producerState, "producing")
        (call,) = self.supervisor.requests.calls
        self.assertEqual(call["body"], body)

    def test_bigger_reads_while_the_body_arrives(self) -> None:
        """
        While a body streams, the client's connection is read 256 KiB at a time (one
        trip through the HTTP parser per chunk, not four); its read size is restored
        when the body ends, and when the client goes away.
        """
        self.transport.bufferSize = 65536  # type: ignore[attr-defined]
        body = pattern(STREAM_ABOVE + 1)
        self.head(length=len(body))
        self.assertEqual(self.transport.bufferSize, 256 * 1024)  # type: ignore[attr-defined]
        self.feed(body)
        self.assertEqual(self.transport.bufferSize, 65536)  # type: ignore[attr-defined]
        self.connect()
        self.transport.bufferSize = 65536  # type: ignore[attr-defined]
        self.head(length=len(body))
        self.feed(body[:1000])
        self.channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.transport.bufferSize, 65536)  # type: ignore[attr-defined]


class _ClientTransport:
    # (as Twisted's TCP transport: the send limit is a class attribute)
    SEND_LIMIT = 128 * 1024


class _RelayedRequest:
    """
    What L{ResponseRelay} uses of a twisted.web request.
    """

    def __init__(self) -> None:
        self.transport = _ClientTransport()
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self.lost = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True

    def loseConnection(self) -> None:
        self.lost = True


class ResponseRelayTests(SynchronousTestCase):
    """
    L{ResponseRelay}: the client's connection sends up to L{ResponseRelay.send_limit}
    at once while a streamed response is relayed, its own limit again after.
    """

    def relay(self) -> tuple[DevStreams, Any, list[Any]]:
        streams = DevStreams(MemoryReactorClock(), StreamOptions(CHUNK, WINDOW))
        sent: list[Any] = []
        relay = streams.response_started(
            HttpResponse("r", 200, {}, b"", "s-9"), "stdio", sent.append
        )
        return streams, relay, sent

    def test_send_limit_while_relaying(self) -> None:
        streams, relay, sent = self.relay()
        request = _RelayedRequest()
        relay.attach(request)
        self.assertEqual(request.transport.SEND_LIMIT, relay.send_limit)
        streams.received(make_chunk("s-9", 0, b"abc"), "stdio", sent.append)
        streams.received(make_chunk("s-9", 1, b"def", is_final=True), "stdio", sent.append)
        self.assertEqual((request.written, request.finished), ([b"abc", b"def"], True))
        self.assertEqual(request.transport.SEND_LIMIT, 128 * 1024)

    def test_send_limit_restored_when_the_client_goes(self) -> None:
        streams, relay, sent = self.relay()
        request = _RelayedRequest()
        relay.attach(request)
        streams.received(make_chunk("s-9", 0, b"abc"), "stdio", sent.append)
        relay.stopProducing()
        self.assertIsInstance(sent[-1], StreamCancel)
        self.assertTrue(request.lost)
        self.assertEqual(request.transport.SEND_LIMIT, 128 * 1024)
