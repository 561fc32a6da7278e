"""
The dev orchestrator forwarding module-to-module frames without decoding their payload
(L{DevOrchestrator.forward}, reached through L{ModuleLinks.frame_received}): the same
routes, errors and bytes as decoding and encoding them (L{DevOrchestrator.route}).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire._forward import MAX_READ_SIZE
from pywatt_twisted.wire.codec import decode_envelope_from_module, encode
from pywatt_twisted.wire.envelope import encode_channel_frame, routed_request_payload
from pywatt_twisted.wire.framing import FORMAT_AUTO, FORMAT_JSON, Frame, encode_frame
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)
from tests.runtime.test_messaging import inventory_app

from .test_routing import FakeConnection, identify, orchestrator, request


class RawConnection(FakeConnection):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.raw: list[bytes] = []
        self.bad_frames: list[Exception] = []

    def send_raw(self, data: bytes) -> None:
        self.raw.append(data)


def attach(dev: Any, module_id: str, kind: str) -> RawConnection:
    connection = RawConnection(kind)
    dev.supervisors[module_id].channels.connections.append(connection)
    return connection


def frame(message: object, fmt: int = FORMAT_JSON) -> Frame:
    return Frame(fmt, encode_channel_frame(message, 1 << 24)[5:])


def receive(dev: Any, module_id: str, connection: Any, message: object) -> bool:
    return dev.supervisors[module_id].links.frame_received(connection, frame(message))


def bare(message: object) -> bytes:
    return encode_frame(encode(message), FORMAT_JSON, 1 << 32)


class ForwardTests(SynchronousTestCase):
    def test_request_and_reply_are_forwarded(self) -> None:
        """
        A request reaches its target and the reply its requester as the bytes encoding
        the decoded message gives; the links count them as routed messages.
        """
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory = attach(dev, "inventory", "ipc")
        message = request()
        self.assertTrue(receive(dev, "orders", orders, message))
        self.assertEqual(
            inventory.raw,
            [bare(RoutedModuleMessage("orders", message.request_id, message.payload, "get_stock"))],
        )
        self.assertEqual(inventory.sent, [])
        reply = RoutedModuleReply(
            "inventory", message.request_id, "orders", EncodedPayload.from_json({"in_stock": 7})
        )
        self.assertTrue(receive(dev, "inventory", inventory, reply))
        self.assertEqual(
            orders.raw, [bare(RoutedModuleResponse("inventory", message.request_id, reply.payload))]
        )
        self.assertEqual(dev._routes, {})
        links = dev.supervisors["orders"].links
        self.assertEqual((links.routed_in["tcp"], links.messages_in["tcp"]), (1, 1))
        self.assertEqual(links.last_routed_on, "tcp")

    def test_request_ids_correlate_in_any_form_and_path(self) -> None:
        """
        A reply finds its request's route whatever the form of the id each carries
        (the route is keyed by the id's canonical text) and whichever path each took:
        forwarded undecoded, or decoded in full (L{DevOrchestrator.route}).
        """
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory = attach(dev, "inventory", "ipc")
        message = request()
        text = str(message.request_id).encode()
        data = frame(message).payload.replace(text, text.upper())
        self.assertTrue(dev.supervisors["orders"].links.frame_received(orders, Frame(1, data)))
        (forwarded,) = inventory.raw
        self.assertIn(text, forwarded)  # (the encoder's form)
        payload = EncodedPayload.from_json({"in_stock": 7})
        reply = RoutedModuleReply("inventory", message.request_id, "orders", payload)
        dev.route(dev.supervisors["inventory"], reply, inventory.send)
        self.assertEqual(
            orders.sent, [RoutedModuleResponse("inventory", message.request_id, payload)]
        )
        dev.route(dev.supervisors["orders"], message, orders.send)
        self.assertTrue(receive(dev, "inventory", inventory, reply))
        self.assertEqual(
            orders.raw, [bare(RoutedModuleResponse("inventory", message.request_id, payload))]
        )
        self.assertEqual(dev._routes, {})

    def test_preferred_channel(self) -> None:
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory_ipc = attach(dev, "inventory", "ipc")
        inventory_tcp = attach(dev, "inventory", "tcp")
        identify(dev, "inventory", inventory_tcp, ["tcp", "ipc"])
        receive(dev, "orders", orders, request())
        self.assertEqual((len(inventory_ipc.raw), len(inventory_tcp.raw)), (0, 1))

    def test_errors_as_route_gives_them(self) -> None:
        """
        An unknown target, a target with no channel, and a reply nobody waits for are
        answered (or said) as L{DevOrchestrator.route} does.
        """
        dev, clock, lines = orchestrator()
        orders = attach(dev, "orders", "tcp")
        receive(dev, "orders", orders, request("nobody"))
        receive(dev, "orders", orders, request("inventory"))
        kinds = [m.payload.json()["error"]["kind"] for m in orders.sent]
        self.assertEqual(kinds, ["unknown_module", "unavailable"])
        stray = RoutedModuleReply("orders", uuid.uuid4(), "inventory", EncodedPayload(b"1"))
        receive(dev, "orders", orders, stray)
        self.assertIn("replied to unknown or expired request", lines[-1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reply_to_a_module_without_channel_goes_on_stdin(self) -> None:
        """
        With no channel to the requester, the reply is decoded after all and sent as a
        message (stdin takes messages, not frames).
        """
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory = attach(dev, "inventory", "ipc")
        message = request()
        receive(dev, "orders", orders, message)
        dev.supervisors["orders"].channels.connections.remove(orders)
        sent: list[Any] = []
        dev.supervisors["orders"].send = sent.append  # type: ignore[method-assign]
        payload = EncodedPayload.from_json([1])
        receive(
            dev, "inventory", inventory, RoutedModuleReply("i", message.request_id, "o", payload)
        )
        self.assertEqual(sent, [RoutedModuleResponse("inventory", message.request_id, payload)])

    def test_invalid_routing_fields_are_bad_frames(self) -> None:
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        data = frame(request()).payload.replace(b'"target_module_id":"inventory"', b'"x":1')
        self.assertTrue(dev.supervisors["orders"].links.frame_received(orders, Frame(1, data)))
        (error,) = orders.bad_frames
        self.assertIsInstance(error, ProtocolError)
        self.assertEqual(dev.supervisors["orders"].links.routed_in["tcp"], 0)

    def test_other_frames_are_decoded(self) -> None:
        """
        Other messages, other shapes and other frame formats are left to the full
        decode (C{False}).
        """
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        links = dev.supervisors["orders"].links
        self.assertFalse(links.frame_received(orders, frame(request(), FORMAT_AUTO)))
        self.assertFalse(links.frame_received(orders, Frame(FORMAT_JSON, encode(request()))))
        self.assertEqual(orders.raw + orders.sent, [])

    def test_without_forwarder_the_router_gets_the_message(self) -> None:
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory = attach(dev, "inventory", "ipc")
        dev.supervisors["orders"].forwarder = None
        message = request()
        receive(dev, "orders", orders, message)
        self.assertEqual(
            inventory.sent,
            [RoutedModuleMessage("orders", message.request_id, message.payload, "get_stock")],
        )


class SameAsRoutingTests(SynchronousTestCase):
    """
    Frames forwarded undecoded (a module's frames of one shape after the first are read
    from that shape) give what decoding them and routing the messages gives, whatever
    comes in which order: the bytes each module gets, the routes, the console.
    """

    def modules(self, forward: bool) -> tuple[Any, dict[str, RawConnection], list[str]]:
        dev, _, lines = orchestrator()
        if not forward:
            for supervisor in dev.supervisors.values():
                supervisor.forwarder = None
        connections = {}
        for name, kind in (("orders", "tcp"), ("inventory", "ipc")):
            connection = connections[name] = RawConnection(kind)
            # (messages and frames in the order they were sent, as the bytes they are)
            connection.send = lambda m, c=connection: c.raw.append(bare(m))  # type: ignore[method-assign]
            dev.supervisors[name].channels.connections.append(connection)
        return dev, connections, lines

    def test_random_traffic(self) -> None:
        rng = random.Random(11)
        ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(6)]
        payloads = [routed_request_payload({"n": n}, "get_stock", "orders") for n in range(3)]
        sides = [self.modules(forward) for forward in (True, False)]
        for step in range(600):
            choice = rng.randrange(10)
            if choice == 0:
                # the inventory's channel drops, or comes back
                for dev, connections, _ in sides:
                    channels = dev.supervisors["inventory"].channels.connections
                    if channels:
                        channels.clear()
                    else:
                        channels.append(connections["inventory"])
                continue
            if choice < 6:
                sender, target = "orders", rng.choice(["inventory", "inventory", "nobody"])
                message: Any = RouteToModule(
                    target, "get_stock", rng.choice(ids), rng.choice(payloads)
                )
            else:
                sender = "inventory"
                payload = EncodedPayload.from_json({"in_stock": rng.randrange(3)})
                message = RoutedModuleReply("inventory", rng.choice(ids), "orders", payload)
            data = frame(message).payload
            for dev, connections, _ in sides:
                links = dev.supervisors[sender].links
                if not links.json_received(connections[sender], data):
                    decoded = decode_envelope_from_module(data)
                    links.received(connections[sender], decoded)
            (fast, fast_out, fast_lines), (slow, slow_out, slow_lines) = sides
            for name in ("orders", "inventory"):
                self.assertEqual(fast_out[name].raw, slow_out[name].raw, (step, name))
                links = [d.supervisors[name].links for d in (fast, slow)]
                self.assertEqual(*[(n.messages_in, n.routed_in, n.last_routed_on) for n in links])
            self.assertEqual(list(fast._routes), list(slow._routes), step)
            self.assertEqual(fast_lines, slow_lines, step)
        # (each module's frames read from a known shape on the forwarding side)
        for name in ("orders", "inventory"):
            self.assertGreater(len(sides[0][1][name].raw), 50)
            self.assertIsNotNone(sides[0][0].supervisors[name].links._last_shape[0])

    def test_large_frames_are_decoded(self) -> None:
        """
        A frame over L{MAX_READ_SIZE} is left to the full decode, even of a shape read
        before.
        """
        dev, connections, _ = self.modules(True)
        links = dev.supervisors["orders"].links
        self.assertTrue(links.json_received(connections["orders"], frame(request()).payload))
        payload = EncodedPayload.from_json({"x": "y" * MAX_READ_SIZE})
        large = RouteToModule("inventory", "get_stock", uuid.uuid4(), payload)
        self.assertFalse(links.json_received(connections["orders"], frame(large).payload))


class CalleeTests(SynchronousTestCase):
    """
    The forwarded frame, written to a real module: it decodes and validates the payload
    the dev orchestrator did not.
    """

    def deliver(self, payload: EncodedPayload | bytes) -> tuple[FakeOrchestrator, list[Any]]:
        dev, _, _ = orchestrator()
        orders = attach(dev, "orders", "tcp")
        inventory = attach(dev, "inventory", "tcp")
        message = request()
        data = frame(message).payload
        if isinstance(payload, bytes):  # the byte values as they are on the wire
            at = data.index(b'"data":[') + 7
            data = data[:at] + payload + data[data.index(b"]", at) + 1 :]
        else:
            with_payload = RouteToModule("inventory", "get_stock", message.request_id, payload)
            data = frame(with_payload).payload
        dev.supervisors["orders"].links.frame_received(orders, Frame(FORMAT_JSON, data))
        (forwarded,) = inventory.raw
        callee = FakeOrchestrator(
            secrets={"API_KEY": "k"}, module_id="inventory", channels=("tcp",)
        )
        self.successResultOf(callee.start(inventory_app))
        self.addCleanup(callee.shutdown)
        connection = callee.connection("tcp")
        assert connection is not None
        connection.send_raw(forwarded)
        replies = [
            e.content for e in connection.received if isinstance(e.content, RoutedModuleReply)
        ]
        return callee, replies

    def test_reply(self) -> None:
        payload = routed_request_payload({"sku": "A1"}, "get_stock", "orders", False, 1, None)
        _, (reply,) = self.deliver(payload)
        self.assertEqual(reply.payload.json()["in_stock"], 7)

    def test_payload_not_json_is_a_bad_request(self) -> None:
        _, (reply,) = self.deliver(EncodedPayload(b"\xff not json", "Json"))
        self.assertEqual(reply.payload.json()["error"]["kind"], "bad_request")

    def test_values_that_are_not_bytes_are_refused(self) -> None:
        """
        Byte values that are not bytes are refused by the module, which skips the frame
        as undecodable (the full decode in pywatt dev refused it there).
        """
        callee, replies = self.deliver(b"[256,1]")
        self.assertEqual(replies, [])
        assert callee.module is not None
        channels = callee.module.service.channels
        self.assertEqual(channels.channels["tcp"].counters.bad_frames, 1)
