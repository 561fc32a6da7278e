"""
Tests for the registration-protocol client (L{pywatt_twisted._runtime.registration}):
the client against an in-memory registration service, and the service in a module.
"""

from __future__ import annotations

import uuid
from typing import Any

from klein import Klein
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.registration import (
    RegistrationClient,
    RegistrationError,
    health_to_status,
)
from pywatt_twisted.errors import ChannelError, RequestTimeout
from pywatt_twisted.wire._registration import (
    Capabilities,
    CapabilitiesRequest,
    CapabilitiesResponse,
    EndpointInfo,
    HealthStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    ModuleInfo,
    RegisteredModule,
    RegisterRequest,
    RegisterResponse,
    UnregisterRequest,
    UnregisterResponse,
    decode_registration_request,
    encode_registration_response,
)
from pywatt_twisted.wire.framing import FrameDecoder, frame_header, frame_json
from tests.runtime.helpers import Harness, init_line

MODULE_UUID = uuid.UUID("7e57ab1e-0000-4000-8000-000000000001")


class _Transport(StringTransport):
    aborted = False

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connectionLost(Failure(ConnectionDone()))

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


class FakeRegistry:
    """
    A registration service in memory: records requests, answers when told.
    """

    def __init__(self) -> None:
        self.connections: list[_Transport] = []
        self._decoders: list[FrameDecoder] = []
        self.refuse = False

    def connect(self, factory: Any) -> Any:
        if self.refuse:
            from twisted.internet.defer import fail
            from twisted.internet.error import ConnectionRefusedError

            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = _Transport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.connections.append(transport)
        self._decoders.append(FrameDecoder())
        return succeed(protocol)

    def requests(self) -> list[Any]:
        found = []
        for transport in self.connections:
            for frame in FrameDecoder().feed(transport.value()):
                found.append(decode_registration_request(frame_json(frame)))
        return found

    def respond(self, response: Any) -> None:
        payload = encode_registration_response(response)
        transport = self.connections[-1]
        assert transport.protocol is not None
        transport.protocol.dataReceived(frame_header(len(payload)) + payload)


def registered() -> RegisterResponse:
    info = ModuleInfo("demo", "1.0.0", "Demo module")
    return RegisterResponse(
        True, None, RegisteredModule(info, MODULE_UUID, "reg-token", "127.0.0.1", 9901)
    )


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = FakeRegistry()
        self.client = RegistrationClient(self.registry, self.clock, timeout=30)

    def register(self) -> None:
        d = self.client.register(ModuleInfo("demo", "1.0.0", "Demo module"))
        self.registry.respond(registered())
        self.assertEqual(self.successResultOf(d).id, MODULE_UUID)

    def test_register_heartbeat_capabilities_unregister(self) -> None:
        self.register()
        beat = self.client.heartbeat(HealthStatus.DEGRADED, {"why": "warming up"})
        self.registry.respond(HeartbeatResponse(True, HealthStatus.HEALTHY))
        self.assertEqual(self.successResultOf(beat), HealthStatus.HEALTHY)
        caps = Capabilities((EndpointInfo("/x", ("GET",)),), ("ping",))
        advertised = self.client.advertise_capabilities(caps)
        self.registry.respond(CapabilitiesResponse(True))
        self.successResultOf(advertised)
        gone = self.client.unregister()
        self.registry.respond(UnregisterResponse(True))
        self.successResultOf(gone)
        self.assertIsNone(self.client.module)
        requests = self.registry.requests()
        self.assertEqual(
            [type(r) for r in requests],
            [RegisterRequest, HeartbeatRequest, CapabilitiesRequest, UnregisterRequest],
        )
        self.assertEqual((requests[1].module_id, requests[1].token), (MODULE_UUID, "reg-token"))
        self.assertEqual(requests[1].details, {"why": "warming up"})
        self.assertEqual(requests[2].capabilities, caps)
        self.assertEqual(len(self.registry.connections), 1)  # one connection for all
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_request_on_the_wire_at_a_time(self) -> None:
        self.register()
        first = self.client.heartbeat(HealthStatus.HEALTHY)
        second = self.client.heartbeat(HealthStatus.UNHEALTHY)
        self.assertEqual(len(self.registry.requests()), 2)  # register + first
        self.registry.respond(HeartbeatResponse(True, HealthStatus.HEALTHY))
        self.assertEqual(len(self.registry.requests()), 3)
        self.registry.respond(HeartbeatResponse(True, HealthStatus.UNHEALTHY))
        self.assertEqual(self.successResultOf(first), HealthStatus.HEALTHY)
        self.assertEqual(self.successResultOf(second), HealthStatus.UNHEALTHY)

    def test_refused(self) -> None:
        d = self.client.register(ModuleInfo("demo", "1", "d"))
        self.registry.respond(RegisterResponse(False, "NameTaken"))
        failure = self.failureResultOf(d, RegistrationError)
        self.assertEqual(failure.value.kind, "register")
        self.assertIn("NameTaken", str(failure.value))

    def test_success_without_module_is_a_rejection(self) -> None:
        d = self.client.register(ModuleInfo("demo", "1", "d"))
        self.registry.respond(RegisterResponse(True))
        self.failureResultOf(d, RegistrationError)

    def test_requests_need_registration(self) -> None:
        self.failureResultOf(self.client.heartbeat(HealthStatus.HEALTHY), RegistrationError)

    def test_timeout_closes_the_connection_and_the_next_request_reconnects(self) -> None:
        self.register()
        d = self.client.heartbeat(HealthStatus.HEALTHY)
        self.clock.advance(30)
        self.failureResultOf(d, RequestTimeout)
        self.assertTrue(self.registry.connections[0].disconnecting)
        again = self.client.heartbeat(HealthStatus.HEALTHY)
        self.assertEqual(len(self.registry.connections), 2)
        self.registry.respond(HeartbeatResponse(True, HealthStatus.HEALTHY))
        self.successResultOf(again)

    def test_connection_lost_fails_the_request(self) -> None:
        self.register()
        d = self.client.heartbeat(HealthStatus.HEALTHY)
        self.registry.connections[0].loseConnection()
        self.failureResultOf(d, ChannelError)

    def test_oversize_frame_aborts_the_connection(self) -> None:
        """
        A header announcing more than the frame cap aborts the registration connection
        at once (the stream cannot be trusted past it): the request in flight fails
        now instead of waiting for its timeout, and the next request reconnects.
        """
        errors: list[str] = []
        self.client.log = Logger(observer=lambda event: errors.append(event["log_format"]))
        self.register()
        d = self.client.heartbeat(HealthStatus.HEALTHY)
        transport = self.registry.connections[0]
        assert transport.protocol is not None
        transport.protocol.dataReceived(frame_header(self.client.max_frame_length + 1))
        self.assertTrue(transport.aborted)
        self.failureResultOf(d, ChannelError)
        self.assertEqual(len([e for e in errors if "aborting the connection" in e]), 1)
        again = self.client.heartbeat(HealthStatus.HEALTHY)
        self.assertEqual(len(self.registry.connections), 2)
        self.registry.respond(HeartbeatResponse(True, HealthStatus.HEALTHY))
        self.successResultOf(again)

    def test_cannot_connect(self) -> None:
        self.registry.refuse = True
        d = self.client.register(ModuleInfo("demo", "1", "d"))
        self.failureResultOf(d, ChannelError)

    def test_health_to_status(self) -> None:
        self.assertEqual(health_to_status({"status": "ok"}), HealthStatus.HEALTHY)
        self.assertEqual(health_to_status({"status": "failed"}), HealthStatus.UNHEALTHY)
        self.assertEqual(health_to_status({"status": "stopping"}), HealthStatus.DEGRADED)


@pywatt_module()
def app(state: Any) -> Klein:
    state.handler("ping")(lambda source, payload: "pong")
    k = Klein()

    @k.route("/things", methods=["GET"])
    def things(request: Any) -> bytes:
        return b"[]"

    return k


class ModuleRegistrationTests(SynchronousTestCase):
    def start(self) -> tuple[Harness, FakeRegistry]:
        config = RuntimeConfig(registration_address="127.0.0.1:9999", registration_heartbeat=10)
        harness = Harness(app, config=config)
        registry = FakeRegistry()
        addresses: list[str] = []
        harness.service.registration_endpoint = lambda address: (
            addresses.append(address),
            registry,
        )[1]
        harness.start()
        harness.feed(init_line("demo"))
        self.successResultOf(harness.service.whenReady())
        self.assertEqual(addresses, ["127.0.0.1:9999"])
        return harness, registry

    def test_register_advertise_heartbeat_unregister(self) -> None:
        harness, registry = self.start()
        (register,) = registry.requests()
        self.assertEqual(register.module_info.name, "demo")
        self.assertIn("listen", register.module_info.metadata)
        registry.respond(registered())
        capabilities = registry.requests()[-1]
        self.assertIsInstance(capabilities, CapabilitiesRequest)
        paths = [e.path for e in capabilities.capabilities.endpoints]
        self.assertIn("/things", paths)
        self.assertEqual(capabilities.capabilities.message_types, ("ping",))
        registry.respond(CapabilitiesResponse(True))
        harness.reactor.advance(10)
        beat = registry.requests()[-1]
        self.assertIsInstance(beat, HeartbeatRequest)
        self.assertEqual(beat.status, HealthStatus.HEALTHY)
        registry.respond(HeartbeatResponse(True, HealthStatus.HEALTHY))
        self.assertEqual(harness.service.registration.heartbeats, 1)
        stopped = harness.service.stopService()
        self.assertIsInstance(registry.requests()[-1], UnregisterRequest)
        registry.respond(UnregisterResponse(True))
        harness.service.stdio.connectionLost(None)  # stdout drained
        self.successResultOf(stopped)
        self.assertEqual(harness.reactor.getDelayedCalls(), [])

    def test_failed_registration_does_not_stop_the_module(self) -> None:
        harness, registry = self.start()
        registry.respond(RegisterResponse(False, "no"))
        self.assertEqual(harness.service.status, "ok")
        self.assertEqual(harness.service.registration.failures, 1)
        harness.reactor.advance(10)
        self.assertEqual(len(registry.requests()), 1)  # no heartbeats without registering
        stopped = harness.service.stopService()
        harness.service.stdio.connectionLost(None)
        self.successResultOf(stopped)

    def test_config_from_environment(self) -> None:
        from pywatt_twisted.errors import ConfigurationError

        config = RuntimeConfig.from_environment(
            {"PYWATT_REGISTRATION_ADDRESS": "127.0.0.1:9901", "PYWATT_REGISTRATION_HEARTBEAT": "5"}
        )
        self.assertEqual(
            (config.registration_address, config.registration_heartbeat), ("127.0.0.1:9901", 5.0)
        )
        self.assertIsNone(RuntimeConfig.from_environment({}).registration_address)
        self.assertRaises(
            ConfigurationError,
            RuntimeConfig.from_environment,
            {"PYWATT_REGISTRATION_ADDRESS": "nowhere"},
        )
