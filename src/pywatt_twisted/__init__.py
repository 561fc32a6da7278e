"""
pywatt_twisted: write PyWatt modules with Twisted.

The public names for module authors are importable from here; they are loaded on first
use so that importing the package (as twistd's plugin machinery does) stays cheap and
never installs a reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_LAZY = {
    "pywatt_module": "pywatt_twisted._runtime.module",
    "ModuleDefinition": "pywatt_twisted._runtime.module",
    "AnnouncedEndpoint": "pywatt_twisted._runtime.module",
    "AppState": "pywatt_twisted._runtime.state",
    "Secret": "pywatt_twisted._runtime.secret",
    "JwtConfig": "pywatt_twisted.web._jwt",
    "CorsPolicy": "pywatt_twisted.web._cors",
    "cors": "pywatt_twisted.web._cors",
    "PyWattError": "pywatt_twisted.errors",
    "RemoteError": "pywatt_twisted.errors",
    "RequestTimeout": "pywatt_twisted.errors",
    # Typed errors of module-to-module calls (EXTENSIONS.md X4) and resilience policies.
    "CircuitOpen": "pywatt_twisted.errors",
    "DeadlineExceeded": "pywatt_twisted.errors",
    "HandlerError": "pywatt_twisted.errors",
    "NoHandler": "pywatt_twisted.errors",
    "Overloaded": "pywatt_twisted.errors",
    "TargetExited": "pywatt_twisted.errors",
    "Timeout": "pywatt_twisted.errors",
    "Unavailable": "pywatt_twisted.errors",
    "UnknownModule": "pywatt_twisted.errors",
    # Proxied services (state.service).
    "ServiceError": "pywatt_twisted.errors",
    "ServiceUnavailable": "pywatt_twisted.errors",
    "UnknownService": "pywatt_twisted.errors",
    "UnsupportedOperation": "pywatt_twisted.errors",
    "BreakerPolicy": "pywatt_twisted._runtime.resilience",
    "RetryPolicy": "pywatt_twisted._runtime.resilience",
    "ServiceType": "pywatt_twisted.wire.messages",
    # Module-to-module payloads, for tests that play another module.
    "request_payload": "pywatt_twisted._runtime.messaging",
    "error_payload": "pywatt_twisted._runtime.messaging",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from pywatt_twisted._runtime.messaging import error_payload, request_payload  # noqa: F401
    from pywatt_twisted._runtime.module import AnnouncedEndpoint, ModuleDefinition, pywatt_module  # noqa: F401
    from pywatt_twisted._runtime.resilience import BreakerPolicy, RetryPolicy  # noqa: F401
    from pywatt_twisted._runtime.secret import Secret  # noqa: F401
    from pywatt_twisted._runtime.state import AppState  # noqa: F401
    from pywatt_twisted.errors import (  # noqa: F401
        CircuitOpen,
        DeadlineExceeded,
        HandlerError,
        NoHandler,
        Overloaded,
        PyWattError,
        RemoteError,
        RequestTimeout,
        ServiceError,
        ServiceUnavailable,
        TargetExited,
        Timeout,
        Unavailable,
        UnknownModule,
        UnknownService,
        UnsupportedOperation,
    )
    from pywatt_twisted.web._cors import CorsPolicy, cors  # noqa: F401
    from pywatt_twisted.web._jwt import JwtConfig  # noqa: F401
    from pywatt_twisted.wire.messages import ServiceType  # noqa: F401


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pywatt_twisted' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
