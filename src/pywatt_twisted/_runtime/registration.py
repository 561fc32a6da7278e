# -*- test-case-name: tests.runtime.test_registration -*-
"""
The optional registration-protocol client (PROTOCOL.md 6.10): register, advertise
capabilities, heartbeat, unregister, over a framed TCP connection of its own.

Nothing in the stdio bootstrap needs it, and whether an orchestrator serves it is
unknown, so it runs only when configured (C{PYWATT_REGISTRATION_ADDRESS=host:port}).
Then L{RegistrationService} joins the module's service tree once the module has
announced: it registers, advertises the announced endpoints and the routed-message
handlers as capabilities, sends a heartbeat every C{PYWATT_REGISTRATION_HEARTBEAT}
seconds (a L{TimerService} child; the status follows C{/health}), and unregisters when
the module stops.

Responses are bare and carry no id: the reply to a request is the next frame on the
connection. So L{RegistrationClient} keeps one request on the wire at a time, and every
request has a timeout (30 s by default). A lost connection fails the request in flight
and is opened again by the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted._runtime.correlation import CorrelationTable
from pywatt_twisted._transport.framed import FramedProtocol
from pywatt_twisted.errors import (
    ChannelError,
    FrameError,
    FrameTooLarge,
    ProtocolError,
    RemoteError,
)
from pywatt_twisted.wire._registration import (
    Capabilities,
    CapabilitiesRequest,
    EndpointInfo,
    HealthStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    ModuleInfo,
    RegisteredModule,
    RegisterRequest,
    RegisterResponse,
    RegistrationRequest,
    RegistrationResponse,
    UnregisterRequest,
    decode_registration_response,
    encode_registration_request,
)
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH, Frame, frame_header, frame_json

__all__ = ["RegistrationClient", "RegistrationError", "RegistrationService"]


class RegistrationError(RemoteError):
    """
    The registration service refused a request (C{kind} is the request type).
    """


class _RegistrationProtocol(FramedProtocol):
    """
    The registration connection: a L{FramedProtocol}, so an oversize frame header
    aborts it (the request in flight then fails) instead of wedging the stream.
    """

    def __init__(self, client: RegistrationClient) -> None:
        super().__init__(client.max_frame_length)
        self.client = client

    def connectionMade(self) -> None:
        self.client._connected(self)

    def frameReceived(self, frame: Frame) -> None:
        self.client._frame(frame_json(frame))

    def frameSkipped(self, error: FrameError) -> None:
        self.client.log.warn("registration: skipped a frame: {e}", e=str(error))

    def frameTooLong(self, error: FrameTooLarge) -> None:
        self.client.log.error(
            "registration: {error}; aborting the connection (the stream cannot be trusted "
            "past that header). Raise PYWATT_MAX_FRAME_LENGTH / --max-frame-length if the "
            "registration service really sends frames that large",
            error=str(error),
        )
        self.abortWith(error)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.client._lost(self, reason)

    def send(self, payload: bytes) -> None:
        self.transmit(frame_header(len(payload)) + payload)


class RegistrationClient:
    """
    Requests of the registration protocol, one at a time, on one connection.

    @param endpoint: where the registration service listens.
    @param clock: the clock timeouts run on.
    @param timeout: seconds each request waits for its response.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        timeout: float = 30.0,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout
        self.max_frame_length = max_frame_length
        self.module: RegisteredModule | None = None
        self._protocol: _RegistrationProtocol | None = None
        self._lock = DeferredLock()
        self._seq = 0
        # The request on the wire (the lock keeps it to one): responses carry no id, the
        # next frame answers it.
        self._waiting: CorrelationTable[int] = CorrelationTable(clock)

    # -- connection -----------------------------------------------------------------------

    def _connected(self, protocol: _RegistrationProtocol) -> None:
        self._protocol = protocol

    def _lost(self, protocol: _RegistrationProtocol, reason: Failure | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
        self._waiting.fail_all(
            lambda *_: ChannelError("the registration connection closed before the response")
        )

    def _frame(self, payload: bytes) -> None:
        waiting = self._waiting.oldest()
        if waiting is None:
            self.log.warn("registration: ignoring a response nothing waits for")
            return
        self._waiting.resolve(waiting, payload)

    async def _ensure_connected(self) -> _RegistrationProtocol:
        if self._protocol is None:
            factory = Factory.forProtocol(lambda: _RegistrationProtocol(self))  # type: ignore[arg-type]
            connecting = self.endpoint.connect(factory)
            connecting.addTimeout(self.timeout, self.clock)
            try:
                await connecting
            except Exception as e:
                raise ChannelError(f"cannot connect to the registration service: {e}") from e
        assert self._protocol is not None
        return self._protocol

    def close(self) -> None:
        """
        Close the connection (a later request opens a new one).
        """
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.loseConnection()

    # -- requests -------------------------------------------------------------------------

    async def _call(self, request: RegistrationRequest) -> RegistrationResponse:
        await self._lock.acquire()
        try:
            protocol = await self._ensure_connected()
            self._seq += 1
            d: Deferred[bytes] = self._waiting.add(
                self._seq,
                self.timeout,
                f"no {request.request_type} response from the registration service "
                f"within {self.timeout:g} s",
            )
            try:
                protocol.send(encode_registration_request(request))
            except Exception as e:
                self._waiting.fail(self._seq, e)
            try:
                payload = await d
            except ChannelError:
                raise
            except Exception:
                # The response may still come: a later one would be taken for the next
                # request's, so start over on a fresh connection.
                self.close()
                raise
            response = decode_registration_response(payload)
        finally:
            self._lock.release()
        if response.response_type != request.request_type:
            raise ProtocolError(
                f"expected a {request.request_type} response, got {response.response_type}"
            )
        if not response.success:
            raise RegistrationError(
                f"the registration service refused {request.request_type}: "
                f"{response.error or 'Unknown error'}",
                kind=request.request_type,
            )
        return response

    def _require_module(self) -> RegisteredModule:
        if self.module is None:
            raise RegistrationError("not registered yet; call register() first", kind="state")
        return self.module

    def register(self, info: ModuleInfo) -> Deferred[RegisteredModule]:
        """
        Register; fires with the L{RegisteredModule} (its id and token are kept for
        the other requests).
        """

        async def go() -> RegisteredModule:
            response = await self._call(RegisterRequest(info))
            assert isinstance(response, RegisterResponse)
            if response.module is None:
                raise RegistrationError(
                    "the registration service accepted register but sent no module",
                    kind="register",
                )
            self.module = response.module
            return response.module

        return Deferred.fromCoroutine(go())

    def heartbeat(
        self, status: HealthStatus, details: Mapping[str, str] | None = None
    ) -> Deferred[HealthStatus]:
        """
        Report health; fires with the status the service answered.
        """

        async def go() -> HealthStatus:
            module = self._require_module()
            response = await self._call(HeartbeatRequest(module.id, module.token, status, details))
            assert isinstance(response, HeartbeatResponse)
            return response.status

        return Deferred.fromCoroutine(go())

    def advertise_capabilities(self, capabilities: Capabilities) -> Deferred[None]:
        """
        Tell the service what this module offers.
        """

        async def go() -> None:
            module = self._require_module()
            await self._call(CapabilitiesRequest(module.id, module.token, capabilities))

        return Deferred.fromCoroutine(go())

    def unregister(self) -> Deferred[None]:
        """
        Unregister (the id and token are forgotten).
        """

        async def go() -> None:
            module = self._require_module()
            await self._call(UnregisterRequest(module.id, module.token))
            self.module = None

        return Deferred.fromCoroutine(go())


def health_to_status(health: Mapping[str, Any]) -> HealthStatus:
    """
    The registration status for a C{/health} body: C{ok} is healthy, C{failed} and
    C{failing} (a required check fails) are unhealthy, anything else (starting,
    degraded, stopping) is degraded.
    """
    status = health.get("status")
    if status == "ok":
        return HealthStatus.HEALTHY
    if status in ("failed", "failing"):
        return HealthStatus.UNHEALTHY
    return HealthStatus.DEGRADED


class RegistrationService(MultiService):
    """
    Registers the module while it runs (see the module docstring).

    @param client: the L{RegistrationClient}.
    @param info: what the module registers as.
    @param capabilities: C{() -> Capabilities}, read after registering.
    @param health: C{() -> /health body}, read for each heartbeat.
    @param interval: seconds between heartbeats.
    """

    log = Logger()

    def __init__(
        self,
        client: RegistrationClient,
        info: ModuleInfo,
        capabilities: Callable[[], Capabilities],
        health: Callable[[], Mapping[str, Any]],
        interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.client = client
        self.info = info
        self._capabilities = capabilities
        self._health = health
        self.interval = interval
        self.heartbeats = 0
        self.failures = 0
        self._registering: Deferred[None] | None = None
        self._timer: TimerService | None = None

    def startService(self) -> None:
        super().startService()
        self._registering = Deferred.fromCoroutine(self._register())

    async def _register(self) -> None:
        try:
            module = await self.client.register(self.info)
            self.log.info("registered with the registration service as {id}", id=str(module.id))
            await self.client.advertise_capabilities(self._capabilities())
        except Exception as e:
            self.failures += 1
            self.log.error("registration failed: {error}", error=str(e))
            return
        if not self.running:
            return
        timer = TimerService(self.interval, self._beat)
        timer.clock = self.client.clock
        self._timer = timer
        # The first heartbeat goes out one interval after registering.
        timer.setServiceParent(self)

    def _beat(self) -> Deferred[None]:
        async def go() -> None:
            try:
                await self.client.heartbeat(health_to_status(self._health()))
                self.heartbeats += 1
            except Exception as e:
                self.failures += 1
                self.log.warn("registration heartbeat failed: {error}", error=str(e))

        return Deferred.fromCoroutine(go())

    def stopService(self) -> Deferred[None]:
        async def go() -> None:
            await super(RegistrationService, self).stopService()
            if self.client.module is not None:
                try:
                    await self.client.unregister()
                    self.log.info("unregistered from the registration service")
                except Exception as e:
                    self.log.warn("unregister failed: {error}", error=str(e))
            self.client.close()

        return Deferred.fromCoroutine(go())


def capabilities_for(endpoints: Any, handlers: Any) -> Capabilities:
    """
    Capabilities from a module's announced endpoints and its routed-message handlers.
    """
    return Capabilities(
        endpoints=tuple(EndpointInfo(e.path, tuple(e.methods), e.auth) for e in endpoints),
        message_types=tuple(sorted(handlers)) or None,
    )
