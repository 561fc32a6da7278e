"""
The inventory module's own tests, written with FakeOrchestrator: the test plays the
orchestrator that delivers other modules' requests on the module's TCP channel.

    trial examples.inventory.test_module
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from examples.inventory.module import STOCK_SERVICE, create_app
from pywatt_twisted import RemoteError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    RoutedModuleReply,
)


class InventoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orch = FakeOrchestrator(module_id="inventory", channels=("tcp",))
        self.module = self.successResultOf(self.orch.start(create_app))

    def replies(self) -> list[RoutedModuleReply]:
        received = self.orch.connection("tcp").received
        return [e.content for e in received if isinstance(e.content, RoutedModuleReply)]

    def ask(self, endpoint: str, content: object) -> Any:
        """
        Call C{endpoint} as the "orders" module and return its reply.
        """
        return self.successResultOf(self.module.call(endpoint, content, source="orders"))

    def refused(self, endpoint: str, content: object) -> str:
        """
        Call C{endpoint} as the "orders" module and return the kind of its error reply.
        """
        failure = self.failureResultOf(self.module.call(endpoint, content), RemoteError)
        return failure.value.kind

    def test_registers_as_stock_provider(self) -> None:
        (register,) = [m for m in self.orch.sent if isinstance(m, RegisterServiceProvider)]
        self.assertEqual((register.service_type, register.address), (STOCK_SERVICE, "inventory"))
        self.orch.send(RegisterServiceProviderResponse(True, "p-1"), via="tcp")

    def test_get_stock(self) -> None:
        self.assertEqual(self.ask("get_stock", {"sku": "A1"}), {"sku": "A1", "in_stock": 7})
        (reply,) = self.replies()
        self.assertEqual(reply.target_module_id, "orders")

    def test_get_stock_later(self) -> None:
        d = self.module.call("get_stock", {"sku": "A1", "delay": 2}, source="orders")
        self.assertNoResult(d)
        self.orch.reactor.advance(2)
        self.assertEqual(self.successResultOf(d), {"sku": "A1", "in_stock": 7})

    def test_reserve_until_out_of_stock(self) -> None:
        self.assertEqual(
            self.ask("reserve", {"sku": "A1", "quantity": 5}),
            {"sku": "A1", "reserved": 5, "left": 2},
        )
        self.assertEqual(self.refused("reserve", {"sku": "A1", "quantity": 5}), "out_of_stock")
        self.assertEqual(self.refused("reserve", {"sku": "Z9", "quantity": 1}), "unknown_sku")

    def test_unknown_endpoint(self) -> None:
        self.assertEqual(self.refused("delete_all", {}), "unknown_endpoint")

    def test_restock_is_a_notification(self) -> None:
        self.module.notify("restock", {"sku": "B2", "quantity": 3}, source="orders")
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.ask("get_stock", {"sku": "B2"})["in_stock"], 3)

    def test_http_route(self) -> None:
        response = self.successResultOf(self.module.request("GET", "/stock/C3"))
        self.assertEqual(response.json(), {"sku": "C3", "in_stock": 120})
