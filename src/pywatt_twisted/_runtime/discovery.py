# -*- test-case-name: tests.runtime.test_discovery -*-
"""
Service provider registration and discovery (PROTOCOL.md 6.8) and proxied services
(6.9), with correlation and a timeout on every wait.

B{Discovery}: C{register_service_provider} and C{discover_service_providers} go out on
the module's channel (TCP first, enveloped with C{metadata.id}), or on stdout without
one. Their replies carry no correlation id, so they are correlated first-in-first-out
B{per op with one request outstanding}: a second call of the same op waits (within its
own timeout) until the first one was answered or timed out. A reply that arrives with
nothing outstanding is logged and ignored.

B{Proxied services}: C{service_request} goes out on stdout and its C{service_response}
is matched by C{id}. C{service_operation_result} has no id of its own: each operation
carries this library's C{id} (an extension), and a result whose echoed C{params} has it
goes to that operation exactly, in any order. Without it, a result is matched to the
oldest outstanding operation on the connection its echoed C{params} names (PROTOCOL.md
6.9), else to the oldest outstanding operation.

A refusal or a failed operation fails with L{ServiceError} (a L{RemoteError}); with the
orchestrator's C{error_info} extension its C{kind} says why (L{UnknownService},
L{UnsupportedOperation}) and C{info} carries the fields of a data-layer error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted._runtime.correlation import CorrelationTable, FifoCalls
from pywatt_twisted.errors import (
    ChannelError,
    NotAvailable,
    RemoteError,
    ServiceError,
    UnknownService,
    UnsupportedOperation,
)
from pywatt_twisted.wire._ops import op_name
from pywatt_twisted.wire.envelope import correlated_metadata, encode_channel_frame
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
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

__all__ = ["DEFAULT_SERVICE_TIMEOUT", "ServiceClient", "ServiceType", "service_type"]

#: seconds every discovery and proxy call waits for its reply unless told otherwise
DEFAULT_SERVICE_TIMEOUT = 30.0

_ID_PREFIX = {"Database": "db", "Cache": "cache", "Jwt": "jwt", "Custom": "custom"}


def service_type(value: ServiceType | str) -> ServiceType:
    """
    A L{ServiceType} from itself or a name: C{"Database"}, C{"cache"}, C{"Jwt"},
    C{"Custom(x)"} or C{"custom:x"} (both wire shapes and the display form).

    @raise ValueError: for anything else.
    """
    if isinstance(value, ServiceType):
        return value
    from pywatt_twisted.errors import ProtocolError
    from pywatt_twisted.wire.codec import _service_type_value

    try:
        return _service_type_value(value, "service_type")
    except ProtocolError as e:
        raise ValueError(str(e)) from None


_SERVICE_ERRORS: dict[str, type[ServiceError]] = {
    "unknown_service": UnknownService,
    "unsupported_operation": UnsupportedOperation,
}


def service_error(
    message: str, info: object, default_kind: str, detail: str | None = None
) -> ServiceError:
    """
    The L{ServiceError} for a refusal or a failed operation: its class and C{kind} from
    the C{error_info} extension object when there is one. A data-layer error named there
    keeps the orchestrator's text in C{detail} (the module raises it with that text).
    """
    kind = info.get("kind") if isinstance(info, dict) else None
    if not isinstance(kind, str):
        return ServiceError(message, default_kind)
    return _SERVICE_ERRORS.get(kind, ServiceError)(message, kind, info, detail)


def _abandoned(key: tuple[str, Any], context: Any, reason: str) -> NotAvailable:
    return NotAvailable(f"{key[0]} abandoned: {reason}")


class ServiceClient:
    """
    The module's client for discovery and proxied services.

    @param send_stdio: writes a message to stdout.
    @param channels: the module's L{ChannelManager}, or C{None}: discovery then goes on
        stdout.
    @param clock: the clock timeouts run on.
    """

    log = Logger()

    def __init__(
        self,
        *,
        send_stdio: Callable[[object], object],
        clock: IReactorTime,
        channels: Any = None,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        default_timeout: float = DEFAULT_SERVICE_TIMEOUT,
    ) -> None:
        self._send_stdio = send_stdio
        self.channels = channels
        self.clock = clock
        self.max_frame_length = max_frame_length
        self.default_timeout = default_timeout
        self._seq = 0
        # (reply op, seq) for the discovery ops; ("service_response", id);
        # ("operation", seq)
        self.pending: CorrelationTable[tuple[str, Any]] = CorrelationTable(
            clock, abandoned=_abandoned
        )
        # Discovery replies carry no id: first in, first out per reply op.
        self._discovery: FifoCalls[str] = FifoCalls(self.pending, self._send_discovery)
        self.ignored = 0

    # -- discovery (6.8) ---------------------------------------------------------------

    def register_service_provider(
        self,
        service_type_: ServiceType | str,
        name: str,
        address: str,
        version: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Deferred[str | None]:
        """
        Offer a service to other modules. Fires with the provider id the orchestrator
        gave it (C{None} if it gave none), or fails with L{RemoteError} (C{kind}
        C{"rejected"}) when the orchestrator refused it, or L{RequestTimeout}.
        """
        try:
            kind = service_type(service_type_)
        except ValueError as e:
            return fail(e)
        message = RegisterServiceProvider(
            service_type=kind,
            name=name,
            version=version,
            address=address,
            metadata=None if metadata is None else dict(metadata),
        )
        d = self._fifo_call(
            RegisterServiceProviderResponse.op,
            message,
            timeout,
            f"registering {kind} provider {name!r}",
        )
        return d.addCallback(self._registered, kind, name)

    def _registered(
        self, response: RegisterServiceProviderResponse, kind: ServiceType, name: str
    ) -> str | None:
        if not response.success:
            raise RemoteError(
                f"the orchestrator refused to register {kind} provider {name!r}: "
                f"{response.error or 'no reason given'}",
                kind="rejected",
            )
        return response.provider_id

    def discover_service_providers(
        self,
        service_type_: ServiceType | str,
        all_providers: bool = False,
        timeout: float | None = None,
    ) -> Deferred[list[ServiceProviderInfo]]:
        """
        Find providers of a service type. Fires with a list of L{ServiceProviderInfo}
        (possibly empty), or fails with L{RemoteError} or L{RequestTimeout}.

        @param all_providers: ask for every provider, unhealthy ones included (the
            orchestrator may otherwise answer with healthy ones only).
        """
        try:
            kind = service_type(service_type_)
        except ValueError as e:
            return fail(e)
        message = DiscoverServiceProviders(service_type=kind, all_providers=all_providers)
        d = self._fifo_call(
            DiscoverServiceProvidersResponse.op, message, timeout, f"discovering {kind} providers"
        )
        return d.addCallback(self._discovered, kind)

    def _discovered(
        self, response: DiscoverServiceProvidersResponse, kind: ServiceType
    ) -> list[ServiceProviderInfo]:
        if not response.success:
            raise RemoteError(
                f"discovering {kind} providers failed: {response.error or 'no reason given'}",
                kind="discovery_failed",
            )
        return list(response.providers)

    def _fifo_call(
        self, reply_op: str, message: object, timeout: float | None, what: str
    ) -> Deferred[Any]:
        problem = self._problem(what)
        if problem is not None:
            return fail(problem)
        timeout = self.default_timeout if timeout is None else timeout
        return self._discovery.call(
            reply_op,
            timeout,
            f"{what}: no {reply_op} within {timeout:g} s; the orchestrator may not serve "
            "service discovery",
            message,
        )

    def _send_discovery(self, message: object) -> Deferred[None]:
        if self.channels is None:
            try:
                self._send_stdio(message)
            except Exception as e:
                return fail(e)
            return succeed(None)
        try:
            frame = encode_channel_frame(
                message, self.max_frame_length, metadata=correlated_metadata()
            )
        except ChannelError as e:
            return fail(e)
        sent: Deferred[None] = self.channels.send_frame(frame, op_name(message), prefer="tcp")
        return sent

    # -- proxied services (6.9) --------------------------------------------------------

    def service_request(
        self,
        service_type_: ServiceType | str,
        config: Any = None,
        timeout: float | None = None,
    ) -> Deferred[str]:
        """
        Ask the orchestrator for a proxied connection to a service (C{config} is the
        backend configuration object). Fires with the connection id to pass to
        L{service_operation}, or fails with L{RemoteError} (C{kind}
        C{"service_refused"}) or L{RequestTimeout}.
        """
        try:
            kind = service_type(service_type_)
        except ValueError as e:
            return fail(e)
        problem = self._problem(f"a {kind} service request")
        if problem is not None:
            return fail(problem)
        timeout = self.default_timeout if timeout is None else timeout
        request_id = f"{_ID_PREFIX[kind.kind]}_request_{uuid.uuid4()}"
        d = self.pending.add(
            ("service_response", request_id),
            timeout,
            f"no service_response to {request_id} ({kind}) within {timeout:g} s; the "
            "orchestrator may not proxy this service",
            context=kind,
        )
        try:
            self._send_stdio(ServiceRequest(id=request_id, service_type=kind, config=config))
        except Exception as e:
            self.pending.fail(("service_response", request_id), e)
        return d.addCallback(self._connected, kind)

    def connect_service(
        self,
        name: str,
        service_type_: ServiceType | str,
        timeout: float | None = None,
    ) -> Deferred[tuple[str, ServiceType]]:
        """
        Ask for a proxied connection to the service named C{name} (C{config} is
        C{{"name": name}}). Fires with its connection id and the kind the orchestrator
        says it is, or fails like L{service_request} (L{UnknownService} for a name it
        does not provide).
        """
        try:
            kind = service_type(service_type_)
        except ValueError as e:
            return fail(e)
        problem = self._problem(f"a request for service {name!r}")
        if problem is not None:
            return fail(problem)
        timeout = self.default_timeout if timeout is None else timeout
        request_id = f"{_ID_PREFIX[kind.kind]}_request_{uuid.uuid4()}"
        d = self.pending.add(
            ("service_response", request_id),
            timeout,
            f"no service_response to {request_id} (service {name!r}) within {timeout:g} s; "
            "the orchestrator may not proxy services",
            context=kind,
        )
        try:
            self._send_stdio(
                ServiceRequest(id=request_id, service_type=kind, config={"name": name})
            )
        except Exception as e:
            self.pending.fail(("service_response", request_id), e)

        def connected(response: ServiceResponse) -> tuple[str, ServiceType]:
            return self._connected(response, kind), response.service_type

        return d.addCallback(connected)

    def _connected(self, response: ServiceResponse, kind: ServiceType) -> str:
        if not response.success:
            raise service_error(
                f"the orchestrator refused a {kind} connection: "
                f"{response.error or 'no reason given'}",
                response.error_info,
                "service_refused",
            )
        if not response.connection_id:
            raise ServiceError(
                f"the orchestrator accepted a {kind} connection but gave no connection_id",
                kind="service_refused",
            )
        return response.connection_id

    def service_operation(
        self,
        connection_id: str,
        service_type_: ServiceType | str,
        operation: str,
        params: Any = None,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """
        Run C{operation} with C{params} on a proxied connection. Fires with the
        operation's C{result}, or fails with L{RemoteError} (C{kind}
        C{"operation_failed"}) or L{RequestTimeout}.
        """
        try:
            kind = service_type(service_type_)
        except ValueError as e:
            return fail(e)
        problem = self._problem(f"{kind} operation {operation!r}")
        if problem is not None:
            return fail(problem)
        timeout = self.default_timeout if timeout is None else timeout
        self._seq += 1
        seq = f"op-{self._seq}"
        message = ServiceOperation(
            connection_id=connection_id,
            service_type=kind,
            operation=operation,
            params=params,
            id=seq,
        )
        d = self.pending.add(
            ("operation", seq),
            timeout,
            f"no service_operation_result for {kind} operation {operation!r} on "
            f"{connection_id} within {timeout:g} s",
            context=message,
        )
        try:
            self._send_stdio(message)
        except Exception as e:
            self.pending.fail(("operation", seq), e)
        return d.addCallback(self._operated, message)

    def _operated(self, result: ServiceOperationResult, message: ServiceOperation) -> Any:
        if not result.success:
            raise service_error(
                f"{message.service_type} operation {message.operation!r} on "
                f"{message.connection_id} failed: {result.error or 'no reason given'}",
                result.error_info,
                "operation_failed",
                result.error,
            )
        return result.result

    def _operation_for(self, result: ServiceOperationResult) -> tuple[str, Any] | None:
        echo = result.params
        if echo is not None and echo.id is not None and ("operation", echo.id) in self.pending:
            return ("operation", echo.id)
        if echo is None:
            return self.pending.oldest(lambda key, _: key[0] == "operation")
        return self.pending.oldest(
            lambda key, message: (
                key[0] == "operation"
                and message.connection_id == echo.connection_id
                and message.operation == echo.operation
            )
        ) or self.pending.oldest(
            lambda key, message: (
                key[0] == "operation" and message.connection_id == echo.connection_id
            )
        )

    # -- replies -------------------------------------------------------------------------

    def response_received(self, message: object) -> None:
        """
        A reply arrived (on stdin or a channel): hand it to the call it answers.
        """
        if isinstance(message, RegisterServiceProviderResponse | DiscoverServiceProvidersResponse):
            if not self._discovery.reply(message.op, message):
                self._ignore(message.op, "no request of that kind is outstanding")
        elif isinstance(message, ServiceResponse):
            if not self.pending.resolve(("service_response", message.id), message):
                self._ignore(message.op, f"no service_request {message.id!r} is outstanding")
        elif isinstance(message, ServiceOperationResult):
            key = self._operation_for(message)
            if key is None:
                self._ignore(message.op, "no matching service_operation is outstanding")
                return
            self.pending.resolve(key, message)

    def _ignore(self, op: str, why: str) -> None:
        self.ignored += 1
        self.log.warn("ignoring {op}: {why}", op=op, why=why)

    @property
    def stopping(self) -> bool:
        """
        Whether L{stop} was called: no more calls go out.
        """
        return self.pending.stopped

    def _problem(self, what: str) -> NotAvailable | None:
        if self.pending.stopped:
            return NotAvailable(f"{what} was not sent: the module is stopping")
        return None

    def stop(self, reason: str = "the module is stopping") -> None:
        """
        Fail every outstanding call.
        """
        self.pending.stop(reason)

    def health(self) -> Mapping[str, Any]:
        return {"pending": len(self.pending), "timeouts": self.pending.timeouts}
