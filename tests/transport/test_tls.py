"""
Tests for L{pywatt_twisted._transport.tls}: the TLS options of the TCP channel, in
memory (iosim) and over real loopback sockets. Certificates are made per test run with
C{cryptography} (L{EphemeralPKI}).
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted._transport.channel import ChannelFactory, ChannelSettings
from pywatt_twisted._transport.tls import (
    ChannelTlsError,
    TlsConfigurationError,
    TlsMaterial,
    client_tls_options,
    is_tls_failure,
)
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.link import (
    ChannelManager,
    ChannelOptions,
    ChannelSpec,
    ChannelState,
    RequiredChannelFailed,
)
from pywatt_twisted.orchestrator import ChannelServer, EphemeralPKI
from pywatt_twisted.wire.init import SecurityLevel
from pywatt_twisted.wire.messages import Heartbeat
from tests.transport.fakes import RecordingListener, frames_of

_PKI: dict[str, EphemeralPKI] = {}


def pki(name: str = "main") -> EphemeralPKI:
    """
    One PKI per name per test run (key generation is the slow part).
    """
    if name not in _PKI:
        _PKI[name] = EphemeralPKI.generate(server_names=("127.0.0.1", "orchestrator.test"))
    return _PKI[name]


class MaterialMixin:
    def files(self, which: EphemeralPKI | None = None) -> dict[str, str]:
        directory = self.mktemp()  # type: ignore[attr-defined]
        return (which or pki()).write(directory)


class OptionsTests(MaterialMixin, SynchronousTestCase):
    def test_no_ca_is_refused(self) -> None:
        error = self.assertRaises(
            TlsConfigurationError, client_tls_options, TlsMaterial(), "127.0.0.1"
        )
        self.assertIsInstance(error, ChannelTlsError)
        self.assertIsInstance(error, ConfigurationError)
        self.assertIn("PYWATT_TLS_CA is not set", str(error))

    def test_unreadable_and_invalid_ca(self) -> None:
        error = self.assertRaises(
            TlsConfigurationError,
            client_tls_options,
            TlsMaterial(ca_path="/nonexistent/ca.pem"),
            "127.0.0.1",
        )
        self.assertIn("/nonexistent/ca.pem", str(error))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"not a certificate")
        error = self.assertRaises(
            TlsConfigurationError, client_tls_options, TlsMaterial(ca_path=path), "127.0.0.1"
        )
        self.assertIn("no PEM certificate", str(error))

    def test_half_a_client_certificate(self) -> None:
        paths = self.files()
        error = self.assertRaises(
            TlsConfigurationError,
            client_tls_options,
            TlsMaterial(ca_path=paths["ca"], cert_path=paths["client_cert"]),
            "127.0.0.1",
        )
        self.assertIn("PYWATT_TLS_KEY is not", str(error))

    def test_mtls_needs_a_client_certificate(self) -> None:
        paths = self.files()
        error = self.assertRaises(
            TlsConfigurationError,
            client_tls_options,
            TlsMaterial(ca_path=paths["ca"]),
            "127.0.0.1",
            SecurityLevel.MTLS,
        )
        self.assertIn("Mtls", str(error))
        client_tls_options(TlsMaterial(ca_path=paths["ca"]), "127.0.0.1", SecurityLevel.NONE)

    def test_from_environment(self) -> None:
        material = TlsMaterial.from_environment(
            {"PYWATT_TLS_CA": "/a", "PYWATT_TLS_CERT": "", "PYWATT_TLS_SERVER_NAME": "o.test"}
        )
        self.assertEqual(material, TlsMaterial(ca_path="/a", server_name="o.test"))


class _Sink(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class InMemoryTlsTests(MaterialMixin, SynchronousTestCase):
    """
    The channel protocol under TLS in memory (iosim), against a server that requires a
    client certificate from the test CA.
    """

    def pair(self, material: TlsMaterial, security: SecurityLevel = SecurityLevel.MTLS) -> tuple:
        clock = Clock()
        listener = RecordingListener()
        settings = ChannelSettings("tcp", "127.0.0.1:9901", "demo", tls=True)
        options = client_tls_options(material, "127.0.0.1", security)
        client_factory = TLSMemoryBIOFactory(
            options, True, ChannelFactory(settings, listener, clock), clock=clock
        )
        sink = _Sink()
        server_factory = TLSMemoryBIOFactory(
            pki().server_options(require_client_cert=True),
            False,
            Factory.forProtocol(lambda: sink),
            clock=clock,
        )
        client, _server, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        clock.advance(settings.tls_settle)
        pump.flush()
        return listener, sink, client

    def test_mutual_tls_succeeds(self) -> None:
        paths = self.files()
        listener, sink, _client = self.pair(
            TlsMaterial(paths["ca"], paths["client_cert"], paths["client_key"])
        )
        self.assertEqual(len(listener.ready), 1)
        [identify] = frames_of(sink.data)
        self.assertEqual(identify["content"]["op"], "identify")
        self.assertEqual(listener.lost, [])

    def assert_refused(self, listener: RecordingListener, sink: _Sink) -> None:
        self.assertEqual(sink.data, b"", "no application byte may reach the server")
        [reason] = listener.lost
        self.assertTrue(is_tls_failure(reason), reason)

    def test_wrong_hostname(self) -> None:
        paths = self.files()
        listener, sink, _ = self.pair(
            TlsMaterial(paths["ca"], paths["client_cert"], paths["client_key"], "elsewhere.test")
        )
        self.assertEqual(listener.ready, [])
        self.assert_refused(listener, sink)

    def test_untrusted_ca(self) -> None:
        other = self.files(pki("other"))
        mine = self.files()
        listener, sink, _ = self.pair(
            TlsMaterial(other["ca"], mine["client_cert"], mine["client_key"])
        )
        self.assertEqual(listener.ready, [])
        self.assert_refused(listener, sink)

    def test_missing_client_certificate(self) -> None:
        paths = self.files()
        listener, sink, _ = self.pair(TlsMaterial(paths["ca"]), SecurityLevel.NONE)
        self.assert_refused(listener, sink)


class LoopbackTlsTests(MaterialMixin, TestCase):
    """
    The whole channel manager against a real TLS listener on 127.0.0.1.
    """

    timeout = 30

    async def setUp(self) -> None:
        self.server = ChannelServer(reactor)
        self.addCleanup(self.server.stop)
        self.address = await self.server.listen_tcp(tls=pki().server_options(True))

    def manager(
        self, material: TlsMaterial, security: SecurityLevel = SecurityLevel.MTLS
    ) -> ChannelManager:
        host, port = self.address.rsplit(":", 1)
        spec = ChannelSpec("tcp", self.address, required=True, tls=True, host=host, port=int(port))
        received: list[object] = []

        def receive(message: object, link: object) -> None:
            received.append(message)
            if isinstance(message, Heartbeat):
                link.send_heartbeat_ack()  # type: ignore[attr-defined]

        manager = ChannelManager(
            [spec],
            module_id="tls-demo",
            receiver=receive,
            clock=reactor,
            reactor=reactor,
            options=ChannelOptions(required_timeout=1.5),
            security_level=security,
            tls_material=material,
        )
        manager.startService()
        self.addCleanup(manager.stopService)
        return manager

    async def test_mutual_tls_round_trip(self) -> None:
        paths = self.files()
        manager = self.manager(TlsMaterial(paths["ca"], paths["client_cert"], paths["client_key"]))
        await manager.when_required_ready()
        connection = await self.server.next_connection("tls")
        identify = await connection.expect_op("identify")
        self.assertEqual(identify.content.module_id, "tls-demo")
        ack = await connection.heartbeat()
        self.assertEqual(ack.content.op, "heartbeat_ack")
        self.assertEqual(manager.health()["tcp"]["state"], ChannelState.CONNECTED)

    async def assert_fails_loudly(self, manager: ChannelManager, words: tuple[str, ...]) -> None:
        try:
            await manager.when_required_ready()
        except RequiredChannelFailed as e:
            text = str(e)
        else:
            self.fail("the channel must not come up")
        self.assertIn("required tcp channel", text)
        self.assertTrue(any(w in text.lower() for w in words), text)
        for connection in list(self.server.connections):
            self.assertEqual(connection.received, [], "nothing may arrive in plaintext")
        self.assertGreater(manager.channels["tcp"].connect_failures, 0)
        self.flushLoggedErrors()

    async def test_wrong_hostname(self) -> None:
        paths = self.files()
        manager = self.manager(
            TlsMaterial(paths["ca"], paths["client_cert"], paths["client_key"], "elsewhere.test")
        )
        await self.assert_fails_loudly(manager, ("certificate", "tls"))

    async def test_untrusted_ca(self) -> None:
        other = self.files(pki("other"))
        mine = self.files()
        manager = self.manager(TlsMaterial(other["ca"], mine["client_cert"], mine["client_key"]))
        await self.assert_fails_loudly(manager, ("certificate verify failed",))

    async def test_missing_client_certificate(self) -> None:
        paths = self.files()
        manager = self.manager(TlsMaterial(paths["ca"]), SecurityLevel.NONE)
        await self.assert_fails_loudly(manager, ("certificate", "tls"))

    def test_pki_files_are_private(self) -> None:
        paths = self.files()
        self.assertEqual(os.stat(paths["client_key"]).st_mode & 0o777, 0o600)


class _Stalled(Protocol):
    """
    Accepts a TCP connection and never answers: a TLS server stuck before the
    handshake. Records when each connection arrived and a Deferred for its end.
    """

    def __init__(
        self, accepted: list[tuple[float, Deferred[None]]], arrivals: list[Deferred[None]]
    ):
        self.accepted = accepted
        self.arrivals = arrivals
        self.gone: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        index = len(self.accepted)
        self.accepted.append((reactor.seconds(), self.gone))  # type: ignore[attr-defined]
        if index < len(self.arrivals):
            self.arrivals[index].callback(None)

    def connectionLost(self, reason: object = None) -> None:
        self.gone.callback(None)


class StalledHandshakeTests(MaterialMixin, TestCase):
    """
    A real TCP listener on 127.0.0.1 that accepts and never answers the TLS
    handshake: the channel aborts each attempt after C{tls_handshake_timeout} and
    retries with growing delays (the attempts never count as healthy).
    """

    timeout = 30

    async def test_stalled_handshake_is_retried_with_backoff(self) -> None:
        accepted: list[tuple[float, Deferred[None]]] = []
        arrivals: list[Deferred[None]] = [Deferred() for _ in range(3)]
        factory = Factory.forProtocol(lambda: _Stalled(accepted, arrivals))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        address = f"127.0.0.1:{port.getHost().port}"
        spec = ChannelSpec("tcp", address, tls=True, host="127.0.0.1", port=port.getHost().port)
        paths = self.files()
        timeout = 0.3
        manager = ChannelManager(
            [spec],
            module_id="stalled",
            receiver=lambda message, link: None,
            clock=reactor,
            reactor=reactor,
            options=ChannelOptions(tls_handshake_timeout=timeout),
            security_level=SecurityLevel.NONE,
            tls_material=TlsMaterial(paths["ca"]),
            random=lambda: 0.0,  # no jitter: delays 0.1, 0.2, 0.4...
        )
        manager.startService()
        self.addCleanup(manager.stopService)
        channel = manager.channels["tcp"]
        for n, arrival in enumerate(arrivals):
            await arrival
            # Each new attempt follows n failed ones; none reset the count.
            self.assertEqual(channel.failures_in_a_row, n)
            self.assertEqual(channel.connects, 0)
        # The module aborted each connection; the server saw it close.
        for _, gone in accepted[:2]:
            await gone
        times = [t for t, _ in accepted]
        # Attempt k+1 starts no earlier than the timeout plus the k-th backoff delay
        # (0.1 s, then 0.2 s) after attempt k: the delays grow, they are not reset.
        margin = 0.05
        self.assertGreaterEqual(times[1] - times[0], timeout + 0.1 - margin)
        self.assertGreaterEqual(times[2] - times[1], timeout + 0.2 - margin)
        self.assertIn("did not complete within 0.3 s", channel.last_error or "")
        self.assertIn("PYWATT_TLS_HANDSHAKE_TIMEOUT", channel.last_error or "")
        self.assertGreaterEqual(channel.connect_failures, 2)
        await manager.stopService()
        self.flushLoggedErrors()
