# -*- test-case-name: tests.testing.test_fake_orchestrator -*-
"""
In-memory framed channels for L{pywatt_twisted.testing.FakeOrchestrator}: a client
endpoint that connects a module's channel protocol straight to an orchestrator-side
L{ChannelServer} connection, with no socket. Bytes written on one side are delivered to
the other at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.orchestrator.channel_server import ChannelServer, ModuleConnection


@implementer(ITransport)
class _PipeEnd:
    """
    One end of an in-memory connection (enough of C{ITCPTransport} for the channel
    protocols: write, close, producers, addresses).
    """

    def __init__(self, host: IAddress, peer: IAddress) -> None:
        self.host = host
        self.peer = peer
        self.protocol: IProtocol | None = None
        self.other: _PipeEnd | None = None
        self.disconnected = False
        self.disconnecting = False
        self.producer: Any = None
        self.paused = False

    # ITransport
    def write(self, data: bytes) -> None:
        if self.disconnected or self.other is None or self.other.protocol is None:
            return
        if data:
            self.other.protocol.dataReceived(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self._close(Failure(ConnectionDone("closed cleanly")))

    def abortConnection(self) -> None:
        self._close(Failure(ConnectionLost("aborted")))

    def _close(self, reason: Failure) -> None:
        if self.disconnected:
            return
        self.disconnecting = True
        ends = [self, self.other] if self.other is not None else [self]
        for end in ends:
            end.disconnected = True
        for end in ends:
            if end.producer is not None:
                end.producer = None
            if end.protocol is not None:
                end.protocol.connectionLost(reason)

    def getPeer(self) -> IAddress:
        return self.peer

    def getHost(self) -> IAddress:
        return self.host

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    # IConsumer / IProducer
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.loseConnection()


@implementer(IStreamClientEndpoint)
class MemoryChannelEndpoint:
    """
    Connects a module's channel to C{server} in memory, as a connection of kind
    C{listener}; refuses while C{blocked} is true.
    """

    def __init__(self, server: ChannelServer, listener: str, address: str) -> None:
        self.server = server
        self.listener = listener
        self.address = address
        self.blocked = False
        self.connections: list[ModuleConnection] = []

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
        client_end = _PipeEnd(client_host, server_host)
        server_end = _PipeEnd(server_host, client_host)
        client_end.other, server_end.other = server_end, client_end
        client_end.protocol, server_end.protocol = client, server
        server.makeConnection(server_end)
        self.connections.append(server)
        client.makeConnection(client_end)
        return succeed(client)
