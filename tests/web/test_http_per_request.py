"""
Tests for what direct HTTP does once per connection or once a second instead of once
per request (issue 20): the connection's local address and TLS-ness, the status line
and headers as one write, the C{Date} header's text. The response bytes stay those of
a plain L{twisted.web.server.Site} serving the same resource.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import server as twisted_server
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import directlyProvides

from pywatt_twisted.web import site as site_module
from pywatt_twisted.web.site import PyWattHTTPChannel, PyWattSite

HOST = IPv4Address("TCP", "127.0.0.1", 8080)
PEER = IPv4Address("TCP", "127.0.0.1", 5555)


class Echo(Resource):
    """
    A leaf that answers what the request saw: its host, security and paths.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[Any] = []
        self.peers: list[Any] = []
        self.secure: list[bool] = []

    def render(self, request: Any) -> bytes:
        self.hosts.append(request.getHost())
        self.peers.append(request.getClientAddress())
        self.secure.append(request.isSecure())
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"x-multi", b"one")
        request.responseHeaders.addRawHeader(b"x-multi", b"two")
        return b"host=%s:%d prepath=%s postpath=%s" % (
            request.getHost().host.encode(),
            request.getHost().port,
            b"/".join(request.prepath),
            b"/".join(request.postpath),
        )


class CountingTransport(StringTransport):
    """
    A StringTransport that counts C{getHost} calls and the pieces written (one per
    C{write}, one per item of a C{writeSequence}).
    """

    def __init__(self) -> None:
        super().__init__(hostAddress=HOST, peerAddress=PEER)
        self.host_calls = 0
        self.peer_calls = 0
        self.writes = 0

    def getHost(self) -> Any:
        self.host_calls += 1
        return super().getHost()

    def getPeer(self) -> Any:
        self.peer_calls += 1
        return super().getPeer()

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass  # (asked when the transport provides ISSLTransport, an ITCPTransport)

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.writes += len(data)
        super().writeSequence(data)


def exchange(site: Any, raw: bytes, transport: StringTransport | None = None) -> Any:
    transport = transport if transport is not None else CountingTransport()
    protocol = site.buildProtocol(PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    return transport, protocol


def without_date(response: bytes) -> tuple[bytes, list[bytes]]:
    """
    C{response} without its C{Date} header lines, and those lines' values.
    """
    kept, dates = [], []
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"date: "):
            dates.append(line[6:])
        else:
            kept.append(line)
    return b"\r\n".join(kept), dates


TWO_GETS = (
    b"GET /a/b?x=1 HTTP/1.1\r\nHost: module\r\n\r\nGET /c%20d/e HTTP/1.1\r\nHost: module\r\n\r\n"
)


class SameBytesAsTwistedTests(SynchronousTestCase):
    """
    The response bytes of a PyWattSite are those of Twisted's Site for the same
    resource (the Date header aside, compared on its own).
    """

    def responses(self, raw: bytes) -> tuple[bytes, bytes, Echo, Echo]:
        theirs_resource, ours_resource = Echo(), Echo()
        theirs, _ = exchange(Site(theirs_resource, reactor=Clock()), raw)
        ours_site = PyWattSite(ours_resource, reactor=Clock(), access_log=False)
        ours, _ = exchange(ours_site, raw)
        return theirs.value(), ours.value(), theirs_resource, ours_resource

    def test_keep_alive_requests(self) -> None:
        theirs, ours, theirs_seen, ours_seen = self.responses(TWO_GETS)
        self.assertEqual(without_date(ours)[0], without_date(theirs)[0])
        self.assertIn(b"postpath=c d/e", ours)
        self.assertIn(b"\r\nX-Multi: one\r\nX-Multi: two\r\n", ours)
        self.assertEqual(ours_seen.hosts, theirs_seen.hosts)
        self.assertEqual(ours_seen.peers, theirs_seen.peers)
        self.assertEqual(ours_seen.secure, [False, False])

    def test_pieces_and_pipelines(self) -> None:
        """
        The channel splits lines itself (issue 20): requests in one piece of data,
        split anywhere, or after an HTTP/1.0 request that closes the connection, get
        Twisted's bytes.
        """
        one = b"GET /a HTTP/1.1\r\nHost: module\r\nX-A: 1\r\n\r\n"
        for pieces in (
            [one * 3],
            [one[:5], one[5:17], one[17:] + one[:20], one[20:] + one],
            [bytes([b]) for b in one * 2],
            [b"GET /a HTTP/1.0\r\nHost: module\r\n\r\n" + one, one],
            [b"\r\n" + one],
        ):
            answers = []
            for site in (
                Site(Echo(), reactor=Clock()),
                PyWattSite(Echo(), reactor=Clock(), access_log=False),
            ):
                transport = CountingTransport()
                protocol = site.buildProtocol(PEER)
                protocol.makeConnection(transport)
                for piece in pieces:
                    protocol.dataReceived(piece)
                answers.append((without_date(transport.value())[0], transport.disconnecting))
            self.assertEqual(answers[1], answers[0], pieces)

    def test_date_header(self) -> None:
        """
        Each response's C{Date} is C{datetimeToString()} of the wall clock's second.
        The clock is fixed here. Reading it before and after with Twisted's
        C{datetimeToString()} and expecting the header between them was flaky: that
        reads C{time.gmtime()}, whose C{time(NULL)} is the kernel's coarse clock, up to
        a tick (~5 ms here) behind the C{time.time()} the header is made from, so just
        past a second boundary the header named a second that "after" had not reached.
        """
        self.patch(site_module.time, "time", lambda: 1_700_000_000.75)
        self.patch(site_module, "_date_cache", [None, b""])
        _, ours, _, _ = self.responses(TWO_GETS)
        dates = without_date(ours)[1]
        self.assertEqual(dates, [datetimeToString(1_700_000_000)] * 2)

    def test_star_request(self) -> None:
        raw = b"OPTIONS * HTTP/1.1\r\nHost: module\r\n\r\n"
        theirs, ours, _, ours_seen = self.responses(raw)
        # Twisted's own answer, plus the Vary of the gzip decision ours always makes
        self.assertEqual(
            without_date(ours)[0],
            without_date(theirs)[0].replace(b"\r\n\r\n", b"\r\nVary: Accept-Encoding\r\n\r\n"),
        )
        self.assertEqual(ours_seen.hosts, [])

    def test_server_header_follows_twisted(self) -> None:
        """
        C{twisted.web.server.version} is read for each response, as Twisted does (a
        deployment may blank it to hide the version).
        """
        self.patch(twisted_server, "version", b"Hidden")
        _, ours, _, _ = self.responses(TWO_GETS)
        self.assertEqual(ours.count(b"\r\nServer: Hidden\r\n"), 2)


class OncePerConnectionTests(SynchronousTestCase):
    def test_local_address_asked_once(self) -> None:
        resource = Echo()
        transport, _ = exchange(PyWattSite(resource, reactor=Clock(), access_log=False), TWO_GETS)
        self.assertEqual((transport.host_calls, transport.peer_calls), (1, 1))
        self.assertEqual(resource.hosts, [HOST, HOST])
        self.assertEqual(resource.peers, [PEER, PEER])
        # Twisted's own channel asks for every request (the cost taken out).
        plain, _ = exchange(Site(Echo(), reactor=Clock()), TWO_GETS)
        self.assertEqual((plain.host_calls, plain.peer_calls), (2, 2))

    def test_new_transport_asked_again(self) -> None:
        channel = PyWattHTTPChannel()
        first = StringTransport(hostAddress=HOST)
        channel.transport = first
        self.assertIs(channel.getHost(), HOST)
        other = IPv4Address("TCP", "10.0.0.1", 80)
        channel.transport = StringTransport(hostAddress=other)
        self.assertIs(channel.getHost(), other)

    def test_tls_transport_is_secure(self) -> None:
        resource = Echo()
        transport = CountingTransport()
        directlyProvides(transport, ISSLTransport)
        _, channel = exchange(
            PyWattSite(resource, reactor=Clock(), access_log=False), TWO_GETS, transport
        )
        self.assertEqual(resource.secure, [True, True])
        self.assertTrue(channel.isSecure())

    def test_security_decided_once(self) -> None:
        channel = PyWattHTTPChannel()
        transport = StringTransport()
        channel.transport = transport
        self.assertFalse(channel.isSecure())
        directlyProvides(transport, ISSLTransport)
        self.assertFalse(channel.isSecure())  # the connection's first answer stands
        channel.transport = tls = StringTransport()
        directlyProvides(tls, ISSLTransport)
        self.assertTrue(channel.isSecure())


class HeaderWriteTests(SynchronousTestCase):
    def headers(self) -> Headers:
        headers = Headers()
        headers.setRawHeaders(b"content-type", [b"text/plain"])
        headers.setRawHeaders(b"x-two", [b"a", b"b"])
        headers.setRawHeaders(b"www-authenticate", [b"Bearer"])
        return headers

    def written(self, channel: HTTPChannel, headers: Any) -> CountingTransport:
        transport = CountingTransport()
        channel.makeConnection(transport)
        channel.writeHeaders(b"HTTP/1.1", b"404", b"Not Found", headers)
        return transport

    def test_one_write_same_bytes(self) -> None:
        ours = self.written(PyWattHTTPChannel(), self.headers())
        theirs = self.written(HTTPChannel(), self.headers())
        self.assertEqual(ours.value(), theirs.value())
        self.assertTrue(ours.value().startswith(b"HTTP/1.1 404 Not Found\r\n"))
        self.assertIn(b"\r\nX-Two: a\r\nX-Two: b\r\n", ours.value())
        self.assertEqual(ours.writes, 1)

    def test_pairs_still_sanitized(self) -> None:
        """
        The backwards-compatible iterable of pairs goes through Twisted's own
        sanitizing path.
        """
        pairs = [(b"X-Evil", b"a\r\nInjected: yes")]
        ours = self.written(PyWattHTTPChannel(), pairs)
        theirs = self.written(HTTPChannel(), pairs)
        self.assertEqual(ours.value(), theirs.value())
        self.assertNotIn(b"\r\nInjected", ours.value())

    def test_str_refused(self) -> None:
        channel = PyWattHTTPChannel()
        channel.makeConnection(CountingTransport())
        self.assertRaises(
            TypeError, channel.writeHeaders, b"HTTP/1.1", b"200", "OK", self.headers()
        )


class HttpDateTests(SynchronousTestCase):
    def test_formatted_once_a_second(self) -> None:
        now = [1_700_000_000.25]
        formatted: list[float] = []

        def fmt(when: float) -> bytes:
            formatted.append(when)
            return datetimeToString(when)

        self.patch(site_module, "datetimeToString", fmt)
        self.patch(site_module.time, "time", lambda: now[0])
        self.patch(site_module, "_date_cache", [None, b""])
        first = site_module._http_date()
        self.assertEqual(first, datetimeToString(1_700_000_000))
        now[0] = 1_700_000_000.99
        self.assertEqual(site_module._http_date(), first)
        self.assertEqual(len(formatted), 1)
        now[0] = 1_700_000_001.0
        self.assertEqual(site_module._http_date(), datetimeToString(1_700_000_001))
        self.assertEqual(len(formatted), 2)


class KleinTests(SynchronousTestCase):
    def test_klein_route_sees_the_cached_host(self) -> None:
        app = Klein()

        @app.route("/where")
        def where(request: Any) -> bytes:
            return b"%s %d %r" % (
                request.getHost().host.encode(),
                request.getHost().port,
                request.isSecure(),
            )

        site = PyWattSite(app.resource(), reactor=Clock(), access_log=False)
        transport, _ = exchange(site, b"GET /where HTTP/1.1\r\nHost: module:8080\r\n\r\n")
        self.assertIn(b"127.0.0.1 8080 False", transport.value())
        self.assertEqual(transport.host_calls, 1)


class RequestIdentityTests(SynchronousTestCase):
    def test_sitepath_is_a_copy(self) -> None:
        seen: list[Any] = []

        class Paths(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                seen.append((request.sitepath, request.prepath))
                return b"ok"

        exchange(PyWattSite(Paths(), reactor=Clock(), access_log=False), TWO_GETS)
        self.assertEqual(len(seen), 2)
        for sitepath, prepath in seen:
            self.assertEqual(sitepath, [])
            self.assertIsNot(sitepath, prepath)

    def test_hash_is_identity(self) -> None:
        site = PyWattSite(Echo(), reactor=Clock(), access_log=False)
        _, channel = exchange(site, b"")
        one, two = site.requestFactory(channel), site.requestFactory(channel)
        self.assertEqual(hash(one), hash(one))
        self.assertEqual(len({one, two, one}), 2)
        self.assertIn(one, {one})
        self.assertNotIn(two, {one})
