# -*- test-case-name: tests.data.test_cache -*-
"""
L{MemcachedCache}: an L{ICache} on Memcached through
L{twisted.protocols.memcache.MemCacheProtocol}, kept connected by a
L{twisted.application.internet.ClientService}.

Namespaces: Memcached cannot list keys, so C{clear(namespace)} cannot find them. Instead
every namespace has a version number stored under C{__nsv__:<path>}, and keys are stored
as C{<ns>.<version>:<key>}; clearing a namespace increments its version, so its old keys
are never read again and Memcached evicts them in time. Versions are cached in the
process for C{namespace_check_interval} seconds (default 1): a C{clear} made by I{another}
process is seen within that time; one made by this process at once. C{clear()} on a cache
without a namespace sends C{flush_all}, which empties the whole server.

Availability (see L{pywatt_twisted.data._cache._availability}): a failed connection
attempt (refused, or not made within C{connect_timeout}) fails the calls waiting for the
connection at once, and later ones too until a connection is made; a command without a
reply within C{timeout} fails and drops the connection. Either marks the cache
unavailable (one WARNING, C{/health}) and calls fail at once for C{connect_timeout}
seconds.

Limits of Memcached that show through: counters are unsigned 64-bit (an C{increment}
with a negative delta stops at 0), and a TTL is rounded up to whole seconds plus one
(Memcached's clock ticks in whole seconds: the item lives at least C{ttl}, at most two
seconds more).
"""

from __future__ import annotations

import math
import random
from operator import itemgetter
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.memcache import MemCacheProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from pywatt_twisted import tracing
from pywatt_twisted.data._cache._availability import (
    Availability,
    ReportingEndpoint,
    report_failure,
)
from pywatt_twisted.data._cache._base import ICacheStore, StoreCache
from pywatt_twisted.data._cache._codec import decode_value
from pywatt_twisted.data._cache._errors import CacheError, CacheUnavailable, InvalidKey
from pywatt_twisted.data._resources import track

_THIRTY_DAYS = 30 * 24 * 3600
_VERSION_KEY = "__nsv__:"

#: the value of a (flags, value) reply of MemCacheProtocol.get
_value = itemgetter(1)


def _none(_: object) -> None:
    return None


def _stored_value(reply: tuple[int, bytes | None]) -> object | None:
    """
    The value of a (flags, value) reply of C{MemCacheProtocol.get}, decoded
    (L{decode_value}; bytes, the common case, inline).
    """
    data = reply[1]
    if data is None:
        return None
    if data[:1] == b"b":
        return data[1:]
    return decode_value(data)


_switch = tracing.switch


#: defaults of the C{connect_timeout} and C{timeout} options, in seconds
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 5.0

_HINT = (
    "Raise ?connect_timeout= (opening a connection) or ?timeout= (a command) in the "
    "cache URL if the server is only slow."
)


class _Factory(Factory):
    def __init__(self, store: MemcachedStore) -> None:
        self.store = store

    def buildProtocol(self, addr: Any) -> MemCacheProtocol:
        proto = MemCacheProtocol(timeOut=self.store.timeout)
        proto.factory = self
        store = self.store
        lost = proto.connectionLost

        def connection_lost(reason: Any) -> None:
            if store._protocol is proto:
                store._protocol = None
            # MemCacheProtocol leaves its reply timer running after a disconnection
            proto.setTimeout(None)
            lost(reason)

        proto.connectionLost = connection_lost  # type: ignore[method-assign]
        return proto


@implementer(ICacheStore)
class MemcachedStore:
    """
    The storage behind L{MemcachedCache}.
    """

    backend = "memcached"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 11211,
        timeout: float = DEFAULT_TIMEOUT,
        namespace_check_interval: float = 1.0,
        clock: Any = None,
        reactor: Any = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.inflight: dict[Any, Any] = {}
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.namespace_check_interval = namespace_check_interval
        self.address = f"{host}:{port}"
        self.url_redacted = f"memcached://{self.address}"
        self.availability = Availability(
            backend="Memcached",
            url_redacted=self.url_redacted,
            address=self.address,
            retry_after=connect_timeout,
            clock=self.clock,
            hint=_HINT,
        )
        #: why the last connection attempt failed, until a connection is made: while
        #: it is set and there is no connection, calls fail at once with it
        self._connect_error: str | None = None
        #: calls waiting for the connection (fired from the endpoint's result, not
        #: from ClientService.whenConnected, whose waiters run in the middle of its
        #: state machine, where closing the cache would be refused)
        self._waiters: list[Deferred[MemCacheProtocol]] = []
        self._protocol: MemCacheProtocol | None = None
        self._versions: dict[tuple[str, ...], tuple[int, float]] = {}
        # the built prefix of each path and when its first version goes stale, so the
        # hot path does one dict lookup and one clock read (emptied whenever _versions
        # loses entries)
        self._prefixes: dict[tuple[str, ...], tuple[str, float]] = {}
        endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
        self._service = ClientService(
            ReportingEndpoint(endpoint, self._connect_failed, self._connected),
            _Factory(self),
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=5.0),
            clock=reactor,
        )
        self._service.startService()

    def __repr__(self) -> str:
        return f"<MemcachedStore memcached://{self.address}>"

    # connection -------------------------------------------------------------------------

    def _connected(self, proto: MemCacheProtocol) -> None:
        self._connect_error = None
        # ClientService hands out a proxy whose every attribute read is a Python
        # __getattr__ call; it only adds the disconnection notice, which reaches
        # ClientService whoever calls the protocol: get and set call the protocol.
        real = getattr(proto, "_protocol", None)
        self._protocol = real if isinstance(real, MemCacheProtocol) else proto
        self.availability.connected()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(proto)

    def _connect_failed(self, failure: Failure) -> None:
        """
        A connection attempt failed: mark the cache unavailable; calls waiting for the
        connection fail (C{whenConnected(failAfterFailures=1)}), and later ones fail at
        once until a connection is made.
        """
        if self.availability.closed:
            return
        self._connect_error = report_failure(failure)
        error = self._unreachable(self._connect_error)
        self.availability.failed(error, connecting=True)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(error)

    def _unreachable(self, problem: str) -> CacheUnavailable:
        return CacheUnavailable(
            f"could not reach Memcached at {self.url_redacted} "
            f"(connect_timeout={self.connect_timeout:g} s): {problem}; check that the "
            "server runs and the URL is right (the client keeps reconnecting)"
        )

    async def _proto(self) -> MemCacheProtocol:
        proto = self._protocol
        if proto is not None and not proto._disconnected:
            return proto
        if self._connect_error is not None:
            raise self._unreachable(self._connect_error)
        waiting: Deferred[MemCacheProtocol] = Deferred()
        self._waiters.append(waiting)
        # bounded even while the client waits out its backoff between attempts
        waiting.addTimeout(self.connect_timeout, self.reactor)
        try:
            return await waiting
        except TimeoutError:
            if waiting in self._waiters:
                self._waiters.remove(waiting)
            unavailable = self._unreachable(
                f"no connection within connect_timeout={self.connect_timeout:g} s"
            )
            self.availability.failed(unavailable, connecting=True)
            raise unavailable from None

    def _fail(self, failure: Failure) -> Failure:
        if failure.check(CacheError):
            return failure
        error = failure.value
        if isinstance(error, TimeoutError):
            unavailable = CacheUnavailable(
                f"Memcached at {self.url_redacted} did not answer within timeout="
                f"{self.timeout:g} s; the connection was dropped (raise it with the timeout "
                "option of the URL, e.g. ?timeout=30)"
            )
            self.availability.failed(unavailable, connecting=False)
            raise unavailable
        raise CacheUnavailable(
            f"Memcached at {self.url_redacted} failed: {type(error).__name__}: {error}"
        )

    def _call(self, name: str, *args: Any) -> Deferred[Any]:
        proto = self._protocol
        if proto is not None and not proto._disconnected:
            return getattr(proto, name)(*args).addErrback(self._fail)

        async def later() -> Any:
            p = await self._proto()
            return await getattr(p, name)(*args).addErrback(self._fail)

        return Deferred.fromCoroutine(later())

    # keys and namespaces -----------------------------------------------------------------

    @staticmethod
    def _k(key: str) -> bytes:
        data = key.encode("utf-8")
        if len(data) > MemCacheProtocol.MAX_KEY_LENGTH:
            raise InvalidKey(
                f"expected a Memcached key of at most {MemCacheProtocol.MAX_KEY_LENGTH} bytes "
                f"with its versioned namespace prefix, got {len(data)}; use shorter keys"
            )
        return data

    def _build(self, parts: tuple[str, ...], versions: list[int]) -> str:
        return "".join(f"{p}.{v}:" for p, v in zip(parts, versions, strict=True))

    def prefix(self, parts: tuple[str, ...]) -> str | Deferred[str]:
        if not parts:
            return ""
        cached = self._prefixes.get(parts)
        if cached is not None and cached[1] > self.clock.seconds():
            return cached[0]
        paths = [parts[: i + 1] for i in range(len(parts))]
        entries = [self._versions.get(p) for p in paths]
        now = self.clock.seconds()
        if all(e is not None and e[1] > now for e in entries):
            prefix = self._build(parts, [e[0] for e in entries])  # type: ignore[index]
            self._prefixes[parts] = (prefix, min(e[1] for e in entries))  # type: ignore[index]
            return prefix
        return Deferred.fromCoroutine(self._load_versions(parts, paths))

    async def _load_versions(self, parts: tuple[str, ...], paths: list[tuple[str, ...]]) -> str:
        keys = [self._k(_VERSION_KEY + ":".join(p)) for p in paths]
        found = await self._call("getMultiple", keys)
        versions = []
        for path, key in zip(paths, keys, strict=True):
            value = found.get(key, (0, None))[1]
            if value is None:
                # missing (never cleared, or evicted): start at a random version so
                # that keys from before an eviction are not read again
                await self._call("add", key, b"%d" % random.randint(1, 2**31))
                value = (await self._call("get", key))[1]
            version = int(value)
            self._versions[path] = (version, self.clock.seconds() + self.namespace_check_interval)
            versions.append(version)
        # a reloaded ancestor version may have changed under a cached deeper prefix
        self._prefixes.clear()
        return self._build(parts, versions)

    # ICacheStore ------------------------------------------------------------------------

    @staticmethod
    def _expire(ttl: float | None) -> int:
        """
        The Memcached expiry for C{ttl} seconds. Memcached's clock ticks in whole
        seconds, so an item stored with expiry C{n} lives between C{n - 1} and C{n}
        seconds (a 1-second item can be gone a few milliseconds later, a lock taken
        for 1 second too); one second is added so the item lives at least C{ttl}.
        """
        if ttl is None:
            return 0
        seconds = math.ceil(ttl) + 1
        if seconds > _THIRTY_DAYS:
            import time

            return int(time.time()) + seconds
        return seconds

    def _guard(self, fn: Any, *args: Any) -> Deferred[Any]:
        try:
            return fn(*args)
        except CacheError:
            return defer.fail()

    # get and set are the hot paths: no closures, and on a live connection one callback
    # pair (result, error) on the protocol's Deferred instead of two

    def get(self, key: str) -> Deferred[bytes | None]:
        try:
            k = self._k(key)
        except CacheError:
            return defer.fail()
        proto = self._protocol
        if proto is not None and not proto._disconnected:
            return proto.get(k).addCallbacks(_value, self._fail)
        return self._call("get", k).addCallback(_value)

    def get_many(self, keys: list[str]) -> Deferred[dict[str, bytes]]:
        def go() -> Deferred[dict[str, bytes]]:
            raw = {self._k(k): k for k in keys}
            return self._call("getMultiple", list(raw)).addCallback(
                lambda found: {
                    raw[k]: v[1] for k, v in found.items() if v[1] is not None and k in raw
                }
            )

        return self._guard(go)

    def set(self, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        try:
            k = self._k(key)
        except CacheError:
            return defer.fail()
        expire = 0 if ttl is None else self._expire(ttl)
        proto = self._protocol
        if proto is not None and not proto._disconnected:
            return proto.set(k, data, 0, expire).addCallbacks(_none, self._fail)
        return self._call("set", k, data, 0, expire).addCallback(_none)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        return defer.gatherResults(
            [self.set(k, v, ttl) for k, v in items.items()], consumeErrors=True
        ).addCallbacks(lambda _: None, lambda f: f.value.subFailure)

    def set_nx(self, key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        return self._guard(
            lambda: self._call("add", self._k(key), data, 0, self._expire(ttl)).addCallback(bool)
        )

    def delete(self, key: str) -> Deferred[bool]:
        return self._guard(lambda: self._call("delete", self._k(key)).addCallback(bool))

    def exists(self, key: str) -> Deferred[bool]:
        return self.get(key).addCallback(lambda v: v is not None)

    def increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        return self._guard(lambda: Deferred.fromCoroutine(self._increment(key, delta, ttl)))

    async def _increment(self, key: str, delta: int, ttl: float | None) -> int:
        k = self._k(key)
        for _ in range(5):
            try:
                if delta >= 0:
                    result = await self._call("increment", k, delta)
                else:
                    result = await self._call("decrement", k, -delta)
            except CacheUnavailable as e:
                if "ClientError" in str(e):
                    raise CacheError(
                        f"expected an integer value at {key[:60]!r} to increment, got "
                        "another type; delete it or use another key"
                    ) from None
                raise
            if result is not False:
                return int(result)
            # missing: create it; if someone else created it meanwhile, increment again
            start = max(delta, 0)
            if await self._call("add", k, b"%d" % start, 0, self._expire(ttl)):
                return start
        raise CacheError(f"could not increment {key[:60]!r}: it kept disappearing")

    def compare_delete(self, key: str, data: bytes) -> Deferred[bool]:
        return self._guard(lambda: Deferred.fromCoroutine(self._compare_delete(key, data)))

    async def _compare_delete(self, key: str, data: bytes) -> bool:
        k = self._k(key)
        _flags, cas, value = await self._call("get", k, True)
        if value != data:
            return False
        # overwrite only if unchanged since the gets, with an already-past expiry
        return bool(await self._call("checkAndSet", k, b"", cas, 0, -1))

    def clear(self, parts: tuple[str, ...]) -> Deferred[None]:
        return Deferred.fromCoroutine(self._clear(parts))

    async def _clear(self, parts: tuple[str, ...]) -> None:
        if not parts:
            await self._call("flushAll")
            self._versions.clear()
            self._prefixes.clear()
            return
        key = self._k(_VERSION_KEY + ":".join(parts))
        version = await self._call("increment", key, 1)
        if version is False:
            version = random.randint(1, 2**31)
            await self._call("set", key, b"%d" % version)
        now = self.clock.seconds()
        for path in list(self._versions):
            if path[: len(parts)] == parts:
                del self._versions[path]
        self._prefixes.clear()
        self._versions[parts] = (int(version), now + self.namespace_check_interval)

    def close(self) -> Deferred[None]:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(CacheUnavailable(f"the cache {self.url_redacted} was closed"))
        d = self._service.stopService()
        return (d if d is not None else defer.succeed(None)).addCallback(lambda _: None)


class MemcachedCache(StoreCache):
    """
    An L{ICache} on a Memcached server (see the module docstring for namespaces,
    availability and limits). Reconnects by itself after a drop. Created while a
    module starts, it is closed when the module stops.

    @param timeout: seconds a command waits for its reply; then it fails and the
        connection is dropped.
    @param connect_timeout: seconds to open a connection, and how long calls fail at
        once after a failure.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 11211,
        *,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        namespace_check_interval: float = 1.0,
        clock: Any = None,
        reactor: Any = None,
    ) -> None:
        store = MemcachedStore(
            host=host,
            port=port,
            timeout=timeout,
            connect_timeout=connect_timeout,
            namespace_check_interval=namespace_check_interval,
            clock=clock,
            reactor=reactor,
        )
        super().__init__(store, (namespace,) if namespace else ())
        self._memcached = store
        track(self)

    def _live_key(self, key: str) -> tuple[MemCacheProtocol, bytes] | None:
        """
        For the hot paths: the connected protocol and the stored key of C{key}, when
        C{key} was checked before under the namespace prefix in use (its versions
        still fresh), the connection is up and the cache is not marked down; else
        C{None} (the caller takes L{StoreCache}'s way, which does each step).
        """
        store = self._memcached
        proto = store._protocol
        if proto is None or proto._disconnected or store.availability.down is not None:
            return None
        parts = self._parts
        if parts:
            cached = store._prefixes.get(parts)
            if (
                cached is None
                or cached[0] is not self._known_prefix
                or cached[1] <= store.clock.seconds()
            ):
                return None
        elif self._known_prefix != "":
            return None
        full = self._known.get(key)
        if full is None:
            return None
        # (a checked key is at most MAX_KEY_BYTES = MemCacheProtocol.MAX_KEY_LENGTH)
        return proto, full.encode("utf-8")

    # get and set are the hot paths (as MemoryCache's): a key checked before, a live
    # connection, tracing off, no timeout: straight to the protocol, with one callback
    # pair on its Deferred; anything else takes StoreCache's way.

    def get(self, key: str, *, timeout: float | None = None) -> Deferred[object | None]:
        if timeout is None and not _switch.on and key.__class__ is str:
            live = self._live_key(key)
            if live is not None:
                return live[0].get(live[1]).addCallbacks(_stored_value, self._memcached._fail)
        return StoreCache.get(self, key, timeout=timeout)

    def set(
        self, key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        if (
            timeout is None
            and ttl is None
            and not _switch.on
            and value.__class__ is bytes
            and key.__class__ is str
        ):
            live = self._live_key(key)
            if live is not None:
                return (
                    live[0]
                    .set(live[1], b"b" + value, 0, 0)
                    .addCallbacks(_none, self._memcached._fail)
                )
        return StoreCache.set(self, key, value, ttl, timeout=timeout)
