# -*- test-case-name: tests.data.test_cache -*-
"""
The cache interface (L{ICache}), the storage interface each backend implements
(L{ICacheStore}), and L{StoreCache}, which turns a store into an L{ICache}: key and
value rules, namespaces, locks, and C{cache_aside} are written once here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from pywatt_twisted import tracing
from pywatt_twisted.data._cache._availability import Availability
from pywatt_twisted.data._cache._codec import (
    decode_value,
    encode_value,
    validate_key,
    validate_namespace,
    validate_ttl,
)
from pywatt_twisted.data._cache._errors import CacheError, CacheUnavailable, InvalidTTL

#: prefix of the keys that hold locks, inside the cache's namespace
LOCK_PREFIX = "__lock__."

#: How many checked keys a cache remembers (key -> full stored key) so that get and set
#: skip checking a key they have seen; when full, the memo is emptied and refills.
KNOWN_KEYS = 1024

_switch = tracing.switch
_succeed = defer.succeed


class ICache(Interface):
    """
    A key/value cache. Every method returns a L{Deferred}; none blocks the reactor.
    Values are C{bytes} or JSON-able objects (see L{pywatt_twisted.data._cache._codec});
    keys are validated the same way on every backend. C{ttl} is None (no expiry) or
    a positive number of seconds.
    """

    namespace_prefix = Attribute("The prefix every key of this cache is stored under.")

    def get(key: str, *, timeout: float | None = None) -> Deferred[object | None]:
        """
        Fire with the value, or None when the key is missing or expired.

        Every method that talks to the server takes C{timeout=}: seconds this call
        may take in all, waiting for a connection included (then it fails with
        L{CacheUnavailable}); C{None} leaves only the cache's own limits (its URL's
        C{connect_timeout} and command timeout).
        """

    def set(
        key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        """
        Store a value, replacing any previous one.
        """

    def delete(key: str, *, timeout: float | None = None) -> Deferred[bool]:
        """
        Remove a key; fire with whether it existed.
        """

    def exists(key: str, *, timeout: float | None = None) -> Deferred[bool]:
        """
        Fire with whether the key holds a value.
        """

    def set_nx(
        key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[bool]:
        """
        Store only if the key is missing; fire with whether it was stored. Atomic.
        """

    def increment(
        key: str, delta: int = 1, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[int]:
        """
        Add C{delta} to an integer value (a missing key counts as 0) and fire with the
        result. Atomic. C{ttl} applies only when this call creates the key.
        """

    def get_many(
        keys: Iterable[str], *, timeout: float | None = None
    ) -> Deferred[dict[str, object]]:
        """
        Fire with a C{dict} of the keys that hold a value.
        """

    def set_many(
        mapping: Mapping[str, object], ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        """
        Store several values (not atomically as a group).
        """

    def clear(namespace: str | None = None, *, timeout: float | None = None) -> Deferred[None]:
        """
        Remove every key of this cache's namespace, or of its sub-namespace
        C{namespace} (the keys of C{cache.namespace(namespace)}).
        """

    def namespace(name: str) -> ICache:
        """
        A view of this cache whose keys live under C{name} (sharing its connection).
        """

    def lock(key: str, ttl: float, wait: float = 0.0) -> Deferred[Lock | None]:
        """
        Take the lock named C{key} for C{ttl} seconds: fire with a L{Lock} (holding a
        random token) or, when someone else holds it after waiting up to C{wait}
        seconds, None.
        """

    def cache_aside(
        key: str, loader: Callable[[], Any], ttl: float | None = None
    ) -> Deferred[object]:
        """
        Fire with the cached value, or call C{loader()} (a value, Deferred or
        coroutine), store what it returns and fire with it. In this process only one
        loader runs per key at a time: concurrent callers share its result.
        """

    def close() -> Deferred[None]:
        """
        Release connections. A namespace view's C{close} closes the shared store.
        """

    def health() -> dict[str, Any]:
        """
        For C{/health}: C{status} (C{"ok"}; C{"unavailable"}, with
        C{unavailable_seconds}, while the server cannot be reached; C{"closed"}),
        C{backend}, C{url} (no password), C{namespace}, C{last_error}; for the file
        cache, C{refused} (calls failed at once because C{max_waiting} calls waited).
        """


class ICacheStore(Interface):
    """
    The raw storage a backend provides: full keys (C{str}) to encoded values
    (C{bytes}). Every method returns a L{Deferred}. Implement this to add a backend;
    wrap it in L{StoreCache} to get an L{ICache}.

    Two optional attributes let L{StoreCache} skip work on the hot paths (a store
    without them works the same, only slower):

        - C{static_prefix = True}: C{prefix(parts)} returns a C{str} that depends only
          on C{parts}, so a L{StoreCache} computes it once instead of on every call.
        - C{get_now(key) -> bytes | None} and C{set_now(key, data, ttl) -> None}:
          synchronous forms of C{get} and C{set} (raising L{CacheError}) for stores
          that never wait, such as an in-process one; L{StoreCache} then answers with
          an already-fired L{Deferred} instead of chaining a callback.

    A store with a server to lose has an C{availability} attribute (an
    L{Availability}): L{StoreCache} then fails calls at once during an outage (see
    L{pywatt_twisted.data._cache._availability}). C{url_redacted} and C{backend}, when
    present, name the store in messages and on C{/health}.
    """

    clock = Attribute("The L{IReactorTime} used for lock waits.")

    def prefix(parts: tuple[str, ...]) -> str | Deferred[str]:
        """
        The key prefix of a namespace path (C{("app", "users")}).
        """

    def get(key: str) -> Deferred[bytes | None]:
        """Stored bytes, or None."""

    def get_many(keys: list[str]) -> Deferred[dict[str, bytes]]:
        """The keys that hold a value."""

    def set(key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        """Store."""

    def set_many(items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        """Store several."""

    def set_nx(key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        """Store if missing, atomically."""

    def delete(key: str) -> Deferred[bool]:
        """Remove; whether it existed."""

    def exists(key: str) -> Deferred[bool]:
        """Whether it holds a value."""

    def increment(key: str, delta: int, ttl: float | None) -> Deferred[int]:
        """Atomic add to a decimal integer value."""

    def compare_delete(key: str, data: bytes) -> Deferred[bool]:
        """Remove only if it holds exactly C{data}, atomically."""

    def clear(parts: tuple[str, ...]) -> Deferred[None]:
        """Remove every key under a namespace path (all keys for C{()})."""

    def close() -> Deferred[None]:
        """Release resources."""


@attrs.define(eq=False)
class Lock:
    """
    A lock held in a cache until C{release()} or until its ttl runs out.

    Use it as C{async with}: C{async with await cache.lock("job", ttl=30) as lock:} is
    not possible when the lock may be None, so check first::

        lock = await cache.lock("job", ttl=30)
        if lock is not None:
            async with lock:
                ...

    @ivar key: the lock's name (as given to C{lock()}).
    @ivar token: the random token stored in the cache; release removes the lock only if
        it still holds this token (so an expired lock taken over by someone else is
        never released by its former holder).
    @ivar ttl: seconds the lock lives without release.
    """

    key: str
    token: str
    ttl: float
    _cache: StoreCache = attrs.field(repr=False)
    _full_key: str = attrs.field(repr=False)
    released: bool = False

    def release(self) -> Deferred[bool]:
        """
        Release the lock; fire with whether it was still ours.
        """
        if self.released:
            return defer.succeed(False)
        self.released = True
        store = self._cache._store
        span = _cache_span(store, "unlock") if tracing.switch.on else None
        return tracing.traced(span, store.compare_delete(self._full_key, encode_value(self.token)))

    async def __aenter__(self) -> Lock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def _valid_timeout(timeout: object) -> float:
    """
    C{timeout} as seconds, if it is a positive finite number.

    @raise CacheError: if it is not.
    """
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < float("inf")
    ):
        raise CacheError(f"expected timeout= as a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _cache_span(store: Any, operation: str, batch: int | None = None) -> Any:
    """
    The tracing span of one cache operation on C{store}: its backend as
    C{db.system.name} (C{redis}, C{memcached}, C{memory}, C{file}, C{proxy}), never a key
    or a value.
    """
    system = getattr(store, "backend", None) or type(store).__name__.lower()
    return tracing.cache_span(str(system), operation, batch)


def _decode(data: bytes | None) -> object | None:
    return None if data is None else decode_value(data)


@implementer(ICache)
class StoreCache:
    """
    An L{ICache} over an L{ICacheStore}, for one namespace path.
    """

    def __init__(self, store: Any, parts: tuple[str, ...] = ()) -> None:
        self._store = store
        self._parts = parts
        # the hot paths (get, set) read these instead of asking the store every time
        self._static: str | None = (
            store.prefix(parts) if getattr(store, "static_prefix", False) else None
        )
        self._get_now: Callable[[str], bytes | None] | None = getattr(store, "get_now", None)
        self._set_now: Callable[[str, bytes, float | None], None] | None = getattr(
            store, "set_now", None
        )
        self._availability: Availability | None = getattr(store, "availability", None)
        # full stored keys of recently checked keys, under _known_prefix: get and set
        # read this instead of checking the same key again (at most KNOWN_KEYS entries;
        # when full it is emptied and refills with the keys in use)
        self._known: dict[str, str] = {}
        # the prefix the keys in _known were checked under: the static prefix, or the
        # last prefix a store with namespace versions (Memcached) gave, which is the
        # same object until its versions are read again (then the memo is emptied)
        self._known_prefix: str | None = self._static
        # the synchronous read and write of a store with a static prefix and no
        # availability guard: get and set call these directly for a known key
        sync = self._static is not None and self._availability is None
        self._sync_get = self._get_now if sync else None
        self._sync_set = self._set_now if sync else None

    def __repr__(self) -> str:
        ns = ":".join(self._parts) or "-"
        return f"<{type(self).__name__} store={self._store!r} namespace={ns}>"

    @property
    def namespace_prefix(self) -> str:
        prefix = self._store.prefix(self._parts)
        return prefix if isinstance(prefix, str) else ":".join(self._parts)

    @property
    def clock(self) -> IReactorTime:
        return self._store.clock

    # key plumbing --------------------------------------------------------------------

    def _prefix(self) -> str | Deferred[str]:
        prefix = self._static
        return self._store.prefix(self._parts) if prefix is None else prefix

    def _with_key(self, key: str, fn: Callable[..., Deferred[Any]], *args: Any) -> Deferred[Any]:
        """
        Call C{fn(full_key, *args)} once the key is checked and prefixed.
        """
        prefix = self._prefix()
        if isinstance(prefix, Deferred):
            return prefix.addCallback(lambda p: fn(validate_key(key, p), *args))
        try:
            full = validate_key(key, prefix)
        except CacheError:
            return defer.fail()
        return fn(full, *args)

    def _with_keys(
        self, keys: Iterable[str], fn: Callable[[list[str], str], Deferred[Any]]
    ) -> Deferred[Any]:
        prefix = self._prefix()
        keys = list(keys)

        def go(p: str) -> Deferred[Any]:
            return fn([validate_key(k, p) for k in keys], p)

        if isinstance(prefix, Deferred):
            return prefix.addCallback(go)
        return defer.maybeDeferred(go, prefix)

    def _get_under(self, prefix: str, key: str) -> Deferred[object | None]:
        return self._store.get(validate_key(key, prefix)).addCallback(_decode)

    def _set_under(self, prefix: str, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        return self._store.set(validate_key(key, prefix), data, ttl)

    # availability and per-call timeouts ----------------------------------------------

    def _guarded(
        self, fn: Callable[..., Deferred[Any]], timeout: float | None, *args: Any
    ) -> Deferred[Any]:
        """
        Call C{fn(*args)} unless the server is known to be down (then fail at once),
        within C{timeout} seconds if given. A call let through during an outage ends
        it when it succeeds.
        """
        avail = self._availability
        if timeout is not None:
            try:
                timeout = _valid_timeout(timeout)
            except CacheError:
                return defer.fail()
        if avail is not None and avail.down is not None:
            error = avail.blocked()
            if error is not None:
                return defer.fail(error)
            d = avail.watch(fn(*args))
        else:
            d = fn(*args)
        if timeout is None or d.called:
            return d
        return self._within(d, timeout)

    def _within(self, d: Deferred[Any], timeout: float) -> Deferred[Any]:
        """
        A L{Deferred} with C{d}'s result, or failing with L{CacheUnavailable} after
        C{timeout} seconds. C{d} itself is not cancelled (a reply that comes later is
        read and dropped, so the connection stays in step).
        """
        out: Deferred[Any] = Deferred()

        def expire() -> None:
            out.errback(
                CacheUnavailable(
                    f"the cache {self._name()} did not answer within timeout={timeout:g} s "
                    "(the timeout= of this call)"
                )
            )

        timer = self._store.clock.callLater(timeout, expire)

        def deliver(result: object) -> None:
            if not timer.active():
                return None  # the caller has had the timeout; drop this result
            timer.cancel()
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)
            return None

        d.addBoth(deliver)
        return out

    def _name(self) -> str:
        url = getattr(self._store, "url_redacted", None)
        return url if isinstance(url, str) else repr(self._store)

    # ICache --------------------------------------------------------------------------

    # get and set are the hot paths: written out in full, without closures, and with
    # no Deferred chained on a store that answers synchronously.

    def get(self, key: str, *, timeout: float | None = None) -> Deferred[object | None]:
        if timeout is None and not _switch.on:
            get_now = self._sync_get
            if get_now is not None and key.__class__ is str:
                full = self._known.get(key)
                if full is not None:
                    # the hottest path: a key checked before, a synchronous store
                    try:
                        data = get_now(full)
                        if data is None:
                            return _succeed(None)
                        if data[:1] == b"b":
                            return _succeed(data[1:])
                        return _succeed(decode_value(data))
                    except CacheError:
                        return defer.fail()
        if _switch.on:
            return tracing.traced(self._span("get"), self._get_guarded(key, timeout))
        avail = self._availability
        if timeout is None and (avail is None or avail.down is None):
            return self._get(key)
        return self._guarded(self._get, timeout, key)

    def _get_guarded(self, key: str, timeout: float | None) -> Deferred[object | None]:
        avail = self._availability
        if timeout is not None or (avail is not None and avail.down is not None):
            return self._guarded(self._get, timeout, key)
        return self._get(key)

    def _span(self, operation: str, batch: int | None = None) -> Any:
        # tracing: the span of one cache operation (no key or value recorded)
        return _cache_span(self._store, operation, batch)

    def _get(self, key: str) -> Deferred[object | None]:
        prefix = self._static
        if prefix is None:
            prefix = self._store.prefix(self._parts)
            # (a str is never a Deferred: no ABC instance check for the common case)
            if prefix.__class__ is not str and isinstance(prefix, Deferred):
                return prefix.addCallback(self._get_under, key)
        try:
            full = (
                self._known.get(key)
                if prefix is self._known_prefix and key.__class__ is str
                else None
            )
            if full is None:
                full = self._check(key, prefix)
            get_now = self._get_now
            if get_now is not None:
                data = get_now(full)
                if data is None:
                    return defer.succeed(None)
                # bytes values (tag b"b", the common case) without a call
                if data[:1] == b"b":
                    return defer.succeed(data[1:])
                return defer.succeed(decode_value(data))
        except CacheError:
            return defer.fail()
        return self._store.get(full).addCallback(_decode)

    def _check(self, key: str, prefix: str) -> str:
        """
        The full stored key of C{key} (L{validate_key}), remembered under C{prefix}.
        """
        full = validate_key(key, prefix)
        if key.__class__ is str:
            known = self._known
            if prefix is not self._known_prefix:
                if self._static is not None:
                    # (a static prefix never changes: only its keys are remembered)
                    return full
                # a store's namespace prefix was read again: its keys from now on
                known.clear()
                self._known_prefix = prefix
            elif len(known) >= KNOWN_KEYS:
                known.clear()
            known[key] = full
        return full

    def set(
        self, key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        if timeout is None and ttl is None and not _switch.on:
            set_now = self._sync_set
            if set_now is not None and value.__class__ is bytes and key.__class__ is str:
                full = self._known.get(key)
                if full is not None:
                    # the hottest path: bytes, no ttl, a key checked before, a
                    # synchronous store
                    try:
                        set_now(full, b"b" + value, None)
                    except CacheError:
                        return defer.fail()
                    return _succeed(None)
        if _switch.on:
            return tracing.traced(self._span("set"), self._set_guarded(key, value, ttl, timeout))
        avail = self._availability
        if timeout is None and (avail is None or avail.down is None):
            return self._set(key, value, ttl)
        return self._guarded(self._set, timeout, key, value, ttl)

    def _set_guarded(
        self, key: str, value: object, ttl: float | None, timeout: float | None
    ) -> Deferred[None]:
        avail = self._availability
        if timeout is not None or (avail is not None and avail.down is not None):
            return self._guarded(self._set, timeout, key, value, ttl)
        return self._set(key, value, ttl)

    def _set(self, key: str, value: object, ttl: float | None) -> Deferred[None]:
        try:
            # bytes values (the common case) without a call
            data = b"b" + value if value.__class__ is bytes else encode_value(value)
            if ttl is not None:
                ttl = validate_ttl(ttl)
        except CacheError:
            return defer.fail()
        prefix = self._static
        if prefix is None:
            prefix = self._store.prefix(self._parts)
            if prefix.__class__ is not str and isinstance(prefix, Deferred):
                return prefix.addCallback(self._set_under, key, data, ttl)
        try:
            full = (
                self._known.get(key)
                if prefix is self._known_prefix and key.__class__ is str
                else None
            )
            if full is None:
                full = self._check(key, prefix)
            set_now = self._set_now
            if set_now is not None:
                set_now(full, data, ttl)
                return defer.succeed(None)
        except CacheError:
            return defer.fail()
        return self._store.set(full, data, ttl)

    # the other operations: one span each when tracing is on (started before the
    # operation, ended when its Deferred fires)

    def delete(self, key: str, *, timeout: float | None = None) -> Deferred[bool]:
        span = self._span("delete") if tracing.switch.on else None
        return tracing.traced(span, self._guarded(self._with_key, timeout, key, self._store.delete))

    def exists(self, key: str, *, timeout: float | None = None) -> Deferred[bool]:
        span = self._span("exists") if tracing.switch.on else None
        return tracing.traced(span, self._guarded(self._with_key, timeout, key, self._store.exists))

    def set_nx(
        self, key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[bool]:
        span = self._span("set_nx") if tracing.switch.on else None
        return tracing.traced(span, self._guarded(self._set_nx, timeout, key, value, ttl))

    def _set_nx(self, key: str, value: object, ttl: float | None) -> Deferred[bool]:
        try:
            data = encode_value(value)
            ttl = validate_ttl(ttl)
        except CacheError:
            return defer.fail()
        return self._with_key(key, self._store.set_nx, data, ttl)

    def increment(
        self, key: str, delta: int = 1, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[int]:
        span = self._span("increment") if tracing.switch.on else None
        return tracing.traced(span, self._guarded(self._increment, timeout, key, delta, ttl))

    def _increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        if isinstance(delta, bool) or not isinstance(delta, int):
            return defer.fail(CacheError(f"expected an int delta, got {type(delta).__name__}"))
        try:
            ttl = validate_ttl(ttl)
        except CacheError:
            return defer.fail()
        return self._with_key(key, self._store.increment, delta, ttl)

    def get_many(
        self, keys: Iterable[str], *, timeout: float | None = None
    ) -> Deferred[dict[str, object]]:
        if tracing.switch.on:
            keys = list(keys)
            span = self._span("get_many", len(keys))
            return tracing.traced(span, self._guarded(self._get_many, timeout, keys))
        return self._guarded(self._get_many, timeout, keys)

    def _get_many(self, keys: Iterable[str]) -> Deferred[dict[str, object]]:
        def fetch(full: list[str], prefix: str) -> Deferred[dict[str, object]]:
            if not full:
                return defer.succeed({})
            cut = len(prefix)
            return self._store.get_many(full).addCallback(
                lambda found: {k[cut:]: decode_value(v) for k, v in found.items()}
            )

        return self._with_keys(keys, fetch)

    def set_many(
        self,
        mapping: Mapping[str, object],
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> Deferred[None]:
        if tracing.switch.on:
            span = self._span("set_many", len(mapping))
            return tracing.traced(span, self._guarded(self._set_many, timeout, mapping, ttl))
        return self._guarded(self._set_many, timeout, mapping, ttl)

    def _set_many(self, mapping: Mapping[str, object], ttl: float | None) -> Deferred[None]:
        try:
            encoded = [(k, encode_value(v)) for k, v in mapping.items()]
            ttl = validate_ttl(ttl)
        except CacheError:
            return defer.fail()

        def store(full: list[str], prefix: str) -> Deferred[None]:
            if not full:
                return defer.succeed(None)
            items = {f: data for f, (_, data) in zip(full, encoded, strict=True)}
            return self._store.set_many(items, ttl)

        return self._with_keys([k for k, _ in encoded], store)

    def clear(
        self, namespace: str | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        span = self._span("clear") if tracing.switch.on else None
        return tracing.traced(span, self._guarded(self._clear, timeout, namespace))

    def _clear(self, namespace: str | None) -> Deferred[None]:
        parts = self._parts
        if namespace is not None:
            try:
                parts = (*parts, validate_namespace(namespace))
            except CacheError:
                return defer.fail()
        return self._store.clear(parts)

    def namespace(self, name: str) -> StoreCache:
        return StoreCache(self._store, (*self._parts, validate_namespace(name)))

    def lock(self, key: str, ttl: float, wait: float = 0.0) -> Deferred[Lock | None]:
        """
        Take a lock (see L{ICache.lock}). While waiting, tries again every 50 ms (on
        the store's clock).
        """
        try:
            ttl_ = validate_ttl(ttl)
            if ttl_ is None:
                raise InvalidTTL("expected a lock ttl in seconds, got None")
        except CacheError:
            return defer.fail()
        span = self._span("lock") if tracing.switch.on else None
        return tracing.traced(
            span,
            self._guarded(
                lambda: Deferred.fromCoroutine(self._lock(LOCK_PREFIX + key, key, ttl_, wait)),
                None,
            ),
        )

    async def _lock(self, lock_key: str, key: str, ttl: float, wait: float) -> Lock | None:
        token = secrets.token_hex(16)
        data = encode_value(token)
        clock = self._store.clock
        deadline = clock.seconds() + wait
        prefix = self._prefix()
        if isinstance(prefix, Deferred):
            prefix = await prefix
        full = validate_key(lock_key, prefix)
        while True:
            if await self._store.set_nx(full, data, ttl):
                return Lock(key, token, ttl, self, full)
            remaining = deadline - clock.seconds()
            if remaining <= 0:
                return None
            await task.deferLater(clock, min(0.05, remaining), lambda: None)

    def cache_aside(
        self, key: str, loader: Callable[[], Any], ttl: float | None = None
    ) -> Deferred[object]:
        try:
            validate_ttl(ttl)
        except CacheError:
            return defer.fail()
        inflight: dict[tuple[tuple[str, ...], str], list[Deferred[object]]]
        inflight = self._store.inflight
        slot = (self._parts, key)
        waiter: Deferred[object] = Deferred()
        waiters = inflight.get(slot)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        inflight[slot] = [waiter]

        def finish(result: object) -> None:
            for w in inflight.pop(slot, []):
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(result)

        if not tracing.switch.on:
            Deferred.fromCoroutine(self._load(key, loader, ttl)).addBoth(finish)
            return waiter
        # its get, the loader (with the spans it makes) and its set are children of
        # this span: the coroutine starts in a copy of the context it is current in
        span = self._span("cache_aside")
        token = tracing.attach(span)
        try:
            tracing.traced(span, Deferred.fromCoroutine(self._load(key, loader, ttl))).addBoth(
                finish
            )
        finally:
            tracing.detach(token)
        return waiter

    async def _load(self, key: str, loader: Callable[[], Any], ttl: float | None) -> object:
        value = await self.get(key)
        if value is not None:
            return value
        value = await defer.maybeDeferred(loader)
        if value is not None:
            await self.set(key, value, ttl)
        return value

    def close(self) -> Deferred[None]:
        if self._availability is not None:
            self._availability.closed = True
        return self._store.close()

    def health(self) -> dict[str, Any]:
        """
        See L{ICache.health}.
        """
        store = self._store
        avail = self._availability
        if avail is not None:
            state = avail.health()
        else:
            state = {"status": "closed" if getattr(store, "closed", False) else "ok"}
        health = {
            "status": state.pop("status"),
            "backend": getattr(store, "backend", type(store).__name__),
            "url": self._name(),
            "namespace": ":".join(self._parts) or None,
            **state,
        }
        refused = getattr(store, "refused", None)
        if refused is not None:
            # (a store with a bound on its waiting calls: the file cache)
            health["refused"] = refused
        return health
