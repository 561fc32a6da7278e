# -*- test-case-name: tests.runtime.test_service -*-
"""
L{ModuleService}: a module's whole life as a Twisted service.

Bootstrap order (ARCHITECTURE.md section 2)::

    init line -> startup secrets -> state_builder -> create_app -> bind the listen
    address -> announce (with the address actually bound) -> run -> graceful stop

Messages from the orchestrator are dispatched by type to one handler each; replies go
back on the link (stdio or a channel) the message came in on.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    ensureDeferred,
    maybeDeferred,
)
from twisted.internet.defer import (
    TimeoutError as DeferredTimeout,
)
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from zope.interface import implementer

from pywatt_twisted.data._resources import Resources, found_in, start_collecting
from pywatt_twisted.errors import BootstrapError, PyWattError
from pywatt_twisted.runtime.channels import ChannelManager, ChannelOptions, EndpointFactory
from pywatt_twisted.runtime.config import RuntimeConfig
from pywatt_twisted.runtime.discovery import ServiceClient
from pywatt_twisted.runtime.messaging import RoutedMessaging, error_reply
from pywatt_twisted.runtime.module import ModuleDefinition
from pywatt_twisted.runtime.ports import PortNegotiator
from pywatt_twisted.runtime.redaction import Redactor, default_redactor
from pywatt_twisted.runtime.secrets import SecretClient
from pywatt_twisted.runtime.state import AppState
from pywatt_twisted.transport.interfaces import IMessageReceiver, IOrchestratorLink
from pywatt_twisted.transport.stdio import StdioProtocol
from pywatt_twisted.web.bridge import HttpBridge, send_http_reply
from pywatt_twisted.web.discovery import discover_endpoints
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import PyWattSite, build_root_resource, klein_resource
from pywatt_twisted.wire.init import InitBlob, TcpListen, UnixListen
from pywatt_twisted.wire.messages import (
    Announce,
    DiscoverServiceProvidersResponse,
    Endpoint,
    Heartbeat,
    HttpRequest,
    HttpResponse,
    Init,
    PortResponse,
    RegisterServiceProviderResponse,
    Rotated,
    RotationAck,
    RoutedModuleMessage,
    RoutedModuleResponse,
    SecretMessage,
    ServiceOperationResult,
    ServiceResponse,
    Shutdown,
    UnknownMessage,
)

STARTING = "starting"
READY = "ok"
STOPPING = "stopping"
FAILED = "failed"


def _is_klein(app: object) -> bool:
    return hasattr(app, "resource") and hasattr(app, "url_map")


async def _resolve(value: Any) -> Any:
    """
    Await a Deferred or a coroutine; return anything else as is.
    """
    if isinstance(value, Deferred):
        return await value
    if inspect.isawaitable(value):
        return await value
    return value


def _link_closed(link: IOrchestratorLink) -> bool:
    """
    Whether C{link} can no longer write: a channel whose connection is lost (C{lost}),
    or stdio whose stdout is closed.
    """
    return bool(getattr(link, "lost", False) or getattr(link, "_write_done", False))


def describe_address(address: object) -> str:
    """
    Render a bound address the way the orchestrator expects it in C{announce.listen}:
    C{ip:port}, C{[v6]:port}, or the socket path.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return str(address)


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
    """

    log = Logger()

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
        # Where the listen address is bound (the testing toolkit binds on a memory reactor
        # while time runs on the real one).
        self.listen_reactor = listen_reactor if listen_reactor is not None else reactor
        self.definition = definition
        self.reactor = reactor
        self.config = config if config is not None else RuntimeConfig()
        self.redactor = redactor
        redactor.set_history(self.config.redaction_history)
        self._connect_stdio = connect_stdio
        self._stop_process = stop_process
        self._on_module_id = on_module_id
        self.status = STARTING
        self.exit_code: int | None = None
        self.init: InitBlob | None = None
        self.state: AppState | None = None
        self.endpoints: tuple[Endpoint, ...] = ()
        self.listen_address: str | None = None
        self.metrics = ModuleMetrics()
        self.site: PyWattSite | None = None
        self.bridge: HttpBridge | None = None
        self.port: IListeningPort | None = None
        self.stdio: StdioProtocol | None = None
        self.secrets: SecretClient | None = None
        self.channels: ChannelManager | None = None
        self.messaging: RoutedMessaging | None = None
        self.service_client: ServiceClient | None = None
        self.port_negotiator: PortNegotiator | None = None
        self._channel_endpoints = channel_endpoints
        #: C{address -> endpoint} for the registration client (tests replace it)
        self.registration_endpoint: Callable[[str], Any] | None = None
        self.registration: Any = None
        self.database: Any = None
        self.databases: list[Any] = []
        #: the caches passed to C{state.register_cache} (those the module opened while
        #: starting are on /health too: see L{caches_on_health})
        self.caches: list[Any] = []
        #: the databases and caches the module opened, closed when it stops
        self.resources = Resources()
        self._started_at = 0.0
        self._ready_waiters: list[Deferred[ModuleService]] = []
        self._on_ready: list[Callable[[], object]] = []
        #: routed messages in C{_on_ready}, and those refused 'overloaded' meanwhile
        self._routed_waiting = 0
        self._routed_early_overloaded = 0
        self._ready_result: Failure | ModuleService | None = None
        self._stopping: Deferred[None] | None = None
        self._stop_requested = False

    # -- IService ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._started_at = self.reactor.seconds()
        self.stdio = StdioProtocol(
            self,
            max_line_length=self.config.max_line_length,
            high_water=self.config.stdout_high_water,
            low_water=self.config.stdout_resume_below,
            clock=self.reactor,
            source=os.environ.get("PYWATT_MODULE_ID", "unknown_module"),
        )
        self.secrets = SecretClient(
            self._send_to_orchestrator,
            self.reactor,
            timeout=self.config.secret_timeout,
            redactor=self.redactor,
        )
        self.port_negotiator = PortNegotiator(self._send_to_orchestrator, self.reactor)
        self._connect_stdio(self.stdio)

    def stopService(self) -> Deferred[None]:
        if self._stopping is None:
            self._stopping = ensureDeferred(self._graceful_stop())
        return self._stopping

    def whenReady(self) -> Deferred[ModuleService]:
        """
        A Deferred that fires with this service once the module has announced, or fails
        with the reason the start-up failed.
        """
        d: Deferred[ModuleService] = Deferred()
        if isinstance(self._ready_result, Failure):
            d.errback(self._ready_result)
        elif self._ready_result is not None:
            d.callback(self._ready_result)
        else:
            self._ready_waiters.append(d)
        return d

    # -- IMessageReceiver -------------------------------------------------------------------

    def init_received(self, blob: InitBlob) -> None:
        self.init = blob
        if blob.auth_token:
            self.redactor.add(blob.auth_token)
        if self._on_module_id is not None:
            self._on_module_id(blob.module_id)
        self.log.info(
            "init received: module {module_id}, listen {listen}",
            module_id=blob.module_id,
            listen=str(blob.listen) if blob.listen is not None else None,
        )
        d = ensureDeferred(self._bootstrap(blob))
        d.addErrback(self._bootstrap_failed)

    def init_failed(self, reason: Exception) -> None:
        self._bootstrap_failed(Failure(BootstrapError(f"cannot start: {reason}")))

    def message_received(self, message: object, link: IOrchestratorLink) -> None:
        self.metrics.message_in(link.name, _op_name(message))
        handler = self._handlers.get(type(message))
        if handler is None:
            self.log.warn(
                "no handler for {op} from {link}; ignoring it",
                op=_op_name(message),
                link=link.name,
            )
            return
        handler(self, message, link)

    def input_closed(self, link: IOrchestratorLink) -> None:
        if self._stop_requested or self.status == FAILED:
            # A failed start is already stopping the process.
            return
        self.log.info("{link} input closed by the orchestrator; stopping", link=link.name)
        self.request_stop()

    # -- bootstrap --------------------------------------------------------------------------

    async def _bootstrap(self, blob: InitBlob) -> None:
        definition = self.definition
        assert self.secrets is not None and self.stdio is not None
        # databases opened from here on (state_builder, create_app) are closed at stop
        start_collecting(self.resources)
        self.secrets.seed(blob.env)
        secrets = await self.secrets.get_secrets(definition.secrets)
        self._start_channels(blob)
        user_state = None
        if definition.state_builder is not None:
            user_state = await _resolve(definition.state_builder(blob, secrets))
            for resource in found_in(user_state):
                self.resources.add(resource)
        state = AppState(blob, self.reactor, self.secrets, user_state=user_state)
        state._register_database = self.register_database
        state._register_cache = self.register_cache
        self.messaging = RoutedMessaging(
            module_id=blob.module_id,
            clock=self.reactor,
            handlers=state.handlers,
            channels=self.channels,
            max_frame_length=self.config.max_frame_length,
            redact=self.redactor.redact,
            replies=self.config.routed_replies,
            max_concurrent=self.config.handler_max_concurrent,
            queue_size=self.config.handler_queue_size,
            queue_bytes=self.config.handler_queue_bytes,
            handler_timeout=self.config.handler_timeout,
            handler_timeouts=state.handler_timeouts,
        )
        self.metrics.add_collector(self.messaging.collect)
        state._messaging = self.messaging
        self.service_client = ServiceClient(
            send_stdio=self._send_to_orchestrator,
            clock=self.reactor,
            channels=self.channels,
            max_frame_length=self.config.max_frame_length,
        )
        state._services = self.service_client
        state._ports = self.port_negotiator
        if definition.jwt is not None:
            from pywatt_twisted.web.jwt import install_jwt_guard

            install_jwt_guard(state, definition.jwt)
        self.state = state
        if definition.database is not None:
            await self._open_database(definition.database, secrets[definition.database], state)
        app = await _resolve(definition.create_app(state))
        if _is_klein(app):
            resource = klein_resource(app)
        else:
            resource = IResource(app, None)
            if resource is None:
                raise BootstrapError(
                    f"create_app returned {type(app).__name__}; expected a klein.Klein app or "
                    "a twisted.web IResource"
                )
        self.endpoints = self._endpoints_for(app)
        root = build_root_resource(
            resource,
            health_path=definition.health,
            metrics=self.metrics if definition.metrics else None,
            status=self.health_status,
        )
        self.site = PyWattSite(
            root,
            metrics=self.metrics,
            reactor=self.reactor,
            max_body_size=self.config.max_body_size,
            max_header_size=self.config.max_header_size,
            header_timeout=self.config.http_header_timeout,
            idle_timeout=self.config.http_idle_timeout,
        )
        self.bridge = HttpBridge(
            self.site,
            reactor=self.reactor,
            max_concurrent=self.config.max_concurrent_requests,
            timeout=self.config.request_timeout,
            max_body_size=self.config.max_body_size,
        )
        if self._stop_requested:
            raise BootstrapError("stop requested during start-up")
        if self.channels is not None:
            # Required channels must be up before the module announces (bounded).
            await self.channels.when_required_ready()
        self.port = await self._listen(blob)
        self.listen_address = describe_address(self.port.getHost())
        announce = Announce(listen=self.listen_address, endpoints=self.endpoints)
        self._send_to_orchestrator(announce)
        self.status = READY
        self.log.info(
            "announced {listen} with {count} endpoint(s)",
            listen=self.listen_address,
            count=len(self.endpoints),
        )
        if self.config.registration_address is not None:
            self._start_registration(blob, self.config.registration_address)
        self._ready_result = self
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(self)
        pending, self._on_ready = self._on_ready, []
        for call in pending:
            call()

    async def _open_database(self, secret_name: str, url: Any, state: AppState) -> None:
        """
        Open the database named by the C{database=} secret, expose it as
        C{state.database}, publish its pool on /health and /metrics, and sync the
        module's models to it (before the announce).
        """
        from pywatt_twisted.data import Database
        from pywatt_twisted.errors import DataError

        try:
            db = Database.from_url(url.expose(), reactor=self.reactor)
        except (DataError, ValueError) as e:
            raise BootstrapError(
                f"cannot use the database URL in secret {secret_name!r}: {e}"
            ) from e
        self.database = db
        state.database = db
        self.register_database(db)
        if self.definition.models is None:
            # Not needed to start: a server that is down is reported (one WARNING from
            # the Database, "unavailable" on /health) without holding the start-up.
            db.ping().addErrback(lambda _: None)
            return
        from pywatt_twisted.data.models import ModelValidationError, sync

        try:
            report = await sync(db, self.definition.models)
        except (ModelValidationError, DataError) as e:
            raise BootstrapError(f"the database schema could not be brought in step: {e}") from e
        self.log.info(
            "database schema in step ({count} statement(s) applied)", count=len(report.applied)
        )

    def _start_channels(self, blob: InitBlob) -> None:
        """
        Start the init blob's channels (if any): they connect in the background while the
        app is built; required ones are awaited before the listen/announce step.
        """
        if blob.tcp_channel is None and blob.ipc_channel is None:
            return
        self.channels = ChannelManager.from_init(
            blob,
            receiver=self.message_received,
            clock=self.reactor,
            reactor=self.reactor,
            endpoint_factory=self._channel_endpoints,
            options=ChannelOptions.from_config(self.config),
            metrics=self.metrics,
        )
        self.channels.startService()

    def _start_registration(self, blob: InitBlob, address: str) -> None:
        """
        Register with the registration-protocol service (PROTOCOL.md 6.10) while the
        module runs: a child service, stopped (and unregistered) with the module.
        """
        from pywatt_twisted.runtime.registration import (
            RegistrationClient,
            RegistrationService,
            capabilities_for,
        )
        from pywatt_twisted.wire.registration import ModuleInfo

        if self.registration_endpoint is not None:
            endpoint = self.registration_endpoint(address)
        else:
            from twisted.internet.endpoints import TCP4ClientEndpoint

            host, _, port = address.rpartition(":")
            endpoint = TCP4ClientEndpoint(self.reactor, host, int(port), timeout=30)
        client = RegistrationClient(
            endpoint, self.reactor, max_frame_length=self.config.max_frame_length
        )
        from pywatt_twisted import __version__

        info = ModuleInfo(
            name=blob.module_id,
            version=__version__,
            description=f"PyWatt module {blob.module_id}",
            metadata={"listen": self.listen_address or ""},
        )
        handlers = self.state.handlers if self.state is not None else {}
        self.registration = RegistrationService(
            client,
            info,
            capabilities=lambda: capabilities_for(self.endpoints, handlers),
            health=self.health_status,
            interval=self.config.registration_heartbeat,
        )
        self.registration.setServiceParent(self)

    def register_database(self, db: Any) -> None:
        """
        Publish a database's pool on C{/health} (C{databases}) and C{/metrics}.
        """
        from pywatt_twisted.data import DatabaseCollector

        self.resources.add(db)
        if any(known is db for known in self.databases):
            return
        self.databases.append(db)
        self.metrics.add_collector(DatabaseCollector(db))

    def register_cache(self, cache: Any) -> None:
        """
        Publish a cache on C{/health} (C{caches}) and close it when the module stops.
        """
        self.resources.add(cache)
        if not any(known is cache for known in self.caches):
            self.caches.append(cache)

    def caches_on_health(self) -> list[Any]:
        """
        The caches C{/health} reports: those registered, then those the module opened
        while starting (one per cache server connection: namespace views of one cache
        count once).
        """
        from pywatt_twisted.data.cache import ICache

        shown: list[Any] = []
        stores: list[Any] = []
        for cache in [*self.caches, *(r for r in self.resources if ICache.providedBy(r))]:
            store = getattr(cache, "_store", cache)
            if any(known is store for known in stores) or not hasattr(cache, "health"):
                continue
            stores.append(store)
            shown.append(cache)
        return shown

    def _endpoints_for(self, app: object) -> tuple[Endpoint, ...]:
        definition = self.definition
        if definition.endpoints is None:
            return tuple(
                discover_endpoints(app, health_path=definition.health, metrics=definition.metrics)
            )
        endpoints = list(definition.endpoints)
        paths = {e.path for e in endpoints}
        if definition.health is not None and definition.health not in paths:
            endpoints.append(Endpoint(path=definition.health, methods=("GET",)))
        if definition.metrics and "/metrics" not in paths:
            endpoints.append(Endpoint(path="/metrics", methods=("GET",)))
        return tuple(endpoints)

    async def _listen(self, blob: InitBlob) -> IListeningPort:
        listen = blob.listen
        endpoint: TCP4ServerEndpoint | TCP6ServerEndpoint | UNIXServerEndpoint
        if isinstance(listen, TcpListen):
            endpoint_class = TCP6ServerEndpoint if ":" in listen.host else TCP4ServerEndpoint
            endpoint = endpoint_class(self.listen_reactor, listen.port, interface=listen.host)
        elif isinstance(listen, UnixListen):
            _remove_stale_socket(listen.path)
            endpoint = UNIXServerEndpoint(self.listen_reactor, listen.path)
        else:
            # No listen address: ask the orchestrator for a port (PROTOCOL.md 6.6), and
            # never make one up when it does not answer.
            assert self.port_negotiator is not None
            self.log.info("the init blob has no 'listen' address; asking for a port")
            port = await self.port_negotiator.request_port()
            listen = TcpListen("127.0.0.1", port)
            endpoint = TCP4ServerEndpoint(self.listen_reactor, port, interface="127.0.0.1")
        try:
            return await endpoint.listen(self.site)
        except Exception as e:
            raise BootstrapError(f"cannot listen on {listen}: {e}") from e

    def _bootstrap_failed(self, failure: Failure) -> None:
        if self.status == FAILED:
            return
        self.status = FAILED
        error = failure.value
        # One critical line a person can act on; the traceback only at debug level.
        text = str(error) if isinstance(error, PyWattError) else f"{type(error).__name__}: {error}"
        self.log.critical("module start-up failed: {error}", error=text)
        self.log.debug("module start-up failure details", traceback=failure.getTraceback())
        self._ready_result = failure
        self.exit_code = 1
        for client in (self.messaging, self.service_client, self.port_negotiator):
            if client is not None:
                client.stop("the module failed to start")
        if self.channels is not None:
            # No reconnect timers may outlive a failed start.
            self.channels.stopService()
        self._stop_process(1)
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    # -- dispatch ---------------------------------------------------------------------------

    def _send_to_orchestrator(self, message: object) -> None:
        assert self.stdio is not None
        self.metrics.message_out("stdio", _op_name(message))
        self.stdio.send(message)

    def _on_heartbeat(self, message: Heartbeat, link: IOrchestratorLink) -> None:
        self.metrics.message_out(link.name, "heartbeat_ack")
        link.send_heartbeat_ack()

    def _on_shutdown(self, message: Shutdown, link: IOrchestratorLink) -> None:
        self.log.info("shutdown requested on {link}", link=link.name)
        self.request_stop()

    def _on_secret(self, message: SecretMessage, link: IOrchestratorLink) -> None:
        assert self.secrets is not None
        self.secrets.secret_received(message)

    def _on_init(self, message: Init, link: IOrchestratorLink) -> None:
        self.log.debug("ignoring a repeated init on {link}", link=link.name)

    def _on_unknown(self, message: UnknownMessage, link: IOrchestratorLink) -> None:
        self.log.warn("ignoring unknown op {op!r} from {link}", op=message.op, link=link.name)

    def _on_http_request(self, message: HttpRequest, link: IOrchestratorLink) -> None:
        if self.bridge is None or self.status != READY:
            if self.status in (STOPPING, FAILED):
                self._reply_http(
                    link,
                    HttpResponse(
                        request_id=message.request_id,
                        status_code=503,
                        headers={"content-type": "application/json"},
                        body=b'{"error":"the module is stopping"}',
                    ),
                )
                return
            # Not announced yet: serve it as soon as the app is up.
            self._on_ready.append(lambda: self._on_http_request(message, link))
            return
        d = self.bridge.handle(message, transport=link.name)
        d.addCallback(lambda response: self._reply_http(link, response))
        d.addErrback(
            lambda f: self.log.failure(
                "HTTP-over-IPC request {id} failed", f, id=message.request_id
            )
        )

    def _reply_http(self, link: IOrchestratorLink, response: HttpResponse) -> None:
        if _link_closed(link):
            # The reply is still handed to the link (a channel offers it to the other
            # channels), but it cannot arrive the way the request came: say which one.
            self.log.warn(
                "the reply to HTTP-over-IPC request {id} (status {status}) cannot go back on "
                "{link}, where the request came from: its connection closed while the "
                "request was being served",
                id=response.request_id,
                status=response.status_code,
                link=link.name,
            )
        self.metrics.message_out(link.name, "http_response")
        send_http_reply(link, response, self.log)

    def _on_routed_message(self, message: RoutedModuleMessage, link: IOrchestratorLink) -> None:
        if self.messaging is None or self.status != READY:
            if self.status in (STOPPING, FAILED) or self._stop_requested:
                module_id = self.init.module_id if self.init is not None else "?"
                self.metrics.message_out(link.name, RoutedModuleMessage.op)
                link.send(
                    error_reply(
                        module_id,
                        message,
                        "unavailable",
                        f"module {module_id!r} is stopping and takes no more requests",
                    )
                )
                return
            # Handlers are registered by create_app: dispatch once the module is up. As
            # many wait as could run or queue then; more are answered 'overloaded' now.
            limit = self.config.handler_max_concurrent + self.config.handler_queue_size
            if self._routed_waiting >= limit:
                self._refuse_early(message, link, limit)
                return
            self._routed_waiting += 1
            self._on_ready.append(lambda: self._dispatch_early(message, link))
            return
        self.messaging.message_received(message, link)

    def _dispatch_early(self, message: RoutedModuleMessage, link: IOrchestratorLink) -> None:
        self._routed_waiting -= 1
        if self._routed_early_overloaded:
            self.log.warn(
                "{count} routed request(s) were answered 'overloaded' while the module started",
                count=self._routed_early_overloaded,
            )
            self._routed_early_overloaded = 0
        self._on_routed_message(message, link)

    def _refuse_early(
        self, message: RoutedModuleMessage, link: IOrchestratorLink, limit: int
    ) -> None:
        module_id = self.init.module_id if self.init is not None else "?"
        if not self._routed_early_overloaded:
            self.log.warn(
                "routed handlers overloaded while starting: {limit} requests already wait "
                "for the module to start (handler_max_concurrent + handler_queue_size); "
                "answering more 'overloaded' (raise --handler-queue-size / "
                "PYWATT_HANDLER_QUEUE_SIZE if the module can take more)",
                limit=limit,
            )
        self._routed_early_overloaded += 1
        self.metrics.message_out(link.name, RoutedModuleMessage.op)
        link.send(
            error_reply(
                module_id,
                message,
                "overloaded",
                f"module {module_id!r} is starting and {limit} routed requests already wait "
                "for it (handler_max_concurrent + handler_queue_size); retry later",
            )
        )

    def _on_routed_response(self, message: RoutedModuleResponse, link: IOrchestratorLink) -> None:
        if self.messaging is None:
            self.log.warn(
                "ignoring routed_module_response {id}: no request was sent yet",
                id=str(message.request_id),
            )
            return
        self.messaging.response_received(message)

    def _on_service_reply(self, message: Any, link: IOrchestratorLink) -> None:
        if self.service_client is None:
            self.log.warn("ignoring {op}: no request was sent yet", op=_op_name(message))
            return
        self.service_client.response_received(message)

    def _on_port_response(self, message: PortResponse, link: IOrchestratorLink) -> None:
        assert self.port_negotiator is not None
        self.port_negotiator.response_received(message)

    def _on_rotated(self, message: Rotated, link: IOrchestratorLink) -> None:
        ensureDeferred(self._rotate(message, link)).addErrback(
            lambda f: self.log.failure("rotation {id} failed", f, id=message.rotation_id)
        )

    async def _rotate(self, message: Rotated, link: IOrchestratorLink) -> None:
        assert self.secrets is not None
        if not self.definition.rotate:
            self.log.info(
                "rotation {id} ignored: this module was declared with rotate=False",
                id=message.rotation_id,
            )
            link.send(RotationAck(rotation_id=message.rotation_id, status="success"))
            return
        used = [k for k in message.keys if k in self.secrets.known()]
        try:
            await self.secrets.refresh(used)
        except Exception as e:
            link.send(
                RotationAck(
                    rotation_id=message.rotation_id,
                    status="error",
                    message=f"re-fetching {', '.join(used)} failed: {e}",
                )
            )
            return
        problems = []
        database_secret = self.definition.database
        if database_secret in used and self.database is not None:
            problem = await self._rotate_database(database_secret)
            if problem is not None:
                problems.append(problem)
        failed = []
        if self.state is not None:
            for callback in self.state.rotation_callbacks:
                try:
                    await _resolve(callback(tuple(used)))
                except Exception:
                    self.log.failure(
                        "on_rotation callback {cb} failed", cb=getattr(callback, "__name__", "?")
                    )
                    failed.append(getattr(callback, "__qualname__", repr(callback)))
        if failed:
            problems.append(f"on_rotation callback(s) failed: {', '.join(failed)}")
        if problems:
            link.send(
                RotationAck(
                    rotation_id=message.rotation_id,
                    status="error",
                    message="; ".join(problems),
                )
            )
        else:
            link.send(RotationAck(rotation_id=message.rotation_id, status="success"))

    async def _rotate_database(self, secret_name: str) -> str | None:
        """
        Move the C{database=} database to the rotated URL (see L{Database.use_url
        <pywatt_twisted.data.Database.use_url>}); return None, or why it still uses the
        old one (no password in it).
        """
        assert self.secrets is not None
        try:
            await self.database.use_url(self.secrets.cached(secret_name))
        except Exception as e:
            reason = self.redactor.redact(
                f"the database in secret {secret_name!r} still uses its old value: {e}"
            )
            self.log.error("rotation: {reason}", reason=reason)
            return reason
        return None

    _handlers: dict[type, Callable[[ModuleService, Any, IOrchestratorLink], None]] = {
        Heartbeat: _on_heartbeat,
        Shutdown: _on_shutdown,
        SecretMessage: _on_secret,
        Init: _on_init,
        UnknownMessage: _on_unknown,
        HttpRequest: _on_http_request,
        Rotated: _on_rotated,
        RoutedModuleMessage: _on_routed_message,
        RoutedModuleResponse: _on_routed_response,
        RegisterServiceProviderResponse: _on_service_reply,
        DiscoverServiceProvidersResponse: _on_service_reply,
        ServiceResponse: _on_service_reply,
        ServiceOperationResult: _on_service_reply,
        PortResponse: _on_port_response,
    }

    # -- health -----------------------------------------------------------------------------

    def health_status(self) -> dict[str, Any]:
        """
        The body of C{GET /health}.
        """
        now = self.reactor.seconds()
        caches = self.caches_on_health()
        return {
            "status": self.status,
            "module_id": self.init.module_id if self.init is not None else None,
            "uptime_seconds": round(max(0.0, now - self._started_at), 3),
            "listen": self.listen_address,
            "channels": self.channels.health() if self.channels is not None else {},
            **(
                {"channel_queue": self.channels.queue_health()} if self.channels is not None else {}
            ),
            **({"databases": [db.health() for db in self.databases]} if self.databases else {}),
            **({"caches": [cache.health() for cache in caches]} if caches else {}),
            **({"messaging": self.messaging.health()} if self.messaging is not None else {}),
        }

    # -- stopping ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """
        Ask for a graceful stop of the whole process (shutdown op, stdin EOF, SIGTERM).
        """
        if self._stop_requested:
            return
        self._stop_requested = True
        if self.exit_code is None:
            self.exit_code = 0
        self._stop_process(self.exit_code)

    async def _graceful_stop(self) -> None:
        stop_by = self.reactor.seconds() + self.config.shutdown_deadline
        previous = self.status
        self.status = STOPPING if previous != FAILED else FAILED
        if self.bridge is not None:
            self.bridge.stop_accepting()
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)
        waits: list[Deferred[Any]] = []
        if self.bridge is not None:
            waits.append(self.bridge.drain())
        drain_site = getattr(self.site, "drain", None)
        if drain_site is not None:
            waits.append(drain_site())
        if self.messaging is not None:
            # Handlers still running get the same deadline as HTTP requests.
            waits.append(self.messaging.drain())
        if waits:
            everything: Deferred[Any] = DeferredList(waits, consumeErrors=True)
            deadline = self.config.shutdown_deadline
            everything.addTimeout(deadline, self.reactor)
            try:
                await everything
            except Exception:
                self.log.warn(
                    "requests still in flight after {deadline} s; stopping anyway",
                    deadline=deadline,
                )
        if self.state is not None:
            await self._run_stop_hooks(stop_by)
        if self.secrets is not None:
            self.secrets.cancel_all("the module is stopping")
        if self.messaging is not None:
            self.messaging.stop()
        if self.service_client is not None:
            self.service_client.stop()
        if self.port_negotiator is not None:
            self.port_negotiator.stop()
        await super().stopService()
        await self._close_resources(stop_by)
        if self.channels is not None:
            # Last: replies to requests that came in on a channel went out above.
            await self.channels.stopService()
        if self.stdio is not None:
            flushed = self.stdio.flush()
            flushed.addTimeout(5, self.reactor)
            try:
                await flushed
            except Exception:
                self.log.warn("stdout did not drain within 5 s")
        self.log.info("stopped")

    def _remaining(self, stop_by: float) -> float:
        """
        Seconds left before C{stop_by}, at least L{MIN_STOP_STEP}.
        """
        return max(stop_by - self.reactor.seconds(), MIN_STOP_STEP)

    async def _bounded(self, d: Deferred[Any], stop_by: float, what: str) -> None:
        """
        Wait for C{d} at most until C{stop_by} (at least L{MIN_STOP_STEP}); log a
        failure or a timeout (naming C{what} and the setting to raise) and return.
        """
        seconds = self._remaining(stop_by)
        d.addTimeout(seconds, self.reactor)
        try:
            await d
        except DeferredTimeout:
            self.log.warn(
                "{what} did not finish within {seconds:.1f} s (what was left of the "
                "shutdown deadline, --shutdown-deadline / PYWATT_SHUTDOWN_DEADLINE, now "
                "{deadline} s); cancelled, the stop goes on",
                what=what,
                seconds=seconds,
                deadline=self.config.shutdown_deadline,
            )
        except Exception:
            self.log.failure("{what} failed; the stop goes on", what=what)

    async def _run_stop_hooks(self, stop_by: float) -> None:
        """
        Run the C{state.on_stop} hooks, last registered first, each bounded.
        """
        assert self.state is not None
        for hook in reversed(self.state.stop_hooks):
            name = getattr(hook, "__qualname__", None) or repr(hook)
            await self._bounded(maybeDeferred(hook), stop_by, f"on_stop hook {name}")

    async def _close_resources(self, stop_by: float) -> None:
        """
        Close every database and cache the module opened (last opened first), each
        bounded by what is left of the shutdown deadline.
        """
        for resource in reversed(list(self.resources)):
            await self._bounded(
                maybeDeferred(resource.close), stop_by, f"closing {_describe(resource)}"
            )


#: Seconds each stop step (an on_stop hook, closing a database) gets at least, even
#: when the drain used the whole shutdown deadline.
MIN_STOP_STEP = 1.0


def _describe(resource: object) -> str:
    from pywatt_twisted.data.cache import ICache

    if ICache.providedBy(resource):
        health = getattr(resource, "health", None)
        url = health().get("url") if callable(health) else None
        return f"the cache {url}" if isinstance(url, str) else type(resource).__name__
    url = getattr(resource, "url_redacted", None)
    if isinstance(url, str):
        return f"the database {url}"
    return type(resource).__name__


def _op_name(message: object) -> str:
    op = getattr(message, "op", None)
    if isinstance(op, str):
        return op
    return type(message).__name__


def _remove_stale_socket(path: str) -> None:
    import socket
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise BootstrapError(f"another process is already listening on {path}")
    finally:
        probe.close()


__all__ = ["ModuleService", "describe_address"]
