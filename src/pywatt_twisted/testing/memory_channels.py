# -*- test-case-name: tests.testing.test_fake_orchestrator -*-
"""
In-memory framed channels for L{pywatt_twisted.testing.FakeOrchestrator}, built on
C{twisted.test.iosim}: a client endpoint that connects a module's channel protocol to
an orchestrator-side L{ChannelServer} connection through a pair of iosim
C{FakeTransport}s and an C{IOPump}, with no socket.

The pump runs by itself: every write, close or abort pumps the pair until nothing is
left to move, so bytes written on one side have reached the other when the call that
wrote them returns (no test has to call C{flush()}), and time never moves (the pump does
not advance the module's clock).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.test.iosim import FakeTransport, IOPump
from zope.interface import implementer

from pywatt_twisted.orchestrator.channel_server import ChannelServer, ModuleConnection

__all__ = ["MemoryChannelEndpoint"]


class _AutoPump(IOPump):
    """
    An C{IOPump} that its transports run whenever they wrote or closed (see the module
    docstring); re-entrant calls (a protocol writing while it receives) are picked up by
    the run already in progress.
    """

    _running = False

    def run(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while self.pump(advanceClock=False):
                pass
        finally:
            self._running = False


class _PumpedTransport(FakeTransport):
    """
    An iosim C{FakeTransport} that runs its pump after each write or close, and whose
    C{abortConnection} reports C{ConnectionLost} to both ends (a clean close reports
    C{ConnectionDone}).
    """

    pump: _AutoPump | None = None
    peer_transport: _PumpedTransport | None = None

    def _run(self) -> None:
        if self.pump is not None:
            self.pump.run()

    def write(self, data: bytes) -> None:
        super().write(data)
        self._run()

    def loseConnection(self) -> None:
        super().loseConnection()
        self._run()

    def abortConnection(self) -> None:
        if not self.disconnecting:
            for end in (self, self.peer_transport):
                if end is not None:
                    # iosim types it as ConnectionDone, the clean-close default
                    end.disconnectReason = ConnectionLost("aborted")  # type: ignore[assignment]
        super().abortConnection()
        self._run()


@implementer(IStreamClientEndpoint)
class MemoryChannelEndpoint:
    """
    Connects a module's channel to C{server} in memory, as a connection of kind
    C{listener}; refuses while C{blocked} is true.

    @ivar connections: the orchestrator side of every connection made, oldest first.
    @ivar pumps: the iosim C{IOPump} of each of them, in the same order.
    """

    def __init__(self, server: ChannelServer, listener: str, address: str) -> None:
        self.server = server
        self.listener = listener
        self.address = address
        self.blocked = False
        self.connections: list[ModuleConnection] = []
        self.pumps: list[IOPump] = []

    def _addresses(self) -> tuple[IAddress, IAddress]:
        if self.listener == "ipc":
            path = self.address.encode()
            return UNIXAddress(path), UNIXAddress(path)
        host, _, port = self.address.rpartition(":")
        return IPv4Address("TCP", "127.0.0.1", 50000), IPv4Address("TCP", host, int(port))

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        if self.blocked:
            return fail(ConnectionRefusedError(f"the fake orchestrator refuses {self.listener}"))
        client_host, server_host = self._addresses()
        client = protocolFactory.buildProtocol(server_host)
        if client is None:
            return fail(ConnectionRefusedError("the factory built no protocol"))
        server = self.server.connection_factory(self.listener).buildProtocol(client_host)
        assert isinstance(server, ModuleConnection)
        client_io = _PumpedTransport(client, False, client_host, server_host)
        server_io = _PumpedTransport(server, True, server_host, client_host)
        client_io.peer_transport, server_io.peer_transport = server_io, client_io
        pump = _AutoPump(client, server, client_io, server_io, False)
        # The orchestrator side is up first, as an accepted connection would be.
        server.makeConnection(server_io)
        self.connections.append(server)
        self.pumps.append(pump)
        client.makeConnection(client_io)
        client_io.pump = server_io.pump = pump
        pump.run()
        return succeed(client)
