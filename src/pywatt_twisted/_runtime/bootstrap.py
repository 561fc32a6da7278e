# -*- test-case-name: tests.runtime.test_service -*-
"""
L{Bootstrap}: a module's start-up sequence (ARCHITECTURE.md section 2)::

    init line -> startup secrets -> channels -> state_builder -> AppState (messaging,
    services, ports, JWT) -> database -> create_app -> site and bridge -> required
    channels up -> bind the listen address -> announce (with the address actually
    bound) -> registration -> ready

L{Bootstrap.whenReady} fires once the module has announced, or fails with the reason
the start-up failed; a failed start-up is one critical log line and exit status 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from pywatt_twisted._runtime.buildinfo import LateBuildInfo
from pywatt_twisted._runtime.discovery import ServiceClient
from pywatt_twisted._runtime.health import (
    add_backend_checks,
    add_channel_checks,
    check_required_backends,
)
from pywatt_twisted._runtime.listen import describe_address, listen
from pywatt_twisted._runtime.messaging import RoutedMessaging
from pywatt_twisted._runtime.resilience import BreakerPolicy, Breakers
from pywatt_twisted._runtime.state import AppState
from pywatt_twisted._runtime.status import ModuleStatus
from pywatt_twisted.data._resources import found_in, start_collecting
from pywatt_twisted.errors import BootstrapError, PyWattError
from pywatt_twisted.link._slo import Alert, SloMonitor, SloThresholds
from pywatt_twisted.web._cors import cors_paths
from pywatt_twisted.web._health import HealthChecks
from pywatt_twisted.web._version import announced_endpoints
from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.web.discovery import discover_endpoints
from pywatt_twisted.web.site import PyWattSite, build_root_resource, klein_resource
from pywatt_twisted.wire.init import InitBlob
from pywatt_twisted.wire.messages import Announce, Endpoint

if TYPE_CHECKING:
    from pywatt_twisted._runtime.service import ModuleService

__all__ = ["Bootstrap"]

#: Channel states that count as up for the SLOs (paused is connected, flow-controlled).
_CHANNEL_UP = ("connected", "paused")


def _is_klein(app: object) -> bool:
    return hasattr(app, "resource") and hasattr(app, "url_map")


async def resolve(value: Any) -> Any:
    """
    Await a Deferred or a coroutine; return anything else as is.
    """
    if isinstance(value, Deferred):
        return await value
    if inspect.isawaitable(value):
        return await value
    return value


class Bootstrap:
    """
    Builds one module's parts in order, from the init blob to the announce.

    @param service: the module service whose parts it builds (its C{parts}, settings,
        clock and log).
    @param on_module_id: called with the module id once the init blob is known.
    @param on_ready: called once the module is ready, after the L{whenReady} waiters
        (the op dispatcher serves what arrived meanwhile).
    """

    def __init__(
        self,
        service: ModuleService,
        on_module_id: Callable[[str], object] | None,
        on_ready: Callable[[], object],
    ) -> None:
        self.service = service
        self.parts = service.parts
        # The module's own log lines keep the service's namespace.
        self.log = service.log
        self._on_module_id = on_module_id
        self._on_ready = on_ready
        self._waiters: list[Deferred[ModuleService]] = []
        self._result: Failure | ModuleService | None = None

    def whenReady(self) -> Deferred[ModuleService]:
        """
        A Deferred that fires with the service once the module has announced, or fails
        with the reason the start-up failed.
        """
        d: Deferred[ModuleService] = Deferred()
        if isinstance(self._result, Failure):
            d.errback(self._result)
        elif self._result is not None:
            d.callback(self._result)
        else:
            self._waiters.append(d)
        return d

    def start(self, blob: InitBlob) -> None:
        """
        The init blob arrived: run the start-up sequence.
        """
        self.parts.init = blob
        if blob.auth_token:
            self.service.redactor.add(blob.auth_token)
        if self._on_module_id is not None:
            self._on_module_id(blob.module_id)
        self.log.info(
            "init received: module {module_id}, listen {listen}",
            module_id=blob.module_id,
            listen=str(blob.listen) if blob.listen is not None else None,
        )
        ensureDeferred(self._run(blob)).addErrback(self.failed)

    def failed(self, failure: Failure) -> None:
        """
        The start-up failed: say why in one line, stop what was started, and end the
        process with status 1.
        """
        if not self.service.status_machine.move_to(ModuleStatus.FAILED):
            return
        error = failure.value
        # One critical line a person can act on; the traceback only at debug level.
        text = str(error) if isinstance(error, PyWattError) else f"{type(error).__name__}: {error}"
        self.log.critical("module start-up failed: {error}", error=text)
        self.log.debug("module start-up failure details", traceback=failure.getTraceback())
        self._result = failure
        parts = self.parts
        for client in (parts.messaging, parts.service_client, parts.port_negotiator):
            if client is not None:
                client.stop("the module failed to start")
        if parts.slo is not None:
            parts.slo.stop()
        if parts.channels is not None:
            # No reconnect timers may outlive a failed start.
            parts.channels.stopService()
        self.service.lifecycle.exit_with(1)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    # -- the sequence -----------------------------------------------------------------------

    async def _run(self, blob: InitBlob) -> None:
        service, parts = self.service, self.parts
        definition = service.definition
        assert parts.secrets is not None and parts.stdio is not None
        # databases opened from here on (state_builder, create_app) are closed at stop
        start_collecting(parts.resources)
        parts.secrets.seed(blob.env)
        secrets = await parts.secrets.get_secrets(definition.secrets)
        self._start_channels(blob)
        user_state = None
        if definition.state_builder is not None:
            user_state = await resolve(definition.state_builder(blob, secrets))
            for resource in found_in(user_state):
                parts.resources.add(resource)
        state = self._build_state(blob, user_state)
        if definition.database is not None:
            await self._open_database(definition.database, secrets[definition.database], state)
        app = await resolve(definition.create_app(state))
        site = self._build_site(app)
        if service.lifecycle.stop_requested:
            raise BootstrapError("stop requested during start-up")
        if parts.channels is not None:
            # Required channels must be up before the module announces (bounded).
            await parts.channels.when_required_ready()
        assert parts.health is not None
        add_backend_checks(parts)
        add_channel_checks(parts)
        # A backend marked required must answer before the announce; the others may be
        # down (they show on /health).
        await check_required_backends(parts.health)
        if self.ipc_only(blob):
            # Nothing is bound: HTTP arrives only as http_request messages (stdin and
            # channels), and the announce says so with an empty listen.
            self.log.info(
                "IPC-only mode: no listen socket bound{ignored}; HTTP is served over stdin "
                "and channels only",
                ignored=f" (the init blob's listen {blob.listen} is not used)"
                if blob.listen is not None
                else "",
            )
        else:
            parts.port = await listen(blob.listen, site, service.listen_reactor, self._request_port)
        self._announce(blob)

    def ipc_only(self, blob: InitBlob) -> bool:
        """
        Whether the module runs IPC-only: C{@pywatt_module(ipc_only=True)},
        C{PYWATT_IPC_ONLY} / C{IPC_ONLY} (or C{--ipc-only}), or the init blob's
        C{"ipc_only": true}.
        """
        service = self.service
        return service.definition.ipc_only or service.config.ipc_only or blob.ipc_only

    def _build_state(self, blob: InitBlob, user_state: object) -> AppState:
        """
        The module's L{AppState}, with its routed messaging, service discovery, port
        negotiation and (if declared) JWT guard.
        """
        service, parts, config = self.service, self.parts, self.service.config
        assert parts.secrets is not None
        state = AppState(blob, service.reactor, parts.secrets, user_state=user_state)
        state._register_database = self.register_database
        state._register_cache = self.register_cache
        state.metrics = parts.metrics.user
        parts.health = HealthChecks(
            service.reactor,
            timeout=config.health_check_timeout,
            cache_for=config.health_check_cache,
        )
        state._health = parts.health
        # (worked out by the first /health or /metrics, not on the way to the announce)
        parts.build = LateBuildInfo(service.definition)
        parts.metrics.add_collector(parts.build.collector())
        self._start_slo(state)
        parts.messaging = RoutedMessaging(
            module_id=blob.module_id,
            clock=service.reactor,
            handlers=state.handlers,
            channels=parts.channels,
            max_frame_length=config.max_frame_length,
            redact=service.redactor.redact,
            replies=config.routed_replies,
            max_concurrent=config.handler_max_concurrent,
            queue_size=config.handler_queue_size,
            queue_bytes=config.handler_queue_bytes,
            handler_timeout=config.handler_timeout,
            handler_timeouts=state.handler_timeouts,
            request_timeout=config.routed_timeout,
            slo=parts.slo,
            breakers=Breakers(
                service.reactor,
                BreakerPolicy(
                    failures=config.breaker_failures,
                    error_rate=config.breaker_error_rate,
                    min_calls=config.breaker_min_calls,
                    window=config.breaker_window,
                    reset=config.breaker_reset,
                    max_reset=config.breaker_max_reset,
                ),
            ),
        )
        parts.metrics.add_collector(parts.messaging.collect)
        state._messaging = parts.messaging
        parts.service_client = ServiceClient(
            send_stdio=service.send_to_orchestrator,
            clock=service.reactor,
            channels=parts.channels,
            max_frame_length=config.max_frame_length,
            default_timeout=config.service_timeout,
        )
        state._services = parts.service_client
        state._service_limits = (config.service_max_in_flight, config.service_queue_size)
        state._ports = parts.port_negotiator
        if service.definition.jwt is not None:
            from pywatt_twisted.web._jwt import install_jwt_guard

            install_jwt_guard(state, service.definition.jwt)
        parts.state = state
        return state

    def _build_site(self, app: object) -> PyWattSite:
        """
        The HTTP site serving C{app} (with C{/health} and C{/metrics}) and the bridge
        that serves HTTP-over-IPC requests into it.
        """
        service, parts, config = self.service, self.parts, self.service.config
        definition = service.definition
        if _is_klein(app):
            resource = klein_resource(app)  # type: ignore[arg-type]
        else:
            resource = IResource(app, None)
            if resource is None:
                raise BootstrapError(
                    f"create_app returned {type(app).__name__}; expected a klein.Klein app or "
                    "a twisted.web IResource"
                )
        parts.endpoints = self._endpoints_for(app)
        root = build_root_resource(
            resource,
            health_path=definition.health,
            metrics=parts.metrics if definition.metrics else None,
            status=service.health_report,
            version=definition.version,
            cors=definition.cors,
        )
        parts.site = PyWattSite(
            root,
            metrics=parts.metrics,
            reactor=service.reactor,
            access_log=service.access_log,
            max_body_size=config.max_body_size,
            max_header_size=config.max_header_size,
            header_timeout=config.http_header_timeout,
            idle_timeout=config.http_idle_timeout,
        )
        parts.bridge = HttpBridge(
            parts.site,
            reactor=service.reactor,
            max_concurrent=config.max_concurrent_requests,
            timeout=config.request_timeout,
            max_body_size=config.max_body_size,
        )
        return parts.site

    async def _request_port(self) -> int:
        assert self.parts.port_negotiator is not None
        self.log.info("the init blob has no 'listen' address; asking for a port")
        return await self.parts.port_negotiator.request_port()

    def _announce(self, blob: InitBlob) -> None:
        """
        Announce the address actually bound, then the module is ready.
        """
        service, parts = self.service, self.parts
        parts.listen_address = (
            describe_address(parts.port.getHost()) if parts.port is not None else ""
        )
        service.send_to_orchestrator(
            Announce(listen=parts.listen_address, endpoints=parts.endpoints)
        )
        service.status_machine.move_to(ModuleStatus.READY)
        self.log.info(
            "announced {listen} with {count} endpoint(s)",
            listen=parts.listen_address,
            count=len(parts.endpoints),
        )
        if service.config.registration_address is not None:
            self._start_registration(blob, service.config.registration_address)
        self._result = service
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(service)
        self._on_ready()

    # -- the steps' helpers -----------------------------------------------------------------

    async def _open_database(self, secret_name: str, url: Any, state: AppState) -> None:
        """
        Open the database named by the C{database=} secret, expose it as
        C{state.database}, publish its pool on /health and /metrics, and sync the
        module's models to it (before the announce).
        """
        from pywatt_twisted.data import Database
        from pywatt_twisted.errors import DataError

        try:
            db = Database.from_url(url.expose(), reactor=self.service.reactor)
        except (DataError, ValueError) as e:
            raise BootstrapError(
                f"cannot use the database URL in secret {secret_name!r}: {e}"
            ) from e
        self.parts.database = db
        state.database = db
        self.register_database(db)
        models = self.service.definition.models
        if models is None:
            # Not needed to start: a server that is down is reported (one WARNING from
            # the Database, "unavailable" on /health) without holding the start-up.
            db.ping().addErrback(lambda _: None)
            return
        from pywatt_twisted.data.models import ModelValidationError, sync

        try:
            report = await sync(db, models)
        except (ModelValidationError, DataError) as e:
            raise BootstrapError(f"the database schema could not be brought in step: {e}") from e
        self.log.info(
            "database schema in step ({count} statement(s) applied)", count=len(report.applied)
        )

    def register_database(self, db: Any, required: bool = False) -> None:
        """
        Publish a database's pool on C{/health} (C{databases} and a check) and
        C{/metrics}.
        """
        from pywatt_twisted.data import DatabaseCollector

        parts = self.parts
        parts.resources.add(db)
        self._mark_required(db, required)
        if any(known is db for known in parts.databases):
            return
        parts.databases.append(db)
        parts.metrics.add_collector(DatabaseCollector(db))
        if parts.port is not None:
            add_backend_checks(parts)

    def register_cache(self, cache: Any, required: bool = False) -> None:
        """
        Publish a cache on C{/health} (C{caches} and a check) and close it when the
        module stops.
        """
        parts = self.parts
        parts.resources.add(cache)
        self._mark_required(cache, required)
        if not any(known is cache for known in parts.caches):
            parts.caches.append(cache)
        if parts.port is not None:
            add_backend_checks(parts)

    def _mark_required(self, backend: Any, required: bool) -> None:
        if required and not any(known is backend for known in self.parts.required_backends):
            self.parts.required_backends.append(backend)

    def _start_slo(self, state: AppState) -> None:
        """
        The SLO windows of the channels and the targets of C{state.send_request}: their
        metrics on C{/metrics}, their alerts to C{state.on_alert} callbacks; the
        channels' state changes reach it through the metrics' channel listeners. Its
        timer (only while there is something to watch) stops with the module.
        """
        config, parts = self.service.config, self.parts
        thresholds = SloThresholds(
            latency_p99=config.slo_latency_p99,
            error_rate=config.slo_error_rate,
            channel_down=config.slo_channel_down,
            window=config.slo_window,
            min_samples=config.slo_min_samples,
        )
        parts.slo = slo = SloMonitor(
            self.service.reactor, thresholds, on_alert=lambda alert: self._alert(state, alert)
        )
        parts.metrics.add_collector(slo.collect)
        state._slo = slo
        channels = parts.channels
        if channels is not None:
            for name, channel in channels.channels.items():
                slo.channel_up(name, channel.state.value in _CHANNEL_UP)
        parts.metrics.channel_listeners.append(
            lambda name, value: slo.channel_up(name, value in _CHANNEL_UP)
        )

    def _alert(self, state: AppState, alert: Alert) -> None:
        """
        Hand an SLO alert to each C{state.on_alert} callback; one that raises or fails is
        logged and the others still run.
        """
        for callback in state.alert_callbacks:
            try:
                result = callback(alert)
            except Exception:
                self.log.failure("on_alert callback {callback!r} raised", callback=callback)
                continue
            if isinstance(result, Deferred):
                result.addErrback(self._alert_failed, callback)

    def _alert_failed(self, failure: Failure, callback: object) -> None:
        self.log.failure("on_alert callback {callback!r} failed", failure, callback=callback)

    def _start_channels(self, blob: InitBlob) -> None:
        """
        Start the init blob's channels (if any): they connect in the background while the
        app is built; required ones are awaited before the listen/announce step.
        """
        if blob.tcp_channel is None and blob.ipc_channel is None:
            return
        # (the channel code loads only when there is a channel)
        from pywatt_twisted.link import ChannelManager, ChannelOptions

        service = self.service
        channels = ChannelManager.from_init(
            blob,
            receiver=service.message_received,
            clock=service.reactor,
            reactor=service.reactor,
            endpoint_factory=service.channel_endpoints,
            options=ChannelOptions.from_config(service.config),
            metrics=self.parts.metrics,
        )
        self.parts.channels = channels
        channels.startService()

    def _start_registration(self, blob: InitBlob, address: str) -> None:
        """
        Register with the registration-protocol service (PROTOCOL.md 6.10) while the
        module runs: a child service, stopped (and unregistered) with the module.
        """
        from pywatt_twisted import __version__
        from pywatt_twisted._runtime.registration import (
            RegistrationClient,
            RegistrationService,
            capabilities_for,
        )
        from pywatt_twisted.wire._registration import ModuleInfo

        service, parts = self.service, self.parts
        if service.registration_endpoint is not None:
            endpoint = service.registration_endpoint(address)
        else:
            from twisted.internet.endpoints import TCP4ClientEndpoint

            host, _, port = address.rpartition(":")
            endpoint = TCP4ClientEndpoint(service.reactor, host, int(port), timeout=30)
        client = RegistrationClient(
            endpoint, service.reactor, max_frame_length=service.config.max_frame_length
        )
        info = ModuleInfo(
            name=blob.module_id,
            version=__version__,
            description=f"PyWatt module {blob.module_id}",
            metadata={"listen": parts.listen_address or ""},
        )
        handlers = parts.state.handlers if parts.state is not None else {}
        parts.registration = RegistrationService(
            client,
            info,
            capabilities=lambda: capabilities_for(parts.endpoints, handlers),
            health=service.health_status,
            interval=service.config.registration_heartbeat,
        )
        parts.registration.setServiceParent(service)

    def _endpoints_for(self, app: object) -> tuple[Endpoint, ...]:
        """
        The endpoints to announce: discovered from the Klein routes or the definition's,
        under the version prefix, then the built-ins (never prefixed); C{OPTIONS} added
        where a CORS policy answers preflights.
        """
        definition = self.service.definition
        builtin_paths = [p for p in (definition.health, "/metrics") if p is not None]
        if not definition.metrics:
            builtin_paths = [p for p in builtin_paths if p != "/metrics"]
        if definition.endpoints is None:
            if definition.version is None:
                # The built-ins merge into a route declared on the same path.
                user = discover_endpoints(
                    app, health_path=definition.health, metrics=definition.metrics
                )
                builtins: list[Endpoint] = []
            else:
                # Under a prefix the app's routes cannot share a path with a built-in.
                user = discover_endpoints(app, health_path=None, metrics=False)
                builtins = [Endpoint(path=p, methods=("GET",)) for p in builtin_paths]
        else:
            given = list(definition.endpoints)
            paths = {e.path for e in given}
            missing = [Endpoint(path=p, methods=("GET",)) for p in builtin_paths if p not in paths]
            if definition.version is None:
                user, builtins = given, missing
            else:
                # An endpoint on a built-in's path is the built-in: not prefixed.
                user = [e for e in given if e.path not in builtin_paths]
                builtins = [e for e in given if e.path in builtin_paths] + missing
        return announced_endpoints(
            user,
            builtins,
            version=definition.version,
            cors_everywhere=definition.cors is not None,
            cors_paths=cors_paths(app),
        )
