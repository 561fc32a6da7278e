"""
Addresses of the real servers the integration tests use, and the rule for when one is
missing: skip with a clear reason, or fail when C{PYWATT_REQUIRE_SERVICES=1} (CI sets it).

Every address comes from an environment variable with a loopback default. Never point
these at a non-loopback address.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from twisted.trial.unittest import SkipTest

#: name -> (environment variable, default URL)
SERVICES: dict[str, tuple[str, str]] = {
    "postgres": ("PYWATT_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"),
    "mysql": ("PYWATT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    "redis": ("PYWATT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "memcached": ("PYWATT_TEST_MEMCACHED_URL", "memcached://127.0.0.1:11211"),
}

_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379, "memcached": 11211}


def services_required() -> bool:
    """
    Whether a missing server is a failure rather than a skip.
    """
    return os.environ.get("PYWATT_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def service_url(name: str) -> str:
    """
    The URL of the named service, from its environment variable or the default.
    """
    variable, default = SERVICES[name]
    return os.environ.get(variable, default)


def _reachable(host: str, port: int, timeout: float = 1.0) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return str(e)


def require_service(name: str) -> str:
    """
    Return the URL of the named service if something listens at its address.

    @raise SkipTest: when it is unreachable and services are not required.
    @raise AssertionError: when it is unreachable and C{PYWATT_REQUIRE_SERVICES=1}.
    """
    url = service_url(name)
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS[name]
    problem = _reachable(host, port)
    if problem is None:
        return url
    variable = SERVICES[name][0]
    reason = (
        f"{name} is not reachable at {host}:{port} ({problem}); "
        f"start it or point {variable} at a loopback server"
    )
    if services_required():
        raise AssertionError(f"PYWATT_REQUIRE_SERVICES=1 but {reason}")
    raise SkipTest(reason)
