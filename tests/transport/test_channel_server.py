"""
Tests for L{pywatt_twisted.orchestrator._channel_server} (the orchestrator's end of the
channels), and end-to-end behaviour of the module's channels against it over real
loopback sockets: a slow orchestrator, a restarting one.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted._transport.channel import encode_channel_frame
from pywatt_twisted.errors import RequestTimeout
from pywatt_twisted.link import (
    ChannelManager,
    ChannelOptions,
    ChannelQueueFull,
    ChannelSpec,
    ChannelState,
)
from pywatt_twisted.orchestrator import ChannelServer, ModuleConnection
from pywatt_twisted.wire.codec import encode
from pywatt_twisted.wire.framing import FORMAT_BINARY, FORMAT_JSON, Frame, frame_header
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    HeartbeatAck,
    HttpResponse,
    RouteToModule,
    StreamChunk,
)
from tests.transport.fakes import frames_of


def wired(server: ChannelServer) -> tuple[ModuleConnection, StringTransportWithDisconnection]:
    connection = ModuleConnection(server)
    transport = StringTransportWithDisconnection()
    transport.protocol = connection
    connection.makeConnection(transport)
    return connection, transport


class ModuleConnectionTests(SynchronousTestCase):
    def test_heartbeat_waits_for_the_ack(self) -> None:
        server = ChannelServer(None, clock=Clock())
        connection, transport = wired(server)
        d = connection.heartbeat()
        self.assertEqual(frames_of(transport.value()), [{"op": "heartbeat"}])
        self.assertNoResult(d)
        connection.dataReceived(encode_channel_frame(HeartbeatAck(), 1 << 20))
        self.assertEqual(self.successResultOf(d).content, HeartbeatAck())

    def test_http_request_correlates_by_id(self) -> None:
        server = ChannelServer(None, clock=Clock())
        connection, transport = wired(server)
        first = connection.http_request("GET", "/a", request_id="r1")
        second = connection.http_request("GET", "/b", request_id="r2")
        connection.dataReceived(
            encode_channel_frame(HttpResponse("r2", 201, {}, b"two"), 1 << 20)
            + encode_channel_frame(HttpResponse("r1", 200, {}, b"one"), 1 << 20)
        )
        self.assertEqual(self.successResultOf(first).body, b"one")
        self.assertEqual(self.successResultOf(second).status_code, 201)
        requests = frames_of(transport.value())
        self.assertEqual([r["uri"] for r in requests], ["/a", "/b"])

    def test_expect_times_out_and_fails_on_close(self) -> None:
        clock = Clock()
        server = ChannelServer(None, clock=clock)
        connection, transport = wired(server)
        d = connection.expect_op("identify", timeout=2)
        clock.advance(2)
        self.failureResultOf(d, RequestTimeout)
        d = connection.expect_op("identify")
        transport.loseConnection()
        self.failureResultOf(d)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNotNone(connection.close_reason)

    def test_bogus_header_and_oversize_from_module(self) -> None:
        server = ChannelServer(None, clock=Clock(), max_frame_length=100)
        connection, transport = wired(server)
        connection.send_bogus_header(1 << 30)
        self.assertEqual(transport.value(), frame_header(1 << 30))
        connection.dataReceived(frame_header(1000))
        self.assertTrue(transport.disconnected)

    def test_next_connection_by_listener(self) -> None:
        clock = Clock()
        server = ChannelServer(None, clock=clock)
        waiting = server.next_connection("ipc", timeout=5)
        connections = {}
        for listener in ("tcp", "ipc"):
            connection = ModuleConnection(server)
            connection.listener = listener  # what the listener's factory sets
            connection.makeConnection(StringTransportWithDisconnection())
            connections[listener] = connection
        self.assertIs(self.successResultOf(waiting), connections["ipc"])
        self.assertIs(self.successResultOf(server.next_connection()), connections["tcp"])
        late = server.next_connection(timeout=5)
        clock.advance(5)
        self.failureResultOf(late, RequestTimeout)
        self.assertEqual(clock.getDelayedCalls(), [])


class RawHookTests(SynchronousTestCase):
    """
    C{on_json} sees a JSON frame's payload before it is decoded, C{on_frame} every
    frame C{on_json} did not take; what neither consumes is decoded and delivered.
    """

    def test_on_json_gets_the_payload(self) -> None:
        seen: list[bytes] = []
        server = ChannelServer(None, clock=Clock(), on_json=lambda c, p: seen.append(p) or True)
        connection, _ = wired(server)
        data = encode_channel_frame(HeartbeatAck(), 1 << 20)
        connection.dataReceived(data)
        self.assertEqual(seen, [data[5:]])
        self.assertEqual(connection.received, [])

    def test_on_frame_after_on_json(self) -> None:
        order: list[str] = []

        def on_json(connection: Any, payload: bytes) -> bool:
            order.append("json")
            return False

        def on_frame(connection: Any, frame: Any) -> bool:
            order.append(f"frame {frame.format}")
            return False

        server = ChannelServer(None, clock=Clock(), on_json=on_json, on_frame=on_frame)
        connection, _ = wired(server)
        connection.dataReceived(encode_channel_frame(HeartbeatAck(), 1 << 20))
        self.assertEqual(order, ["json", "frame 1"])
        self.assertEqual([e.content for e in connection.received], [HeartbeatAck()])

    def test_on_frame_gets_the_decoders_frame(self) -> None:
        """
        The frame C{on_frame} is given for a JSON frame (built by the connection from
        its payload) is the L{Frame} the decoder builds for a frame of another format:
        the same type, fields, equality and hash as C{Frame(format, payload)}.
        """
        seen: list[Any] = []
        server = ChannelServer(None, clock=Clock(), on_frame=lambda c, f: seen.append(f) or True)
        connection, _ = wired(server)
        data = encode_channel_frame(HeartbeatAck(), 1 << 20)
        connection.dataReceived(data)
        connection.dataReceived(data[:4] + b"\x02" + data[5:])
        json_frame, binary_frame = seen
        for built, fmt in ((json_frame, FORMAT_JSON), (binary_frame, FORMAT_BINARY)):
            self.assertIs(type(built), Frame)
            self.assertEqual((built.format, built.payload), (fmt, data[5:]))
            self.assertEqual(built, Frame(fmt, data[5:]))
            self.assertEqual(hash(built), hash(Frame(fmt, data[5:])))
            self.assertEqual(repr(built), repr(Frame(fmt, data[5:])))
        self.assertEqual(connection.received, [])

    def test_other_formats_skip_on_json(self) -> None:
        seen: list[bytes] = []
        server = ChannelServer(None, clock=Clock(), on_json=lambda c, p: seen.append(p) or True)
        connection, _ = wired(server)
        data = encode_channel_frame(HeartbeatAck(), 1 << 20)
        connection.dataReceived(data[:4] + b"\x02" + data[5:])  # Binary: JSON text inside
        self.assertEqual(seen, [])
        self.assertEqual([e.content for e in connection.received], [HeartbeatAck()])

    def test_undecodable_is_a_bad_frame(self) -> None:
        server = ChannelServer(None, clock=Clock())
        connection, _ = wired(server)
        connection.dataReceived(b"\x00\x00\x00\x02\x01{]")
        self.assertEqual(len(connection.bad_frames), 1)
        self.assertEqual(connection.received, [])


class CountingWrites(StringTransportWithDisconnection):
    """
    Counts the calls that hand it bytes; like Twisted's transports, drops what is
    written once the connection is closed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, data: bytes) -> None:
        if self.connected:
            self.calls.append("write")
            super().write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        if self.connected:
            self.calls.append("writeSequence")
            super().writeSequence(data)


class RelayCoalescingTests(SynchronousTestCase):
    """
    The frames a relay sends on the connections of its channel servers while it
    dispatches one connection's read go out when that read is dispatched, one call per
    connection, in order (servers on one reactor share a L{CoalesceGroup}).
    """

    def relay(self) -> tuple[ModuleConnection, ModuleConnection, CountingWrites, list[Any]]:
        reactor = Clock()  # any reactor: the servers on it share the group
        sent: list[Any] = []

        def forward(connection: ModuleConnection, frame: Any) -> bool:
            action = sent.pop(0) if sent else None
            if action is not None:
                action()
            target.send_raw(frame_header(len(frame.payload)) + frame.payload)
            return True

        source_server = ChannelServer(reactor, on_frame=forward)
        target_server = ChannelServer(reactor)
        self.assertIs(source_server.coalesce_group, target_server.coalesce_group)
        source, _ = wired(source_server)
        target = ModuleConnection(target_server)
        transport = CountingWrites()
        transport.protocol = target
        target.makeConnection(transport)
        return source, target, transport, sent

    def frames(self, *payloads: bytes) -> bytes:
        return b"".join(frame_header(len(p)) + p for p in payloads)

    def test_forwarded_in_one_call(self) -> None:
        source, target, transport, _ = self.relay()
        source.dataReceived(self.frames(b"a", b"b", b"c"))
        self.assertEqual(transport.calls, ["writeSequence"])
        self.assertEqual(transport.value(), self.frames(b"a", b"b", b"c"))
        target.send_raw(b"x")  # outside a read: at once
        self.assertEqual(transport.calls, ["writeSequence", "write"])

    def test_a_stream_chunk_goes_after_what_was_sent_before(self) -> None:
        source, target, transport, actions = self.relay()
        actions.extend([None, lambda: target.send(StreamChunk("s1", 0, b"data"))])
        source.dataReceived(self.frames(b'{"n":0}', b'{"n":1}'))
        self.assertEqual(
            [f.get("op", f.get("n")) for f in frames_of(transport.value())],
            [0, "stream_chunk", 1],
        )

    def test_drop_hands_over_first(self) -> None:
        source, target, transport, actions = self.relay()
        actions.append(lambda: None)
        actions.append(target.drop)
        source.dataReceived(self.frames(b"a", b"b"))
        self.assertFalse(transport.connected)
        self.assertEqual(transport.value(), self.frames(b"a"))


def big_route(n: int) -> RouteToModule:
    return RouteToModule("peer", "ep", uuid.UUID(int=n), EncodedPayload(b"z" * 60_000))


class SlowOrchestratorTests(TestCase):
    """
    Over a real Unix socket: an orchestrator that stops reading cannot make the
    module buffer without bound.
    """

    timeout = 30

    async def test_backpressure_then_recovery(self) -> None:
        directory = tempfile.mkdtemp(prefix="pwfc")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "o.sock")
        server = ChannelServer(reactor)
        self.addCleanup(server.stop)
        await server.listen_unix(path)
        manager = ChannelManager(
            [ChannelSpec("ipc", path, required=True, path=path)],
            module_id="fc",
            receiver=lambda m, link: link.send_heartbeat_ack(),
            clock=reactor,
            reactor=reactor,
            options=ChannelOptions(queue_size=20),
        )
        manager.startService()
        self.addCleanup(manager.stopService)
        await manager.when_required_ready()
        connection = await server.next_connection("ipc")
        connection.transport.pauseProducing()  # the orchestrator stops reading

        sent = 0
        while manager.channels["ipc"].state == ChannelState.CONNECTED and sent < 2000:
            manager.send(big_route(sent))
            sent += 1
            if sent % 20 == 0:
                await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(manager.channels["ipc"].state, ChannelState.PAUSED)
        self.assertLess(sent, 2000, "the transport never pushed back")
        # While paused, new messages wait in the bounded queue; past it they fail.
        waiting = [manager.send(big_route(10_000 + i)) for i in range(20)]
        for d in waiting:
            self.assertNoResult(d)
        overflow = manager.send(big_route(99_999))
        self.assertIsInstance(self.failureResultOf(overflow).value, ChannelQueueFull)
        # The module also stopped reading from this orchestrator.
        module_side = manager.channels["ipc"].protocol
        assert module_side is not None
        self.assertTrue(module_side.paused)

        connection.transport.resumeProducing()  # it reads again: everything arrives
        for d in waiting:
            await d
        total = sent + len(waiting)
        while len(connection.received) < total:
            await deferLater(reactor, 0.02, lambda: None)
        routes = [e.content for e in connection.received if isinstance(e.content, RouteToModule)]
        self.assertEqual(len(routes), total)
        self.assertEqual(
            [r.request_id.int for r in routes],
            list(range(sent)) + [10_000 + i for i in range(20)],
        )
        self.assertEqual(manager.channels["ipc"].state, ChannelState.CONNECTED)
        ack = await connection.heartbeat()
        self.assertEqual(ack.content, HeartbeatAck())


class _Collect(Protocol):
    def __init__(self, size: int, done: Deferred[bytes]) -> None:
        self.size = size
        self.done = done
        self.data = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.size and not self.done.called:
            self.done.callback(bytes(self.data))


class UnixChunkSendTests(TestCase):
    """
    Over a real Unix socket, a module connection has room in the kernel for stream
    chunks (L{raise_send_buffer <pywatt_twisted._transport.framed.raise_send_buffer>}):
    a 256 KiB chunk's frame goes to the socket whole when it is sent, nothing left in
    the transport's buffer, and arrives as C{encode} makes it.
    """

    timeout = 30

    async def test_chunk_sent_whole(self) -> None:
        directory = tempfile.mkdtemp(prefix="pwch")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "o.sock")
        server = ChannelServer(reactor)
        self.addCleanup(server.stop)
        await server.listen_unix(path)
        chunk = StreamChunk("s", 0, os.urandom(256 * 1024), False, 1, False)
        payload = encode(chunk)
        expected = frame_header(len(payload), FORMAT_JSON) + payload
        received: Deferred[bytes] = Deferred()
        client = await UNIXClientEndpoint(reactor, path).connect(
            Factory.forProtocol(lambda: _Collect(len(expected), received))
        )
        self.addCleanup(client.transport.loseConnection)
        connection = await server.next_connection("ipc")
        default_pair = socket.socketpair()
        default = default_pair[0].getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        for s in default_pair:
            s.close()
        own = connection.transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertGreater(own, default)
        connection.send(chunk)
        transport = connection.transport
        self.assertEqual((transport.dataBuffer, transport._tempDataBuffer), (b"", []))
        self.assertEqual(await received, expected)
