"""
Tests for L{pywatt_twisted._transport.channel}: one framed channel connection, module side.
"""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._transport.channel import (
    PHASE_STEPS,
    ChannelClosed,
    ChannelFactory,
    ChannelProtocol,
    ChannelSettings,
    ConnectionPhase,
    LivenessTimeout,
    MessageTooLarge,
    encode_channel_frame,
)
from pywatt_twisted._transport.tls import TlsHandshakeTimeout, is_tls_failure
from pywatt_twisted.errors import ChannelError, FrameTooLarge
from pywatt_twisted.wire.framing import FORMAT_AUTO, FORMAT_BASE64, frame_header
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    Heartbeat,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    RouteToModule,
    Shutdown,
)
from tests.transport.fakes import (
    BufferedTransport,
    RecordingListener,
    frame,
    frames_of,
    ops_of,
)


def connect(
    settings: ChannelSettings | None = None, clock: Clock | None = None
) -> tuple[ChannelProtocol, StringTransportWithDisconnection, RecordingListener, Clock]:
    settings = settings or ChannelSettings("tcp", "127.0.0.1:9901", "demo")
    clock = clock or Clock()
    listener = RecordingListener()
    protocol = ChannelFactory(settings, listener, clock).buildProtocol(None)
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport, listener, clock


class IdentifyTests(SynchronousTestCase):
    def test_identify_is_the_first_frame(self) -> None:
        """
        The recommended identify envelope (PROTOCOL.md 2.5, vector
        identify_recommended_tcp) is written on connect, before the protocol is ready.
        """
        protocol, transport, listener, _ = connect()
        [identify] = frames_of(transport.value())
        self.assertEqual(
            identify["content"], {"op": "identify", "identify": "demo", "module_id": "demo"}
        )
        self.assertEqual(identify["metadata"], {"source": "demo"})
        self.assertEqual(list(identify), ["id", "content", "metadata"])
        self.assertEqual(listener.ready, [protocol])
        self.assertTrue(protocol.writable)

    def test_identify_off(self) -> None:
        _, transport, listener, _ = connect(
            ChannelSettings("ipc", "/tmp/x.sock", "demo", identify=False)
        )
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(listener.ready), 1)

    def test_identify_carries_properties(self) -> None:
        """
        The auth token (security level Token) rides in metadata.properties.
        """
        _, transport, _, _ = connect(
            ChannelSettings(
                "tcp", "127.0.0.1:1", "demo", identify_properties={"auth_token": "tok-1"}
            )
        )
        [identify] = frames_of(transport.value())
        self.assertEqual(
            identify["metadata"], {"source": "demo", "properties": {"auth_token": "tok-1"}}
        )

    def test_tls_waits_for_handshake(self) -> None:
        """
        Over TLS nothing is written and the channel is not ready until the handshake
        completed.
        """
        protocol, transport, listener, _ = connect(
            ChannelSettings("tcp", "127.0.0.1:1", "demo", tls=True)
        )
        self.assertEqual(transport.value(), b"")
        self.assertEqual(listener.ready, [])
        self.assertFalse(protocol.writable)
        self.assertRaises(ChannelClosed, protocol.write_message, HeartbeatAck())
        protocol.handshakeCompleted()
        self.assertEqual(ops_of(transport.value()), ["identify"])
        protocol.dataReceived(frame({"op": "heartbeat"}))
        self.assertEqual(listener.ready, [protocol])


class ReceiveTests(SynchronousTestCase):
    def test_bare_and_enveloped(self) -> None:
        protocol, _, listener, _ = connect()
        protocol.dataReceived(
            frame({"op": "heartbeat"})
            + frame({"id": "3f2c8a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f", "content": {"op": "shutdown"}})
        )
        self.assertEqual(listener.messages, [Heartbeat(), Shutdown()])

    def test_accepted_formats(self) -> None:
        """
        Format 3 (base64 of JSON), 2 carrying JSON and 0 (leniently) are read.
        """
        protocol, _, listener, _ = connect()
        text = b'{"op":"heartbeat"}'
        protocol.dataReceived(
            frame(base64.b64encode(text), FORMAT_BASE64) + frame(text, 2) + frame(text, FORMAT_AUTO)
        )
        self.assertEqual(listener.messages, [Heartbeat()] * 3)
        # and JSON frames (given without a Frame object), each counted once
        protocol.dataReceived(frame(text) + frame(text, 2) + frame(text))
        self.assertEqual(listener.messages, [Heartbeat()] * 6)
        self.assertEqual(protocol.counters.frames_in, 6)

    def test_bad_frames_are_skipped(self) -> None:
        """
        An unknown format byte, invalid JSON and a JSON non-message are each skipped
        with a problem report; the connection stays up and later frames are read.
        """
        protocol, transport, listener, _ = connect()
        protocol.dataReceived(
            frame(b"xx", 9) + frame(b"not json") + frame({"no": "op"}) + frame({"op": "heartbeat"})
        )
        self.assertEqual(listener.messages, [Heartbeat()])
        self.assertEqual(len(listener.problems), 3)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(protocol.counters.bad_frames, 3)
        self.flushLoggedErrors()

    def test_oversize_header_aborts_without_buffering(self) -> None:
        """
        A header announcing 1 GiB against a 1 MiB cap aborts the connection at once;
        not one payload byte is held, and frames after it are never read.
        """
        protocol, transport, listener, _ = connect(
            ChannelSettings("tcp", "a", "demo", max_frame_length=1 << 20)
        )
        protocol.dataReceived(frame_header(1 << 30) + b"x" * 100 + frame({"op": "heartbeat"}))
        self.assertTrue(transport.disconnected)
        self.assertEqual(listener.messages, [])
        self.assertIsInstance(protocol.abort_reason, FrameTooLarge)
        self.assertEqual(protocol._reader.decoder.buffered, 0)
        self.assertEqual(len(listener.lost), 1)
        self.assertTrue(protocol.lost)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
    def test_any_chunking(self, cuts: list[int]) -> None:
        """
        Whatever the transport's read sizes, the same messages come out in order.
        """
        protocol, _, listener, _ = connect()
        messages = [
            {
                "op": "http_request",
                "request_id": f"r{i}",
                "method": "GET",
                "uri": f"/{i}",
                "headers": {},
                "body": None,
            }
            for i in range(5)
        ]
        stream = b"".join(frame(m) for m in messages)
        pos = 0
        for cut in cuts:
            protocol.dataReceived(stream[pos : pos + cut])
            pos += cut
        protocol.dataReceived(stream[pos:])
        self.assertEqual([m.request_id for m in listener.messages], [f"r{i}" for i in range(5)])


class SendTests(SynchronousTestCase):
    def test_full_duplex(self) -> None:
        """
        Writing needs nothing from the read side: with half an inbound frame
        buffered, a reply is written at once (PROTOCOL.md gap G4).
        """
        protocol, transport, listener, _ = connect()
        transport.clear()
        whole = frame({"op": "heartbeat"})
        protocol.dataReceived(whole[:7])
        protocol.send_heartbeat_ack()
        self.assertEqual(ops_of(transport.value()), ["heartbeat_ack"])
        protocol.dataReceived(whole[7:])
        self.assertEqual(listener.messages, [Heartbeat()])

    def test_heartbeat_ack_matches_vector(self) -> None:
        protocol, transport, _, _ = connect()
        transport.clear()
        protocol.send_heartbeat_ack()
        [ack] = frames_of(transport.value())
        self.assertEqual(ack["content"], {"op": "heartbeat_ack"})
        self.assertEqual(ack["metadata"], {})
        self.assertEqual(transport.value()[4], 1)

    def test_heartbeat_ack_counted_and_capped(self) -> None:
        """
        The pre-encoded ack is counted like any frame; under a frame cap smaller than
        the ack it fails with L{MessageTooLarge} and writes nothing, as any message does.
        """
        protocol, transport, _, _ = connect()
        transport.clear()
        before = protocol.counters.frames_out
        protocol.send_heartbeat_ack()
        self.assertEqual(protocol.counters.frames_out, before + 1)
        tiny, tiny_transport, _, _ = connect(
            ChannelSettings("tcp", "a", "d", max_frame_length=80, identify=False)
        )
        error = self.assertRaises(MessageTooLarge, tiny.send_heartbeat_ack)
        self.assertEqual(error.op, "heartbeat_ack")
        self.assertEqual(tiny_transport.value(), b"")

    def test_oversize_outgoing_fails_caller(self) -> None:
        """
        A message that does not fit raises MessageTooLarge, naming the op and the
        sizes; nothing is written.
        """
        protocol, transport, _, _ = connect(
            ChannelSettings("tcp", "a", "demo", max_frame_length=200)
        )
        transport.clear()
        message = RouteToModule(
            "peer", "ep", __import__("uuid").uuid4(), EncodedPayload(b"x" * 500)
        )
        with self.assertRaises(MessageTooLarge) as e:
            protocol.write_message(message)
        self.assertIsInstance(e.exception, ChannelError)
        self.assertIsInstance(e.exception, FrameTooLarge)
        self.assertIn("route_to_module", str(e.exception))
        self.assertIn("200", str(e.exception))
        self.assertEqual(transport.value(), b"")
        self.assertRaises(MessageTooLarge, encode_channel_frame, message, 200)

    def test_oversize_http_response_is_reported(self) -> None:
        """
        An HTTP response too large for a frame is not written: the transport reports it
        with L{MessageTooLarge} (the HTTP layer answers 502 instead, see
        L{tests.web.test_bridge.SendHttpReplyTests}).
        """
        protocol, transport, _, _ = connect(
            ChannelSettings("tcp", "a", "demo", max_frame_length=800)
        )
        transport.clear()
        error = self.assertRaises(
            MessageTooLarge,
            protocol.send_http_response,
            HttpResponse("req-9", 200, {}, b"y" * 1000),
        )
        self.assertEqual((error.op, error.limit), ("http_response", 800))
        self.assertEqual(transport.value(), b"")

    def test_reply_after_loss_is_handed_back(self) -> None:
        """
        A reply on a connection that is gone goes to the listener (which reroutes
        it); a heartbeat ack for a dead connection is not sent anywhere.
        """
        protocol, transport, listener, _ = connect()
        transport.loseConnection()
        response = HttpResponse("r", 200, {}, b"ok")
        protocol.send_http_response(response)
        protocol.send(HeartbeatAck())
        protocol.send_heartbeat_ack()
        self.assertEqual(listener.undeliverable, [response, HeartbeatAck()])
        self.assertRaises(ChannelClosed, protocol.write_frame, b"x")


class FlowControlTests(SynchronousTestCase):
    def test_registered_as_streaming_producer(self) -> None:
        protocol, transport, _, _ = connect()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_transport_pause_stops_new_sends(self) -> None:
        """
        When the transport's buffer fills, the protocol tells the manager to stop
        routing new sends to it (and resumes that on drain); it keeps reading until
        its own outbox passes the high-water mark.
        """
        protocol, transport, listener, _ = connect()
        protocol.pauseProducing()
        self.assertFalse(protocol.writable)
        self.assertEqual(listener.writable, [False])
        self.assertEqual(transport.producerState, "producing")
        protocol.pauseProducing()
        self.assertEqual(listener.writable, [False])
        protocol.resumeProducing()
        self.assertTrue(protocol.writable)
        self.assertEqual(listener.writable, [False, True])


def request(n: int) -> bytes:
    return frame(
        {
            "op": "http_request",
            "request_id": f"req-{n}",
            "method": "GET",
            "uri": "/big",
            "headers": {},
            "body": [],
        }
    )


def reply(n: int, size: int) -> bytes:
    return frame({"op": "http_response", "request_id": f"req-{n}", "pad": "x" * size})


class ReplyingListener(RecordingListener):
    """
    Answers each HTTP request at once with a large frame, as a handler would.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.protocol: ChannelProtocol | None = None

    def channel_message(self, protocol: ChannelProtocol, message: object) -> None:
        super().channel_message(protocol, message)
        assert isinstance(message, HttpRequest)
        protocol.write_frame(reply(int(message.request_id[4:]), self.size))


class BackpressureTests(SynchronousTestCase):
    """
    A peer that does not read its replies: the bytes the channel holds stay bounded
    by its high-water mark, and it takes no new work until they drain.
    """

    HIGH = 2000
    REPLY = 200  # the reply frame is a little larger

    def connect(
        self, transport_buffer: int = 100
    ) -> tuple[ChannelProtocol, BufferedTransport, ReplyingListener]:
        settings = ChannelSettings("tcp", "a", "demo", identify=False, high_water=self.HIGH)
        listener = ReplyingListener(self.REPLY)
        protocol = ChannelFactory(settings, listener, Clock()).buildProtocol(None)
        transport = BufferedTransport(transport_buffer)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport, listener

    def test_pauses_reading_above_high_water_resumes_below_low_water(self) -> None:
        """
        Forty requests arrive in one read; each is answered with a large reply. Once
        the unsent replies pass the high-water mark the channel pauses reading its
        transport and dispatches none of the requests already read; as the peer reads,
        it resumes only at or below a quarter of the mark. All forty replies arrive,
        in order, and the bytes held never exceed the mark by more than one reply.
        """
        protocol, transport, listener = self.connect()
        events: list[dict[str, object]] = []
        protocol.log = Logger(observer=events.append)
        frame_size = len(reply(0, self.REPLY))
        paused_at: list[int] = []
        resumed_at: list[int] = []
        pause, resume = transport.pauseProducing, transport.resumeProducing

        def record_pause() -> None:
            paused_at.append(protocol.buffered)
            pause()

        def record_resume() -> None:
            resumed_at.append(protocol.buffered)
            resume()

        transport.pauseProducing = record_pause  # type: ignore[method-assign]
        transport.resumeProducing = record_resume  # type: ignore[method-assign]
        protocol.dataReceived(b"".join(request(n) for n in range(40)))

        # Reply 0 fills the transport; the next ones wait in the outbox until one
        # takes it over the mark: no more requests are taken.
        over = self.HIGH // frame_size + 1
        self.assertEqual(len(listener.messages), 1 + over)
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(protocol.reading_paused)
        self.assertEqual(protocol.buffered, over * frame_size)
        self.assertEqual(listener.writable, [False])

        # Data still delivered while paused (a TLS record already read) queues
        # behind what was read before.
        protocol.dataReceived(request(40))
        self.assertEqual(len(listener.messages), 1 + over)

        peak = 0
        while transport.value():
            peak = max(peak, protocol.buffered + len(transport.value()))
            self.assertLessEqual(protocol.buffered, self.HIGH + frame_size)
            self.assertEqual(transport.producerState == "paused", protocol.reading_paused)
            transport.drain()
        # In-process bound: the channel's outbox plus the transport's buffer.
        self.assertLessEqual(peak, self.HIGH + 100 + 2 * frame_size)
        self.assertTrue(paused_at and resumed_at)
        self.assertTrue(all(b > self.HIGH for b in paused_at), paused_at)
        self.assertTrue(all(b <= self.HIGH // 4 for b in resumed_at), resumed_at)
        self.assertEqual(len(paused_at), len(resumed_at))
        ids = [f["request_id"] for f in frames_of(transport.delivered)]
        self.assertEqual(ids, [f"req-{n}" for n in range(41)])
        self.assertEqual([m.request_id for m in listener.messages], ids)  # type: ignore[attr-defined]
        self.assertEqual(protocol.buffered, 0)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(protocol.counters.read_pauses, len(paused_at))
        warnings = [e for e in events if "PYWATT_CHANNEL_HIGH_WATER" in str(e["log_format"])]
        self.assertEqual(len(warnings), 1, "the bound is logged once per connection")

    def test_counts_bytes_not_frames(self) -> None:
        """
        Many small replies never pause reading; the mark is in bytes.
        """
        protocol, transport, listener = self.connect()
        listener.size = 1
        protocol.pauseProducing()  # the transport is full
        protocol.dataReceived(b"".join(request(n) for n in range(20)))
        self.assertEqual(len(listener.messages), 20)
        self.assertFalse(protocol.reading_paused)
        self.assertLess(protocol.buffered, self.HIGH)
        self.assertEqual(transport.value(), b"")
        transport.producerPaused = True
        transport.drain()
        while transport.value():
            transport.drain()
        ids = [f["request_id"] for f in frames_of(transport.delivered)]
        self.assertEqual(ids, [f"req-{n}" for n in range(20)])

    def test_close_flushes_the_outbox(self) -> None:
        protocol, transport, _ = self.connect()
        protocol.dataReceived(request(0) + request(1))
        self.assertGreater(protocol.buffered, 0)
        protocol.close()
        ids = [f["request_id"] for f in frames_of(transport.value())]
        self.assertEqual(ids, ["req-0", "req-1"])
        self.assertEqual(protocol.buffered, 0)

    def test_loss_releases_everything(self) -> None:
        protocol, transport, listener = self.connect()
        protocol.dataReceived(b"".join(request(n) for n in range(40)))
        transport.loseConnection()
        self.assertEqual(protocol.buffered, 0)
        self.assertEqual(len(protocol._reader.held), 0)
        transport.drain()
        self.assertEqual(len(listener.messages), 2 + self.HIGH // len(reply(0, self.REPLY)))

    def test_bad_marks_refused(self) -> None:
        self.assertRaises(ValueError, ChannelSettings, "tcp", "a", "d", high_water=0)
        self.assertRaises(ValueError, ChannelSettings, "tcp", "a", "d", high_water=10, low_water=10)
        self.assertEqual(ChannelSettings("tcp", "a", "d", high_water=100).resume_below, 25)


class HealthyTests(SynchronousTestCase):
    """
    Whether a connection proved usable (the manager resets its backoff only then).
    """

    def test_one_inbound_message_makes_it_healthy(self) -> None:
        protocol, transport, _, _ = connect()
        self.assertFalse(protocol.healthy)
        protocol.dataReceived(frame({"op": "heartbeat"}))
        self.assertTrue(protocol.healthy)
        transport.loseConnection()
        self.assertTrue(protocol.healthy)

    def test_dies_at_once_not_healthy(self) -> None:
        protocol, transport, _, clock = connect()
        clock.advance(9.9)
        transport.loseConnection()
        self.assertFalse(protocol.healthy)
        clock.advance(100)
        self.assertFalse(protocol.healthy, "counted until the loss, not until now")

    def test_up_long_enough_is_healthy(self) -> None:
        protocol, transport, _, clock = connect(
            ChannelSettings("tcp", "a", "demo", healthy_after=3.0)
        )
        clock.advance(3.0)
        self.assertTrue(protocol.healthy)
        transport.loseConnection()
        self.assertTrue(protocol.healthy)

    def test_tls_rejected_after_handshake_not_healthy(self) -> None:
        """
        Over TLS, bytes before the connection is accepted do not count, and a
        connection that is never ready is never healthy however long it lasted.
        """
        protocol, transport, _, clock = connect(
            ChannelSettings("tcp", "a", "demo", tls=True, tls_settle=60, healthy_after=1)
        )
        protocol.handshakeCompleted()
        clock.advance(30)
        transport.loseConnection()
        self.assertFalse(protocol.healthy)


class TlsHandshakeTimeoutTests(SynchronousTestCase):
    def settings(self) -> ChannelSettings:
        return ChannelSettings("tcp", "a", "demo", tls=True, tls_handshake_timeout=10.0)

    def test_stalled_handshake_aborts(self) -> None:
        protocol, transport, listener, clock = connect(self.settings())
        clock.advance(9.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertIsInstance(protocol.abort_reason, TlsHandshakeTimeout)
        self.assertIn("PYWATT_TLS_HANDSHAKE_TIMEOUT", str(protocol.abort_reason))
        self.assertTrue(is_tls_failure(protocol.abort_reason))
        self.assertEqual(listener.ready, [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_completed_handshake_cancels(self) -> None:
        protocol, transport, _, clock = connect(self.settings())
        clock.advance(5)
        protocol.handshakeCompleted()
        clock.advance(60)
        self.assertFalse(transport.disconnected)
        self.assertIsNone(protocol.abort_reason)

    def test_plaintext_has_no_handshake_timer(self) -> None:
        _, _, _, clock = connect(ChannelSettings("tcp", "a", "demo", tls_handshake_timeout=1.0))
        self.assertEqual(clock.getDelayedCalls(), [])


class LivenessTests(SynchronousTestCase):
    def settings(self) -> ChannelSettings:
        return ChannelSettings("tcp", "a", "demo", liveness_deadline=10.0)

    def test_silence_aborts(self) -> None:
        protocol, transport, _listener, clock = connect(self.settings())
        clock.advance(9.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertIsInstance(protocol.abort_reason, LivenessTimeout)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_traffic_postpones(self) -> None:
        protocol, transport, _, clock = connect(self.settings())
        for _ in range(5):
            clock.advance(6)
            protocol.dataReceived(frame({"op": "heartbeat"}))
        self.assertFalse(transport.disconnected)
        clock.advance(9)
        self.assertFalse(transport.disconnected)
        clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_no_timer_left_after_loss(self) -> None:
        _protocol, transport, _, clock = connect(self.settings())
        transport.loseConnection()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_off_by_default(self) -> None:
        _, transport, _, clock = connect()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(3600)
        self.assertFalse(transport.disconnected)


class TlsReadinessTests(SynchronousTestCase):
    """
    Over TLS, identify goes out when the handshake is done, but the channel is ready
    only once the peer proved it accepted the connection (TLS 1.3 rejects a client
    certificate after the client's handshake completed).
    """

    def tls(
        self,
    ) -> tuple[ChannelProtocol, StringTransportWithDisconnection, RecordingListener, Clock]:
        protocol, transport, listener, clock = connect(
            ChannelSettings("tcp", "a", "demo", tls=True, tls_settle=0.5)
        )
        protocol.handshakeCompleted()
        return protocol, transport, listener, clock

    def test_identify_then_ready_after_settle(self) -> None:
        protocol, transport, listener, clock = self.tls()
        self.assertEqual(ops_of(transport.value()), ["identify"])
        self.assertEqual(listener.ready, [])
        self.assertFalse(protocol.writable)
        clock.advance(0.5)
        self.assertEqual(listener.ready, [protocol])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ready_at_first_inbound_bytes(self) -> None:
        protocol, _, listener, clock = self.tls()
        protocol.dataReceived(frame({"op": "heartbeat"}))
        self.assertEqual(listener.ready, [protocol])
        self.assertEqual(listener.messages, [Heartbeat()])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_rejected_before_settle_never_ready(self) -> None:
        from OpenSSL.SSL import Error

        protocol, _, listener, clock = self.tls()
        protocol.connectionLost(Failure(Error([("SSL routines", "", "certificate required")])))
        self.assertEqual(listener.ready, [])
        self.assertEqual(len(listener.lost), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class HttpRequestShapeTests(SynchronousTestCase):
    def test_http_request_decoded(self) -> None:
        protocol, _, listener, _ = connect()
        protocol.dataReceived(
            frame(
                {
                    "op": "http_request",
                    "request_id": "req-1",
                    "method": "POST",
                    "uri": "/x?y=1",
                    "headers": {"a": "b"},
                    "body": [104, 105],
                }
            )
        )
        self.assertEqual(
            listener.messages, [HttpRequest("req-1", "POST", "/x?y=1", {"a": "b"}, b"hi")]
        )


class ConnectionPhaseTests(SynchronousTestCase):
    """
    A connection's life is one L{ConnectionPhase}, stepped only along L{PHASE_STEPS}.
    """

    def test_plain_connection_is_ready_at_once(self) -> None:
        protocol, transport, _, _ = connect()
        self.assertIs(protocol.phase, ConnectionPhase.READY)
        transport.loseConnection()
        self.assertIs(protocol.phase, ConnectionPhase.LOST)
        self.assertEqual((protocol.ready, protocol.lost), (False, True))

    def test_tls_steps_through_handshake_and_settling(self) -> None:
        settings = ChannelSettings("tcp", "127.0.0.1:9901", "demo", tls=True, tls_settle=0.5)
        protocol, _, listener, clock = connect(settings)
        self.assertIs(protocol.phase, ConnectionPhase.HANDSHAKING)
        protocol.handshakeCompleted()
        self.assertIs(protocol.phase, ConnectionPhase.SETTLING)
        protocol.handshakeCompleted()  # a second one changes nothing
        self.assertIs(protocol.phase, ConnectionPhase.SETTLING)
        clock.advance(0.5)
        self.assertIs(protocol.phase, ConnectionPhase.READY)
        self.assertEqual(listener.ready, [protocol])

    def test_no_step_outside_the_table(self) -> None:
        protocol, _, _, _ = connect()
        self.assertRaises(RuntimeError, protocol._enter, ConnectionPhase.HANDSHAKING)
        self.assertEqual(PHASE_STEPS[ConnectionPhase.LOST], frozenset())
