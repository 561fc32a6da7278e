# -*- test-case-name: tests.data.test_cache -*-
"""
L{Cache.from_url}: pick a cache backend from a URL. Each scheme has its own small
function (L{_memory}, L{_file}, L{_redis}, L{_memcached}) taking the split URL and
the merged options.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from pywatt_twisted.data._cache._base import StoreCache
from pywatt_twisted.data._cache._errors import CacheError
from pywatt_twisted.data._database._config import redact_url
from pywatt_twisted.errors import ConfigurationError


def _number(name: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"expected {name} as {kind.__name__} in the cache URL, got {value!r}"
        ) from None


def _opt_int(query: dict[str, Any], name: str) -> int | None:
    value = query.get(name)
    return None if value is None else _number(name, str(value), int)


def _opt_float(query: dict[str, Any], name: str) -> float | None:
    value = query.get(name)
    return None if value is None else _number(name, str(value), float)


def _seconds(
    query: dict[str, Any], name: str, default: float, *, zero_is_none: bool = False
) -> Any:
    """
    The option C{name} in seconds: C{default} when absent; a positive finite number
    (or, with C{zero_is_none}, C{0} for no limit, returned as None).

    @raise ConfigurationError: for anything else.
    """
    value = _opt_float(query, name)
    if value is None:
        return default
    if value == 0 and zero_is_none:
        return None
    if not 0 < value < math.inf:
        limit = " (0 for no limit)" if zero_is_none else ""
        raise ConfigurationError(
            f"expected {name} as a positive number of seconds{limit} in the cache URL, "
            f"got {value!r}"
        )
    return value


class _Parsed:
    """
    A cache URL taken apart: C{text} (the URL, with any password), C{parts} (from
    L{urlsplit}), C{port} and C{query} (the query string's options, then the keywords).
    """

    def __init__(self, text: str, parts: SplitResult, port: int | None, query: dict[str, Any]):
        self.text = text
        self.parts = parts
        self.port = port
        self.query = query


def _memory(url: _Parsed, reactor: Any, clock: Any, namespace: str | None) -> StoreCache:
    from pywatt_twisted.data._cache.memory import MemoryCache

    return MemoryCache(
        max_entries=_opt_int(url.query, "max_entries"),
        max_bytes=_opt_int(url.query, "max_bytes"),
        clock=clock if clock is not None else reactor,
        namespace=namespace,
    )


def _file(url: _Parsed, reactor: Any, clock: Any, namespace: str | None) -> StoreCache:
    from pywatt_twisted.data._cache.file import FileCache

    path = unquote(url.parts.path)
    if url.parts.netloc or not path:
        raise ConfigurationError(f"expected file:///absolute/directory, got {url.text!r}")
    fsync = str(url.query.get("fsync", "false")).lower() in ("1", "true", "yes")
    bounds = {
        name: value
        for name in ("threads", "max_waiting")
        if (value := _opt_int(url.query, name)) is not None
    }
    try:
        return FileCache(
            path, clock=clock, reactor=reactor, namespace=namespace, fsync=fsync, **bounds
        )
    except CacheError as e:
        raise ConfigurationError(f"{e} (cache URL {url.text!r})") from None


def _redis(url: _Parsed, reactor: Any, clock: Any, namespace: str | None) -> StoreCache:
    from pywatt_twisted.data._cache.redis import (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_REPLY_TIMEOUT,
        RedisCache,
    )

    parts, query = url.parts, url.query
    path = parts.path.strip("/")
    return RedisCache(
        parts.hostname or "127.0.0.1",
        url.port or 6379,
        _number("db", path, int) if path else 0,
        password=unquote(parts.password) if parts.password else None,
        username=unquote(parts.username) if parts.username else None,
        namespace=namespace,
        poolsize=_opt_int(query, "poolsize") or 4,
        connect_timeout=_seconds(query, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        reply_timeout=_seconds(query, "reply_timeout", DEFAULT_REPLY_TIMEOUT, zero_is_none=True),
        clock=clock,
        url=url.text,
    )


def _memcached(url: _Parsed, reactor: Any, clock: Any, namespace: str | None) -> StoreCache:
    from pywatt_twisted.data._cache.memcached import (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_TIMEOUT,
        MemcachedCache,
    )

    query = url.query
    return MemcachedCache(
        url.parts.hostname or "127.0.0.1",
        url.port or 11211,
        namespace=namespace,
        timeout=_seconds(query, "timeout", DEFAULT_TIMEOUT),
        connect_timeout=_seconds(query, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        namespace_check_interval=_opt_float(query, "namespace_check_interval") or 1.0,
        clock=clock,
        reactor=reactor,
    )


_SCHEMES: dict[str, Callable[[_Parsed, Any, Any, str | None], StoreCache]] = {
    "memory": _memory,
    "file": _file,
    "redis": _redis,
    "memcached": _memcached,
}


def _parse(url: object, opts: dict[str, Any]) -> tuple[str, _Parsed]:
    """
    The scheme and the parts of a cache URL (a string or a C{Secret}).

    @raise ConfigurationError: if it is not a string, malformed, or of an unknown scheme
        (the message shows the URL without its password).
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
            f"expected a cache URL such as redis://127.0.0.1:6379/0, got {redact_url(text)!r} ({e})"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"expected a cache URL with a scheme in {list(_SCHEMES)}, got {redact_url(text)!r}"
        )
    query: dict[str, Any] = dict(parse_qsl(parts.query))
    query.update(opts)
    return scheme, _Parsed(text, parts, port, query)


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
            - C{file:///absolute/dir} (options C{fsync}, C{threads} (4), C{max_waiting}
              (1000)): L{FileCache}
            - C{redis://[user:password@]host:port/db} (options C{poolsize},
              C{connect_timeout} (5 s), C{reply_timeout} (5 s, 0 for no limit)):
              L{RedisCache}
            - C{memcached://host:port} (options C{connect_timeout} (5 s), C{timeout}
              (5 s, a command), C{namespace_check_interval}): L{MemcachedCache}

        Query-string options are overridden by keyword options. A cache created while
        a module starts (C{state_builder}, C{create_app}) is closed when it stops.
        Nothing is connected here: a server that is down does not make this fail (its
        calls fail with L{CacheUnavailable}).

        @param namespace: prefix every key with C{namespace:}.
        @param clock: an L{IReactorTime} for TTLs and lock waits (tests pass a
            L{twisted.internet.task.Clock}).
        @raise ConfigurationError: on an unknown scheme or a bad option.
        """
        scheme, parsed = _parse(url, opts)
        return _SCHEMES[scheme](parsed, reactor, clock, namespace)
