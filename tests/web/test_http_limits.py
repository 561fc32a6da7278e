"""
Tests for the limits of direct HTTP (L{pywatt_twisted.web.site.PyWattHTTPChannel}):
body size (413), header size (431/414), header and idle timeouts (408 / close),
obsolete line folding (400). In memory with L{StringTransport} and a L{Clock}, plus
one real loopback socket for the 413 sent before the body.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from pywatt_twisted.web.site import REFUSAL_LINGER, PyWattHTTPChannel, PyWattSite
from tests.web._apps import parse_response


class Recorder(Resource):
    """
    A leaf that answers C{ok <body length>} and remembers every request it saw.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, int]] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        self.seen.append((request.method, len(body)))
        return b"ok %d" % len(body)


def make_site(clock: Clock, **limits: Any) -> tuple[PyWattSite, Recorder]:
    resource = Recorder()
    return PyWattSite(resource, reactor=clock, access_log=False, **limits), resource


def connect(site: PyWattSite, transport: StringTransport | None = None) -> tuple[Any, Any]:
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = transport or StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
    )
    protocol.makeConnection(transport)
    return transport, protocol


def error_of(data: bytes) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    code, headers, body = parse_response(data)
    return code, headers, json.loads(body)


class Events:
    """
    Collect log events of C{pywatt_twisted.web} for one test.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def at(self, level: LogLevel) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("log_level") == level
            and str(e.get("log_namespace", "")).startswith("pywatt_twisted.web")
        ]


class ProtocolTests(SynchronousTestCase):
    def test_site_builds_pywatt_channels_with_its_limits(self) -> None:
        site, _ = make_site(
            Clock(), max_body_size=10, max_header_size=300, header_timeout=3, idle_timeout=7
        )
        _, channel = connect(site)
        self.assertIsInstance(channel, PyWattHTTPChannel)
        self.assertEqual(
            (channel.maxBodySize, channel.totalHeadersSize, channel.MAX_LENGTH),
            (10, 300, 300),
        )
        self.assertEqual((channel.headerTimeout, channel.timeOut), (3, 7))

    def test_defaults(self) -> None:
        site, _ = make_site(Clock())
        _, channel = connect(site)
        self.assertEqual(channel.maxBodySize, 16 * 1024 * 1024)
        self.assertEqual(channel.totalHeadersSize, 16 * 1024)
        self.assertEqual((channel.headerTimeout, channel.timeOut), (30, 60))


class BodyLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.site, self.resource = make_site(self.clock, max_body_size=100)

    def test_content_length_above_limit_refused_before_the_body(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
        )
        code, headers, body = error_of(transport.value())
        self.assertEqual(code, 413)
        self.assertEqual(headers["connection"], ["close"])
        self.assertEqual(body["error"]["kind"], "body_too_large")
        self.assertIn("1073741824 bytes", body["error"]["message"])
        self.assertIn("limit is 100 bytes", body["error"]["message"])
        self.assertTrue(transport.disconnecting)
        # Nothing of the body was spooled: the request never got a content file.
        self.assertIsNone(channel.requests[0].content)
        # What the client still sends is dropped, and the route never runs.
        channel.dataReceived(b"x" * 5000)
        self.assertEqual(self.resource.seen, [])
        channel.connectionLost(Failure(ConnectionDone()))

    def test_expect_continue_not_sent_when_refused(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertNotIn(b"100 Continue", transport.value())

    def test_content_length_at_limit_served(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 100
        )
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, body), (200, b"ok 100"))
        self.assertFalse(transport.disconnecting)

    def chunked(self, *chunks: bytes) -> bytes:
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        return (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body
            + b"0\r\n\r\n"
        )

    def test_chunked_body_cut_off_when_it_passes_the_limit(self) -> None:
        transport, channel = connect(self.site)
        raw = self.chunked(b"a" * 60, b"b" * 60, b"c" * 60)
        # Byte by byte: the cut-off happens mid-chunk, and nothing after it is read.
        for i in range(len(raw)):
            channel.dataReceived(raw[i : i + 1])
        code, _, body = error_of(transport.value())
        self.assertEqual(code, 413)
        self.assertIn("chunked request body passed 100 bytes", body["error"]["message"])
        self.assertEqual(transport.value().count(b"HTTP/1.1"), 1)
        self.assertEqual(self.resource.seen, [])
        self.assertTrue(transport.disconnecting)

    def test_chunked_body_in_one_piece_with_terminator_is_not_processed(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(self.chunked(b"a" * 101))
        self.assertEqual(error_of(transport.value())[0], 413)
        self.assertEqual(self.resource.seen, [])

    def test_chunked_body_within_limit_served(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(self.chunked(b"a" * 50, b"b" * 50))
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, body), (200, b"ok 100"))

    def test_refusal_logged_once_then_at_debug(self) -> None:
        events = Events(self)
        for _ in range(3):
            _transport, channel = connect(self.site)
            channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        [warning] = events.at(LogLevel.warn)
        self.assertEqual(warning["limit"], "max_body_size")
        self.assertIn("--max-body-size / PYWATT_MAX_BODY_SIZE", warning["setting"])
        self.assertEqual(warning["peer"], str(IPv4Address("TCP", "127.0.0.1", 5555)))
        self.assertEqual(len(events.at(LogLevel.debug)), 2)


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):
    """
    A L{StringTransport} that, like a TCP connection, can close its write side alone.
    """

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def abortConnection(self) -> None:
        self.aborted = True


class LingerTests(SynchronousTestCase):
    def test_refused_tcp_connection_half_closes_then_aborts(self) -> None:
        clock = Clock()
        site, resource = make_site(clock, max_body_size=10)
        transport = HalfClosingTransport()
        _, channel = connect(site, transport)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        self.assertEqual(error_of(transport.value())[0], 413)
        # The answer goes out with a FIN; the connection keeps reading, and dropping,
        # what the client was already sending, so the client sees the 413, not a reset.
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"x" * 11)
        clock.advance(REFUSAL_LINGER - 0.1)
        self.assertFalse(transport.aborted)
        clock.advance(0.1)
        self.assertTrue(transport.aborted)
        self.assertEqual(resource.seen, [])

    def test_client_closing_first_cancels_the_linger_timer(self) -> None:
        clock = Clock()
        site, _ = make_site(clock, max_body_size=10)
        transport = HalfClosingTransport()
        _, channel = connect(site, transport)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])


class HeaderSizeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.site, self.resource = make_site(Clock(), max_header_size=1024)

    def test_one_oversized_header_gets_431(self) -> None:
        # Twisted alone closes the connection without a status for a line this long.
        transport, channel = connect(self.site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        code, _, body = error_of(transport.value())
        self.assertEqual(code, 431)
        self.assertEqual(body["error"]["kind"], "header_too_large")
        self.assertIn("1024 bytes", body["error"]["message"])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 Request Header Fields"))
        self.assertTrue(transport.disconnecting)

    def test_oversized_header_arriving_in_pieces_gets_431(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: ")
        for _ in range(30):
            channel.dataReceived(b"a" * 100)
        self.assertEqual(error_of(transport.value())[0], 431)

    def test_many_small_headers_over_the_total_get_431(self) -> None:
        transport, channel = connect(self.site)
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
        channel.dataReceived(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertEqual(error_of(transport.value())[0], 431)
        self.assertEqual(self.resource.seen, [])

    def test_long_request_line_gets_414(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        code, _, body = error_of(transport.value())
        self.assertEqual((code, body["error"]["kind"]), (414, "uri_too_long"))

    def test_headers_at_the_limit_served(self) -> None:
        transport, channel = connect(self.site)
        request_line = b"GET / HTTP/1.1"
        host = b"Host: x"
        filler = b"X-F: " + b"f" * (1024 - len(request_line) - len(host) - 5)
        channel.dataReceived(request_line + b"\r\n" + host + b"\r\n" + filler + b"\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)


class PipelinedLimitsTests(SynchronousTestCase):
    """
    The channel checks the header limits in its own line loop (issue 20): a request
    that follows another in the same piece of data is held to them too.
    """

    def test_second_request_over_the_header_limit_gets_431(self) -> None:
        site, resource = make_site(Clock(), max_header_size=1024)
        transport, channel = connect(site)
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
        channel.dataReceived(
            b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\n" + headers + b"\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"HTTP/1.1 431 Request Header Fields", transport.value())
        self.assertEqual(len(resource.seen), 1)

    def test_second_request_folded_gets_400(self) -> None:
        site, resource = make_site(Clock())
        transport, channel = connect(site)
        channel.dataReceived(
            b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /second HTTP/1.1\r\nX-Folded: one\r\n\ttwo\r\n\r\n"
            b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertIn(b"HTTP/1.1 400 Bad Request", transport.value())
        self.assertEqual(len(resource.seen), 1)

    def test_nothing_read_after_a_refusal_in_the_same_data(self) -> None:
        site, resource = make_site(Clock())
        transport, channel = connect(site)
        channel.dataReceived(
            b"GET / HTTP/1.1\r\nX-Folded: one\r\n two\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)
        self.assertEqual(resource.seen, [])


class FoldingTests(SynchronousTestCase):
    def test_obsolete_line_folding_gets_400(self) -> None:
        site, resource = make_site(Clock())
        for fold in (b" ", b"\t"):
            transport, channel = connect(site)
            channel.dataReceived(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n" + fold + b"two\r\n\r\n"
            )
            code, _, body = error_of(transport.value())
            self.assertEqual(code, 400, fold)
            self.assertIn("obsolete line folding", body["error"]["message"])
            self.assertTrue(transport.disconnecting)
        self.assertEqual(resource.seen, [])

    def test_whitespace_inside_values_is_fine(self) -> None:
        site, _ = make_site(Clock())
        transport, _channel = connect(site)
        _channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-A:  spaced\tvalue \r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)


class TimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.site, self.resource = make_site(self.clock)

    def test_slow_loris_cut_at_the_header_timeout(self) -> None:
        transport, channel = connect(self.site)
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        # One byte a second: every byte resets the idle timer, not the header one.
        for i in range(29):
            channel.dataReceived(raw[i : i + 1])
            self.clock.advance(1)
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(raw[29:30])
        self.clock.advance(1)
        code, _, body = error_of(transport.value())
        self.assertEqual(code, 408)
        self.assertIn("within 30 seconds", body["error"]["message"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.resource.seen, [])

    def test_header_timer_starts_at_each_request_first_byte(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)
        transport.clear()
        # Idle 50 s (under the 60 s idle timeout), then a second request whose headers
        # take 29 s: served, because its header clock started at its own first byte.
        self.clock.advance(50)
        channel.dataReceived(b"GET /again HTTP/1.1\r\n")
        self.clock.advance(29)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[0], 200)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.resource.seen), 2)

    def test_one_header_timer_for_a_keep_alive_connection(self) -> None:
        # Each request's first byte sets a deadline; the timer armed for the first one
        # serves the next ones (no timer scheduled and cancelled per request).
        transport, channel = connect(self.site)
        for _ in range(20):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.clock.advance(0.5)
        self.assertEqual(len(self.resource.seen), 20)
        header_timers = [
            c for c in self.clock.getDelayedCalls() if c.func == channel._headerClockFired
        ]
        self.assertEqual(len(header_timers), 1)
        # It fires between requests and is not re-armed: nothing is being read.
        self.clock.advance(30)
        self.assertEqual(
            [c for c in self.clock.getDelayedCalls() if c.func == channel._headerClockFired],
            [],
        )
        self.assertFalse(transport.disconnecting)

    def test_later_request_gets_its_own_full_header_deadline(self) -> None:
        # The timer armed at t=0 for the first request fires at t=30 while the second
        # request (first byte at t=10) is still sending headers: it is re-armed for
        # that request's own deadline, t=40, and cuts it then.
        transport, channel = connect(self.site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        transport.clear()
        self.clock.advance(10)
        channel.dataReceived(b"GET /slow HTTP/1.1\r\n")
        self.clock.advance(20)
        channel.dataReceived(b"X-A: 1\r\n")
        self.clock.advance(9.5)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.5)
        code, _, body = error_of(transport.value())
        self.assertEqual(code, 408)
        self.assertIn("within 30 seconds", body["error"]["message"])
        self.assertEqual(len(self.resource.seen), 1)

    def test_header_deadline_uses_the_global_reactor_without_a_site_clock(self) -> None:
        from twisted.internet import reactor as global_reactor

        channel = PyWattHTTPChannel()
        channel.callLater = self.clock.callLater
        channel.makeConnection(StringTransport())
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertIs(channel.clock, global_reactor)
        deadline = channel._headerDeadline
        self.assertIsNotNone(deadline)
        left = deadline - global_reactor.seconds()
        self.assertTrue(25 < left <= 30, left)

    def test_slow_route_is_not_cut_by_the_header_timeout(self) -> None:
        class Slow(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                clock.callLater(100, lambda: (request.write(b"late"), request.finish()))
                return 1  # NOT_DONE_YET

        clock = self.clock
        site = PyWattSite(Slow(), reactor=clock, access_log=False)
        transport, channel = connect(site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clock.advance(100)
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, body), (200, b"late"))

    def test_idle_connection_closed_quietly(self) -> None:
        events = Events(self)
        transport, _channel = connect(self.site)
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(events.at(LogLevel.warn), [])
        [debug] = [e for e in events.at(LogLevel.debug) if e.get("limit")]
        self.assertEqual(debug["limit"], "http_idle_timeout")

    def test_stalled_body_gets_408_at_the_idle_timeout(self) -> None:
        transport, channel = connect(self.site)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        self.clock.advance(60)
        code, _, body = error_of(transport.value())
        self.assertEqual(code, 408)
        self.assertIn("stalled", body["error"]["message"])

    def test_idle_timeout_counts_from_the_last_data(self) -> None:
        site, _ = make_site(self.clock, header_timeout=None)
        transport, channel = connect(site)
        self.clock.advance(50)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"Host: x\r\n")
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_idle_timeout_counts_from_the_end_of_the_last_response(self) -> None:
        transport, channel = connect(self.site)
        self.clock.advance(30)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"ok 0", transport.value())
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_one_idle_timer_for_a_keep_alive_connection(self) -> None:
        """
        The idle timeout is off while each request is handled and on again after it,
        without a timer cancelled and another scheduled for each request (issue 20).
        """
        site, _ = make_site(self.clock, header_timeout=None)
        transport, channel = connect(site)
        [timer] = self.clock.getDelayedCalls()
        for _ in range(5):
            self.clock.advance(10)
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(self.clock.getDelayedCalls(), [timer])
        self.assertEqual(transport.value().count(b"ok 0"), 5)
        self.clock.advance(59)  # 109 s after the connection, 59 after the last request
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_shorter_timeout_moves_the_timer(self) -> None:
        transport, channel = connect(self.site)
        self.assertEqual(channel.setTimeout(5), 60)
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_timeout_off_while_a_request_is_handled(self) -> None:
        """
        A route that takes longer than the idle timeout is not cut, and the idle
        timeout runs again from its end.
        """
        pending: list[Any] = []

        class Slow(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                pending.append(request)
                return NOT_DONE_YET

        site = PyWattSite(Slow(), reactor=self.clock, access_log=False)
        transport, channel = connect(site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(200)
        self.assertFalse(transport.disconnecting)
        pending[0].write(b"done")
        pending[0].finish()
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_no_timers_left_after_the_connection_closes(self) -> None:
        _transport, channel = connect(self.site)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Client(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(self.data)


class RealSocketTests(TestCase):
    """
    The 413 over a real loopback connection: the client declares 1 GiB, sends the
    headers and a first slice of the body, and reads a complete 413 (not a reset)
    while the module never reads or spools the body.
    """

    timeout = 20

    async def test_content_length_above_limit_413_before_body(self) -> None:
        resource = Recorder()
        site = PyWattSite(resource, access_log=False, max_body_size=1024)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        client = _Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        protocol = await endpoint.connect(Factory.forProtocol(lambda: client))
        assert protocol.transport is not None
        protocol.transport.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" + b"x" * 65536
        )
        data = await client.done
        code, _headers, body = parse_response(data)
        self.assertEqual(code, 413)
        self.assertEqual(json.loads(body)["error"]["kind"], "body_too_large")
        self.assertEqual(resource.seen, [])
