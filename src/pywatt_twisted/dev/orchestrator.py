# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
L{DevOrchestrator}: the local orchestrator behind C{pywatt dev}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.web.server import Site

from pywatt_twisted.dev.front import FrontResource
from pywatt_twisted.dev.supervisor import Console, ModuleSupervisor
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.runtime.providers import ISecretProvider

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
    ) -> None:
        self.reactor = reactor
        self.secrets = secrets
        self.console = console or Console()
        self.port_number = port
        self.front_port: IListeningPort | None = None
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
        site = Site(FrontResource(lambda: self.supervisors))
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
            supervisor.start()

    def startService(self) -> None:
        ensureDeferred(self.start())

    def stopService(self) -> Any:
        self.running = False
        self._unsubscribe()
        stops = [s.stop() for s in self.supervisors.values()]
        d = DeferredList(stops, consumeErrors=True)
        if self.front_port is not None:
            port = self.front_port
            d.addCallback(lambda _: port.stopListening())
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
            d = supervisor.rotate(names)
            if d is not None:
                acks.append(d)
        return acks
