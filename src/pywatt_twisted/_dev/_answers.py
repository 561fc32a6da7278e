# -*- test-case-name: tests.dev.test_dev_discovery, tests.dev.test_routing -*-
"""
What C{pywatt dev} answers when a supervised module asks something of its orchestrator:
a secret, a port, service registration and discovery, module-to-module routing (handed
to the dev orchestrator), and a refusal for proxied services when none is provided.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pywatt_twisted._dev._child import free_port
from pywatt_twisted.errors import ProtocolError
from pywatt_twisted.wire._forward import RoutingHeader
from pywatt_twisted.wire.messages import (
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    EncodedPayload,
    PortRequest,
    PortResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
    SecretMessage,
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
)

if TYPE_CHECKING:
    from pywatt_twisted._dev.supervisor import ModuleSupervisor


class ModuleAnswers:
    """
    The answers to one supervised module's requests; each goes to C{reply}, on the link
    the request came on.
    """

    def __init__(self, supervisor: ModuleSupervisor) -> None:
        self._supervisor = supervisor

    def _say(self, text: str, level: str = "info") -> None:
        self._supervisor.console.say("pywatt-dev", text, level)

    def route(
        self, message: RouteToModule | RoutedModuleReply, reply: Callable[[Any], None]
    ) -> None:
        supervisor = self._supervisor
        if supervisor.router is None:
            if isinstance(message, RouteToModule):
                reply(
                    routing_error(
                        message.target_module_id,
                        message.request_id,
                        "unavailable",
                        "module-to-module routing is off",
                    )
                )
            return
        supervisor.router(supervisor, message, reply)

    def forward(self, header: RoutingHeader, connection: Any, link: str) -> None:
        """
        A module-to-module message from a channel, its payload undecoded: to the
        supervisor's forwarder; without one, decoded and handled as any message.
        """
        supervisor = self._supervisor
        forwarder = supervisor.forwarder
        if forwarder is not None:
            forwarder(supervisor, header, connection)
            return
        try:
            message = header.message()
        except ProtocolError as e:
            connection.bad_frames.append(e)
            return
        supervisor._from_module(message, connection.send, link)

    def discover(
        self,
        message: RegisterServiceProvider | DiscoverServiceProviders,
        reply: Callable[[Any], None],
    ) -> None:
        supervisor = self._supervisor
        if supervisor.discovery is not None:
            supervisor.discovery(supervisor, message, reply)
        elif isinstance(message, RegisterServiceProvider):
            reply(RegisterServiceProviderResponse(False, None, "service discovery is off"))
        else:
            reply(DiscoverServiceProvidersResponse(False, (), "service discovery is off"))

    def refuse_service(
        self, message: ServiceRequest | ServiceOperation, reply: Callable[[Any], None]
    ) -> None:
        """
        No service is provided (no C{--provide-database} / C{--provide-cache}): refuse,
        saying so.
        """
        if isinstance(message, ServiceOperation):
            reply(
                ServiceOperationResult(
                    False, None, "pywatt dev provides no services", params=message
                )
            )
            return
        self._say(
            f"{self._supervisor.module_id} asked for a proxied {message.service_type} service; "
            "none is provided (refused; see --provide-database / --provide-cache)",
            "warn",
        )
        reply(
            ServiceResponse(
                message.id,
                message.service_type,
                False,
                "pywatt dev provides no services; start it with --provide-database NAME=URL "
                "or --provide-cache NAME=URL, or connect to the service directly",
                None,
            )
        )

    def secret(self, name: str, reply: Callable[[Any], None]) -> None:
        self._supervisor.used_secrets.add(name)
        value = self._supervisor.secrets.get(name)
        if value is None:
            self._say(
                f"{self._supervisor.module_id} asked for secret {name!r}, which is neither "
                f"in the secrets file nor in PYWATT_SECRET_{name}; it will time out",
                "warn",
            )
            return
        reply(SecretMessage(name=name, value=value))

    def port(self, message: PortRequest, reply: Callable[[Any], None]) -> None:
        """
        Allocate a free loopback port (the one asked for when it is free).
        """
        wanted = message.specific_port
        port: int | None = None
        if wanted:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", wanted))
                    port = wanted
                except OSError:
                    port = None
            if port is None:
                reply(PortResponse(message.request_id, False, 0, f"port {wanted} is in use"))
                return
        else:
            port = free_port()
        self._say(f"{self._supervisor.module_id} was given port {port}")
        reply(PortResponse(message.request_id, True, port))


def routing_error(
    target_module_id: str, request_id: uuid.UUID, kind: str, message: str
) -> RoutedModuleResponse:
    """
    The reply to a C{route_to_module} the orchestrator could not deliver: a
    C{routed_module_response} whose payload is C{{"error": {"kind", "message"}}}.
    """
    return RoutedModuleResponse(
        source_module_id=target_module_id,
        request_id=request_id,
        payload=EncodedPayload.from_json({"error": {"kind": kind, "message": message}}),
    )
