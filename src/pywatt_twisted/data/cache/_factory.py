# -*- test-case-name: tests.data.test_cache -*-
"""
L{Cache.from_url}: pick a cache backend from a URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pywatt_twisted.data.cache._base import StoreCache
from pywatt_twisted.data.database._config import redact_url
from pywatt_twisted.errors import ConfigurationError

_SCHEMES = ("memory", "file", "redis", "memcached")


def _number(name: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"expected {name} as {kind.__name__} in the cache URL, got {value!r}"
        ) from None


class Cache:
    """
    Entry point for caches: C{Cache.from_url(url)} returns an L{ICache}.
    """

    @staticmethod
    def from_url(
        url: object,
        *,
        reactor: Any = None,
        clock: Any = None,
        namespace: str | None = None,
        **opts: Any,
    ) -> StoreCache:
        """
        Create a cache from a URL (a string or a C{Secret}):

            - C{memory://} (options C{max_entries}, C{max_bytes}, in the query string
              or as keywords): L{MemoryCache}
            - C{file:///absolute/dir} (option C{fsync}): L{FileCache}
            - C{redis://[user:password@]host:port/db} (options C{poolsize},
              C{connect_timeout}, C{reply_timeout}): L{RedisCache}
            - C{memcached://host:port} (options C{timeout},
              C{namespace_check_interval}): L{MemcachedCache}

        Query-string options are overridden by keyword options.

        @param namespace: prefix every key with C{namespace:}.
        @param clock: an L{IReactorTime} for TTLs and lock waits (tests pass a
            L{twisted.internet.task.Clock}).
        @raise ConfigurationError: on an unknown scheme or a bad option.
        """
        expose = getattr(url, "expose", None)
        text = expose() if callable(expose) else url
        if not isinstance(text, str):
            raise ConfigurationError(
                f"expected a cache URL as a string or a Secret, got {type(url).__name__}"
            )
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as e:
            raise ConfigurationError(
                f"expected a cache URL such as redis://127.0.0.1:6379/0, got "
                f"{redact_url(text)!r} ({e})"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"expected a cache URL with a scheme in {list(_SCHEMES)}, got {redact_url(text)!r}"
            )
        query: dict[str, Any] = dict(parse_qsl(parts.query))
        query.update(opts)
        if scheme == "memory":
            from pywatt_twisted.data.cache.memory import MemoryCache

            return MemoryCache(
                max_entries=_opt_int(query, "max_entries"),
                max_bytes=_opt_int(query, "max_bytes"),
                clock=clock if clock is not None else reactor,
                namespace=namespace,
            )
        if scheme == "file":
            from pywatt_twisted.data.cache.file import FileCache

            path = unquote(parts.path)
            if parts.netloc or not path:
                raise ConfigurationError(f"expected file:///absolute/directory, got {text!r}")
            fsync = str(query.get("fsync", "false")).lower() in ("1", "true", "yes")
            return FileCache(path, clock=clock, reactor=reactor, namespace=namespace, fsync=fsync)
        if scheme == "redis":
            from pywatt_twisted.data.cache.redis import RedisCache

            path = parts.path.strip("/")
            db = _number("db", path, int) if path else 0
            return RedisCache(
                parts.hostname or "127.0.0.1",
                port or 6379,
                db,
                password=unquote(parts.password) if parts.password else None,
                username=unquote(parts.username) if parts.username else None,
                namespace=namespace,
                poolsize=_opt_int(query, "poolsize") or 4,
                connect_timeout=_opt_float(query, "connect_timeout") or 10.0,
                reply_timeout=_opt_float(query, "reply_timeout") or 30.0,
                clock=clock,
                url=text,
            )
        from pywatt_twisted.data.cache.memcached import MemcachedCache

        return MemcachedCache(
            parts.hostname or "127.0.0.1",
            port or 11211,
            namespace=namespace,
            timeout=_opt_float(query, "timeout") or 10.0,
            namespace_check_interval=_opt_float(query, "namespace_check_interval") or 1.0,
            clock=clock,
            reactor=reactor,
        )


def _opt_int(query: dict[str, Any], name: str) -> int | None:
    value = query.get(name)
    return None if value is None else _number(name, str(value), int)


def _opt_float(query: dict[str, Any], name: str) -> float | None:
    value = query.get(name)
    return None if value is None else _number(name, str(value), float)
