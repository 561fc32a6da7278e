# -*- test-case-name: tests.runtime.test_module -*-
"""
C{@pywatt_module}: turns a C{create_app(state)} function into a module definition that
twistd (C{twistd pywatt}), the dev orchestrator and the testing toolkit all accept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

from attrs import field, frozen

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web._cors import CorsPolicy
from pywatt_twisted.web._version import check_version
from pywatt_twisted.wire._value import Value
from pywatt_twisted.wire.messages import AnnouncedEndpoint, Endpoint

__all__ = ["AnnouncedEndpoint", "ModuleDefinition", "pywatt_module"]


def _names(value: Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise ConfigurationError(
            f"secrets must be a list of names, got the string {value!r}; write secrets=[{value!r}]"
        )
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"secret names must be non-empty strings, got {name!r}")
    return names


def _endpoints(value: Sequence[Endpoint] | None) -> tuple[Endpoint, ...] | None:
    if value is None:
        return None
    result = []
    for item in value:
        if isinstance(item, Endpoint):
            result.append(item)
        elif isinstance(item, dict):
            result.append(Endpoint(**item))
        else:
            raise ConfigurationError(
                f"endpoints must be AnnouncedEndpoint values or dicts, got {item!r}"
            )
    return tuple(result)


def _health(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.startswith("/")):
        raise ConfigurationError(f"health must be a path starting with '/' or None, got {value!r}")
    return value


def _cors(value: object) -> CorsPolicy | None:
    if value is not None and not isinstance(value, CorsPolicy):
        raise ConfigurationError(
            f"cors must be a CorsPolicy (from pywatt_twisted import CorsPolicy) or None, "
            f"got {value!r}"
        )
    return value


def _ipc_only(value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"ipc_only must be True or False, got {value!r}")
    return value


@frozen(eq=False, repr=False)
class ModuleDefinition(Value):
    """
    What C{@pywatt_module} returns: the module's C{create_app} and its configuration.

    Calling the definition calls C{create_app(state)}, so the decorated function can still
    be used directly.

    @ivar create_app: C{callable(state)} returning a Klein app or an C{IResource},
        directly, as a Deferred or as a coroutine.
    @ivar secrets: names fetched from the orchestrator before C{create_app} runs.
    @ivar rotate: whether C{rotated} notifications are followed (invalidate, re-fetch,
        callbacks, C{rotation_ack}).
    @ivar endpoints: announced endpoints; C{None} discovers them from the Klein routes.
    @ivar health: path of the built-in health route, or C{None} for none.
    @ivar metrics: whether C{GET /metrics} is served and announced.
    @ivar state_builder: optional C{callable(init, secrets)} returning the user state
        (value or Deferred); C{secrets} maps name to L{Secret}.
    @ivar jwt: optional C{JwtConfig} for routes guarded by C{state.require_jwt}.
    @ivar models: optional model definitions synced to C{database} at start-up.
    @ivar database: name of the secret holding the database URL used for C{models}.
    @ivar version: serve (and announce) every route but C{health} and C{/metrics} under
        C{/<version>}; C{None} for no prefix.
    @ivar ipc_only: bind no listen socket; serve HTTP only over stdin and channels and
        announce C{"listen": ""} (also on with C{PYWATT_IPC_ONLY=1} / C{IPC_ONLY=1} or
        the init blob's C{"ipc_only": true}).
    @ivar cors: the module's L{CorsPolicy}, or C{None}; a route may have its own
        (C{pywatt_twisted.cors}).
    """

    create_app: Callable[[Any], Any]
    secrets: tuple[str, ...] = field(default=(), converter=_names)
    rotate: bool = True
    endpoints: tuple[Endpoint, ...] | None = field(default=None, converter=_endpoints)
    health: str | None = field(default="/health", converter=_health)
    metrics: bool = True
    state_builder: Callable[..., Any] | None = None
    jwt: Any = None
    models: Any = None
    database: str | None = None
    version: str | None = field(default=None, converter=check_version)
    ipc_only: bool = field(default=False, converter=_ipc_only)
    cors: CorsPolicy | None = field(default=None, converter=_cors)

    @property
    def name(self) -> str:
        """
        A readable name: C{module.function}.
        """
        func = self.create_app
        return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"

    def __call__(self, state: Any) -> Any:
        return self.create_app(state)


@overload
def pywatt_module(create_app: Callable[[Any], Any], /) -> ModuleDefinition: ...


@overload
def pywatt_module(
    *,
    secrets: Sequence[str] | None = None,
    rotate: bool = True,
    endpoints: Sequence[Endpoint] | None = None,
    health: str | None = "/health",
    metrics: bool = True,
    state_builder: Callable[..., Any] | None = None,
    jwt: Any = None,
    models: Any = None,
    database: str | None = None,
    version: str | None = None,
    ipc_only: bool = False,
    cors: CorsPolicy | None = None,
) -> Callable[[Callable[[Any], Any]], ModuleDefinition]: ...


def pywatt_module(
    create_app: Callable[[Any], Any] | None = None,
    /,
    *,
    secrets: Sequence[str] | None = None,
    rotate: bool = True,
    endpoints: Sequence[Endpoint] | None = None,
    health: str | None = "/health",
    metrics: bool = True,
    state_builder: Callable[..., Any] | None = None,
    jwt: Any = None,
    models: Any = None,
    database: str | None = None,
    version: str | None = None,
    ipc_only: bool = False,
    cors: CorsPolicy | None = None,
) -> Any:
    """
    Declare a PyWatt module. Use as C{@pywatt_module(...)} (or bare C{@pywatt_module}) on
    a C{create_app(state)} function; see L{ModuleDefinition} for the keywords.
    """
    # Checked here, at decoration, so a mistake shows where the module is defined.
    version = check_version(version)
    _ipc_only(ipc_only)
    _cors(cors)
    if models is not None and database is None:
        raise ConfigurationError(
            "models=... needs database='<SECRET NAME>' naming the secret that holds the "
            "database URL"
        )

    def decorate(func: Callable[[Any], Any]) -> ModuleDefinition:
        if not callable(func):
            raise ConfigurationError(f"@pywatt_module decorates a function, got {func!r}")
        secret_names = _names(secrets)
        if database is not None and database not in secret_names:
            secret_names = (*secret_names, database)
        if jwt is not None:
            jwt_secret = getattr(jwt, "secret", None)
            if isinstance(jwt_secret, str) and jwt_secret not in secret_names:
                secret_names = (*secret_names, jwt_secret)
        return ModuleDefinition(
            create_app=func,
            secrets=secret_names,
            rotate=rotate,
            endpoints=endpoints,
            health=health,
            metrics=metrics,
            state_builder=state_builder,
            jwt=jwt,
            models=models,
            database=database,
            version=version,
            ipc_only=ipc_only,
            cors=cors,
        )

    if create_app is not None:
        return decorate(create_app)
    return decorate
