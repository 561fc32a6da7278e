"""
Data layer benchmark: C{.venv/bin/python -m bench data} (add C{--quick} for a short run).

For each backend it measures our API and the raw client library used directly, in the
same run, and prints both with the ratio (raw rate / our rate; 1.0 means no overhead,
the target is <= 1.3):

    - caches: C{set} + C{get} pairs per second, one at a time (latency-bound) and 32 in
      flight (throughput). Raw clients: txredisapi (Redis), MemCacheProtocol
      (Memcached), C{open}/C{os.replace} in the reactor thread pool (file), and for the
      memory cache a minimal LRU dict with TTLs behind C{defer.succeed} (L{LruDict}).
      The memory cache has no client library to compare with, so its raw equivalent is
      the least code that gives the same guarantees as C{MemoryCache}: an
      C{OrderedDict} that drops an expired entry when read (one clock read and compare),
      moves a read entry to the end (LRU order) and checks its entry bound on every
      write. A plain C{dict} behind C{defer.succeed} is also printed, as a reference
      row: it has no expiry, no LRU order and no bound, so it is not something a cache
      could be, but it shows the floor. The memory rows are timed in CPU time (the
      process never waits), so other work on a shared machine does not move them.
      What remains between C{MemoryCache} and
      L{LruDict} is what the other backends do too: key checks (the same rules on every
      backend) and value encoding (tags so bytes and JSON values read back as stored).
    - databases: C{SELECT :x} round trips per second, one at a time and 32 in flight.
      Raw client: the same driver through C{adbapi.ConnectionPool.runQuery} (the
      non-blocking way to use it from Twisted), plus the driver called synchronously in
      a loop for reference (it would block the reactor, so it is not a usable baseline,
      but it shows the cost of the thread hop that any non-blocking use pays).

Each row alternates three measurements of each side (ours, the raw client) and reports
the median of each: one outlier (a raw client that reads twice its usual rate once) does
not move it. A quick run measures 500 operations per cache measurement and 1,500
queries per database measurement (3,000 in a full run). The memory cache is measured
with L{MEMORY_PAIRS} set+get pairs in both (about 0.2 s of CPU per measurement): with
15,000 (30 ms) one measurement in a full run read 1.42 where runs before and after it
read 1.15 to 1.20.

A backend whose server is not reachable is skipped with a note.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred

from bench.record import row

CONCURRENCY = (1, 32)

#: measurements per side and row, alternated; the row reports the medians
ROUNDS = 3

SERVICES = {
    "postgresql": ("PYWATT_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test", 5432),
    "mysql": ("PYWATT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test", 3306),
    "redis": ("PYWATT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379),
    "memcached": ("PYWATT_TEST_MEMCACHED_URL", "memcached://127.0.0.1:11211", 11211),
}


#: set+get pairs per memory-cache measurement, quick or full (see the module docstring)
MEMORY_PAIRS = 100_000


def _url(name: str) -> str | None:
    variable, default, port = SERVICES[name]
    url = os.environ.get(variable, default)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return url
    except OSError:
        return None


async def _rate(
    op: Callable[[int], Coroutine[Any, Any, Any]],
    n: int,
    concurrency: int,
    timer: Callable[[], float] = time.perf_counter,
) -> float:
    """
    Operations per second of C{op(i)} for i in range(n), C{concurrency} at a time,
    timed with C{timer} (wall time; the in-process memory cache passes
    C{time.process_time}: it never waits, so its CPU time is its time, and other
    processes on a shared machine do not move it).
    """
    for i in range(min(n // 10, 200)):  # warm up
        await op(i)
    start = timer()
    if concurrency == 1:
        for i in range(n):
            await op(i)
    else:
        for base in range(0, n, concurrency):
            await defer.gatherResults(
                [defer.ensureDeferred(op(i)) for i in range(base, min(base + concurrency, n))]
            )
    return n / (timer() - start)


async def _medians(
    ops: list[Callable[[int], Coroutine[Any, Any, Any]]],
    n: int,
    concurrency: int,
    timer: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """
    The median rate of each of C{ops} over L{ROUNDS} measurements, taken in turn (all
    of them once, then again) so that machine noise falls on every side; one outlier
    (a raw client that once reads twice its usual rate) does not move a median.
    """
    rates: list[list[float]] = [[] for _ in ops]
    for _ in range(ROUNDS):
        for op, measured in zip(ops, rates, strict=True):
            measured.append(await _rate(op, n, concurrency, timer))
    return [statistics.median(measured) for measured in rates]


def _row(label: str, ours: float, raw: float, raw_name: str, metric: str | None = None) -> None:
    """
    Print a line; with C{metric}, also report it as a row of the record (the ratio is
    the raw client's rate over ours: 1.0 is no overhead; the target is at most 1.3).
    """
    print(
        f"  {label:<34} ours {ours:>9.0f}/s   {raw_name:<6} {raw:>9.0f}/s"
        f"   ratio {raw / ours:5.2f}x",
        flush=True,
    )
    if metric is not None:
        row(
            "data",
            metric,
            ours,
            raw,
            unit="/s",
            target="<= 1.3",
            better="lower",
            ratio=raw / ours,
        )


# caches -----------------------------------------------------------------------------


class LruDict:
    """
    The raw equivalent of C{MemoryCache} for the benchmark: an C{OrderedDict} with LRU
    order, TTLs read from a clock and an optional entry bound, answering with
    C{defer.succeed}. No key checks and no value encoding: values must be bytes.
    """

    def __init__(self, clock: Any, max_entries: int | None = None) -> None:
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._seconds = clock.seconds
        self.max_entries = max_entries

    def set(self, key: str, value: bytes, ttl: float | None = None) -> Deferred[None]:
        data = self._data
        data.pop(key, None)
        data[key] = (value, None if ttl is None else self._seconds() + ttl)
        if self.max_entries is not None and len(data) > self.max_entries:
            data.popitem(last=False)
        return defer.succeed(None)

    def get(self, key: str) -> Deferred[bytes | None]:
        entry = self._data.get(key)
        if entry is None:
            return defer.succeed(None)
        value, expires = entry
        if expires is not None and expires <= self._seconds():
            del self._data[key]
            return defer.succeed(None)
        self._data.move_to_end(key)
        return defer.succeed(value)


Baseline = tuple[str, Callable[[str, bytes], Awaitable[Any]], Callable[[str], Awaitable[Any]]]


async def _bench_cache(
    name: str,
    ours: Any,
    raw_set: Any,
    raw_get: Any,
    n: int,
    reference: Baseline | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> None:
    """
    Rows of C{ours} against the raw client (C{raw_set}, C{raw_get}), and, when given,
    reference rows against C{reference} (label, set, get), which is not the target.
    """
    print(f"cache {name}:", flush=True)

    async def our_pair(i: int) -> None:
        await ours.set(f"k{i % 100}", b"v" * 100)
        await ours.get(f"k{i % 100}")

    def pair(set_: Any, get_: Any) -> Callable[[int], Coroutine[Any, Any, None]]:
        async def raw_pair(i: int) -> None:
            await set_(f"benchraw:k{i % 100}", b"v" * 100)
            await get_(f"benchraw:k{i % 100}")

        return raw_pair

    raw_pair = pair(raw_set, raw_get)
    ref_pair = None if reference is None else pair(reference[1], reference[2])
    for concurrency in CONCURRENCY:
        sides = [raw_pair, our_pair] if ref_pair is None else [raw_pair, our_pair, ref_pair]
        raw_rate, ours_rate, *ref_rate = await _medians(sides, n, concurrency, timer)
        _row(
            f"set+get pairs, {concurrency} in flight",
            ours_rate,
            raw_rate,
            "raw",
            metric=f"cache {name.split()[0]} set+get, {concurrency} in flight, raw/ours",
        )
        if reference is not None:
            _row(
                f"  (ref.) {concurrency} in flight",
                ours_rate,
                ref_rate[0],
                reference[0],
            )
    await ours.clear()
    await ours.close()


async def bench_caches(reactor: Any, n: int) -> None:
    from pywatt_twisted.data import Cache

    store: dict[str, bytes] = {}
    lru = LruDict(reactor)

    def dict_set(k: str, v: bytes) -> Deferred[None]:
        store[k] = v
        return defer.succeed(None)

    await _bench_cache(
        "memory (raw: LruDict, an LRU dict with TTLs)",
        Cache.from_url("memory://", namespace="bench", clock=reactor),
        lru.set,
        lru.get,
        MEMORY_PAIRS,
        reference=("dict", dict_set, lambda k: defer.succeed(store.get(k))),
        timer=time.process_time,
    )

    directory = tempfile.mkdtemp(prefix="pywatt-bench-")
    pool = reactor.getThreadPool()

    def write(k: str, v: bytes) -> None:
        tmp = os.path.join(directory, f".tmp-{k}")
        with open(tmp, "wb") as f:
            f.write(v)
        os.replace(tmp, os.path.join(directory, k))

    def read(k: str) -> bytes:
        with open(os.path.join(directory, k), "rb") as f:
            return f.read()

    from twisted.internet.threads import deferToThreadPool

    await _bench_cache(
        "file",
        Cache.from_url(f"file://{directory}", namespace="bench"),
        lambda k, v: deferToThreadPool(reactor, pool, write, k, v),
        lambda k: deferToThreadPool(reactor, pool, read, k),
        n // 2,
    )

    url = _url("redis")
    if url is None:
        print("cache redis: skipped (no server)")
    else:
        import txredisapi

        raw = txredisapi.lazyConnectionPool(
            "127.0.0.1", 6379, poolsize=4, charset=None, convertNumbers=False
        )
        await _bench_cache(
            "redis",
            Cache.from_url(url, namespace="bench"),
            lambda k, v: raw.set(k.encode(), v),
            lambda k: raw.get(k.encode()),
            n,
        )
        await raw.disconnect()

    url = _url("memcached")
    if url is None:
        print("cache memcached: skipped (no server)")
    else:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.protocols.memcache import MemCacheProtocol

        proto = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", 11211), MemCacheProtocol()
        )
        await _bench_cache(
            "memcached",
            Cache.from_url(url, namespace="bench"),
            lambda k, v: proto.set(k.encode(), v),
            lambda k: proto.get(k.encode()),
            n,
        )
        proto.transport.loseConnection()


# databases ------------------------------------------------------------------------------


async def _bench_database(name: str, url: str, n: int) -> None:
    from twisted.enterprise import adbapi

    from pywatt_twisted.data import Database

    print(f"database {name}:", flush=True)
    db = Database.from_url(url, max_pool=4)
    kw = db.config.connect_kwargs()
    raw_pool = adbapi.ConnectionPool(db._pool.dbapiName, cp_min=1, cp_max=4, **kw)
    driver = db._pool.dbapiName
    raw_sql = "SELECT ? AS x" if name == "sqlite" else "SELECT %(x)s AS x"

    async def ours(i: int) -> Any:
        return await db.query_one("SELECT :x AS x", {"x": i})

    async def raw(i: int) -> Any:
        arg: Any = (i,) if name == "sqlite" else {"x": i}
        return await raw_pool.runQuery(raw_sql, arg)

    for concurrency in CONCURRENCY:
        raw_rate, ours_rate = await _medians([raw, ours], n, concurrency)
        _row(
            f"SELECT round trips, {concurrency} in flight",
            ours_rate,
            raw_rate,
            "adbapi",
            metric=f"database {name} ({driver}) SELECT, {concurrency} in flight, adbapi/ours",
        )

    # the driver alone, blocking, for reference
    conn = raw_pool.dbapi.connect(**kw)
    cur = conn.cursor()
    arg0: Any = (1,) if name == "sqlite" else {"x": 1}
    start = time.perf_counter()
    for _ in range(n):
        cur.execute(raw_sql, arg0)
        cur.fetchall()
        conn.commit()
    blocking = n / (time.perf_counter() - start)
    conn.close()
    o = await _rate(ours, n, 1)
    _row("SELECT vs blocking driver (ref.)", o, blocking, "sync  ")
    raw_pool.close()
    await db.close()


async def bench_databases(reactor: Any, n: int) -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="pywatt-bench-"), "bench.db")
    for name in ("sqlite", "postgresql", "mysql"):
        url = f"sqlite:///{path}" if name == "sqlite" else _url(name)
        if url is None:
            print(f"database {name}: skipped (no server)")
            continue
        await _bench_database(name, url, n)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n = 500 if quick else 3000

    async def run(reactor: Any) -> None:
        await bench_caches(reactor, n)
        # (the database rows at 32 in flight need about a second per measurement to
        # settle: with 500 queries a quick run's PostgreSQL ratio read 1.54 where full
        # runs read 0.94-0.98, and make bench-check compares quick runs with the record)
        await bench_databases(reactor, 1500 if quick else n)

    def start(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(run(reactor))

    try:
        task.react(start)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
