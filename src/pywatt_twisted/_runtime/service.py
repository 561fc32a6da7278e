# -*- test-case-name: tests.runtime.test_service -*-
"""
L{ModuleService}: a module's whole life as a Twisted service.

It wires four pieces, one concern each, around the module's L{ModuleParts}:

  - process set-up (here, L{ModuleService.startService}): the stdio protocol, the
    secret client and the port negotiator, before the init line arrives;
  - L{Bootstrap}: init line -> startup secrets -> state_builder -> create_app -> bind
    the listen address -> announce (with the address actually bound);
  - L{OpDispatcher}: each message from the orchestrator to its handler, replies on the
    link it came in on;
  - L{Lifecycle}: the graceful stop and the exit status;

and the module's status, a L{StatusMachine}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted._runtime.bootstrap import Bootstrap
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.discovery import ServiceClient
from pywatt_twisted._runtime.dispatch import OpDispatcher
from pywatt_twisted._runtime.health import add_backend_checks
from pywatt_twisted._runtime.lifecycle import MIN_STOP_STEP, Lifecycle
from pywatt_twisted._runtime.listen import describe_address
from pywatt_twisted._runtime.messaging import RoutedMessaging
from pywatt_twisted._runtime.module import ModuleDefinition
from pywatt_twisted._runtime.parts import ModuleParts, Part
from pywatt_twisted._runtime.ports import PortNegotiator
from pywatt_twisted._runtime.redaction import Redactor, default_redactor
from pywatt_twisted._runtime.secrets import SecretClient
from pywatt_twisted._runtime.state import AppState
from pywatt_twisted._runtime.status import ModuleStatus, StatusMachine
from pywatt_twisted._transport.interfaces import IMessageReceiver, IOrchestratorLink
from pywatt_twisted._transport.stdio import StdioProtocol
from pywatt_twisted.data._resources import Resources
from pywatt_twisted.errors import BootstrapError
from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import PyWattSite
from pywatt_twisted.wire._ops import op_name
from pywatt_twisted.wire.init import InitBlob
from pywatt_twisted.wire.messages import Endpoint

if TYPE_CHECKING:
    from pywatt_twisted.link import ChannelManager, EndpointFactory

#: The module statuses under their old names (C{/health} reports their values).
STARTING = ModuleStatus.STARTING
READY = ModuleStatus.READY
STOPPING = ModuleStatus.STOPPING
FAILED = ModuleStatus.FAILED
STOPPED = ModuleStatus.STOPPED


@implementer(IMessageReceiver)
class ModuleService(MultiService):
    """
    Runs one module definition.

    @param definition: what C{@pywatt_module} returned.
    @param reactor: the reactor (tests pass a L{MemoryReactorClock}).
    @param connect_stdio: C{callable(protocol)} connecting the stdio protocol to its
        transport (C{StandardIO} in a process, a C{StringTransport} in tests).
    @param stop_process: C{callable(exit_code)} ending the process; called after a
        shutdown request (0) or a fatal start-up error (1).
    @param on_module_id: called with the module id once the init blob is known (the log
        observer uses it).
    @param listen_reactor: the reactor the listen address is bound on (default:
        C{reactor}).
    @param channel_endpoints: C{(spec, tls_options) -> endpoint} for the framed
        channels (tests pass fakes); real TCP/Unix endpoints when C{None}.

    @ivar parts: what the module is made of (also readable as attributes: C{state},
        C{site}, C{bridge}, C{channels}, C{messaging}, ...).
    @ivar registration_endpoint: C{address -> endpoint} for the registration client
        (tests replace it).
    """

    log = Logger()

    #: Whether the site emits its per-request access-log event (a debug event): the
    #: module process turns it off unless its log level is debug, where the event would
    #: be dropped anyway after costing its formatting and publishing.
    access_log: bool = True

    metrics: Part[ModuleMetrics] = Part()
    resources: Part[Resources] = Part()
    init: Part[InitBlob | None] = Part()
    stdio: Part[StdioProtocol | None] = Part()
    secrets: Part[SecretClient | None] = Part()
    port_negotiator: Part[PortNegotiator | None] = Part()
    channels: Part[ChannelManager | None] = Part()
    state: Part[AppState | None] = Part()
    messaging: Part[RoutedMessaging | None] = Part()
    service_client: Part[ServiceClient | None] = Part()
    site: Part[PyWattSite | None] = Part()
    bridge: Part[HttpBridge | None] = Part()
    port: Part[IListeningPort | None] = Part()
    listen_address: Part[str | None] = Part()
    endpoints: Part[tuple[Endpoint, ...]] = Part()
    registration: Part[Any] = Part()
    database: Part[Any] = Part()
    databases: Part[list[Any]] = Part()
    caches: Part[list[Any]] = Part()

    def __init__(
        self,
        definition: ModuleDefinition,
        *,
        reactor: Any,
        connect_stdio: Callable[[Protocol], object],
        stop_process: Callable[[int], object],
        config: RuntimeConfig | None = None,
        redactor: Redactor = default_redactor,
        on_module_id: Callable[[str], object] | None = None,
        listen_reactor: Any = None,
        channel_endpoints: EndpointFactory | None = None,
    ) -> None:
        super().__init__()
        self.definition = definition
        self.reactor = reactor
        # Where the listen address is bound (the testing toolkit binds on a memory reactor
        # while time runs on the real one).
        self.listen_reactor = listen_reactor if listen_reactor is not None else reactor
        self.config = config if config is not None else RuntimeConfig()
        self.redactor = redactor
        redactor.set_history(self.config.redaction_history)
        self.channel_endpoints = channel_endpoints
        self.registration_endpoint: Callable[[str], Any] | None = None
        self.parts = ModuleParts()
        self.status_machine = StatusMachine()
        self.lifecycle = Lifecycle(self, stop_process)
        self.dispatcher = OpDispatcher(self)
        self.bootstrap = Bootstrap(self, on_module_id, on_ready=self.dispatcher.release)
        self._connect_stdio = connect_stdio
        self._started_at = 0.0

    @property
    def status(self) -> ModuleStatus:
        """
        Where the module is in its life.
        """
        return self.status_machine.current

    @property
    def exit_code(self) -> int | None:
        """
        The process's exit status, once decided.
        """
        return self.lifecycle.exit_code

    # -- IService ---------------------------------------------------------------------------

    def startService(self) -> None:
        """
        Process set-up: the stdio protocol and the clients that talk over it, then
        connect stdio (the init line starts the L{Bootstrap}).
        """
        super().startService()
        parts, config = self.parts, self.config
        self._started_at = self.reactor.seconds()
        parts.stdio = StdioProtocol(
            self,
            max_line_length=config.max_frame_length,
            max_init_length=config.max_line_length,
            high_water=config.stdout_high_water,
            low_water=config.stdout_resume_below,
            clock=self.reactor,
            source=os.environ.get("PYWATT_MODULE_ID", "unknown_module"),
        )
        parts.secrets = SecretClient(
            self.send_to_orchestrator,
            self.reactor,
            timeout=config.secret_timeout,
            redactor=self.redactor,
        )
        parts.port_negotiator = PortNegotiator(self.send_to_orchestrator, self.reactor)
        self._connect_stdio(parts.stdio)

    def stopService(self) -> Deferred[None]:
        return self.lifecycle.stop()

    def stop_children(self) -> Deferred[None]:
        """
        Stop the child services (the registration service), as L{MultiService} does.
        """
        stopped: Deferred[None] = super().stopService()  # type: ignore[assignment]
        return stopped

    def whenReady(self) -> Deferred[ModuleService]:
        """
        A Deferred that fires with this service once the module has announced, or fails
        with the reason the start-up failed.
        """
        return self.bootstrap.whenReady()

    def request_stop(self) -> None:
        """
        Ask for a graceful stop of the whole process (shutdown op, stdin EOF, SIGTERM).
        """
        self.lifecycle.request_stop()

    # -- IMessageReceiver -------------------------------------------------------------------

    def init_received(self, blob: InitBlob) -> None:
        self.bootstrap.start(blob)

    def init_failed(self, reason: Exception) -> None:
        self.bootstrap.failed(Failure(BootstrapError(f"cannot start: {reason}")))

    def message_received(self, message: object, link: IOrchestratorLink) -> None:
        self.dispatcher.dispatch(message, link)

    def input_closed(self, link: IOrchestratorLink) -> None:
        if self.lifecycle.stop_requested or self.status is ModuleStatus.FAILED:
            # A failed start is already stopping the process.
            return
        self.log.info("{link} input closed by the orchestrator; stopping", link=link.name)
        self.request_stop()

    # -- what the module tells the orchestrator and /health -----------------------------------

    def send_to_orchestrator(self, message: object) -> None:
        """
        Send C{message} on stdout (counted in the metrics).
        """
        assert self.parts.stdio is not None
        self.parts.metrics.message_out("stdio", op_name(message))
        self.parts.stdio.send(message)

    def health_status(self) -> dict[str, Any]:
        """
        The body of C{GET /health} from the checks' latest results (L{health_report}
        runs the checks first).

        C{status} is the module's own status while it is not ready (C{starting},
        C{stopping}, C{failed}, C{stopped}); once ready, C{ok}, C{degraded} (an optional
        check fails) or C{failing} (a required one does).
        """
        parts = self.parts
        now = self.reactor.seconds()
        caches = parts.caches_on_health()
        status = self.status.value
        if self.status is ModuleStatus.READY and parts.health is not None:
            status = parts.health.status()
        return {
            "status": status,
            "module_id": parts.module_id,
            "uptime_seconds": round(max(0.0, now - self._started_at), 3),
            "listen": parts.listen_address,
            "channels": parts.channels.health() if parts.channels is not None else {},
            **(
                {"channel_queue": parts.channels.queue_health()}
                if parts.channels is not None
                else {}
            ),
            **({"databases": [db.health() for db in parts.databases]} if parts.databases else {}),
            **({"caches": [cache.health() for cache in caches]} if caches else {}),
            **({"messaging": parts.messaging.health()} if parts.messaging is not None else {}),
            **({"checks": parts.health.entries()} if parts.health is not None else {}),
            **({"slo": parts.slo.health()} if parts.slo is not None else {}),
            **({"build": parts.build.as_dict()} if parts.build is not None else {}),
        }

    def health_report(self) -> Deferred[dict[str, Any]]:
        """
        Run the checks whose cached result is stale (each within the check timeout),
        then fire with L{health_status}: what C{GET /health} answers.
        """
        parts = self.parts
        if parts.health is None or self.status is not ModuleStatus.READY:
            return succeed(self.health_status())
        add_backend_checks(parts)
        return parts.health.refresh().addCallback(lambda _: self.health_status())


__all__ = [
    "FAILED",
    "MIN_STOP_STEP",
    "READY",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "ModuleService",
    "ModuleStatus",
    "describe_address",
]
