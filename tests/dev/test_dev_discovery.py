"""
Service discovery, port negotiation and proxy refusals in the dev orchestrator, with
stand-in supervisors (no processes).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.wire.messages import (
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    PortRequest,
    PortResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
)
from tests.dev.test_routing import orchestrator


class DiscoveryTests(SynchronousTestCase):
    def test_register_then_discover(self) -> None:
        dev, _, lines = orchestrator()
        orders, inventory = dev.supervisors["orders"], dev.supervisors["inventory"]
        replies: list[Any] = []
        inventory._from_module(
            RegisterServiceProvider(
                ServiceType.custom("stock"), "stock", "1.0", "inventory", {"k": "v"}
            ),
            replies.append,
        )
        (registered,) = replies
        self.assertIsInstance(registered, RegisterServiceProviderResponse)
        self.assertTrue(registered.success)
        self.assertTrue(any("inventory provides" in line for line in lines))
        found: list[Any] = []
        orders._from_module(DiscoverServiceProviders(ServiceType.custom("stock")), found.append)
        orders._from_module(DiscoverServiceProviders(ServiceType.CACHE), found.append)
        stock, cache = found
        self.assertIsInstance(stock, DiscoverServiceProvidersResponse)
        (info,) = stock.providers
        self.assertEqual(
            (info.provider_id, info.module_id, info.name, info.address, dict(info.metadata)),
            (registered.provider_id, "inventory", "stock", "inventory", {"k": "v"}),
        )
        self.assertEqual(cache.providers, ())

    def test_registering_again_replaces_and_exit_marks_unhealthy(self) -> None:
        dev, _, _ = orchestrator()
        inventory = dev.supervisors["inventory"]
        register = RegisterServiceProvider(ServiceType.CACHE, "c", None, "a:1")
        inventory._from_module(register, lambda r: None)
        dev._module_exited(inventory)
        found: list[Any] = []
        discover = DiscoverServiceProviders(ServiceType.CACHE)
        dev.supervisors["orders"]._from_module(discover, found.append)
        dev.supervisors["orders"]._from_module(
            DiscoverServiceProviders(ServiceType.CACHE, all_providers=True), found.append
        )
        self.assertEqual(found[0].providers, ())
        self.assertFalse(found[1].providers[0].is_healthy)
        # Restarted, it registers again: one provider, healthy.
        inventory._from_module(
            RegisterServiceProvider(ServiceType.CACHE, "c", None, "a:2"), lambda r: None
        )
        dev.supervisors["orders"]._from_module(discover, found.append)
        (info,) = found[2].providers
        self.assertEqual((info.address, info.is_healthy), ("a:2", True))


class PortAndProxyTests(SynchronousTestCase):
    def test_port_request_any(self) -> None:
        dev, _, _ = orchestrator()
        replies: list[Any] = []
        dev.supervisors["orders"]._from_module(PortRequest("r-1", None), replies.append)
        (response,) = replies
        self.assertIsInstance(response, PortResponse)
        self.assertEqual((response.request_id, response.success), ("r-1", True))
        self.assertGreater(response.port, 0)

    def test_port_request_in_use(self) -> None:
        dev, _, _ = orchestrator()
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            replies: list[Any] = []
            dev.supervisors["orders"]._from_module(PortRequest("r-2", port), replies.append)
        (response,) = replies
        self.assertFalse(response.success)
        self.assertIn(str(port), response.error_message)

    def test_proxied_services_are_refused_at_once(self) -> None:
        dev, _, _ = orchestrator()
        replies: list[Any] = []
        orders = dev.supervisors["orders"]
        orders._from_module(ServiceRequest("cache_request_1", ServiceType.CACHE), replies.append)
        operation = ServiceOperation("conn", ServiceType.CACHE, "get", {"key": "k"})
        orders._from_module(operation, replies.append)
        refused, result = replies
        self.assertIsInstance(refused, ServiceResponse)
        self.assertEqual((refused.id, refused.success), ("cache_request_1", False))
        self.assertIsInstance(result, ServiceOperationResult)
        self.assertEqual((result.success, result.params), (False, operation))
