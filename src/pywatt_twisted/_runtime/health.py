# -*- test-case-name: tests.runtime.test_health -*-
"""
The module's C{/health} checks, built from its parts: one check per database and cache
it made through the library or registered, one per required channel, and the author's
C{state.health_check(...)} checks (all run by L{HealthChecks
<pywatt_twisted.web._health.HealthChecks>}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from pywatt_twisted.errors import BootstrapError, ChannelError
from pywatt_twisted.web._health import FAILING, HealthCheck, HealthChecks

if TYPE_CHECKING:
    from pywatt_twisted._runtime.parts import ModuleParts

__all__ = [
    "CACHE_PROBE_KEY",
    "add_backend_checks",
    "add_channel_checks",
    "check_required_backends",
]

#: The key a cache check asks C{exists} about (never written).
CACHE_PROBE_KEY = "pywatt-health-probe"

#: Channel states in which a channel is up (connected, possibly paused for flow control).
_UP = ("connected", "paused")


def _database_check(db: Any, timeout: float) -> Callable[[], Deferred[None]]:
    def check() -> Deferred[None]:
        ping: Deferred[None] = db.ping(timeout=timeout)
        return ping

    return check


def _cache_check(cache: Any, timeout: float) -> Callable[[], Deferred[Any]]:
    def check() -> Deferred[Any]:
        probe: Deferred[Any] = cache.exists(CACHE_PROBE_KEY, timeout=timeout)
        return probe

    return check


def _channel_check(channel: Any) -> Callable[[], None]:
    def check() -> None:
        state = channel.state.value
        if state not in _UP:
            error = channel.last_error
            raise ChannelError(
                f"required channel {channel.spec.name} ({channel.spec.address}) is {state}"
                + (f": {error}" if error else "")
            )

    return check


def _name_of_cache(cache: Any) -> str:
    try:
        info = cache.health()
    except Exception:
        info = {}
    return f"cache:{info.get('backend') or type(cache).__name__}:{info.get('url') or '?'}"


def add_backend_checks(parts: ModuleParts) -> None:
    """
    Give every database and cache the module uses (made through the library while it
    started, or registered) a health check, once; a backend registered with
    C{required=True} gets a required check.
    """
    health = parts.health
    if health is None:
        return
    backends: list[tuple[Any, str, Callable[[], Any]]] = []
    for db in parts.databases:
        name = f"database:{getattr(db, 'name', None) or 'db'}"
        backends.append((db, name, _database_check(db, health.timeout)))
    for cache in parts.caches_on_health():
        backends.append((cache, _name_of_cache(cache), _cache_check(cache, health.timeout)))
    for backend, base, fn in backends:
        required = any(known is backend for known in parts.required_backends)
        existing = next((n for b, n in parts.checked_backends if b is backend), None)
        if existing is not None:
            check = next((c for c in health if c.name == existing), None)
            if check is not None and required:
                check.required = True
            continue
        kind = "database" if base.startswith("database:") else "cache"
        check = health.add(health.free_name(base), fn, required=required, kind=kind)
        parts.checked_backends.append((backend, check.name))


def add_channel_checks(parts: ModuleParts) -> None:
    """
    A required check per channel the init blob marks C{required}: failing while the
    channel is not connected.
    """
    health, channels = parts.health, parts.channels
    if health is None or channels is None:
        return
    for name, channel in channels.channels.items():
        if not channel.spec.required:
            continue
        check_name = f"channel:{name}"
        if check_name not in health:
            health.add(check_name, _channel_check(channel), required=True, kind="channel")


async def check_required_backends(health: HealthChecks) -> None:
    """
    Run the required database and cache checks once (each within the check timeout);
    the module must not announce while one fails.

    @raise BootstrapError: naming each required backend that did not answer.
    """

    def wanted(check: HealthCheck) -> bool:
        return check.required and check.kind in ("database", "cache")

    await health.refresh(only=wanted)
    down = [c for c in health if wanted(c) and c.status == FAILING]
    if down:
        raise BootstrapError(
            "required backend(s) did not answer: "
            + "; ".join(f"{c.name}: {c.last_error}" for c in down)
            + " (registered with required=True; drop that to start anyway and report it "
            "on /health)"
        )
