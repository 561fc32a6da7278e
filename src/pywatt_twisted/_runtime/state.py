# -*- test-case-name: tests.runtime.test_service -*-
"""
L{AppState}: what a module's C{create_app(state)} receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pywatt_twisted._runtime.secret import Secret
from pywatt_twisted.errors import NotAvailable
from pywatt_twisted.web.metrics import UserMetrics

if TYPE_CHECKING:
    from pywatt_twisted._runtime.secrets import SecretClient
    from pywatt_twisted.wire.init import InitBlob

RotationCallback = Callable[[tuple[str, ...]], Any]
StopHook = Callable[[], Any]
RoutedHandler = Callable[[str, Any], Any]


class AppState:
    """
    The module's view of its runtime.

    @ivar init: the parsed init blob (L{InitBlob}).
    @ivar module_id: from the init blob.
    @ivar orchestrator_api: from the init blob.
    @ivar auth_token: the init blob's C{auth_token} (kept here; never logged).
    @ivar user_state: what C{state_builder} returned (C{None} without one).
    @ivar reactor: the reactor in use (tests pass a fake one).
    @ivar log: a L{Logger} whose output is redacted like every other log line.
    @ivar metrics: the module's own Prometheus metrics (L{UserMetrics}:
        C{.counter(name, documentation, labelnames=())}, C{.gauge(...)},
        C{.histogram(...)}, C{.registry}), served on C{/metrics} after the SDK's.
    """

    def __init__(
        self,
        init: InitBlob,
        reactor: Any,
        secrets: SecretClient,
        user_state: Any = None,
        log: Logger | None = None,
    ) -> None:
        self.init = init
        self.module_id = init.module_id
        self.orchestrator_api = init.orchestrator_api
        self.auth_token = init.auth_token
        self.reactor = reactor
        self.user_state = user_state
        self.log = log if log is not None else Logger(namespace=f"pywatt.module.{init.module_id}")
        self._secrets = secrets
        self._rotation_callbacks: list[RotationCallback] = []
        self._stop_hooks: list[StopHook] = []
        self._handlers: dict[str, RoutedHandler] = {}
        self._handler_timeouts: dict[str, float] = {}
        self._messaging: Any = None
        self._services: Any = None
        #: (max in flight, max queued) per proxied service
        self._service_limits: tuple[int, int] = (64, 1024)
        self._ports: Any = None
        # Set by pywatt_twisted.web._jwt.install_jwt_guard when the module has jwt=...
        self._jwt_guard: Any = None
        #: the module's L{pywatt_twisted.data.Database} when it was declared with
        #: C{database="SECRET_NAME"} (C{None} otherwise).
        self.database: Any = None
        self._register_database: Callable[..., None] | None = None
        self._register_cache: Callable[..., None] | None = None
        self.metrics = UserMetrics()
        # Set by the bootstrap: the module's HealthChecks and alert callbacks.
        self._health: Any = None
        self._alert_callbacks: list[Callable[[Any], Any]] = []
        self._slo: Any = None

    # -- secrets ------------------------------------------------------------------------

    def secret(self, name: str) -> Secret:
        """
        The current cached value of a secret.

        @raise SecretError: if the secret was never fetched.
        """
        return self._secrets.cached(name)

    def get_secret(self, name: str, mode: str = "cache-first") -> Deferred[Secret]:
        """
        Fetch a secret: from the cache first (C{mode="cache-first"}), or always from the
        orchestrator (C{mode="force-remote"}).
        """
        return self._secrets.get_secret(name, mode=mode)

    def on_rotation(self, callback: RotationCallback) -> RotationCallback:
        """
        Register C{callback(names)} to run after a rotation was applied (the new values
        are in the cache). It may return a Deferred; the C{rotation_ack} waits for it.
        Usable as a decorator.
        """
        self._rotation_callbacks.append(callback)
        return callback

    @property
    def rotation_callbacks(self) -> tuple[RotationCallback, ...]:
        return tuple(self._rotation_callbacks)

    def register_database(self, db: Any, *, required: bool = False) -> Any:
        """
        Publish a L{pywatt_twisted.data.Database} the module opened itself on C{/health}
        and C{/metrics} (the one named by C{database=} is published already); it is
        closed when the module stops, after the C{on_stop} hooks. Returns C{db}.

        C{/health} pings it (C{SELECT 1}, within C{--health-check-timeout}): while it
        does not answer the module is C{degraded}, or C{failing} (HTTP 503) when
        C{required=True}. A required database registered while the module starts must
        answer before the module announces, else the start-up fails.
        """
        if self._register_database is None:
            raise NotAvailable("register_database is available once the module has started")
        self._register_database(db, required=required)
        return db

    def register_cache(self, cache: Any, *, required: bool = False) -> Any:
        """
        Publish a cache (an L{pywatt_twisted.data.ICache}) the module opened itself on
        C{/health} (C{caches}: C{"unavailable"} while its server cannot be reached); it
        is closed when the module stops, after the C{on_stop} hooks. Caches created
        while C{state_builder} and C{create_app} run are published and closed without
        this. Returns C{cache}.

        C{/health} checks it (an C{exists} call, within C{--health-check-timeout}): while
        it does not answer the module is C{degraded}, or C{failing} when
        C{required=True} (which also makes it a start-up condition, like
        L{register_database}). Registering a cache opened while starting only changes
        whether it is required.
        """
        if self._register_cache is None:
            raise NotAvailable("register_cache is available once the module has started")
        self._register_cache(cache, required=required)
        return cache

    # -- health and alerts --------------------------------------------------------------------

    def health_check(
        self, name: str, fn: Callable[[], Any], required: bool = False
    ) -> Callable[[], Any]:
        """
        Add a check to C{/health}: C{fn()} returning (directly, through a Deferred or a
        coroutine) means healthy; raising, failing, or not answering within
        C{--health-check-timeout} seconds (2 s unless set) means not. Its result is
        reused for C{--health-check-cache} seconds (5 s), so polling C{/health} cannot
        overload what it checks.

        While it fails the module reports C{degraded} (HTTP 200), or C{failing} (HTTP
        503) when C{required=True}. Returns C{fn}.

        @raise ConfigurationError: C{name} is empty or already used, or C{fn} is not
            callable.
        @raise NotAvailable: before C{state_builder} has run.
        """
        if self._health is None:
            raise NotAvailable("health_check is available once the module has started")
        self._health.add(name, fn, required=required)
        return fn

    def on_alert(self, callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """
        Register C{callback(alert)} for the channel and module-to-module SLO alerts: it
        is called when a threshold is crossed (C{alert.firing} true) and again when the
        condition ends (false). See C{docs/observability.md}. An exception it raises is
        logged and does not stop the others. Usable as a decorator.
        """
        if not callable(callback):
            raise TypeError(f"on_alert takes a callable, got {callback!r}")
        self._alert_callbacks.append(callback)
        return callback

    @property
    def alert_callbacks(self) -> tuple[Callable[[Any], Any], ...]:
        return tuple(self._alert_callbacks)

    # -- stopping ---------------------------------------------------------------------------

    def on_stop(self, hook: StopHook) -> StopHook:
        """
        Register C{hook()} to run when the module stops: after the requests and routed
        messages in flight were answered (or the shutdown deadline passed), before the
        databases and caches the module opened are closed. It may return a Deferred or
        a coroutine, which is waited for.

        Hooks run one at a time, the last registered first; each gets what is left of
        the shutdown deadline (C{--shutdown-deadline}, C{PYWATT_SHUTDOWN_DEADLINE}; at
        least 1 s): one still running then is cancelled and a WARNING names it. A hook
        that raises is logged and the others still run. Usable as a decorator.

        Databases and caches created while C{state_builder} and C{create_app} run
        (with C{Database.from_url}, ...), found in what C{state_builder} returned, or
        passed to L{register_database} or L{register_cache} are closed after the hooks
        without one.
        """
        if not callable(hook):
            raise TypeError(f"on_stop takes a callable, got {hook!r}")
        self._stop_hooks.append(hook)
        return hook

    @property
    def stop_hooks(self) -> tuple[StopHook, ...]:
        return tuple(self._stop_hooks)

    # -- module-to-module messaging ---------------------------------------------------------

    def handler(
        self, endpoint: str, *, timeout: float | None = None
    ) -> Callable[[RoutedHandler], RoutedHandler]:
        """
        Decorator: register C{f(source_module_id, payload)} for routed requests to
        C{endpoint}. Handlers may be registered before or after start.

        C{payload} is the request's content (unwrapped from its envelope). What C{f}
        returns (a JSON-serialisable value, a Deferred of one, or a coroutine) is the
        reply; an exception becomes an error reply (a L{RemoteError
        <pywatt_twisted.errors.RemoteError>} raised by C{f} keeps its C{kind}).

        @param timeout: seconds a call of C{f} that returns a Deferred or a coroutine may
            take; when it passes, the Deferred is cancelled and the requester gets a
            C{deadline_exceeded} error reply. C{None} (the default): the module's
            C{--handler-timeout} / C{PYWATT_HANDLER_TIMEOUT} (30 s unless set).
        @raise ValueError: if C{timeout} is not positive.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(
                f"the timeout of handler {endpoint!r} must be positive, got {timeout!r}"
            )

        def register(func: RoutedHandler) -> RoutedHandler:
            self._handlers[endpoint] = func
            if timeout is None:
                self._handler_timeouts.pop(endpoint, None)
            else:
                self._handler_timeouts[endpoint] = float(timeout)
            return func

        return register

    @property
    def handlers(self) -> dict[str, RoutedHandler]:
        return self._handlers

    @property
    def handler_timeouts(self) -> dict[str, float]:
        """
        Endpoint -> seconds, for the handlers registered with their own C{timeout=}.
        """
        return self._handler_timeouts

    def send_request(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        timeout: float | None = None,
        *,
        prefer: str | None = None,
        channel: str | None = None,
        retry: Any = None,
        idempotent: bool = False,
    ) -> Deferred[Any]:
        """
        Send a request to C{endpoint} of another module through the orchestrator, on the
        channel the module's channel preference picks (C{--channel-preference}: ipc,tcp
        by default, or auto).

        @param payload: any JSON-serialisable value; the peer's handler gets it as is.
        @param timeout: seconds until the request's deadline (sent to the peer as X4
            C{deadline_ms}); by default the target's (L{configure_target}), else
            C{--routed-timeout} (30 s).
        @param prefer: a channel (C{"tcp"} or C{"ipc"}) to try first.
        @param channel: the only channel to use (the request waits for it).
        @param retry: a L{RetryPolicy<pywatt_twisted.RetryPolicy>}; only with
            C{idempotent=True}.
        @param idempotent: the request may run twice safely (then the target's retry
            policy applies when no C{retry} is given).
        @return: a Deferred that fires with the peer's reply, or fails with a
            L{RemoteError<pywatt_twisted.errors.RemoteError>} subclass (each error kind
            its own: L{HandlerError<pywatt_twisted.errors.HandlerError>},
            L{NoHandler<pywatt_twisted.errors.NoHandler>},
            L{Timeout<pywatt_twisted.errors.Timeout>},
            L{CircuitOpen<pywatt_twisted.errors.CircuitOpen>}...), a
            L{ChannelError<pywatt_twisted.errors.ChannelError>}, or L{NotAvailable} (no
            channel). Cancel it to stop waiting (its place is freed).
        """
        # (the SLO windows of the target and the channel count it: RoutedRequests)
        return self._messaging_or_fail().send_request(
            target_module_id,
            endpoint,
            payload,
            timeout,
            prefer=prefer,
            channel=channel,
            retry=retry,
            idempotent=idempotent,
        )

    def send_message(
        self,
        target_module_id: str,
        endpoint: str,
        payload: Any,
        *,
        prefer: str | None = None,
        channel: str | None = None,
    ) -> Deferred[None]:
        """
        Send C{payload} to C{endpoint} of another module without waiting for a reply (its
        handler runs; nothing is sent back). Fires once the message was written to a
        channel.
        """
        return self._messaging_or_fail().send_message(
            target_module_id, endpoint, payload, prefer=prefer, channel=channel
        )

    def configure_target(
        self,
        target_module_id: str,
        *,
        timeout: float | None = None,
        breaker: Any = None,
        retry: Any = None,
    ) -> None:
        """
        Settings for the requests to one module: their default C{timeout}, its circuit
        breaker's L{BreakerPolicy<pywatt_twisted.BreakerPolicy>}, and the
        L{RetryPolicy<pywatt_twisted.RetryPolicy>} of its idempotent requests.
        """
        self._messaging_or_fail().configure_target(
            target_module_id, timeout=timeout, breaker=breaker, retry=retry
        )

    @property
    def channels(self) -> Mapping[str, Mapping[str, Any]]:
        """
        A read-only view of the module's channels, by name: C{state}, C{preference}
        (place in the order, or weight under auto routing), C{latency} (EWMA and
        percentiles of reply round trips, ms), C{in_flight}, C{queued}, C{request_errors},
        C{last_error}, C{reconnects} and the counters of C{/health}. Empty without
        channels.
        """
        messaging = self._messaging
        manager = getattr(messaging, "channels", None)
        if manager is None:
            return MappingProxyType({})
        return MappingProxyType({name: MappingProxyType(h) for name, h in manager.health().items()})

    @property
    def breakers(self) -> Mapping[str, Mapping[str, Any]]:
        """
        The circuit breakers of the targets called so far (module ids, and
        C{service:NAME} for the proxied services of L{service}): C{state} (closed, open,
        half_open), C{retry_after}, C{rejected}, C{last_failure}...
        """
        if self._messaging is None:
            return MappingProxyType({})
        return MappingProxyType(self._messaging.breakers.snapshot())

    # -- service discovery, proxied services, ports --------------------------------------------

    def register_service_provider(
        self,
        service_type: Any,
        name: str,
        address: str,
        version: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Deferred[str | None]:
        """
        Offer a service to other modules (PROTOCOL.md 6.8).

        @param service_type: a L{ServiceType<pywatt_twisted.wire.messages.ServiceType>}
            or a name (C{"Database"}, C{"Cache"}, C{"Jwt"}, C{"custom:search"}).
        @return: a Deferred that fires with the provider id the orchestrator gave, or
            fails with L{RemoteError<pywatt_twisted.errors.RemoteError>} (refused) or
            L{RequestTimeout<pywatt_twisted.errors.RequestTimeout>} (30 s by default).
        """
        return self._client("_services").register_service_provider(
            service_type, name, address, version=version, metadata=metadata, timeout=timeout
        )

    def discover_service_providers(
        self, service_type: Any, all_providers: bool = False, timeout: float | None = None
    ) -> Deferred[list[Any]]:
        """
        Find providers of a service type (PROTOCOL.md 6.8): fires with a list of
        L{ServiceProviderInfo<pywatt_twisted.wire.messages.ServiceProviderInfo>}.
        """
        return self._client("_services").discover_service_providers(
            service_type, all_providers=all_providers, timeout=timeout
        )

    def service_request(
        self, service_type: Any, config: Any = None, timeout: float | None = None
    ) -> Deferred[str]:
        """
        Ask the orchestrator for a proxied connection to a service (PROTOCOL.md 6.9):
        fires with its connection id.
        """
        return self._client("_services").service_request(service_type, config, timeout=timeout)

    def service_operation(
        self,
        connection_id: str,
        service_type: Any,
        operation: str,
        params: Any = None,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """
        Run an operation on a proxied connection (PROTOCOL.md 6.9): fires with its result.
        """
        return self._client("_services").service_operation(
            connection_id, service_type, operation, params, timeout=timeout
        )

    def service(
        self, name: str, kind: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        A database or cache the orchestrator provides under C{name} (C{pywatt dev
        --provide-database NAME=URL} / C{--provide-cache NAME=URL}), reached through it:
        fires with an L{IDatabase <pywatt_twisted.data.IDatabase>} or an L{ICache
        <pywatt_twisted.data.ICache>} with the same interface, rules and errors as a
        direct one (see C{docs/data.md}, "Proxied services"). It is published on
        C{/health} and closed when the module stops.

        @param kind: the kind expected (C{"database"}, C{"cache"}); C{None} takes
            whatever C{name} is.
        @param timeout: seconds to wait for the connection, and the default of each
            operation (else C{--service-timeout}, 30 s).
        @return: a Deferred failing with L{UnknownService
            <pywatt_twisted.errors.UnknownService>} when the orchestrator provides no
            service of that name (the message lists the ones it does), L{ServiceError
            <pywatt_twisted.errors.ServiceError>} when it refuses otherwise, or
            L{RequestTimeout <pywatt_twisted.errors.RequestTimeout>}.
        """
        client = self._client("_services")
        return Deferred.fromCoroutine(self._service(client, name, kind, timeout))

    async def _service(self, client: Any, name: str, kind: Any, timeout: float | None) -> Any:
        from pywatt_twisted._runtime.discovery import service_type
        from pywatt_twisted._runtime.proxied import ServiceLink
        from pywatt_twisted._runtime.resilience import CircuitBreaker
        from pywatt_twisted.data._cache._proxy import proxied_cache
        from pywatt_twisted.data._database._proxy import ProxyDatabase
        from pywatt_twisted.errors import ServiceError
        from pywatt_twisted.wire.messages import ServiceType

        wanted = ServiceType.custom("any") if kind is None else service_type(kind)
        connection_id, actual = await client.connect_service(name, wanted, timeout=timeout)
        max_in_flight, max_queued = self._service_limits
        # One breaker per proxied service, in the module's one registry (the one its
        # module-to-module requests use): on state.breakers, /health and the metrics.
        target = f"service:{name}"
        breakers = getattr(self._messaging, "breakers", None)
        breaker = (
            breakers.get(target) if breakers is not None else CircuitBreaker(target, self.reactor)
        )
        link = ServiceLink(
            client,
            name,
            actual,
            connection_id,
            clock=self.reactor,
            timeout=client.default_timeout if timeout is None else timeout,
            max_in_flight=max_in_flight,
            max_queued=max_queued,
            breaker=breaker,
        )
        if actual == ServiceType.DATABASE:
            try:
                info = await link.call("describe", {})
            except BaseException:
                await link.close()
                raise
            if not isinstance(info, dict) or not isinstance(info.get("dialect"), str):
                await link.close()
                raise ServiceError(
                    f"the orchestrator described database {name!r} as {info!r}; expected "
                    "an object with its dialect",
                    "bad_reply",
                )
            db = ProxyDatabase(
                link,
                reactor=self.reactor,
                dialect=info["dialect"],
                name=name,
                url=str(info.get("url") or ""),
                max_pool=int(info.get("max_pool") or 1),
            )
            if self._register_database is not None:
                self._register_database(db)
            return db
        if actual == ServiceType.CACHE:
            cache = proxied_cache(link)
            if self._register_cache is not None:
                self._register_cache(cache)
            return cache
        await link.close()
        raise ServiceError(
            f"service {name!r} is a {actual} service; state.service() gives databases and "
            "caches only",
            "unsupported_service_type",
        )

    def request_port(self, specific_port: int | None = None) -> Deferred[int]:
        """
        Ask the orchestrator for a port (C{specific_port}, or any), for a listener the
        module opens itself (PROTOCOL.md 6.6). Fires with the port allocated; fails
        when the orchestrator refuses or does not answer (no port is made up).
        """
        return self._client("_ports").request_port(specific_port)

    def _client(self, name: str) -> Any:
        client = getattr(self, name)
        if client is None:
            raise NotAvailable(f"{name.strip('_')} is available once the module runs")
        return client

    def _messaging_or_fail(self) -> Any:
        if self._messaging is None:
            raise NotAvailable("module-to-module messaging is available once the module runs")
        return self._messaging

    # -- HTTP ---------------------------------------------------------------------------------

    @property
    def require_jwt(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """
        Decorator for a Klein route that requires a valid bearer token: without one the
        request is answered 401 with a JSON body; with one the view runs with the claims
        in C{request.jwt_claims}, and the route is announced with C{auth="jwt"}.

        Put it between C{@app.route(...)} (above) and the function (below); see
        L{pywatt_twisted.web._jwt}.

        @raise NotAvailable: when the module was declared without C{jwt=JwtConfig(...)}.
        """
        guard = self._jwt_guard
        if guard is None:
            raise NotAvailable(
                "state.require_jwt is not available without jwt=JwtConfig(...) in @pywatt_module"
            )
        return guard
