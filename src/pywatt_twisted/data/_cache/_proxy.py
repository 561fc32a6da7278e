# -*- test-case-name: tests.data.test_proxied -*-
"""
A cache reached through the orchestrator (C{state.service(name)}): L{ProxyCacheStore}
is an L{ICacheStore} whose every call is one C{service_operation}, so a
L{StoreCache} over it has exactly the interface and the rules (keys, values,
namespaces, locks, C{cache_aside}) of a direct cache. L{CacheOperations} is the
orchestrator's end: it runs those operations on a real cache.

Operations (C{params} objects; C{namespace} is the namespace path as a list, values and
lock tokens are base64 of the stored bytes, C{ttl_seconds} is null or positive):

    - C{get {namespace, key}} -> base64 or null
    - C{get_many {namespace, keys}} -> {key: base64} of the keys that hold a value
    - C{set {namespace, key, value, ttl_seconds}} -> null
    - C{set_many {namespace, items: {key: base64}, ttl_seconds}} -> null
    - C{set_nx {namespace, key, value, ttl_seconds}} -> bool
    - C{delete {namespace, key}} -> bool; C{exists {namespace, key}} -> bool
    - C{increment {namespace, key, delta, ttl_seconds}} -> int
    - C{unlock {namespace, key, lock_token}} -> bool (delete only if it holds that value)
    - C{clear {namespace}} -> null; C{ping {}} -> null; C{describe {}} -> {backend}

A write whose reply is lost (no answer in time) fails with L{CacheUnavailable} saying
its outcome is unknown; nothing is ever sent twice on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted.data._cache._base import ICacheStore, StoreCache
from pywatt_twisted.data._cache._codec import validate_key, validate_namespace, validate_ttl
from pywatt_twisted.data._cache._errors import CacheError, CacheUnavailable
from pywatt_twisted.data._proxied import b64, error_from_info, unb64
from pywatt_twisted.errors import ServiceError, ServiceUnavailable

__all__ = ["CacheOperations", "ProxyCacheStore", "proxied_cache"]

#: separates the namespace path from the key in the store's full keys: a control
#: character, which neither a key nor a namespace name may contain, one byte long like
#: the ':' of the direct backends (so the 250-byte rule counts the same)
_SEP = "\x1e"

#: operations that change nothing: a lost reply is just unavailability
_READS = frozenset({"get", "get_many", "exists", "ping", "describe"})


def _split(full: str) -> tuple[list[str], str]:
    head, sep, key = full.rpartition(_SEP)
    return (head.split(_SEP) if sep else []), key


@implementer(ICacheStore)
class ProxyCacheStore:
    """
    The L{ICacheStore} of a proxied cache.

    @param link: the service connection (a
        L{ServiceLink <pywatt_twisted._runtime.proxied.ServiceLink>}: C{call(operation,
        params)}, C{close()}, C{name}, C{clock}).
    """

    static_prefix = True
    backend = "proxy"

    def __init__(self, link: Any) -> None:
        self._link = link
        self.clock = link.clock
        self.url_redacted = f"service:{link.name}"
        self.inflight: dict[Any, Any] = {}
        self.closed = False

    def __repr__(self) -> str:
        return f"<ProxyCacheStore {self._link.name}>"

    def prefix(self, parts: tuple[str, ...]) -> str:
        return "".join(p + _SEP for p in parts)

    def _call(self, operation: str, params: dict[str, Any]) -> Deferred[Any]:
        if self.closed:
            return defer.fail(CacheError(f"the proxied cache {self._link.name!r} was closed"))
        return self._link.call(operation, params).addErrback(self._translate, operation)

    def _translate(self, failure: Failure, operation: str) -> Failure:
        error = failure.value
        if isinstance(error, ServiceUnavailable):
            outcome = (
                "; it may or may not have been applied (not sent again)"
                if error.sent and operation not in _READS
                else ""
            )
            raise CacheUnavailable(f"{error}{outcome}") from None
        if isinstance(error, ServiceError):
            typed = error_from_info(error.info, error.detail)
            if typed is not None:
                raise typed from None
        return failure

    def _keyed(self, operation: str, full: str, **extra: Any) -> Deferred[Any]:
        namespace, key = _split(full)
        return self._call(operation, {"namespace": namespace, "key": key, **extra})

    def get(self, key: str) -> Deferred[bytes | None]:
        return self._keyed("get", key).addCallback(lambda v: None if v is None else unb64(v))

    def get_many(self, keys: list[str]) -> Deferred[dict[str, bytes]]:
        groups: dict[tuple[str, ...], list[str]] = {}
        for full in keys:
            namespace, key = _split(full)
            groups.setdefault(tuple(namespace), []).append(key)

        def one(namespace: tuple[str, ...], names: list[str]) -> Deferred[dict[str, bytes]]:
            prefix = self.prefix(namespace)
            return self._call(
                "get_many", {"namespace": list(namespace), "keys": names}
            ).addCallback(lambda found: {prefix + k: unb64(v) for k, v in found.items()})

        ds = [one(ns, names) for ns, names in groups.items()]

        def merge(results: list[dict[str, bytes]]) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for r in results:
                out.update(r)
            return out

        return defer.gatherResults(ds, consumeErrors=True).addCallbacks(
            merge, lambda f: f.value.subFailure
        )

    def set(self, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        return self._keyed("set", key, value=b64(data), ttl_seconds=ttl).addCallback(lambda _: None)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        groups: dict[tuple[str, ...], dict[str, str]] = {}
        for full, data in items.items():
            namespace, key = _split(full)
            groups.setdefault(tuple(namespace), {})[key] = b64(data)
        ds = [
            self._call("set_many", {"namespace": list(ns), "items": group, "ttl_seconds": ttl})
            for ns, group in groups.items()
        ]
        return defer.gatherResults(ds, consumeErrors=True).addCallbacks(
            lambda _: None, lambda f: f.value.subFailure
        )

    def set_nx(self, key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        return self._keyed("set_nx", key, value=b64(data), ttl_seconds=ttl).addCallback(bool)

    def delete(self, key: str) -> Deferred[bool]:
        return self._keyed("delete", key).addCallback(bool)

    def exists(self, key: str) -> Deferred[bool]:
        return self._keyed("exists", key).addCallback(bool)

    def increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        return self._keyed("increment", key, delta=delta, ttl_seconds=ttl).addCallback(int)

    def compare_delete(self, key: str, data: bytes) -> Deferred[bool]:
        return self._keyed("unlock", key, lock_token=b64(data)).addCallback(bool)

    def clear(self, parts: tuple[str, ...]) -> Deferred[None]:
        return self._call("clear", {"namespace": list(parts)}).addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        if self.closed:
            return defer.succeed(None)
        self.closed = True
        result: Deferred[None] = self._link.close()
        return result


def proxied_cache(link: Any) -> StoreCache:
    """
    The L{ICache} of a proxied cache service.
    """
    return StoreCache(ProxyCacheStore(link))


# -- the orchestrator's end ----------------------------------------------------------------


def _ttl(params: dict[str, Any]) -> float | None:
    return validate_ttl(params.get("ttl_seconds"))


class CacheOperations:
    """
    Runs proxied cache operations on a real cache (an L{ICache} built over a store,
    such as C{Cache.from_url(...)} or a L{MemoryCache}): the module's keys live under
    that cache's own namespace, so a provider confines modules to it.
    """

    def __init__(self, cache: Any) -> None:
        store = getattr(cache, "_store", None)
        if store is None:
            raise TypeError(f"expected a cache built over a store (Cache.from_url), got {cache!r}")
        self.cache = cache
        self._store = store
        self._base: tuple[str, ...] = tuple(getattr(cache, "_parts", ()))
        self._ops: dict[str, Callable[[dict[str, Any]], Deferred[Any]]] = {
            "get": self._get,
            "get_many": self._get_many,
            "set": self._set,
            "set_many": self._set_many,
            "set_nx": self._set_nx,
            "delete": self._delete,
            "exists": self._exists,
            "increment": self._increment,
            "unlock": self._unlock,
            "clear": self._clear,
            "ping": lambda p: defer.succeed(None),
            "describe": lambda p: defer.succeed({"backend": getattr(self._store, "backend", "")}),
        }

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._ops)

    def run(self, operation: str, params: object) -> Deferred[Any] | None:
        """
        Run one operation; None when there is no such operation.
        """
        op = self._ops.get(operation)
        if op is None:
            return None
        if not isinstance(params, dict):
            return defer.fail(CacheError(f"expected params as an object, got {params!r}"))
        return defer.maybeDeferred(op, params)

    async def _full(self, params: dict[str, Any], key: object = None) -> str:
        namespace = params.get("namespace") or []
        if not isinstance(namespace, list):
            raise CacheError(f"expected namespace as a list, got {namespace!r}")
        parts = (*self._base, *(validate_namespace(n) for n in namespace))
        prefix = self._store.prefix(parts)
        if isinstance(prefix, Deferred):
            prefix = await prefix
        return validate_key(params.get("key") if key is None else key, prefix)

    def _keyed(self, params: dict[str, Any], fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        async def go() -> Any:
            return await fn(await self._full(params), *args)

        return Deferred.fromCoroutine(go())

    def _get(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.get).addCallback(lambda v: None if v is None else b64(v))

    def _get_many(self, p: dict[str, Any]) -> Deferred[Any]:
        async def go() -> dict[str, str]:
            keys = p.get("keys")
            if not isinstance(keys, list):
                raise CacheError(f"expected keys as a list, got {keys!r}")
            if not keys:
                return {}
            full = [await self._full(p, k) for k in keys]
            found = await self._store.get_many(full)
            back = dict(zip(full, keys, strict=True))
            return {back[f]: b64(v) for f, v in found.items()}

        return Deferred.fromCoroutine(go())

    def _set(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.set, unb64(p.get("value")), _ttl(p))

    def _set_many(self, p: dict[str, Any]) -> Deferred[Any]:
        async def go() -> None:
            items = p.get("items")
            if not isinstance(items, dict):
                raise CacheError(f"expected items as an object, got {items!r}")
            ttl = _ttl(p)
            if items:
                await self._store.set_many(
                    {await self._full(p, k): unb64(v) for k, v in items.items()}, ttl
                )

        return Deferred.fromCoroutine(go())

    def _set_nx(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.set_nx, unb64(p.get("value")), _ttl(p))

    def _delete(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.delete)

    def _exists(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.exists)

    def _increment(self, p: dict[str, Any]) -> Deferred[Any]:
        delta = p.get("delta", 1)
        if isinstance(delta, bool) or not isinstance(delta, int):
            return defer.fail(CacheError(f"expected an int delta, got {type(delta).__name__}"))
        return self._keyed(p, self._store.increment, delta, _ttl(p))

    def _unlock(self, p: dict[str, Any]) -> Deferred[Any]:
        return self._keyed(p, self._store.compare_delete, unb64(p.get("lock_token")))

    def _clear(self, p: dict[str, Any]) -> Deferred[Any]:
        namespace = p.get("namespace") or []
        if not isinstance(namespace, list):
            return defer.fail(CacheError(f"expected namespace as a list, got {namespace!r}"))
        try:
            parts = (*self._base, *(validate_namespace(n) for n in namespace))
        except CacheError:
            return defer.fail()
        return self._store.clear(parts)
