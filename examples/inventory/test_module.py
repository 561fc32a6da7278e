"""
The inventory module's own tests, written with FakeOrchestrator: the test plays the
orchestrator that delivers other modules' requests on the module's TCP channel.

    trial examples.inventory.test_module
"""

from __future__ import annotations

import uuid

from twisted.trial.unittest import SynchronousTestCase

from examples.inventory.module import STOCK_SERVICE, create_app
from pywatt_twisted import request_payload
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    RoutedModuleMessage,
    RoutedModuleReply,
)


class InventoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orch = FakeOrchestrator(module_id="inventory", channels=("tcp",))
        self.module = self.successResultOf(self.orch.start(create_app))

    def replies(self) -> list[RoutedModuleReply]:
        received = self.orch.connection("tcp").received
        return [e.content for e in received if isinstance(e.content, RoutedModuleReply)]

    def ask(self, endpoint: str, content: object) -> object:
        """
        Deliver a request from "orders" and return the reply payload's JSON.
        """
        request_id = uuid.uuid4()
        self.orch.send(
            RoutedModuleMessage("orders", request_id, request_payload(content, endpoint)),
            via="tcp",
        )
        connection = self.orch.connection("tcp")
        (reply,) = [
            e.content
            for e in connection.received
            if isinstance(e.content, RoutedModuleReply) and e.content.request_id == request_id
        ]
        self.assertEqual(reply.target_module_id, "orders")
        return reply.payload.json()

    def test_registers_as_stock_provider(self) -> None:
        (register,) = [m for m in self.orch.sent if isinstance(m, RegisterServiceProvider)]
        self.assertEqual((register.service_type, register.address), (STOCK_SERVICE, "inventory"))
        self.orch.send(RegisterServiceProviderResponse(True, "p-1"), via="tcp")

    def test_get_stock(self) -> None:
        self.assertEqual(self.ask("get_stock", {"sku": "A1"}), {"sku": "A1", "in_stock": 7})

    def test_get_stock_later(self) -> None:
        request_id = uuid.uuid4()
        payload = request_payload({"sku": "A1", "delay": 2}, "get_stock")
        self.orch.send(RoutedModuleMessage("orders", request_id, payload), via="tcp")
        self.assertEqual(self.replies(), [])
        self.orch.reactor.advance(2)
        self.assertEqual(len(self.replies()), 1)

    def test_reserve_until_out_of_stock(self) -> None:
        self.assertEqual(
            self.ask("reserve", {"sku": "A1", "quantity": 5}),
            {"sku": "A1", "reserved": 5, "left": 2},
        )
        error = self.ask("reserve", {"sku": "A1", "quantity": 5})["error"]
        self.assertEqual(error["kind"], "out_of_stock")
        self.assertEqual(
            self.ask("reserve", {"sku": "Z9", "quantity": 1})["error"]["kind"], "unknown_sku"
        )

    def test_unknown_endpoint(self) -> None:
        self.assertEqual(self.ask("delete_all", {})["error"]["kind"], "unknown_endpoint")

    def test_restock_is_a_notification(self) -> None:
        payload = request_payload({"sku": "B2", "quantity": 3}, "restock", no_reply=True)
        self.orch.send(RoutedModuleMessage("orders", uuid.uuid4(), payload), via="tcp")
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.ask("get_stock", {"sku": "B2"})["in_stock"], 3)

    def test_http_route(self) -> None:
        response = self.successResultOf(self.module.request("GET", "/stock/C3"))
        self.assertEqual(response.json(), {"sku": "C3", "in_stock": 120})
