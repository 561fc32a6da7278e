# -*- test-case-name: tests.orchestrator.test_services -*-
"""
L{ServiceHost}: the orchestrator's end of proxied services (PROTOCOL.md 6.9; the
module's end is C{state.service(name)}). It holds named databases and caches and
answers a module's C{service_request} and C{service_operation} with them. C{pywatt dev}
fills it from C{--provide-database NAME=URL} / C{--provide-cache NAME=URL};
L{FakeOrchestrator <pywatt_twisted.testing.FakeOrchestrator>} from its C{services=}.

Replies follow this library's extensions: every C{service_operation_result} echoes the
operation as C{params} (its C{id} included, so results may be sent in any order), and a
refusal or failure carries C{error_info} (C{{"kind": K, ...}}): C{unknown_service} for a
name it does not provide, C{service_type_mismatch}, C{unknown_connection},
C{unsupported_operation}, or the data-layer error's class name and fields.

A C{service_request} names its service in C{config.name}; its C{service_type} is the
kind the module expects (C{{"Custom": "any"}}: whatever the name is). Connections are
per module; L{module_gone} rolls back what a module that exited left open. At most
C{max_in_flight} operations run per connection at once; more are refused with the
backend's "unavailable" error (the module bounds its own side well below that).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.data._cache._errors import CacheUnavailable
from pywatt_twisted.data._cache._proxy import CacheOperations
from pywatt_twisted.data._database._errors import DatabaseUnavailable
from pywatt_twisted.data._database._proxy import DatabaseOperations
from pywatt_twisted.data._proxied import error_info
from pywatt_twisted.wire.messages import (
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
)

__all__ = ["ANY_SERVICE", "DEFAULT_HOST_IN_FLIGHT", "ServiceHost"]

#: the C{service_type} of a request that accepts whatever kind the name is
ANY_SERVICE = ServiceType.custom("any")

#: operations one connection may have running at the orchestrator's end at once
DEFAULT_HOST_IN_FLIGHT = 256

Reply = Callable[[Any], object]


@define
class _Provided:
    name: str
    service_type: ServiceType
    service: Any
    operations: Any


@define
class _Connection:
    connection_id: str
    module_id: str
    provided: _Provided
    in_flight: int = 0


class ServiceHost:
    """
    Named services provided to modules (see the module docstring).

    @param services: name -> a L{Database <pywatt_twisted.data.Database>} (or another
        L{IDatabase} with C{transaction()}) or a cache made over a store
        (C{Cache.from_url(...)}, L{MemoryCache <pywatt_twisted.data.MemoryCache>}).
    @param owned: close the services in L{close} (C{pywatt dev} made them from URLs).
    @param say: called with one line of text for each notable event (the dev console).
    """

    log = Logger()

    def __init__(
        self,
        services: Mapping[str, Any] | None = None,
        *,
        owned: bool = False,
        max_in_flight: int = DEFAULT_HOST_IN_FLIGHT,
        say: Callable[[str, str], object] | None = None,
    ) -> None:
        self._provided: dict[str, _Provided] = {}
        self._connections: dict[str, _Connection] = {}
        self._ids = itertools.count(1)
        self.owned = owned
        self.max_in_flight = max_in_flight
        self._say = say
        #: operations answered, by service name
        self.operations: dict[str, int] = {}
        for name, service in (services or {}).items():
            self.provide(name, service)

    def provide(self, name: str, service: Any) -> None:
        """
        Offer C{service} under C{name} (replacing any service of that name).

        @raise TypeError: for something that is neither a database nor a cache.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"expected a service name, got {name!r}")
        if hasattr(service, "transaction") and hasattr(service, "dialect"):
            self._provided[name] = _Provided(
                name, ServiceType.DATABASE, service, DatabaseOperations(service)
            )
        elif hasattr(service, "_store"):
            self._provided[name] = _Provided(
                name, ServiceType.CACHE, service, CacheOperations(service)
            )
        else:
            raise TypeError(
                f"expected a Database or a cache (Cache.from_url, MemoryCache) to provide as "
                f"{name!r}, got {service!r}"
            )

    @property
    def names(self) -> list[str]:
        return sorted(self._provided)

    def describe(self) -> dict[str, str]:
        """
        Name -> kind (C{"Database"}, C{"Cache"}) of every provided service.
        """
        return {n: str(p.service_type) for n, p in sorted(self._provided.items())}

    # -- messages --------------------------------------------------------------------------

    def handle(
        self, module_id: str, message: ServiceRequest | ServiceOperation, reply: Reply
    ) -> None:
        """
        Answer one C{service_request} or C{service_operation} of module C{module_id};
        C{reply} sends on the link it came on.
        """
        if isinstance(message, ServiceRequest):
            self._request(module_id, message, reply)
        else:
            self._operation(module_id, message, reply)

    def _refuse(self, message: ServiceRequest, reply: Reply, kind: str, text: str) -> None:
        self._note(text, "warn")
        reply(
            ServiceResponse(
                message.id, message.service_type, False, text, None, error_info={"kind": kind}
            )
        )

    def _request(self, module_id: str, message: ServiceRequest, reply: Reply) -> None:
        config = message.config
        name = config.get("name") if isinstance(config, dict) else None
        wanted = message.service_type
        if name is None:
            # the original SDKs send a backend config without a name: one service of
            # the requested kind is unambiguous
            matches = [p for p in self._provided.values() if p.service_type == wanted]
            if len(matches) == 1:
                name = matches[0].name
            else:
                self._refuse(
                    message,
                    reply,
                    "unknown_service",
                    f"{module_id} asked for a {wanted} service without naming it (config.name); "
                    f"{self._offer()}",
                )
                return
        provided = self._provided.get(str(name))
        if provided is None:
            self._refuse(
                message,
                reply,
                "unknown_service",
                f"{module_id} asked for service {name!r}, which is not provided; {self._offer()}",
            )
            return
        if wanted != ANY_SERVICE and wanted != provided.service_type:
            self._refuse(
                message,
                reply,
                "service_type_mismatch",
                f"{module_id} asked for {name!r} as a {wanted}, but it is a "
                f"{provided.service_type}",
            )
            return
        connection_id = f"{module_id}/{name}/{next(self._ids)}"
        self._connections[connection_id] = _Connection(connection_id, module_id, provided)
        self._note(f"{module_id} connected to {provided.service_type} service {name!r}")
        reply(ServiceResponse(message.id, provided.service_type, True, None, connection_id))

    def _offer(self) -> str:
        if not self._provided:
            return (
                "this orchestrator provides no services (pywatt dev: --provide-database "
                "NAME=URL, --provide-cache NAME=URL)"
            )
        return "provided: " + ", ".join(f"{n} ({k})" for n, k in self.describe().items())

    def _operation(self, module_id: str, message: ServiceOperation, reply: Reply) -> None:
        def answer_error(text: str, info: dict[str, Any]) -> None:
            reply(ServiceOperationResult(False, None, text, params=message, error_info=info))

        connection = self._connections.get(message.connection_id)
        if connection is None or connection.module_id != module_id:
            answer_error(
                f"no open service connection {message.connection_id!r} for {module_id}",
                {"kind": "unknown_connection"},
            )
            return
        provided = connection.provided
        if message.operation == "close":
            self._close_connection(connection)
            reply(ServiceOperationResult(True, None, None, params=message))
            return
        if connection.in_flight >= self.max_in_flight:
            unavailable = (
                DatabaseUnavailable
                if provided.service_type == ServiceType.DATABASE
                else CacheUnavailable
            )
            error = unavailable(
                f"the orchestrator already runs {connection.in_flight} operations for this "
                "connection (the limit); try again later"
            )
            answer_error(str(error), error_info(error) or {"kind": "overloaded"})
            return
        ops = provided.operations
        if isinstance(ops, DatabaseOperations):
            d = ops.run(connection.connection_id, message.operation, message.params)
        else:
            d = ops.run(message.operation, message.params)
        if d is None:
            answer_error(
                f"{provided.service_type} service {provided.name!r} has no operation "
                f"{message.operation!r}; supported: {', '.join(sorted(ops.operations))}",
                {"kind": "unsupported_operation"},
            )
            return
        connection.in_flight += 1

        def done(result: object) -> None:
            connection.in_flight -= 1
            self.operations[provided.name] = self.operations.get(provided.name, 0) + 1
            if isinstance(result, Failure):
                e = result.value
                info = error_info(e)
                if info is None:
                    self.log.failure(
                        "proxied {op} on {name} failed",
                        result,
                        op=message.operation,
                        name=provided.name,
                    )
                    info = {"kind": "service_error"}
                answer_error(str(e), info)
            else:
                reply(ServiceOperationResult(True, result, None, params=message))

        d.addBoth(done)

    def _close_connection(self, connection: _Connection) -> Deferred[None]:
        self._connections.pop(connection.connection_id, None)
        ops = connection.provided.operations
        if isinstance(ops, DatabaseOperations):
            return ops.release(connection.connection_id)
        return defer.succeed(None)

    def module_gone(self, module_id: str) -> Deferred[None]:
        """
        Module C{module_id} exited: release its connections (rolling back its open
        transactions).
        """
        ds = [
            self._close_connection(c)
            for c in list(self._connections.values())
            if c.module_id == module_id
        ]
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def connections(self, module_id: str | None = None) -> list[str]:
        return [
            c.connection_id
            for c in self._connections.values()
            if module_id is None or c.module_id == module_id
        ]

    def close(self) -> Deferred[None]:
        """
        Release every connection, then close the services if L{owned}.
        """
        ds = [self._close_connection(c) for c in list(self._connections.values())]
        if self.owned:
            ds += [defer.maybeDeferred(p.service.close) for p in self._provided.values()]
        return defer.gatherResults(ds, consumeErrors=True).addBoth(lambda _: None)

    def _note(self, text: str, level: str = "info") -> None:
        if self._say is not None:
            self._say(text, level)
