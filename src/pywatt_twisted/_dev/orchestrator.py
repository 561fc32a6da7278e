# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
L{DevOrchestrator}: the local orchestrator behind C{pywatt dev}.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import evolve
from twisted.application.service import Service
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.web.server import Site

from pywatt_twisted._dev._dashboard import Dashboard
from pywatt_twisted._dev._reload import RequestHold
from pywatt_twisted._dev.front import FrontRequest, FrontResource
from pywatt_twisted._dev.supervisor import Console, ModuleSupervisor, routing_error
from pywatt_twisted.errors import ConfigurationError, ProtocolError
from pywatt_twisted.orchestrator._providers import ISecretProvider
from pywatt_twisted.wire._forward import (
    ROUTE_TO_MODULE,
    RoutingHeader,
    routed_message_frame,
    routed_response_frame,
)
from pywatt_twisted.wire.messages import (
    DiscoverServiceProviders,
    DiscoverServiceProvidersResponse,
    RegisterServiceProvider,
    RegisterServiceProviderResponse,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
    ServiceProviderInfo,
)

#: how long an undelivered module-to-module reply is remembered
ROUTE_TIMEOUT = 120.0

_GENERIC_NAMES = {"module", "modules", "app", "main", "service", "mod"}


def module_ids(specs: Iterable[str]) -> list[tuple[str, str]]:
    """
    Pair each C{--module} value with a module id: C{id=pkg.mod} names it; otherwise the
    last dotted name that is not generic (C{examples.counter.module} -> C{counter}).
    Duplicates get C{-2}, C{-3}...
    """
    result: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for spec in specs:
        explicit, sep, rest = spec.partition("=")
        if sep:
            if not explicit or not rest:
                raise ConfigurationError(f"--module {spec!r}: expected id=pkg.mod")
            module_id, module = explicit, rest
        else:
            module = spec
            parts = [p for p in spec.partition(":")[0].split(".") if p]
            if not parts:
                raise ConfigurationError(f"--module {spec!r} names no module")
            candidates = [p for p in parts if p not in _GENERIC_NAMES]
            module_id = (candidates or parts)[-1]
        count = seen.get(module_id, 0) + 1
        seen[module_id] = count
        if count > 1:
            module_id = f"{module_id}-{count}"
        result.append((module_id, module))
    return result


def _route_key(request_id: uuid.UUID) -> bytes:
    """
    The key of a route: the request id's canonical text (what
    L{RoutingHeader.request_id <pywatt_twisted.wire._forward.RoutingHeader.request_id>}
    holds for a forwarded frame).
    """
    return str(request_id).encode("ascii")


def _request_uuid(key: bytes) -> uuid.UUID:
    return uuid.UUID(key.decode("ascii"))


class DevOrchestrator(Service):
    """
    Spawns modules, serves them secrets, proxies HTTP from a front port, forwards their
    logs, restarts them, and rotates secrets when the provider's values change.
    """

    def __init__(
        self,
        modules: Iterable[str],
        *,
        reactor: Any,
        secrets: ISecretProvider,
        console: Console | None = None,
        port: int = 8080,
        supervisor_options: Mapping[str, Any] | None = None,
        services: Any = None,
        hold_requests: bool = False,
    ) -> None:
        """
        @param hold_requests: front-port requests for a module that is restarting wait
            for it (L{RequestHold}) instead of getting 503 (C{--reload}).
        """
        self.reactor = reactor
        #: the L{ServiceHost} of C{--provide-database} / C{--provide-cache} (or None)
        self.services = services
        self.secrets = secrets
        self.console = console or Console()
        self.port_number = port
        self.front_port: IListeningPort | None = None
        self.hold = RequestHold(reactor) if hold_requests else None
        #: the live dashboard at /_pywatt/ on the front port
        self.dashboard = Dashboard(reactor, lambda: self.supervisors, secrets)
        self.console.listeners.append(self.dashboard.console_line)
        self.supervisors: dict[str, ModuleSupervisor] = {}
        for module_id, module in module_ids(modules):
            self.supervisors[module_id] = ModuleSupervisor(
                module,
                module_id,
                reactor=reactor,
                secrets=secrets,
                console=self.console,
                **dict(supervisor_options or {}),
            )
        if not self.supervisors:
            raise ConfigurationError("pywatt dev needs at least one --module")
        for supervisor in self.supervisors.values():
            supervisor.router = self.route
            supervisor.forwarder = self.forward
            supervisor.discovery = self.discover
            supervisor.on_exit = self._module_exited
            supervisor.services = services
        #: service providers the modules registered, by provider id
        self.providers: dict[str, ServiceProviderInfo] = {}
        # request id -> (requester, target module id, expiry time), oldest first: every
        # route lives ROUTE_TIMEOUT, so insertion order is expiry order and one timer
        # (for the oldest) sweeps them all, instead of a DelayedCall per request. It
        # runs until a sweep finds no route left. The id is keyed by its canonical text
        # (_route_key): a forwarded frame carries it as text, and needs no UUID made.
        self._routes: dict[bytes, tuple[ModuleSupervisor, str, float]] = {}
        self._route_sweep: Any = None
        self._unsubscribe = secrets.subscribe(self.secrets_changed)

    @property
    def front_url(self) -> str:
        assert self.front_port is not None
        return f"http://127.0.0.1:{self.front_port.getHost().port}"  # type: ignore[attr-defined]

    async def start(self) -> None:
        """
        Listen on the front port, then spawn every module.
        """
        self.running = True
        site = Site(
            FrontResource(
                lambda: self.supervisors,
                hold=self.hold,
                dashboard=self.dashboard,
                on_request=self.dashboard.record_request,
            ),
            requestFactory=FrontRequest,  # (large bodies streamed as they arrive)
        )
        site.noisy = False
        endpoint = TCP4ServerEndpoint(self.reactor, self.port_number, interface="127.0.0.1")
        try:
            self.front_port = await endpoint.listen(site)
        except Exception as e:
            raise ConfigurationError(
                f"cannot listen on 127.0.0.1:{self.port_number} for the front port ({e}); "
                "choose another with --port (0 for any free port)"
            ) from e
        self.console.say("pywatt-dev", f"front port: {self.front_url}/ (module id in the path)")
        for supervisor in self.supervisors.values():
            await supervisor.links.listen()
            supervisor.start()

    def startService(self) -> None:
        ensureDeferred(self.start())

    def stopService(self) -> Any:
        self.running = False
        self._unsubscribe()
        if self.hold is not None:
            self.hold.stop()
        self.dashboard.stop()
        stops = [s.stop() for s in self.supervisors.values()]
        d = DeferredList(stops, consumeErrors=True)
        d.addCallback(
            lambda _: DeferredList(
                [ensureDeferred(s.links.close()) for s in self.supervisors.values()],
                consumeErrors=True,
            )
        )
        self._routes.clear()
        self._stop_route_sweep()
        if self.front_port is not None:
            port = self.front_port
            d.addCallback(lambda _: port.stopListening())
        if self.services is not None:
            services = self.services
            d.addCallback(lambda _: services.close())
        return d

    def when_all_announced(self) -> Any:
        return DeferredList(
            [s.when_announced() for s in self.supervisors.values()], fireOnOneErrback=True
        )

    def secrets_changed(self, names: frozenset[str]) -> list[Any]:
        """
        Values changed at the provider: send C{rotated} to every module that uses one of
        them. Returns the Deferreds of their acks.
        """
        self.console.say("pywatt-dev", f"secrets changed: {', '.join(sorted(names))}")
        acks = []
        for supervisor in self.supervisors.values():
            d = supervisor.requests.rotate(names)
            if d is not None:
                acks.append(d)
        return acks

    # -- module-to-module routing ------------------------------------------------------------

    def route(self, source: ModuleSupervisor, message: Any, reply: Any) -> None:
        """
        Route C{route_to_module} to its target as C{routed_module_message} (over the
        target's preferred channel:
        L{ModuleLinks.preferred <pywatt_twisted._dev._links.ModuleLinks.preferred>}), and the
        target's reply (the A3 extension) back to the requester as
        C{routed_module_response}. Anything undeliverable is answered
        with an error reply at once.
        """
        if isinstance(message, RouteToModule):
            connection = self._route_request(
                source, message.target_module_id, _route_key(message.request_id), reply
            )
            if connection is not None:
                connection.send(
                    RoutedModuleMessage(
                        source_module_id=source.module_id,
                        original_request_id=message.request_id,
                        payload=message.payload,
                        target_endpoint=message.target_endpoint,
                    )
                )
        elif isinstance(message, RoutedModuleReply):
            requester = self._route_reply(source, _route_key(message.request_id))
            if requester is not None:
                self._deliver(
                    requester,
                    RoutedModuleResponse(
                        source_module_id=source.module_id,
                        request_id=message.request_id,
                        payload=message.payload,
                    ),
                )

    def forward(self, source: ModuleSupervisor, header: RoutingHeader, connection: Any) -> None:
        """
        L{route}, for a message read from a channel with its payload undecoded
        (L{read_routing <pywatt_twisted.wire._forward.read_routing>}): the payload's text
        is spliced into the frame that goes on, not decoded and encoded again (the
        module it goes to decodes and validates it). The same routing, the same
        errors, the same bytes on the wire.
        """
        if header.op == ROUTE_TO_MODULE:
            target = self._route_request(
                source, header.target_module_id, header.request_id, connection.send
            )
            if target is not None:
                target.send_raw(
                    routed_message_frame(
                        source.module_id,
                        header.request_id,
                        header.payload_json,
                        header.target_endpoint,
                    )
                )
            return
        requester = self._route_reply(source, header.request_id)
        if requester is None:
            return
        out = requester.links.delivery()
        if out is not None:
            out.send_raw(
                routed_response_frame(source.module_id, header.request_id, header.payload_json)
            )
            return
        # No channel (stdin takes messages, not frames): decode it after all.
        try:
            payload = header.payload()
        except ProtocolError as e:
            self.console.say(
                "pywatt-dev", f"{source.module_id} sent an unreadable reply payload: {e}", "warn"
            )
            return
        self._deliver(
            requester, RoutedModuleResponse(source.module_id, header.request_uuid(), payload)
        )

    def _route_request(
        self, source: ModuleSupervisor, target_id: str, request_id: bytes, reply: Any
    ) -> Any:
        """
        The target's channel connection to send a request to, its route remembered for
        the reply; or C{None}, the requester answered with an error.

        @param request_id: the request id's canonical text (L{_route_key}).
        """
        target = self.supervisors.get(target_id)
        if target is None:
            reply(
                routing_error(
                    target_id,
                    _request_uuid(request_id),
                    "unknown_module",
                    f"no module {target_id!r} runs under pywatt dev "
                    f"(modules: {', '.join(sorted(self.supervisors))})",
                )
            )
            return None
        connection = target.links.delivery()
        if connection is None:
            reply(
                routing_error(
                    target_id,
                    _request_uuid(request_id),
                    "unavailable",
                    f"module {target.module_id!r} has no channel connected ({target.status})",
                )
            )
            return None
        routes = self._routes
        routes.pop(request_id, None)  # (a reused id goes to the end)
        routes[request_id] = (source, target.module_id, self.reactor.seconds() + ROUTE_TIMEOUT)
        if self._route_sweep is None:
            self._route_sweep = self.reactor.callLater(ROUTE_TIMEOUT, self._sweep_routes)
        return connection

    def _route_reply(self, source: ModuleSupervisor, request_id: bytes) -> ModuleSupervisor | None:
        """
        The requester a reply goes back to (its route forgotten), or C{None} for a reply
        to an unknown or expired request (said on the console).
        """
        entry = self._routes.pop(request_id, None)
        if entry is None:
            self.console.say(
                "pywatt-dev",
                f"{source.module_id} replied to unknown or expired request "
                f"{request_id.decode('ascii')}",
                "warn",
            )
            return None
        # (The sweep timer stays when this was the last route: it finds none and stops.
        # Cancelling it here and arming it again for the next request was a DelayedCall
        # per round trip at one request in flight.)
        return entry[0]

    def _sweep_routes(self) -> None:
        """
        Forget the routes whose replies did not come within L{ROUTE_TIMEOUT}; run again
        when the oldest one left expires (not at all once none is left).
        """
        self._route_sweep = None
        routes = self._routes
        now = self.reactor.seconds()
        while routes:
            request_id, (_, _, expires) = next(iter(routes.items()))
            if expires > now:
                self._route_sweep = self.reactor.callLater(expires - now, self._sweep_routes)
                return
            del routes[request_id]

    def _stop_route_sweep(self) -> None:
        sweep, self._route_sweep = self._route_sweep, None
        if sweep is not None and sweep.active():
            sweep.cancel()

    def _deliver(self, requester: ModuleSupervisor, response: RoutedModuleResponse) -> None:
        try:
            requester.send_preferred(response, prefer=requester.links.preferred())
        except Exception as e:
            self.console.say(
                "pywatt-dev", f"could not deliver a reply to {requester.module_id}: {e}", "warn"
            )

    # -- service discovery -------------------------------------------------------------------

    def discover(self, source: ModuleSupervisor, message: Any, reply: Any) -> None:
        """
        Answer C{register_service_provider} (the provider id is C{module/type/name}, so a
        restarted module that registers again replaces its entry) and
        C{discover_service_providers} (healthy providers; with C{all_providers}, also
        those whose module is down).
        """
        if isinstance(message, RegisterServiceProvider):
            provider_id = f"{source.module_id}/{message.service_type}/{message.name}"
            self.providers[provider_id] = ServiceProviderInfo(
                provider_id=provider_id,
                module_id=source.module_id,
                service_type=message.service_type,
                name=message.name,
                version=message.version,
                address=message.address,
                metadata=dict(message.metadata or {}),
                is_healthy=True,
            )
            self.console.say(
                "pywatt-dev",
                f"{source.module_id} provides {message.service_type} {message.name!r} at "
                f"{message.address}",
            )
            reply(RegisterServiceProviderResponse(True, provider_id, None))
        elif isinstance(message, DiscoverServiceProviders):
            found = [
                p
                for p in self.providers.values()
                if p.service_type == message.service_type
                and (p.is_healthy or message.all_providers)
            ]
            reply(DiscoverServiceProvidersResponse(True, tuple(found), None))

    def _module_exited(self, target: ModuleSupervisor) -> None:
        if self.services is not None:
            self.services.module_gone(target.module_id)
        for provider_id, info in list(self.providers.items()):
            if info.module_id == target.module_id and info.is_healthy:
                self.providers[provider_id] = evolve(info, is_healthy=False)
        # Requests the module was handling will never be answered: say so now.
        for request_id, (requester, target_id, _) in list(self._routes.items()):
            if target_id != target.module_id:
                continue
            del self._routes[request_id]
            if not self._routes:
                self._stop_route_sweep()
            self._deliver(
                requester,
                routing_error(
                    target_id,
                    _request_uuid(request_id),
                    "target_exited",
                    f"module {target_id!r} exited before replying",
                ),
            )
