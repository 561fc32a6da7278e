"""
Tests for L{pywatt_twisted._transport.stdio}: stdout backpressure and the rate-limited
report of invalid stdin lines.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pywatt_twisted._transport.interfaces import IMessageReceiver, IOrchestratorLink
from pywatt_twisted._transport.stdio import StdioProtocol
from pywatt_twisted.wire.envelope import envelope_id
from pywatt_twisted.wire.messages import Heartbeat, HttpRequest, HttpResponse

INIT = (
    json.dumps(
        {
            "orchestrator_api": "http://127.0.0.1:9900",
            "module_id": "bp",
            "env": {},
            "listen": "127.0.0.1:0",
            "security_level": "None",
        }
    ).encode()
    + b"\n"
)


def request_line(request_id: str) -> bytes:
    return (
        json.dumps(
            {
                "op": "http_request",
                "request_id": request_id,
                "method": "GET",
                "uri": "/",
                "headers": {},
                "body": None,
            }
        ).encode()
        + b"\n"
    )


@implementer(IMessageReceiver)
class EchoReceiver:
    """
    Answers every C{http_request} at once with a reply of C{body_size} bytes of body,
    the way the HTTP bridge answers a fast route.
    """

    def __init__(self, body_size: int = 200) -> None:
        self.body_size = body_size
        self.handled: list[str] = []
        self.closed = 0
        self.failures: list[Exception] = []

    def init_received(self, blob: Any) -> None:
        pass

    def init_failed(self, reason: Exception) -> None:
        self.failures.append(reason)

    def message_received(self, message: Any, link: IOrchestratorLink) -> None:
        if isinstance(message, Heartbeat):
            link.send_heartbeat_ack()
            return
        assert isinstance(message, HttpRequest)
        self.handled.append(message.request_id)
        link.send_http_response(
            HttpResponse(
                request_id=message.request_id,
                status_code=200,
                headers={},
                body=b"x" * self.body_size,
            )
        )

    def input_closed(self, link: IOrchestratorLink) -> None:
        self.closed += 1


class SlowStdout(StringTransport):
    """
    A stdout whose reader is slow: like Twisted's own C{FileDescriptor} it pauses its
    streaming producer once more than C{capacity} bytes wait in its buffer, and resumes it
    when L{drain} empties the buffer. L{delivered} is what the orchestrator has read.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.delivered = b""
        self.producer_paused = False
        #: the producer's unsent bytes each time it paused / resumed reading stdin
        self.unsent_at_pause: list[int] = []
        self.unsent_at_resume: list[int] = []

    def pauseProducing(self) -> None:
        self.unsent_at_pause.append(self.producer.unsent)
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self.unsent_at_resume.append(self.producer.unsent)
        super().resumeProducing()

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.value()) > self.capacity:
            self.producer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.delivered += self.value()
        self.clear()
        if self.producer is not None and self.producer_paused:
            self.producer_paused = False
            self.producer.resumeProducing()

    def reply_ids(self) -> list[str]:
        return [json.loads(x)["content"]["request_id"] for x in self.delivered.splitlines()]


def reply_size(body_size: int) -> int:
    """
    The stdout bytes of one L{EchoReceiver} reply.
    """
    transport = StringTransport()
    proto = StdioProtocol(EchoReceiver(body_size), clock=Clock())
    proto.makeConnection(transport)
    proto.dataReceived(INIT + request_line("r0000"))
    return len(transport.value())


class BackpressureTests(SynchronousTestCase):
    """
    Unsent stdout bytes above the high-water mark pause stdin; below the low-water mark
    it resumes; nothing is dropped or reordered.
    """

    def setUp(self) -> None:
        self.reply = reply_size(200)
        self.high = 10 * self.reply
        self.low = 3 * self.reply
        self.receiver = EchoReceiver(200)
        self.stdout = SlowStdout(capacity=self.reply)
        self.proto = StdioProtocol(
            self.receiver, high_water=self.high, low_water=self.low, clock=Clock()
        )
        self.proto.makeConnection(self.stdout)

    def buffered(self) -> int:
        """
        Every stdout byte the module holds and the orchestrator has not read.
        """
        return self.proto.unsent + len(self.stdout.value())

    def test_registers_as_streaming_producer(self) -> None:
        self.assertIs(self.stdout.producer, self.proto)
        self.assertTrue(self.stdout.streaming)

    def test_stdin_paused_above_high_water_and_memory_bounded(self) -> None:
        """
        With an orchestrator that never reads stdout, stdin is paused once the unsent
        bytes pass the high-water mark, no more requests are handled, and the bytes held
        stay below high water plus one reply plus the transport's own buffer.
        """
        requests = b"".join(request_line(f"r{i:04}") for i in range(1000))
        self.proto.dataReceived(INIT + requests)
        self.assertEqual(self.stdout.producerState, "paused")
        self.assertTrue(self.proto.reading_paused)
        self.assertLess(len(self.receiver.handled), 1000)
        bound = self.high + self.reply + (self.stdout.capacity + self.reply)
        self.assertLessEqual(self.buffered(), bound)
        # More input (already in flight when the reader paused) is held, not handled.
        handled = len(self.receiver.handled)
        self.proto.dataReceived(request_line("late"))
        self.assertEqual(len(self.receiver.handled), handled)
        self.assertLessEqual(self.buffered(), bound)

    def test_resumes_below_low_water_and_delivers_everything_in_order(self) -> None:
        """
        Reading resumes only once the unsent bytes fall below the low-water mark, and
        every request gets exactly one reply, in order.
        """
        ids = [f"r{i:04}" for i in range(200)]
        self.proto.dataReceived(INIT + b"".join(request_line(i) for i in ids))
        bound = self.high + self.reply + (self.stdout.capacity + self.reply)
        for _ in range(10_000):
            if len(self.receiver.handled) == len(ids) and not self.stdout.value():
                break
            if self.proto.reading_paused:
                self.assertEqual(self.stdout.producerState, "paused")
            self.stdout.drain()
            self.assertLessEqual(self.buffered(), bound)
        self.stdout.drain()
        # Several pause/resume cycles, each at its mark.
        self.assertGreater(len(self.stdout.unsent_at_resume), 1)
        self.assertEqual(len(self.stdout.unsent_at_pause), len(self.stdout.unsent_at_resume))
        for unsent in self.stdout.unsent_at_pause:
            self.assertGreater(unsent, self.high)
        for unsent in self.stdout.unsent_at_resume:
            self.assertLess(unsent, self.low)
        self.assertEqual(self.receiver.handled, ids)
        self.assertEqual(self.stdout.reply_ids(), ids)
        self.assertEqual(self.proto.unsent, 0)
        self.assertFalse(self.proto.reading_paused)
        self.assertEqual(self.stdout.producerState, "producing")

    def test_heartbeats_wait_behind_held_lines_and_are_answered(self) -> None:
        self.proto.dataReceived(INIT + b"".join(request_line(f"r{i:04}") for i in range(50)))
        self.proto.dataReceived(b'{"op":"heartbeat"}\n')
        self.assertTrue(self.proto.reading_paused)
        for _ in range(1000):
            self.stdout.drain()
        lines = [json.loads(x) for x in self.stdout.delivered.splitlines()]
        self.assertEqual(lines[-1], {"op": "heartbeat_ack"})
        self.assertEqual(len(lines), 51)

    def test_eof_while_paused_comes_after_the_held_lines(self) -> None:
        self.proto.dataReceived(INIT + b"".join(request_line(f"r{i:04}") for i in range(50)))
        self.proto.readConnectionLost()
        self.assertEqual(self.receiver.closed, 0)
        for _ in range(1000):
            self.stdout.drain()
        self.assertEqual(len(self.receiver.handled), 50)
        self.assertEqual(self.receiver.closed, 1)

    def test_flush_waits_for_held_lines(self) -> None:
        self.proto.dataReceived(INIT + b"".join(request_line(f"r{i:04}") for i in range(5)))
        self.stdout.loseWriteConnection = lambda: setattr(  # type: ignore[method-assign]
            self.stdout, "write_closed", True
        )
        flushed = self.proto.flush()
        self.assertFalse(getattr(self.stdout, "write_closed", False))
        for _ in range(10):
            self.stdout.drain()
        self.assertTrue(getattr(self.stdout, "write_closed", False))
        self.proto.writeConnectionLost()
        self.successResultOf(flushed)
        self.assertEqual(len(self.stdout.reply_ids()), 5)

    def test_stdout_closed_releases_held_bytes_and_resumes(self) -> None:
        self.proto.dataReceived(INIT + b"".join(request_line(f"r{i:04}") for i in range(50)))
        self.assertTrue(self.proto.reading_paused)
        self.proto.writeConnectionLost()
        self.assertEqual(self.proto.unsent, 0)
        self.assertFalse(self.proto.reading_paused)

    def test_low_water_must_be_below_high_water(self) -> None:
        self.assertRaises(
            ValueError, StdioProtocol, self.receiver, high_water=100, low_water=100, clock=Clock()
        )

    def test_default_low_water_is_a_quarter(self) -> None:
        proto = StdioProtocol(self.receiver, high_water=4000, clock=Clock())
        self.assertEqual(proto.low_water, 1000)

    def test_pause_logged_with_the_setting(self) -> None:
        events: list[LogEvent] = []
        self.proto.log = Logger(observer=events.append)
        self.proto.dataReceived(INIT + b"".join(request_line(f"r{i:04}") for i in range(50)))
        warnings = [e for e in events if "backpressure" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertIn("PYWATT_STDOUT_HIGH_WATER", warnings[0]["log_format"])
        self.assertEqual(warnings[0]["high_water"], self.high)


class InvalidLineReportTests(SynchronousTestCase):
    """
    Invalid stdin lines are reported at most once a second, with a count.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[LogEvent] = []
        self.receiver = EchoReceiver()
        self.transport = StringTransport()
        self.proto = StdioProtocol(self.receiver, clock=self.clock, max_line_length=300)
        self.proto.log = Logger(observer=self.events.append)
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(INIT)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def test_burst_is_one_line_then_one_count(self) -> None:
        self.proto.dataReceived(b"not json\n" * 100_000)
        self.assertEqual(len(self.events), 1)
        self.assertIn("invalid stdin line", self.messages()[0])
        self.clock.advance(0.5)
        self.assertEqual(len(self.events), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.events), 2)
        self.assertEqual(self.events[1]["count"], 99_999)
        self.assertIn("99999 more invalid stdin line(s)", self.messages()[1])
        self.clock.advance(10)
        self.assertEqual(len(self.events), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_at_most_once_a_second(self) -> None:
        times: list[float] = []
        self.proto.log = Logger(observer=lambda e: times.append(self.clock.seconds()))
        for _ in range(50):
            self.proto.dataReceived(b"{broken\n")
            self.proto.dataReceived(b"x" * 400 + b"\n")  # too long
            self.clock.advance(0.1)
        self.clock.advance(5)
        self.assertGreater(len(times), 2)
        for earlier, later in itertools.pairwise(times):
            self.assertGreaterEqual(later - earlier, 1.0)

    def test_valid_lines_still_handled(self) -> None:
        self.proto.dataReceived(b"garbage\n" + request_line("ok1") + b"garbage\n")
        self.assertEqual(self.receiver.handled, ["ok1"])

    def test_pending_count_reported_when_stdin_closes(self) -> None:
        self.proto.dataReceived(b"bad\n" * 3)
        self.proto.readConnectionLost()
        self.assertEqual(self.events[-1]["count"], 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_line_content_never_logged(self) -> None:
        self.proto.dataReceived(b'{"op":"secret","name":"X","value":"hunter22"\n' * 3)
        self.clock.advance(1)
        self.assertNotIn("hunter22", repr(self.events))


class SourceTests(SynchronousTestCase):
    """
    The C{metadata.source} of HTTP responses on stdout comes from what the protocol was
    handed, then from the init blob; the protocol never reads the environment.
    """

    def response_source(self, proto: StdioProtocol) -> Any:
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.send_http_response(HttpResponse("r", 200, {}, b""))
        return json.loads(transport.value().splitlines()[-1])["metadata"]["source"]

    def test_handed_source_not_environment(self) -> None:
        self.patch(os, "environ", {"PYWATT_MODULE_ID": "from-environment"})
        self.assertEqual(
            self.response_source(StdioProtocol(EchoReceiver(0), clock=Clock())),
            "unknown_module",
        )
        self.assertEqual(
            self.response_source(StdioProtocol(EchoReceiver(0), clock=Clock(), source="given")),
            "given",
        )

    def test_init_blob_names_the_source(self) -> None:
        proto = StdioProtocol(EchoReceiver(0), clock=Clock(), source="given")
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(INIT)
        proto.send_http_response(HttpResponse("r", 200, {}, b""))
        self.assertEqual(json.loads(transport.value().splitlines()[-1])["metadata"]["source"], "bp")


class ResponseIdTests(SynchronousTestCase):
    """
    The C{metadata.id} of HTTP responses on stdout is an envelope id
    (L{pywatt_twisted.wire.envelope.envelope_id}): a valid version-4 UUID string, a
    different one per response, from the process's envelope id series rather than a
    fresh random uuid4 (issue 20: a tenth of the cost per response).
    """

    def test_envelope_ids(self) -> None:
        proto = StdioProtocol(EchoReceiver(0), clock=Clock())
        transport = StringTransport()
        proto.makeConnection(transport)
        for i in range(3):
            proto.send_http_response(HttpResponse(f"r{i}", 200, {}, b""))
        ids = [json.loads(line)["metadata"]["id"] for line in transport.value().splitlines()]
        self.assertEqual(len(set(ids)), 3)
        for value in ids:
            self.assertEqual(str(uuid.UUID(value)), value)
            self.assertEqual(uuid.UUID(value).version, 4)
        # the series' random prefix (the first 19 characters) is the process's
        prefix = envelope_id()[:19]
        self.assertEqual({value[:19] for value in ids}, {prefix})
