"""
Module-to-module routing in the dev orchestrator, with stand-in supervisors.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev._links import ModuleLinks
from pywatt_twisted._dev._status import SupervisorStatus
from pywatt_twisted._dev.orchestrator import ROUTE_TIMEOUT, DevOrchestrator
from pywatt_twisted._dev.supervisor import Console
from pywatt_twisted.orchestrator import MemorySecretProvider
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    Envelope,
    Identify,
    Metadata,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)


class FakeConnection:
    def __init__(self, kind: str) -> None:
        self.listener = kind
        self.sent: list[Any] = []
        self.lost = False

    def send(self, message: Any) -> None:
        self.sent.append(message)


def orchestrator() -> tuple[DevOrchestrator, Clock, list[str]]:
    clock = Clock()
    lines: list[str] = []
    dev = DevOrchestrator(
        ["orders=examples.counter.module", "inventory=examples.greeter.module"],
        reactor=clock,
        secrets=MemorySecretProvider(),
        console=Console(lines.append),
        port=0,
    )
    for supervisor in dev.supervisors.values():
        # As if each had announced: set the state without walking the table.
        supervisor._status = SupervisorStatus.RUNNING
    return dev, clock, lines


def attach(dev: DevOrchestrator, module_id: str, kind: str) -> FakeConnection:
    connection = FakeConnection(kind)
    dev.supervisors[module_id].channels.connections.append(connection)  # type: ignore[arg-type]
    return connection


def identify(dev: DevOrchestrator, module_id: str, connection: Any, preference: Any) -> None:
    """
    The module's identify on C{connection}, stating C{preference} (if not C{None}).
    """
    properties = None if preference is None else {"channel_preference": preference}
    dev.supervisors[module_id].links.received(
        connection,
        Envelope(None, Identify(module_id), Metadata(source=module_id, properties=properties)),
    )


def request(target: str = "inventory") -> RouteToModule:
    return RouteToModule(
        target_module_id=target,
        target_endpoint="get_stock",
        request_id=uuid.uuid4(),
        payload=EncodedPayload.from_json({"id": "x", "content": {"sku": "A1"}, "metadata": {}}),
    )


class RoutingTests(SynchronousTestCase):
    def test_request_and_reply_are_routed(self) -> None:
        dev, clock, _ = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        inventory_ipc = attach(dev, "inventory", "ipc")
        inventory_tcp = attach(dev, "inventory", "tcp")
        # inventory prefers TCP (it said so in its identify)
        identify(dev, "inventory", inventory_tcp, ["tcp", "ipc"])
        message = request()
        dev.route(dev.supervisors["orders"], message, orders_tcp.send)
        self.assertEqual(inventory_ipc.sent, [])
        (delivered,) = inventory_tcp.sent
        self.assertEqual(
            delivered,
            RoutedModuleMessage("orders", message.request_id, message.payload, "get_stock"),
        )
        reply = RoutedModuleReply(
            "inventory", message.request_id, "orders", EncodedPayload.from_json({"in_stock": 7})
        )
        dev.route(dev.supervisors["inventory"], reply, inventory_tcp.send)
        (response,) = orders_tcp.sent
        self.assertEqual(
            response, RoutedModuleResponse("inventory", message.request_id, reply.payload)
        )
        # The sweep timer is not cancelled with the last route: it finds none and stops.
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(ROUTE_TIMEOUT)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_timer_per_round_trip(self) -> None:
        """
        One request at a time, answered at once: the one sweep timer stays armed
        across them (no DelayedCall is made and cancelled per round trip).
        """
        dev, clock, _ = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        inventory_tcp = attach(dev, "inventory", "tcp")
        calls = []
        for _ in range(3):
            message = request()
            dev.route(dev.supervisors["orders"], message, orders_tcp.send)
            reply = RoutedModuleReply("inventory", message.request_id, "orders", message.payload)
            dev.route(dev.supervisors["inventory"], reply, inventory_tcp.send)
            calls.extend(clock.getDelayedCalls())
            clock.advance(1)
        self.assertEqual(len(orders_tcp.sent), 3)
        (sweep,) = set(calls)
        self.assertTrue(sweep.active())
        clock.advance(ROUTE_TIMEOUT)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unknown_target_gets_an_error_reply(self) -> None:
        dev, _, _ = orchestrator()
        replies: list[Any] = []
        message = request("nobody")
        dev.route(dev.supervisors["orders"], message, replies.append)
        (reply,) = replies
        self.assertEqual(reply.request_id, message.request_id)
        self.assertEqual(reply.payload.json()["error"]["kind"], "unknown_module")

    def test_target_without_channel(self) -> None:
        dev, _, _ = orchestrator()
        replies: list[Any] = []
        dev.route(dev.supervisors["orders"], request(), replies.append)
        self.assertEqual(replies[0].payload.json()["error"]["kind"], "unavailable")

    def test_target_exit_fails_pending_requests_at_once(self) -> None:
        dev, clock, _ = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        attach(dev, "inventory", "tcp")
        message = request()
        dev.route(dev.supervisors["orders"], message, orders_tcp.send)
        dev._module_exited(dev.supervisors["inventory"])
        (reply,) = orders_tcp.sent
        self.assertEqual(reply.request_id, message.request_id)
        self.assertEqual(reply.payload.json()["error"]["kind"], "target_exited")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unanswered_routes_expire(self) -> None:
        dev, clock, lines = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        inventory_tcp = attach(dev, "inventory", "tcp")
        message = request()
        dev.route(dev.supervisors["orders"], message, orders_tcp.send)
        clock.advance(ROUTE_TIMEOUT)
        late = RoutedModuleReply("inventory", message.request_id, "orders", message.payload)
        dev.route(dev.supervisors["inventory"], late, inventory_tcp.send)
        self.assertEqual(orders_tcp.sent, [])
        self.assertTrue(any("unknown or expired" in line for line in lines))

    def test_one_timer_sweeps_the_routes_in_expiry_order(self) -> None:
        """
        However many routes wait, one timer runs (for the oldest); each route is
        forgotten ROUTE_TIMEOUT after it was made, not before, and the timer stops once
        a sweep finds none left.
        """
        dev, clock, lines = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        inventory_tcp = attach(dev, "inventory", "tcp")
        first = [request() for _ in range(50)]
        for message in first:
            dev.route(dev.supervisors["orders"], message, orders_tcp.send)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(ROUTE_TIMEOUT / 2)
        later = request()
        dev.route(dev.supervisors["orders"], later, orders_tcp.send)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(ROUTE_TIMEOUT / 2)
        # the first 50 expired, the later one is still routed back
        for message in (first[0], later):
            reply = RoutedModuleReply("inventory", message.request_id, "orders", message.payload)
            dev.route(dev.supervisors["inventory"], reply, inventory_tcp.send)
        self.assertEqual([r.request_id for r in orders_tcp.sent], [later.request_id])
        self.assertEqual(sum("unknown or expired" in line for line in lines), 1)
        clock.advance(ROUTE_TIMEOUT)  # the sweep finds none left
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_sweep_rearms_for_the_next_oldest(self) -> None:
        dev, clock, _ = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        attach(dev, "inventory", "tcp")
        dev.route(dev.supervisors["orders"], request(), orders_tcp.send)
        clock.advance(30)
        dev.route(dev.supervisors["orders"], request(), orders_tcp.send)
        clock.advance(ROUTE_TIMEOUT - 30)
        self.assertEqual(len(dev._routes), 1)
        (sweep,) = clock.getDelayedCalls()
        self.assertEqual(sweep.getTime(), 30 + ROUTE_TIMEOUT)
        clock.advance(30)
        self.assertEqual(dev._routes, {})
        self.assertEqual(clock.getDelayedCalls(), [])


class PreferredChannelTests(SynchronousTestCase):
    """
    pywatt dev delivers to a module over the channel that module prefers, and counts
    each module's module-to-module messages per channel.
    """

    def deliver(self, preference: Any, last: str | None = None) -> str:
        dev, _, _ = orchestrator()
        orders_tcp = attach(dev, "orders", "tcp")
        links = {kind: attach(dev, "inventory", kind) for kind in ("tcp", "ipc")}
        identify(dev, "inventory", links["tcp"], preference)
        if last is not None:
            reply = RoutedModuleReply(
                "inventory", uuid.uuid4(), "orders", EncodedPayload.from_json(1)
            )
            dev.supervisors["inventory"].links.received(links[last], Envelope(None, reply))
        dev.route(dev.supervisors["orders"], request(), orders_tcp.send)
        (kind,) = [
            k for k, c in links.items() if any(isinstance(m, RoutedModuleMessage) for m in c.sent)
        ]
        return kind

    def test_default_is_the_unix_socket(self) -> None:
        self.assertEqual(self.deliver(None), "ipc")

    def test_stated_preference(self) -> None:
        self.assertEqual(self.deliver(["tcp", "ipc"]), "tcp")
        self.assertEqual(self.deliver(["ipc", "tcp"]), "ipc")

    def test_auto_follows_the_channel_the_module_last_used(self) -> None:
        self.assertEqual(self.deliver(["auto", "ipc", "tcp"], last="tcp"), "tcp")
        self.assertEqual(self.deliver(["auto", "tcp", "ipc"], last="ipc"), "ipc")
        self.assertEqual(self.deliver(["auto", "tcp", "ipc"]), "tcp")

    def test_unusable_preference_is_ignored(self) -> None:
        self.assertEqual(self.deliver(["carrier-pigeon"]), "ipc")
        self.assertEqual(self.deliver("tcp"), "ipc")

    def test_routed_messages_counted_per_channel(self) -> None:
        dev, _, _ = orchestrator()
        ipc = attach(dev, "orders", "ipc")
        attach(dev, "inventory", "ipc")
        orders = dev.supervisors["orders"]
        for _ in range(3):
            orders.links.received(ipc, Envelope(None, request()))
        info = orders.describe()
        self.assertEqual(info["routed_in"], {"tcp": 0, "ipc": 3})
        self.assertEqual(info["messages_in"]["ipc"], 3)
        self.assertEqual(info["channel_preference"], ["ipc", "tcp"])

    def test_messages_in_counts_every_message_once(self) -> None:
        """
        C{messages_in} counts the module-to-module messages (kept in C{routed_in}) and
        every other message, per link, a link only routed messages came on included.
        """
        dev, _, _ = orchestrator()
        ipc = attach(dev, "orders", "ipc")
        tls = attach(dev, "orders", "tls")
        attach(dev, "inventory", "ipc")
        links = dev.supervisors["orders"].links
        links.received(ipc, Envelope(None, request()))
        links.received(ipc, Envelope(None, Identify("orders"), Metadata(source="orders")))
        links.received(tls, Envelope(None, request()))
        links.count("stdio")
        self.assertEqual(links.routed_in, {"tcp": 0, "ipc": 1, "tls": 1})
        self.assertEqual(links.messages_in, {"stdio": 1, "tcp": 0, "ipc": 2, "tls": 1})
        # (a fresh dict each time: changing one changes no count)
        links.messages_in["ipc"] = 10
        self.assertEqual(links.messages_in["ipc"], 2)


#: what can happen to a module's links between two deliveries (see DeliveryChoiceTests)
_link_events = st.lists(
    st.one_of(
        st.tuples(st.just("connect"), st.sampled_from(["tcp", "ipc", "tls", ""])),
        st.tuples(st.just("lose"), st.integers(0, 7)),
        st.tuples(st.just("lose_and_remove"), st.integers(0, 7)),
        st.tuples(st.just("remove"), st.integers(0, 7)),
        st.tuples(
            st.just("prefer"),
            st.one_of(
                st.none(),
                st.lists(st.sampled_from(["auto", "tcp", "ipc"]), max_size=4).map(tuple),
            ),
        ),
        st.tuples(st.just("routed_on"), st.sampled_from([None, "tcp", "ipc", "tls"])),
        st.tuples(st.just("deliver"), st.none()),
    ),
    max_size=40,
)


class DeliveryChoiceTests(SynchronousTestCase):
    """
    L{ModuleLinks.delivery} remembers its choice, and always chooses what
    C{connection(preferred())} chooses.
    """

    @settings(max_examples=300)
    @given(_link_events)
    def test_same_choice_as_choosing_anew(self, events: list[tuple[str, Any]]) -> None:
        links = ModuleLinks(Clock(), "inventory", lambda *a: None)
        connections: list[Any] = links.channels.connections
        made: list[FakeConnection] = []
        for event, value in events:
            if event == "connect":
                made.append(FakeConnection(value))
                connections.append(made[-1])
            elif event == "prefer":
                links.channel_preference = value
            elif event == "routed_on":
                links.last_routed_on = value
            elif event != "deliver" and made:
                connection = made[value % len(made)]
                if event != "remove":
                    connection.lost = True  # (as connectionLost: lost, then unlisted)
                if event != "lose" and connection in connections:
                    connections.remove(connection)
            self.assertIs(links.delivery(), links.connection(links.preferred()))

    def test_a_new_connection_is_chosen_when_preferred(self) -> None:
        """
        Once a connection of a kind preferred over the chosen one connects, it is
        chosen; when it is lost, the one before is chosen again.
        """
        links = ModuleLinks(Clock(), "inventory", lambda *a: None)
        tcp = FakeConnection("tcp")
        links.channels.connections.append(tcp)  # type: ignore[arg-type]
        self.assertIs(links.delivery(), tcp)
        self.assertIs(links.delivery(), tcp)
        ipc = FakeConnection("ipc")
        links.channels.connections.append(ipc)  # type: ignore[arg-type]
        self.assertIs(links.delivery(), ipc)
        ipc.lost = True
        self.assertIs(links.delivery(), tcp)
        links.channel_preference = ("tcp", "ipc")
        tcp.lost = True
        self.assertIsNone(links.delivery())

    def test_auto_follows_the_last_channel_used(self) -> None:
        """
        Under C{auto}, the choice follows the channel the module last sent a
        module-to-module message on, remembered or not.
        """
        links = ModuleLinks(Clock(), "inventory", lambda *a: None)
        tcp, ipc = FakeConnection("tcp"), FakeConnection("ipc")
        links.channels.connections.extend([tcp, ipc])  # type: ignore[list-item]
        links.channel_preference = ("auto", "ipc", "tcp")
        self.assertIs(links.delivery(), ipc)
        links.last_routed_on = "tcp"
        self.assertIs(links.delivery(), tcp)
        self.assertIs(links.delivery(), tcp)
        links.last_routed_on = "ipc"
        self.assertIs(links.delivery(), ipc)
