"""
Streamed bodies (EXTENSIONS.md X1) through a whole module service on stdin/stdout,
in memory: the test plays the orchestrator with the same state machines the module
uses (L{pywatt_twisted.streaming}), and checks the window from its side.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted.streaming import StreamFailed, StreamReceiver, StreamSender, StreamTable
from pywatt_twisted.wire.codec import decode_from_module, encode_line
from pywatt_twisted.wire.messages import HttpRequest, HttpResponse, StreamAck, StreamCancel
from pywatt_twisted.wire.stream import StreamChunk, StreamOptions, crc32, make_chunk
from tests.runtime.helpers import Harness
from tests.runtime.modules import big_body_app, pattern

MiB = 1024 * 1024


def init_line(extensions: dict[str, Any] | None) -> bytes:
    blob: dict[str, Any] = {
        "orchestrator_api": "http://127.0.0.1:9900",
        "module_id": "big",
        "env": {},
        "listen": "127.0.0.1:0",
        "security_level": "None",
    }
    if extensions is not None:
        blob["extensions"] = extensions
    return json.dumps(blob).encode() + b"\n"


class HashSink:
    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.done = False
        self.failed: StreamFailed | None = None

    def body_data(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)

    def body_done(self) -> None:
        self.done = True

    def body_failed(self, error: StreamFailed) -> None:
        self.failed = error


class StdioOrchestrator:
    """
    The orchestrator's side of one module's stdin/stdout, streaming both ways.

    @ivar max_unacked_seen: the most response chunks the module had unacknowledged
        (counted here, from the chunks read and the acks sent).
    """

    def __init__(self, h: Harness, window: int = 8, chunk_size: int = 65536) -> None:
        self.h = h
        self.window = window
        self.chunk_size = chunk_size
        self.table = StreamTable(self.send)
        self.responses: list[HttpResponse] = []
        self.bodies: dict[str, HashSink] = {}
        self.receivers: dict[str, StreamReceiver] = {}
        self.others: list[Any] = []
        self._partial = b""
        self.unacked = 0
        self.max_unacked_seen = 0
        self.paused = False

    def send(self, message: Any) -> None:
        if isinstance(message, StreamAck) and message.success:
            self.unacked = 0
        self.h.feed(encode_line(message))

    def read(self) -> list[Any]:
        """
        Handle what the module wrote since the last call; return the messages.
        """
        data = self._partial + self.h.transport.value()
        self.h.transport.clear()
        *lines, self._partial = data.split(b"\n")
        out = []
        for line in lines:
            message = decode_from_module(line)
            out.append(message)
            if isinstance(message, HttpResponse):
                self.responses.append(message)
                if message.stream_id is not None:
                    sink = HashSink()
                    self.bodies[message.request_id] = sink
                    receiver = StreamReceiver(
                        message.stream_id,
                        self.send,
                        sink,
                        self.h.reactor,
                        max_size=2**40,
                        stall_timeout=None,
                    )
                    if self.paused:
                        receiver.pauseProducing()
                    self.receivers[message.request_id] = receiver
                    self.table.add_receiver(receiver)
            elif isinstance(message, StreamChunk):
                self.unacked += 1
                self.max_unacked_seen = max(self.max_unacked_seen, self.unacked)
                self.table.received(message)
            elif not self.table.received(message):
                self.others.append(message)
        return out

    def pump(self, rounds: int = 100000) -> None:
        for _ in range(rounds):
            if not self.read():
                return

    def upload(
        self, request_id: str, uri: str, size: int, seed: int = 1, method: str = "POST"
    ) -> StreamSender:
        """
        Send a streamed request of C{size} bytes of L{pattern}, honouring the
        module's acks; return the sender (its C{done} fires when all was acked).
        """
        stream_id = f"o-{request_id}"
        sender = StreamSender(
            stream_id, self.send, StreamOptions(self.chunk_size, self.window), self.h.reactor
        )
        self.table.add_sender(sender)
        self.h.feed(encode_line(HttpRequest(request_id, method, uri, {}, None, stream_id)))
        block = pattern(4 * self.chunk_size, seed)
        sent = 0
        while sent < size and not sender.done.called:
            while sender.writable and sent < size:
                piece = block[: min(len(block), size - sent)]
                sender.write(piece)
                sent += len(piece)
            self.read()
        sender.finish()
        self.pump()
        return sender


def expected_sha(size: int, seed: int, chunk_size: int) -> str:
    digest = hashlib.sha256()
    block = pattern(4 * chunk_size, seed)
    left = size
    while left:
        piece = block[: min(len(block), left)]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


class StreamedRequestTests(SynchronousTestCase):
    def ready(self, extensions: dict[str, Any] | None = None, **config: Any) -> StdioOrchestrator:
        h = Harness(big_body_app, config=RuntimeConfig(**config))
        h.start()
        h.feed(init_line(extensions))
        orchestrator = StdioOrchestrator(h)
        orchestrator.read()
        return orchestrator

    def check_upload(self, size: int) -> None:
        o = self.ready()
        sender = o.upload("up", "/sha256", size)
        self.assertEqual(self.successResultOf(sender.done), size)
        [response] = o.responses
        self.assertEqual((response.request_id, response.status_code), ("up", 200))
        self.assertEqual((response.body or b"").decode(), expected_sha(size, 1, 65536))
        self.assertLessEqual(sender.max_unacked, 8)

    def test_1_mib_upload(self) -> None:
        """
        A 1 MiB body streamed in on stdin reaches the route whole (sha256 equal); the
        orchestrator never had more than the window unacknowledged.
        """
        self.check_upload(MiB)

    def test_64_mib_upload(self) -> None:
        self.check_upload(64 * MiB)

    def test_upload_without_streaming_enabled(self) -> None:
        """
        Streamed request bodies are understood even when the orchestrator enabled
        nothing (X0: received extension messages are always understood).
        """
        o = self.ready(extensions=None)
        sender = o.upload("up", "/sha256", 300000)
        self.successResultOf(sender.done)
        self.assertEqual(o.responses[0].status_code, 200)

    def test_body_limit(self) -> None:
        """
        A streamed body above the streamed-body limit is cancelled and answered 413.
        """
        o = self.ready(max_stream_body_size=200000)
        sender = o.upload("big", "/sha256", 1000000)
        failure = self.failureResultOf(sender.done, StreamFailed)
        self.assertEqual(failure.value.kind, "cancelled")
        [response] = o.responses
        self.assertEqual(response.status_code, 413)
        self.assertEqual(json.loads(response.body or b"")["error"]["kind"], "body_too_large")

    def test_checksum_error_is_400(self) -> None:
        o = self.ready()
        o.h.feed(encode_line(HttpRequest("bad", "POST", "/sha256", {}, None, "s-bad")))
        o.h.feed(encode_line(make_chunk("s-bad", 0, b"hello")))
        o.h.feed(encode_line(StreamChunk("s-bad", 1, b"world", False, crc32(b"World"), True)))
        messages = o.read()
        ack0, nack, cancel, response = messages
        self.assertEqual(ack0, StreamAck("s-bad", 0))
        self.assertFalse(nack.success)
        self.assertIn("checksum mismatch on chunk 1", nack.error)
        self.assertIsInstance(cancel, StreamCancel)
        self.assertEqual((response.request_id, response.status_code), ("bad", 400))
        error = json.loads(response.body)["error"]
        self.assertEqual(error["kind"], "bad_request")
        self.assertIn("checksum", error["message"])

    def test_gap_is_400(self) -> None:
        o = self.ready()
        o.h.feed(encode_line(HttpRequest("gap", "POST", "/sha256", {}, None, "s-gap")))
        o.h.feed(encode_line(make_chunk("s-gap", 1, b"world")))
        nack, _cancel, response = o.read()
        self.assertIn("expected chunk 0, got chunk 1", nack.error)
        self.assertEqual(response.status_code, 400)

    def test_cancel_is_400(self) -> None:
        o = self.ready()
        o.h.feed(encode_line(HttpRequest("c", "POST", "/sha256", {}, None, "s-c")))
        o.h.feed(encode_line(make_chunk("s-c", 0, b"hello")))
        o.h.feed(encode_line(StreamCancel("s-c", "client disconnected")))
        _ack, response = o.read()
        self.assertEqual(response.status_code, 400)
        self.assertIn("client disconnected", json.loads(response.body)["error"]["message"])

    def test_stall_is_400(self) -> None:
        o = self.ready(stream_stall_timeout=30)
        o.h.feed(encode_line(HttpRequest("st", "POST", "/sha256", {}, None, "s-st")))
        o.h.feed(encode_line(make_chunk("s-st", 0, b"hello")))
        o.read()
        o.h.reactor.advance(29)
        self.assertEqual(o.read(), [])
        o.h.reactor.advance(1)
        cancel, response = o.read()
        self.assertIsInstance(cancel, StreamCancel)
        self.assertEqual(response.status_code, 400)
        self.assertIn("stall", json.loads(response.body)["error"]["message"])

    def test_unknown_stream(self) -> None:
        o = self.ready()
        o.h.feed(encode_line(make_chunk("nobody", 0, b"x")))
        nack, cancel = o.read()
        self.assertEqual((nack.stream_id, nack.success), ("nobody", False))
        self.assertIn("unknown stream", nack.error)
        self.assertEqual(cancel.stream_id, "nobody")


class StreamedResponseTests(SynchronousTestCase):
    def ready(self, window: int = 8, gzip: bool = False, **config: Any) -> StdioOrchestrator:
        extensions: dict[str, Any] = {"streaming": {"chunk_size": 65536, "window": window}}
        if gzip:
            extensions["compression"] = ["gzip"]
        h = Harness(big_body_app, config=RuntimeConfig(**config))
        h.start()
        h.feed(init_line(extensions))
        o = StdioOrchestrator(h, window=window)
        o.read()
        return o

    def check_download(self, size: int, window: int = 8) -> StdioOrchestrator:
        o = self.ready(window=window)
        o.h.feed(encode_line(HttpRequest("down", "GET", f"/blob?size={size}", {})))
        o.pump()
        [response] = o.responses
        self.assertEqual(response.status_code, 200)
        self.assertIsNotNone(response.stream_id)
        self.assertEqual(response.body, b"")
        sink = o.bodies["down"]
        self.assertTrue(sink.done)
        self.assertEqual(sink.digest.hexdigest(), hashlib.sha256(pattern(size)).hexdigest())
        self.assertLessEqual(o.max_unacked_seen, window)
        return o

    def test_1_mib_download(self) -> None:
        self.check_download(MiB)

    def test_64_mib_download(self) -> None:
        self.check_download(64 * MiB)

    def test_small_response_is_not_streamed(self) -> None:
        o = self.ready()
        o.h.feed(encode_line(HttpRequest("small", "GET", "/blob?size=65536", {})))
        o.pump()
        [response] = o.responses
        self.assertIsNone(response.stream_id)
        self.assertEqual(response.body, pattern(65536))

    def test_paused_reader_stops_the_writer(self) -> None:
        """
        While the orchestrator does not ack, the module sends at most C{window}
        chunks and then nothing more.
        """
        o = self.ready(window=3)
        o.paused = True
        o.h.feed(encode_line(HttpRequest("p", "GET", f"/blob?size={MiB}", {})))
        o.pump()
        o.h.reactor.advance(10)
        o.pump()
        chunks_so_far = o.max_unacked_seen
        self.assertEqual(chunks_so_far, 3)
        self.assertEqual(o.bodies["p"].size, 0)
        o.receivers["p"].resumeProducing()
        o.pump()
        self.assertTrue(o.bodies["p"].done)
        self.assertEqual(o.bodies["p"].size, MiB)

    def test_route_timeout_ends_when_the_route_finishes(self) -> None:
        """
        The route's timeout (C{request_timeout}) covers the route, not the streaming
        of what it wrote: a route that finished at once streams on past it, for as long
        as the reader keeps the stream alive.
        """
        o = self.ready(window=2, request_timeout=5, stream_stall_timeout=3600)
        o.paused = True
        o.h.feed(encode_line(HttpRequest("late", "GET", f"/blob?size={MiB}", {})))
        o.pump()
        o.h.reactor.advance(10)
        o.pump()
        self.assertEqual(o.bodies["late"].size, 0)
        self.assertIsNone(o.bodies["late"].failed)
        o.receivers["late"].resumeProducing()
        o.pump()
        self.assertTrue(o.bodies["late"].done)
        self.assertEqual(
            o.bodies["late"].digest.hexdigest(), hashlib.sha256(pattern(MiB)).hexdigest()
        )
        self.assertEqual(o.h.service.parts.bridge.in_flight, 0)

    def test_stall_cancels_the_response(self) -> None:
        o = self.ready(window=2, stream_stall_timeout=60)
        o.paused = True
        o.h.feed(encode_line(HttpRequest("s", "GET", f"/blob?size={MiB}", {})))
        o.pump()
        o.h.reactor.advance(60)
        o.pump()
        self.assertEqual(o.bodies["s"].failed.kind, "cancelled")
        self.assertIn("stall", o.bodies["s"].failed.reason)
        self.assertEqual(o.h.service.dispatcher.streams.open_streams(), 0)
        self.assertEqual(o.h.service.parts.bridge.in_flight, 0)

    def test_orchestrator_cancel_stops_the_response(self) -> None:
        o = self.ready(window=2)
        o.paused = True
        o.h.feed(encode_line(HttpRequest("c", "GET", f"/blob?size={MiB}", {})))
        o.pump()
        o.receivers["c"].cancel("the client went away")
        o.pump()
        self.assertEqual(o.h.service.dispatcher.streams.open_streams(), 0)
        self.assertEqual(o.h.service.parts.bridge.in_flight, 0)

    def test_gzip_chunks(self) -> None:
        """
        With gzip enabled, compressible chunks go compressed; the body is intact.
        """
        o = self.ready(gzip=True)
        seen: list[StreamChunk] = []
        original = o.table.received

        def spy(message: Any) -> bool:
            if isinstance(message, StreamChunk):
                seen.append(message)
            return original(message)

        o.table.received = spy  # type: ignore[method-assign]
        o.h.feed(encode_line(HttpRequest("z", "GET", "/zeros?size=300000", {})))
        o.pump()
        self.assertTrue(o.bodies["z"].done)
        self.assertEqual(
            o.bodies["z"].digest.hexdigest(), hashlib.sha256(bytes(300000)).hexdigest()
        )
        self.assertTrue(all(c.compressed for c in seen if len(c.data) and not c.is_final))
