# -*- test-case-name: tests.runtime.test_service -*-
"""
L{ModuleParts}: what a running module is made of, built step by step by the
L{Bootstrap <pywatt_twisted._runtime.bootstrap.Bootstrap>} and read by the op dispatcher,
the lifecycle and C{/health}.

Every part is C{None} (or empty) until the step that builds it has run: a message can
arrive, or a stop begin, at any point of the start-up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from attrs import Factory, define

from pywatt_twisted.data._resources import Resources
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.wire._value import MutableValue

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort

    from pywatt_twisted._runtime.buildinfo import LateBuildInfo
    from pywatt_twisted._runtime.discovery import ServiceClient
    from pywatt_twisted._runtime.messaging import RoutedMessaging
    from pywatt_twisted._runtime.ports import PortNegotiator
    from pywatt_twisted._runtime.secrets import SecretClient
    from pywatt_twisted._runtime.state import AppState
    from pywatt_twisted._transport.stdio import StdioProtocol
    from pywatt_twisted.link import ChannelManager
    from pywatt_twisted.link._slo import SloMonitor
    from pywatt_twisted.web._health import HealthChecks
    from pywatt_twisted.web.bridge import HttpBridge
    from pywatt_twisted.web.site import PyWattSite
    from pywatt_twisted.wire.init import InitBlob
    from pywatt_twisted.wire.messages import Endpoint

__all__ = ["ModuleParts", "Part"]

T = TypeVar("T")


@define(eq=False, repr=False)
class ModuleParts(MutableValue):
    """
    The parts of one running module.

    @ivar metrics: the module's counters (C{/metrics}).
    @ivar resources: the databases and caches the module opened, closed when it stops.
    @ivar init: the init blob, once read.
    @ivar stdio: the stdin/stdout protocol (process set-up).
    @ivar secrets: the secret client (process set-up).
    @ivar port_negotiator: asks the orchestrator for a port (process set-up).
    @ivar channels: the framed channels, when the init blob names any.
    @ivar state: the module's L{AppState}.
    @ivar messaging: routed module-to-module messages.
    @ivar service_client: service registration and discovery.
    @ivar site: the HTTP site on the listen address.
    @ivar bridge: HTTP-over-IPC into the same site.
    @ivar port: the bound listening port.
    @ivar listen_address: the address announced (the one actually bound).
    @ivar endpoints: the endpoints announced.
    @ivar registration: the registration-protocol service, when configured.
    @ivar database: the C{database=} database.
    @ivar databases: every database published on C{/health} and C{/metrics}.
    @ivar caches: the caches passed to C{state.register_cache} (those the module opened
        while starting are on C{/health} too: see L{caches_on_health}).
    @ivar health: the C{/health} checks, once the state is built.
    @ivar slo: the channel and target SLO windows and alerts.
    @ivar build: what build runs (C{pywatt_build_info}, C{build} on C{/health}).
    @ivar required_backends: the databases and caches registered with C{required=True}.
    @ivar checked_backends: C{(backend, check name)} for each database and cache that has
        a health check.
    """

    metrics: ModuleMetrics = Factory(ModuleMetrics)
    resources: Resources = Factory(Resources)
    init: InitBlob | None = None
    stdio: StdioProtocol | None = None
    secrets: SecretClient | None = None
    port_negotiator: PortNegotiator | None = None
    channels: ChannelManager | None = None
    state: AppState | None = None
    messaging: RoutedMessaging | None = None
    service_client: ServiceClient | None = None
    site: PyWattSite | None = None
    bridge: HttpBridge | None = None
    port: IListeningPort | None = None
    listen_address: str | None = None
    endpoints: tuple[Endpoint, ...] = ()
    registration: Any = None
    database: Any = None
    databases: list[Any] = Factory(list)
    caches: list[Any] = Factory(list)
    health: HealthChecks | None = None
    slo: SloMonitor | None = None
    build: LateBuildInfo | None = None
    required_backends: list[Any] = Factory(list)
    checked_backends: list[tuple[Any, str]] = Factory(list)

    def caches_on_health(self) -> list[Any]:
        """
        The caches C{/health} reports: those registered, then those the module opened
        while starting (one per cache server connection: namespace views of one cache
        count once).
        """
        # Nothing provides ICache unless the cache package was imported: a module that
        # opened no cache does not load it (and its database half) at start-up.
        package = sys.modules.get("pywatt_twisted.data._cache")
        opened = (
            [r for r in self.resources if package.ICache.providedBy(r)]
            if package is not None
            else []
        )
        shown: list[Any] = []
        stores: list[Any] = []
        for cache in [*self.caches, *opened]:
            store = getattr(cache, "_store", cache)
            if any(known is store for known in stores) or not hasattr(cache, "health"):
                continue
            stores.append(store)
            shown.append(cache)
        return shown

    @property
    def module_id(self) -> str | None:
        """
        The module id from the init blob, once read.
        """
        return self.init.module_id if self.init is not None else None


class Part(Generic[T]):
    """
    A descriptor that reads and writes one L{ModuleParts} attribute through its owner's
    C{parts}, so C{service.state} stays what it always was.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Part[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object, owner: type) -> Part[T] | T:
        if instance is None:
            return self
        value: T = getattr(instance.parts, self.name)  # type: ignore[attr-defined]
        return value

    def __set__(self, instance: object, value: T) -> None:
        setattr(instance.parts, self.name, value)  # type: ignore[attr-defined]
