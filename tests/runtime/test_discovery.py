"""
Tests for service discovery and proxied services (L{pywatt_twisted._runtime.discovery}),
through a real module service on a L{FakeOrchestrator}.
"""

from __future__ import annotations

import uuid
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.discovery import service_type
from pywatt_twisted.errors import NotAvailable, RemoteError, RequestTimeout
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    ServiceOperation,
    ServiceOperationResult,
    ServiceProviderInfo,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
)


def app(state: Any) -> Klein:
    return Klein()


def provider(name: str, healthy: bool = True) -> ServiceProviderInfo:
    return ServiceProviderInfo(
        provider_id=f"prov-{name}",
        module_id="cache-mod",
        service_type=ServiceType.CACHE,
        name=name,
        version=None,
        address="127.0.0.1:6379",
        is_healthy=healthy,
    )


class ServiceTypeTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertEqual(service_type("Cache"), ServiceType.CACHE)
        self.assertEqual(service_type("database"), ServiceType.DATABASE)
        self.assertEqual(service_type("Custom(search)"), ServiceType.custom("search"))
        self.assertEqual(service_type("custom:search"), ServiceType.custom("search"))
        self.assertEqual(service_type({"Custom": "x"}), ServiceType.custom("x"))  # type: ignore[arg-type]
        self.assertIs(service_type(ServiceType.JWT), ServiceType.JWT)
        self.assertRaises(ValueError, service_type, "Queue")


class DiscoveryTests(SynchronousTestCase):
    def start(self, channels: tuple[str, ...] = ("tcp", "ipc")) -> tuple[FakeOrchestrator, Any]:
        orch = FakeOrchestrator(module_id="redis-mod", channels=channels)
        module = self.successResultOf(orch.start(app))
        return orch, module

    def on_tcp(self, orch: FakeOrchestrator, kind: type) -> list[Any]:
        connection = orch.connection("tcp")
        assert connection is not None
        return [e for e in connection.received if isinstance(e.content, kind)]

    def test_register_on_the_tcp_channel(self) -> None:
        orch, module = self.start()
        d = module.state.register_service_provider(
            "custom:search", "es", "127.0.0.1:9200", version="8.1", metadata={"region": "local"}
        )
        (envelope,) = self.on_tcp(orch, RegisterServiceProvider)
        self.assertEqual(
            envelope.content,
            RegisterServiceProvider(
                ServiceType.custom("search"), "es", "8.1", "127.0.0.1:9200", {"region": "local"}
            ),
        )
        uuid.UUID(envelope.metadata.id)  # R puts a uuid string in metadata.id
        orch.send(RegisterServiceProviderResponse(True, "prov-1"), via="tcp")
        self.assertEqual(self.successResultOf(d), "prov-1")
        self.assertEqual(len(module.service.service_client.pending), 0)

    def test_one_register_on_the_wire_at_a_time(self) -> None:
        orch, module = self.start()
        first = module.state.register_service_provider("Cache", "a", "127.0.0.1:1")
        second = module.state.register_service_provider("Cache", "b", "127.0.0.1:2")
        # Discovery runs independently of registration.
        found = module.state.discover_service_providers("Cache")
        self.assertEqual(
            [e.content.name for e in self.on_tcp(orch, RegisterServiceProvider)], ["a"]
        )
        self.assertEqual(len(self.on_tcp(orch, DiscoverServiceProviders)), 1)
        orch.send(RegisterServiceProviderResponse(True, "prov-a"), via="tcp")
        self.assertEqual(self.successResultOf(first), "prov-a")
        self.assertEqual(
            [e.content.name for e in self.on_tcp(orch, RegisterServiceProvider)], ["a", "b"]
        )
        orch.send(RegisterServiceProviderResponse(True, "prov-b"), via="ipc")
        self.assertEqual(self.successResultOf(second), "prov-b")
        orch.send(DiscoverServiceProvidersResponse(True, [provider("redis")]), via="tcp")
        self.assertEqual(self.successResultOf(found), [provider("redis")])

    def test_rejected(self) -> None:
        orch, module = self.start()
        d = module.state.register_service_provider("Database", "db", "127.0.0.1:5432")
        orch.send(RegisterServiceProviderResponse(False, None, "name taken"), via="tcp")
        failure = self.failureResultOf(d, RemoteError)
        self.assertEqual(failure.value.kind, "rejected")
        self.assertIn("name taken", str(failure.value))

    def test_timeout_sends_the_next_and_cleans_up(self) -> None:
        orch, module = self.start()
        first = module.state.register_service_provider("Cache", "a", "x:1", timeout=5)
        second = module.state.register_service_provider("Cache", "b", "x:2", timeout=60)
        orch.reactor.advance(5)
        failure = self.failureResultOf(first, RequestTimeout)
        self.assertIn("register_service_provider_response", str(failure.value))
        self.assertEqual(
            [e.content.name for e in self.on_tcp(orch, RegisterServiceProvider)], ["a", "b"]
        )
        orch.send(RegisterServiceProviderResponse(True, "prov-b"), via="tcp")
        self.assertEqual(self.successResultOf(second), "prov-b")
        self.assertEqual(len(module.service.service_client.pending), 0)

    def test_cancelled_head_lets_the_next_go(self) -> None:
        orch, module = self.start()
        first = module.state.discover_service_providers("Cache")
        second = module.state.discover_service_providers("Jwt")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        sent = [e.content.service_type for e in self.on_tcp(orch, DiscoverServiceProviders)]
        self.assertEqual(sent, [ServiceType.CACHE, ServiceType.JWT])
        orch.send(DiscoverServiceProvidersResponse(True, []), via="tcp")
        self.assertEqual(self.successResultOf(second), [])

    def test_discovery_failure(self) -> None:
        orch, module = self.start()
        d = module.state.discover_service_providers("Cache", all_providers=True)
        (envelope,) = self.on_tcp(orch, DiscoverServiceProviders)
        self.assertTrue(envelope.content.all_providers)
        orch.send(DiscoverServiceProvidersResponse(False, [], "registry down"), via="tcp")
        self.assertEqual(self.failureResultOf(d, RemoteError).value.kind, "discovery_failed")

    def test_reply_with_nothing_outstanding_is_ignored(self) -> None:
        orch, module = self.start()
        services = module.service.service_client
        events: list[Any] = []
        services.log = Logger(observer=events.append)
        orch.send(RegisterServiceProviderResponse(True, "prov-x"), via="tcp")
        orch.send(ServiceResponse("nope", ServiceType.CACHE, True, None, "c"))
        orch.send(ServiceOperationResult(True, 1))
        self.assertEqual(services.ignored, 3)
        self.assertEqual(len(events), 3)

    def test_without_channels_discovery_uses_stdout(self) -> None:
        orch, module = self.start(channels=())
        d = module.state.discover_service_providers("Cache")
        self.assertIsInstance(orch.sent[-1], DiscoverServiceProviders)
        orch.send(DiscoverServiceProvidersResponse(True, [provider("r")]))
        self.assertEqual(len(self.successResultOf(d)), 1)

    def test_bad_service_type(self) -> None:
        _, module = self.start()
        self.failureResultOf(module.state.discover_service_providers("Queue"), ValueError)

    def test_stop_abandons_calls(self) -> None:
        orch, module = self.start()
        d = module.state.discover_service_providers("Cache")
        self.successResultOf(orch.shutdown())
        self.failureResultOf(d, NotAvailable)
        self.assertEqual(orch.reactor.getDelayedCalls(), [])


class ProxyTests(SynchronousTestCase):
    def start(self) -> tuple[FakeOrchestrator, Any]:
        orch = FakeOrchestrator(module_id="proxy-user")
        module = self.successResultOf(orch.start(app))
        return orch, module

    def requests(self, orch: FakeOrchestrator) -> list[ServiceRequest]:
        return [m for m in orch.sent if isinstance(m, ServiceRequest)]

    def operations(self, orch: FakeOrchestrator) -> list[ServiceOperation]:
        return [m for m in orch.sent if isinstance(m, ServiceOperation)]

    def test_service_requests_correlated_by_id(self) -> None:
        orch, module = self.start()
        cache = module.state.service_request("Cache", {"cache_type": "Redis"})
        db = module.state.service_request(ServiceType.DATABASE, None)
        cache_request, db_request = self.requests(orch)
        self.assertTrue(cache_request.id.startswith("cache_request_"))
        self.assertTrue(db_request.id.startswith("db_request_"))
        self.assertEqual(cache_request.config, {"cache_type": "Redis"})
        # Answered out of order.
        orch.send(ServiceResponse(db_request.id, ServiceType.DATABASE, True, None, "conn-db"))
        orch.send(ServiceResponse(cache_request.id, ServiceType.CACHE, True, None, "conn-c"))
        self.assertEqual(self.successResultOf(db), "conn-db")
        self.assertEqual(self.successResultOf(cache), "conn-c")

    def test_service_refused(self) -> None:
        orch, module = self.start()
        d = module.state.service_request("Jwt")
        (request,) = self.requests(orch)
        orch.send(ServiceResponse(request.id, ServiceType.JWT, False, "no jwt here", None))
        failure = self.failureResultOf(d, RemoteError)
        self.assertEqual(failure.value.kind, "service_refused")
        self.assertIn("no jwt here", str(failure.value))

    def test_accepted_without_connection_id(self) -> None:
        orch, module = self.start()
        d = module.state.service_request("Cache")
        (request,) = self.requests(orch)
        orch.send(ServiceResponse(request.id, ServiceType.CACHE, True, None, None))
        self.failureResultOf(d, RemoteError)

    def test_service_request_times_out(self) -> None:
        orch, module = self.start()
        d = module.state.service_request("Cache", timeout=3)
        orch.reactor.advance(3)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(len(module.service.service_client.pending), 0)

    def test_operations_fifo_without_echo(self) -> None:
        orch, module = self.start()
        first = module.state.service_operation("conn-1", "Cache", "get", {"key": "a"})
        second = module.state.service_operation("conn-1", "Cache", "get", {"key": "b"})
        self.assertEqual([o.params for o in self.operations(orch)], [{"key": "a"}, {"key": "b"}])
        orch.send(ServiceOperationResult(True, "YQ=="))
        orch.send(ServiceOperationResult(True, "Yg=="))
        self.assertEqual(self.successResultOf(first), "YQ==")
        self.assertEqual(self.successResultOf(second), "Yg==")

    def test_operations_matched_by_echoed_params(self) -> None:
        orch, module = self.start()
        on_1 = module.state.service_operation("conn-1", "Cache", "get", {"key": "a"})
        on_2 = module.state.service_operation("conn-2", "Cache", "get", {"key": "b"})
        delete_2 = module.state.service_operation("conn-2", "Cache", "delete", {"key": "c"})
        ops = self.operations(orch)
        orch.send(ServiceOperationResult(True, True, None, ops[2]))
        orch.send(ServiceOperationResult(True, "two", None, ops[1]))
        self.assertEqual(self.successResultOf(delete_2), True)
        self.assertEqual(self.successResultOf(on_2), "two")
        self.assertNoResult(on_1)
        # An echo naming a connection with nothing outstanding is not guessed at.
        other = ServiceOperation("conn-9", ServiceType.CACHE, "get", {})
        orch.send(ServiceOperationResult(True, "nine", None, other))
        self.assertNoResult(on_1)
        orch.send(ServiceOperationResult(True, "one", None, ops[0]))
        self.assertEqual(self.successResultOf(on_1), "one")

    def test_operation_failure_and_timeout(self) -> None:
        orch, module = self.start()
        failing = module.state.service_operation("conn-1", "Database", "execute", {"query": "x"})
        slow = module.state.service_operation("conn-1", "Database", "ping", None, timeout=2)
        orch.send(ServiceOperationResult(False, None, "syntax error"))
        failure = self.failureResultOf(failing, RemoteError)
        self.assertEqual(failure.value.kind, "operation_failed")
        self.assertIn("syntax error", str(failure.value))
        orch.reactor.advance(2)
        self.failureResultOf(slow, RequestTimeout)
        # A result after the timeout is not given to a later operation.
        later = module.state.service_operation("conn-2", "Database", "ping", None)
        orch.send(ServiceOperationResult(True, "late", None, self.operations(orch)[1]))
        self.assertNoResult(later)
        self.assertEqual(module.service.service_client.ignored, 1)
