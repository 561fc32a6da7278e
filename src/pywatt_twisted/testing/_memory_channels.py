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

from pywatt_twisted.orchestrator._channel_server import ChannelServer, ModuleConnection

__all__ = ["MemoryChannelEndpoint", "MemoryStreamEndpoint"]


class _AutoPump(IOPump):
    """
    An C{IOPump} that its transports run whenever they wrote or closed (see the module
    docstring); re-entrant calls (a protocol writing while it receives) are picked up by
    the run already in progress.
    """

    _running = False

    def run(self, data_only: bool = False) -> None:
        """
        Pump until nothing moves. With C{data_only}, move bytes but leave closes for a
        later run (see L{MemoryStreamEndpoint}).
        """
        if self._running:
            return
        self._running = True
        try:
            while self._move() if data_only else self.pump(advanceClock=False):
                pass
        finally:
            self._running = False

    def _move(self) -> bool:
        server_data = self.serverIO.getOutBuffer()
        client_data = self.clientIO.getOutBuffer()
        if client_data:
            self.serverIO.bufferReceived(client_data)
        if server_data:
            self.clientIO.bufferReceived(server_data)
        return bool(client_data or server_data)


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


class _ServerWrites(_PumpedTransport):
    """
    The server end of a L{MemoryStreamEndpoint}: a write delivers its bytes at once but
    a close the peer makes in reaction waits for the next full run, which the server's
    own close (or a flush) starts: C{twisted.web} finishes a request with a write and
    then bookkeeping that needs the connection still up.
    """

    def write(self, data: bytes) -> None:
        FakeTransport.write(self, data)
        if self.pump is not None:
            self.pump.run(data_only=True)


@implementer(IStreamClientEndpoint)
class MemoryStreamEndpoint:
    """
    Connects a client protocol to a fresh protocol of C{server_factory} in memory, with
    a pump that the server side runs by itself: what
    L{pywatt_twisted.testing.FakeModule.request} uses for C{via="http"}, so a request
    goes through the module's real HTTP server (its C{Site}, limits and headers).

    The client's writes wait for L{flush}: an HTTP client expects its request to be
    written before any answer arrives, which an immediate pump on its own write would
    break (the server would answer and close inside the client's C{write} call).
    """

    def __init__(self, server_factory: IProtocolFactory) -> None:
        self.server_factory = server_factory
        self.pumps: list[_AutoPump] = []

    def flush(self) -> None:
        """
        Deliver what the clients wrote (and everything that follows from it).
        """
        for pump in self.pumps:
            pump.run()

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        client_host = IPv4Address("TCP", "127.0.0.1", 50001)
        server_host = IPv4Address("TCP", "127.0.0.1", 8080)
        client = protocolFactory.buildProtocol(server_host)
        server = self.server_factory.buildProtocol(client_host)
        if client is None or server is None:
            return fail(ConnectionRefusedError("a factory built no protocol"))
        client_io = _PumpedTransport(client, False, client_host, server_host)
        server_io = _ServerWrites(server, True, server_host, client_host)
        client_io.peer_transport, server_io.peer_transport = server_io, client_io
        pump = _AutoPump(client, server, client_io, server_io, False)
        server.makeConnection(server_io)
        client.makeConnection(client_io)
        server_io.pump = pump
        self.pumps.append(pump)
        return succeed(client)
