# -*- test-case-name: tests.data.test_cache -*-
"""
L{MemoryCache}: an in-process LRU cache bounded by entries and/or bytes, with TTLs read
from an injected clock. It is the public in-memory L{ICache} and the test double.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from pywatt_twisted import tracing
from pywatt_twisted.data._cache._base import ICacheStore, StoreCache
from pywatt_twisted.data._cache._codec import validate_ttl
from pywatt_twisted.data._cache._errors import CacheError
from pywatt_twisted.data._resources import track

_switch = tracing.switch
_succeed = defer.succeed


def _prefix(parts: tuple[str, ...]) -> str:
    return "".join(p + ":" for p in parts)


class _Coded(bytes):
    """
    A stored value in the cache codec's form (L{encode_value}): JSON or an integer.
    """

    __slots__ = ()


def _coded(stored: bytes) -> bytes:
    """
    The codec form (what L{ICacheStore} reads and writes) of a stored value.
    """
    return b"b" + stored if stored.__class__ is bytes else stored


def entry_size(key: str, stored: bytes) -> int:
    """
    The size of an entry for C{max_bytes}: its key and its value's codec form (a bytes
    value's is one byte longer: its tag).
    """
    return len(key) + len(stored) + (stored.__class__ is bytes)


@implementer(ICacheStore)
class MemoryStore:
    """
    The storage behind L{MemoryCache}: an C{OrderedDict} of key -> (value, expiry).
    Expired entries are dropped when read, and first when room is needed.

    A bytes value is kept as the very object given (exactly C{bytes}): nothing is
    copied on the way in or out, as with a plain dict. Any other value is kept in the
    cache codec's form as a L{_Coded}. The store's interface (L{ICacheStore}) reads
    and writes the codec form all the same (C{b"b"} before a bytes value), and an
    entry's size is that form's length plus its key's, as on every backend.
    """

    #: prefix() depends only on the namespace path (see L{ICacheStore})
    static_prefix = True
    backend = "memory"

    def __init__(
        self, max_entries: int | None = None, max_bytes: int | None = None, clock: Any = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (not isinstance(bound, int) or bound < 1):
                raise CacheError(f"expected {name} as None or an int >= 1, got {bound!r}")
        self.clock = clock
        self.url_redacted = "memory://"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.inflight: dict[Any, Any] = {}
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __repr__(self) -> str:
        return f"<MemoryStore entries={len(self._data)} bytes={self.bytes}>"

    def prefix(self, parts: tuple[str, ...]) -> str:
        return _prefix(parts)

    def _live(self, key: str) -> bytes | None:
        """
        The codec form of the value of a live C{key}, or None.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        stored, expires = entry
        if expires is not None and expires <= self.clock.seconds():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return _coded(stored)

    #: the synchronous read L{StoreCache} uses (see L{ICacheStore})
    get_now = _live

    def _remove(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self.bytes -= entry_size(key, entry[0])
        return True

    def _store(self, key: str, data: bytes, ttl: float | None) -> None:
        # data in the codec form: a bytes value is kept without its tag
        self.store_value(key, data[1:] if data[:1] == b"b" else _Coded(data), ttl)

    #: the synchronous write L{StoreCache} uses (see L{ICacheStore})
    set_now = _store

    def store_value(self, key: str, stored: bytes, ttl: float | None) -> None:
        """
        Keep C{stored} (a bytes value as given, or a L{_Coded}) under C{key}, evicting
        what the bounds require.

        @raise CacheError: when the entry alone is larger than C{max_bytes}.
        """
        # the hot path of every set: the size rules of entry_size and _remove inline
        size = len(key) + len(stored) + (stored.__class__ is bytes)
        max_bytes = self.max_bytes
        if max_bytes is not None and size > max_bytes:
            raise CacheError(
                f"expected an entry of at most max_bytes={max_bytes} bytes, got "
                f"{size} bytes for key {key[:40]!r}; raise max_bytes or store less"
            )
        entries = self._data
        old = entries.pop(key, None)
        if old is not None:
            old_stored = old[0]
            self.bytes -= len(key) + len(old_stored) + (old_stored.__class__ is bytes)
        entries[key] = (stored, None if ttl is None else self.clock.seconds() + ttl)
        self.bytes += size
        max_entries = self.max_entries
        if (max_entries is not None and len(entries) > max_entries) or (
            max_bytes is not None and self.bytes > max_bytes
        ):
            self._shrink()

    def _over(self) -> bool:
        return (self.max_entries is not None and len(self._data) > self.max_entries) or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        )

    def _shrink(self) -> None:
        if not self._over():
            return
        now = self.clock.seconds()
        for key in [k for k, (_, e) in self._data.items() if e is not None and e <= now]:
            self._remove(key)
        while self._over():
            key = next(iter(self._data))
            self._remove(key)
            self.evictions += 1

    def get(self, key: str) -> Deferred[bytes | None]:
        return defer.succeed(self._live(key))

    def get_many(self, keys: list[str]) -> Deferred[dict[str, bytes]]:
        found = {}
        for key in keys:
            data = self._live(key)
            if data is not None:
                found[key] = data
        return defer.succeed(found)

    def set(self, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        try:
            self._store(key, data, ttl)
        except CacheError:
            return defer.fail()
        return defer.succeed(None)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        try:
            for key, data in items.items():
                self._store(key, data, ttl)
        except CacheError:
            return defer.fail()
        return defer.succeed(None)

    def set_nx(self, key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        if self._live(key) is not None:
            return defer.succeed(False)
        return self.set(key, data, ttl).addCallback(lambda _: True)

    def delete(self, key: str) -> Deferred[bool]:
        existed = self._live(key) is not None
        self._remove(key)
        return defer.succeed(existed)

    def exists(self, key: str) -> Deferred[bool]:
        return defer.succeed(self._live(key) is not None)

    def increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        data = self._live(key)
        if data is None:
            value = delta
            expires_ttl = ttl
        else:
            try:
                value = int(data) + delta
            except ValueError:
                return defer.fail(
                    CacheError(
                        f"expected an integer value at {key[:60]!r} to increment, got "
                        "another type; delete it or use another key"
                    )
                )
            expires = self._data[key][1]
            expires_ttl = None if expires is None else max(expires - self.clock.seconds(), 0)
        new = b"%d" % value
        try:
            if expires_ttl == 0:
                self._remove(key)
            else:
                self._store(key, new, expires_ttl)
        except CacheError:
            return defer.fail()
        return defer.succeed(value)

    def compare_delete(self, key: str, data: bytes) -> Deferred[bool]:
        if self._live(key) == data:
            self._remove(key)
            return defer.succeed(True)
        return defer.succeed(False)

    def clear(self, parts: tuple[str, ...]) -> Deferred[None]:
        prefix = _prefix(parts)
        for key in [k for k in self._data if k.startswith(prefix)]:
            self._remove(key)
        return defer.succeed(None)

    def close(self) -> Deferred[None]:
        return defer.succeed(None)


class MemoryCache(StoreCache):
    """
    An in-process L{ICache}: LRU eviction once C{max_entries} entries or C{max_bytes}
    bytes (key + encoded value) are exceeded; TTLs measured on C{clock} (an
    L{IReactorTime}; pass a L{twisted.internet.task.Clock} in tests).
    """

    def __init__(
        self,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        clock: Any = None,
        namespace: str | None = None,
    ) -> None:
        store = MemoryStore(max_entries=max_entries, max_bytes=max_bytes, clock=clock)
        super().__init__(store, (namespace,) if namespace else ())
        self._entries = store._data
        track(self)

    def get(self, key: str, *, timeout: float | None = None) -> Deferred[object | None]:
        # The hottest path of an in-process cache, written out in full: a key checked
        # before (StoreCache remembers it), tracing off, no timeout: the store's read
        # (MemoryStore._live) inline, and a bytes value returned as it was stored.
        # Anything else takes StoreCache.get.
        if timeout is None and not _switch.on and key.__class__ is str:
            full = self._known.get(key)
            if full is not None:
                entry = self._entries.get(full)
                if entry is None:
                    return _succeed(None)
                stored, expires = entry
                if stored.__class__ is bytes and (
                    expires is None or expires > self._store.clock.seconds()
                ):
                    self._entries.move_to_end(full)
                    return _succeed(stored)
        return StoreCache.get(self, key, timeout=timeout)

    def set(
        self, key: str, value: object, ttl: float | None = None, *, timeout: float | None = None
    ) -> Deferred[None]:
        # The same for a write of bytes: the value is kept as given
        # (MemoryStore.store_value); for a key checked before, on a store without
        # bounds and without a ttl, store_value is written inline (nothing to evict).
        # Anything else takes StoreCache.set.
        if timeout is None and not _switch.on and value.__class__ is bytes and key.__class__ is str:
            store = self._store
            full = self._known.get(key)
            if (
                full is not None
                and ttl is None
                and store.max_entries is None
                and store.max_bytes is None
            ):
                entries = self._entries
                old = entries.pop(full, None)
                entries[full] = (value, None)
                if old is None:
                    store.bytes += len(full) + len(value) + 1
                else:
                    old_stored = old[0]
                    store.bytes += (
                        len(value) + 1 - len(old_stored) - (old_stored.__class__ is bytes)
                    )
                return _succeed(None)
            try:
                if full is None:
                    full = self._check(key, self._static)  # type: ignore[arg-type]
                store.store_value(full, value, validate_ttl(ttl))
            except CacheError:
                return defer.fail()
            return _succeed(None)
        return StoreCache.set(self, key, value, ttl, timeout=timeout)

    @property
    def store(self) -> MemoryStore:
        return self._store  # type: ignore[no-any-return]
