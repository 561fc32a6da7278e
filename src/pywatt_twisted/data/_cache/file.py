# -*- test-case-name: tests.data.test_cache -*-
"""
L{FileCache}: one file per key in a directory, written atomically (temporary file, then
C{os.replace}), with TTLs; it survives a restart and can be shared by processes on one
machine. File I/O runs in the reactor's thread pool, never on the reactor thread.

File format: one JSON header line C{{"k": key, "e": expiry or null}} (expiry in seconds
since the epoch, from the clock), then the encoded value. File names are the SHA-256 of
the key, so any valid key maps to a safe name. The name and the header's start of the
keys in use are remembered (L{NAMES} of them), and a header that says "this key, no
expiry" is recognised by its bytes, without parsing it.

Threads: a store's calls run in the reactor's thread pool through a L{BurstRunner}, at
most C{threads} (L{THREADS}) at a time, so the pool keeps threads for the rest of the
process (name resolution uses it too); at most C{max_waiting} (L{MAX_WAITING}) calls
wait beyond those, and a call made then fails at once with L{CacheUnavailable} (nothing
was read or written).

Atomicity across processes: C{set_nx}, C{increment} and C{compare_delete} hold an
exclusive C{fcntl.flock} on C{DIR/.lock} while they read and write; plain C{set} and
C{get} need none (C{os.replace} is atomic).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pywatt_twisted.data._cache._base import ICacheStore, StoreCache
from pywatt_twisted.data._cache._errors import CacheError, CacheUnavailable
from pywatt_twisted.data._resources import track
from pywatt_twisted.data._threads import (
    MAX_WAITING_LIMIT,
    BurstRunner,
    Refusals,
    checked_bound,
)

T = TypeVar("T")

_SUFFIX = ".entry"

#: the header's JSON, as C{json.dumps(..., separators=(",", ":"))} writes it (one
#: encoder for every call: C{json.dumps} with separators builds a new one each time)
_encode = json.JSONEncoder(separators=(",", ":")).encode

#: how many keys' file names and header starts a store remembers (when full, it forgets
#: them all and remembers the keys in use again)
NAMES = 1024

#: the flags C{tempfile.mkstemp} opens a temporary file with (created here, never
#: followed through a link, not inherited by child processes)
_TEMPORARY = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

#: numbers of temporary file names, shared by the stores of this process
_numbers = itertools.count()

#: the most calls of one store running at once in the reactor's thread pool (its
#: default size is 10)
THREADS = 4

#: the most calls of one store waiting for one of its threads, by default
MAX_WAITING = 1000

_log = Logger()

#: how much one read asks for (a cache file is read whole, usually in one read)
_CHUNK = 1 << 16


def _contents(path: str) -> bytes | None:
    """
    The whole file at C{path}; None when there is none. Plain system calls: C{open()}'s
    buffered file adds an C{fstat}, an C{lseek} and an C{ioctl} to every file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    """
    Write all of C{data} to C{fd} (C{os.write} may write less than it is given).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _prefix(parts: tuple[str, ...]) -> str:
    return "".join(p + ":" for p in parts)


@implementer(ICacheStore)
class FileStore(BurstRunner):
    """
    The storage behind L{FileCache}.

    @ivar refused: calls failed at once because C{max_waiting} calls already waited.
    """

    #: prefix() depends only on the namespace path (see L{ICacheStore})
    static_prefix = True
    backend = "file"
    what = "file cache call"

    def __init__(
        self,
        directory: str,
        clock: Any = None,
        reactor: Any = None,
        fsync: bool = False,
        threads: int = THREADS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = self._reactor = reactor
        self.max = checked_bound("threads", threads, 64, CacheError)
        self._init_runner(checked_bound("max_waiting", max_waiting, MAX_WAITING_LIMIT, CacheError))
        self._refusals = Refusals(
            _log,
            "File cache {url}: {threads} calls are running and {max_waiting} already wait; "
            "refusing calls until one of them starts",
            "File cache {url}: accepting calls again; {count} were refused while "
            "{max_waiting} calls waited",
        )
        self.clock = clock if clock is not None else reactor
        self.directory = os.path.abspath(directory)
        self.url_redacted = f"file://{self.directory}"
        self.fsync = fsync
        self.inflight: dict[Any, Any] = {}
        self._lock = threading.Lock()
        # key -> (path of its file, start of its header): see _name
        self._names: dict[str, tuple[str, bytes]] = {}
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise CacheError(
                f"expected a writable cache directory, got {self.directory!r} ({e.strerror})"
            ) from None

    def __repr__(self) -> str:
        return f"<FileStore {self.directory}>"

    def prefix(self, parts: tuple[str, ...]) -> str:
        return _prefix(parts)

    # helpers (pool threads) ------------------------------------------------------------

    @property
    def threadpool(self) -> Any:
        # (the reactor makes its pool on first use, and stops it at shutdown)
        return self.reactor.getThreadPool()

    def _closed(self) -> BaseException:
        return CacheUnavailable(
            f"expected the reactor's thread pool to run the file cache {self.url_redacted}, "
            "but it is stopped (the reactor is shutting down?); nothing was read or written"
        )

    @property
    def refused(self) -> int:
        return self._refusals.total

    def _run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        refusals = self._refusals
        if self.full():
            refusals.refuse(url=self.url_redacted, threads=self.max, max_waiting=self.max_waiting)
            return defer.fail(
                CacheUnavailable(
                    f"expected room among the calls waiting for the file cache "
                    f"{self.url_redacted}, but {self.max} are running and "
                    f"max_waiting={self.max_waiting} already wait; this call was not run "
                    "(retry later, or raise max_waiting)"
                )
            )
        if refusals.run:
            refusals.accept(url=self.url_redacted, max_waiting=self.max_waiting)
        return self.run_in_thread(fn, self.clock.seconds(), *args)

    def _name(self, key: str) -> tuple[str, bytes]:
        """
        The path of C{key}'s file and the start of its header, up to the expiry
        (C{{"k":KEY,"e":}}), remembered for the keys in use.
        """
        names = self._names
        found = names.get(key)
        if found is None:
            if len(names) >= NAMES:
                names.clear()
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
            found = names[key] = (
                os.path.join(self.directory, digest + _SUFFIX),
                b'{"k":' + _encode(key).encode() + b',"e":',
            )
        return found

    def _path(self, key: str) -> str:
        return self._name(key)[0]

    def _temporary(self) -> tuple[int, str]:
        """
        Create a new temporary file in the directory, as C{tempfile.mkstemp} does
        (C{O_EXCL}, mode 0600) but named by this process's id and a counter instead of
        random letters: an existing file of that name (a crashed process's leftover, or
        another store's) is skipped for the next number.
        """
        pid = os.getpid()
        for _ in range(100):
            path = f"{self.directory}/.tmp-{pid}-{next(_numbers)}"
            try:
                return os.open(path, _TEMPORARY, 0o600), path
            except FileExistsError:
                continue
        return tempfile.mkstemp(dir=self.directory, prefix=".tmp-")

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock, open(os.path.join(self.directory, ".lock"), "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self, path: str, now: float) -> tuple[str, float | None, bytes] | None:
        raw = _contents(path)
        return None if raw is None else self._parse(path, raw, now)

    def _parse(self, path: str, raw: bytes, now: float) -> tuple[str, float | None, bytes] | None:
        """
        The key, expiry and value of the file at C{path} read as C{raw}; None for a
        torn or foreign file, or an expired one (which is removed).
        """
        header, sep, data = raw.partition(b"\n")
        try:
            meta = json.loads(header) if sep else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            # a torn or foreign file: treat as missing
            return None
        expires = meta.get("e")
        if expires is not None and expires <= now:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        return meta.get("k", ""), expires, data

    def _write(self, key: str, data: bytes, expires: float | None) -> None:
        path, start = self._name(key)
        # the bytes of json.dumps({"k": key, "e": expires}, separators=(",", ":"))
        header = start + (b"null}" if expires is None else _encode(expires).encode() + b"}")
        fd, tmp = self._temporary()
        try:
            try:
                _write_all(fd, header + b"\n" + data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _expiry(now: float, ttl: float | None) -> float | None:
        return None if ttl is None else now + ttl

    def _get(self, now: float, key: str) -> bytes | None:
        path, start = self._name(key)
        raw = _contents(path)
        if raw is None:
            return None
        plain = start + b"null}\n"
        if raw.startswith(plain):
            # the header this store writes for this key and no expiry
            return raw[len(plain) :]
        entry = self._parse(path, raw, now)
        return None if entry is None or entry[0] != key else entry[2]

    def _get_many(self, now: float, keys: list[str]) -> dict[str, bytes]:
        found = {}
        for key in keys:
            data = self._get(now, key)
            if data is not None:
                found[key] = data
        return found

    def _set(self, now: float, key: str, data: bytes, ttl: float | None) -> None:
        self._write(key, data, self._expiry(now, ttl))

    def _set_many(self, now: float, items: dict[str, bytes], ttl: float | None) -> None:
        for key, data in items.items():
            self._write(key, data, self._expiry(now, ttl))

    def _set_nx(self, now: float, key: str, data: bytes, ttl: float | None) -> bool:
        with self._exclusive():
            if self._get(now, key) is not None:
                return False
            self._write(key, data, self._expiry(now, ttl))
            return True

    def _delete(self, now: float, key: str) -> bool:
        path = self._path(key)
        existed = self._get(now, key) is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return existed

    def _increment(self, now: float, key: str, delta: int, ttl: float | None) -> int:
        with self._exclusive():
            entry = self._read(self._path(key), now)
            if entry is None or entry[0] != key:
                value, expires = delta, self._expiry(now, ttl)
            else:
                try:
                    value = int(entry[2]) + delta
                except ValueError:
                    raise CacheError(
                        f"expected an integer value at {key[:60]!r} to increment, got "
                        "another type; delete it or use another key"
                    ) from None
                expires = entry[1]
            self._write(key, b"%d" % value, expires)
            return value

    def _compare_delete(self, now: float, key: str, data: bytes) -> bool:
        with self._exclusive():
            if self._get(now, key) != data:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(key))
            return True

    def _clear(self, now: float, parts: tuple[str, ...]) -> None:
        prefix = _prefix(parts)
        for name in os.listdir(self.directory):
            if not name.endswith(_SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            if prefix:
                entry = self._read(path, now)
                if entry is None or not entry[0].startswith(prefix):
                    continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # ICacheStore ------------------------------------------------------------------------

    def get(self, key: str) -> Deferred[bytes | None]:
        return self._run(self._get, key)

    def get_many(self, keys: list[str]) -> Deferred[dict[str, bytes]]:
        return self._run(self._get_many, keys)

    def set(self, key: str, data: bytes, ttl: float | None) -> Deferred[None]:
        return self._run(self._set, key, data, ttl)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Deferred[None]:
        return self._run(self._set_many, items, ttl)

    def set_nx(self, key: str, data: bytes, ttl: float | None) -> Deferred[bool]:
        return self._run(self._set_nx, key, data, ttl)

    def delete(self, key: str) -> Deferred[bool]:
        return self._run(self._delete, key)

    def exists(self, key: str) -> Deferred[bool]:
        return self._run(self._get, key).addCallback(lambda d: d is not None)

    def increment(self, key: str, delta: int, ttl: float | None) -> Deferred[int]:
        return self._run(self._increment, key, delta, ttl)

    def compare_delete(self, key: str, data: bytes) -> Deferred[bool]:
        return self._run(self._compare_delete, key, data)

    def clear(self, parts: tuple[str, ...]) -> Deferred[None]:
        return self._run(self._clear, parts)

    def close(self) -> Deferred[None]:
        return defer.succeed(None)


class FileCache(StoreCache):
    """
    An L{ICache} in a directory (see the module docstring). C{clock} gives the time
    TTLs are measured on (default: the reactor, i.e. wall-clock time, which is what a
    cache that survives restarts needs).

    @param threads: the most calls running at once in the reactor's thread pool (1 to
        64, default L{THREADS}).
    @param max_waiting: the most calls waiting beyond those (1 to 1,000,000, default
        L{MAX_WAITING}); a call made then fails at once with L{CacheUnavailable}.
    """

    def __init__(
        self,
        directory: str,
        clock: Any = None,
        reactor: Any = None,
        namespace: str | None = None,
        fsync: bool = False,
        threads: int = THREADS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        store = FileStore(
            directory,
            clock=clock,
            reactor=reactor,
            fsync=fsync,
            threads=threads,
            max_waiting=max_waiting,
        )
        super().__init__(store, (namespace,) if namespace else ())
        track(self)
