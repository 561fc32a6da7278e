"""
The orders module's own tests, written with FakeOrchestrator: the test plays the
orchestrator (and the inventory module behind it) on the module's TCP channel.

    trial examples.orders.test_module
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from examples.orders.module import create_app
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    DiscoverServiceProvidersResponse,
    RouteToModule,
    ServiceProviderInfo,
    ServiceType,
)


class OrdersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orch = FakeOrchestrator(
            module_id="orders", channels=("tcp",), env={"ORDERS_INVENTORY_TIMEOUT": "5"}
        )
        self.module = self.successResultOf(self.orch.start(create_app))

    def routed(self) -> RouteToModule:
        """
        The last request the module sent to another module.
        """
        return self.orch.routed_requests[-1]

    def test_stock_asks_the_inventory(self) -> None:
        d = self.module.request("GET", "/stock/A1")
        request = self.routed()
        self.assertEqual(
            (request.target_module_id, request.target_endpoint), ("inventory", "get_stock")
        )
        self.assertEqual(request.payload.json()["content"], {"sku": "A1"})
        self.orch.answer_routed({"sku": "A1", "in_stock": 7})
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.json()), (200, {"sku": "A1", "in_stock": 7}))

    def test_order_out_of_stock_is_409(self) -> None:
        d = self.module.request("POST", "/orders", json_body={"sku": "A1", "quantity": 99})
        self.assertEqual(self.routed().payload.json()["content"], {"sku": "A1", "quantity": 99})
        self.orch.answer_routed(error=("out_of_stock", "A1: 99 wanted, 7 in stock"))
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.json()["error"]), (409, "out_of_stock"))

    def test_order_placed_is_201(self) -> None:
        d = self.module.request("POST", "/orders", json_body={"sku": "A1", "quantity": 2})
        self.orch.answer_routed({"sku": "A1", "reserved": 2, "left": 5})
        self.assertEqual(self.successResultOf(d).code, 201)

    def test_inventory_gone_is_502(self) -> None:
        d = self.module.request("GET", "/stock/A1")
        self.orch.answer_routed(
            error=("target_exited", "module 'inventory' exited before replying")
        )
        self.assertEqual(self.successResultOf(d).code, 502)

    def test_no_reply_in_time_is_504(self) -> None:
        d = self.module.request("GET", "/stock/A1?timeout=2")
        self.orch.reactor.advance(2)
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.json()["error"]), (504, "timeout"))

    def test_bad_order(self) -> None:
        d = self.module.request("POST", "/orders", json_body={"quantity": 2})
        self.assertEqual(self.successResultOf(d).code, 400)

    def test_providers_come_from_discovery(self) -> None:
        d = self.module.request("GET", "/providers")
        info = ServiceProviderInfo(
            "p-1", "inventory", ServiceType.custom("stock"), "inventory", "1", "inventory"
        )
        self.orch.send(DiscoverServiceProvidersResponse(True, (info,)), via="tcp")
        response = self.successResultOf(d)
        self.assertEqual(
            response.json(),
            [
                {
                    "module_id": "inventory",
                    "name": "inventory",
                    "address": "inventory",
                    "healthy": True,
                }
            ],
        )

    def test_without_channels_is_503(self) -> None:
        orch = FakeOrchestrator(module_id="orders")
        module = self.successResultOf(orch.start(create_app))
        response = self.successResultOf(module.request("GET", "/stock/A1"))
        self.assertEqual(response.code, 503)
