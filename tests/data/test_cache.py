"""
One test suite for every L{pywatt_twisted.data.ICache} backend: memory and file (TTL
driven by a L{Clock}), Redis and Memcached (real servers on loopback, short real TTLs).
Every test works in its own random namespace, so parallel runs do not collide.
"""

from __future__ import annotations

import gc
import math
import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import defer, error, reactor, task
from twisted.internet.testing import StringTransport
from twisted.python import log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data import (
    Cache,
    CacheError,
    CacheUnavailable,
    FileCache,
    ICache,
    InvalidKey,
    InvalidTTL,
    MemoryCache,
    SerializationError,
)
from tests.services import require_service

VALUES: list[Any] = [
    b"raw \x00\xff bytes",
    b"",
    "text with unicode \u00e9\u2603",
    "",
    "123",
    42,
    -7,
    0,
    3.5,
    True,
    False,
    [1, "two", None, {"three": [4]}],
    {"nested": {"list": [1, 2], "s": "x"}, "n": None},
]


class CacheSuiteMixin:
    """
    The tests every backend must pass. Subclasses implement C{make(namespace)} and set
    C{fake_clock} (a L{task.Clock}) or leave it None to use real time.
    """

    fake_clock: task.Clock | None = None
    #: seconds a 1-second TTL may take to expire on this backend (Memcached counts in
    #: whole seconds)
    expiry_slack = 0.0

    def make(self, namespace: str) -> Any:
        """
        A cache of this backend for C{namespace} (or a Deferred of one).
        """
        raise NotImplementedError

    def setUp(self) -> defer.Deferred[None]:
        self.ns = f"t{uuid.uuid4().hex[:12]}"

        def made(cache: Any) -> None:
            self.cache = cache
            self.addCleanup(self._cleanup)

        return defer.maybeDeferred(self.make, self.ns).addCallback(made)

    async def _cleanup(self) -> None:
        await self.cache.clear()
        await self.cache.close()

    async def _elapse(self, seconds: float) -> None:
        if self.fake_clock is not None:
            self.fake_clock.advance(seconds)
        else:
            await task.deferLater(reactor, seconds + self.expiry_slack, lambda: None)

    async def _settle(self, d: defer.Deferred[Any]) -> Any:
        """
        Wait for C{d}, moving the fake clock (if any) in 50 ms steps meanwhile.
        """
        for _ in range(400):
            if d.called:
                break
            if self.fake_clock is not None:
                self.fake_clock.advance(0.05)
            await task.deferLater(reactor, 0.005, lambda: None)
        return await d

    # values and keys ------------------------------------------------------------------

    async def test_interface(self) -> None:
        self.assertTrue(ICache.providedBy(self.cache))
        self.assertTrue(ICache.providedBy(self.cache.namespace("sub")))

    async def test_round_trip(self) -> None:
        for i, value in enumerate(VALUES):
            await self.cache.set(f"k{i}", value)
        for i, value in enumerate(VALUES):
            got = await self.cache.get(f"k{i}")
            self.assertEqual(got, value)
            self.assertIs(type(got), type(value))

    async def test_missing(self) -> None:
        self.assertIsNone(await self.cache.get("missing"))
        self.assertFalse(await self.cache.exists("missing"))
        self.assertFalse(await self.cache.delete("missing"))

    async def test_overwrite_delete_exists(self) -> None:
        await self.cache.set("k", b"1")
        await self.cache.set("k", {"v": 2})
        self.assertEqual(await self.cache.get("k"), {"v": 2})
        self.assertTrue(await self.cache.exists("k"))
        self.assertTrue(await self.cache.delete("k"))
        self.assertFalse(await self.cache.exists("k"))
        self.assertIsNone(await self.cache.get("k"))

    async def test_set_nx(self) -> None:
        self.assertTrue(await self.cache.set_nx("k", "first"))
        self.assertFalse(await self.cache.set_nx("k", "second"))
        self.assertEqual(await self.cache.get("k"), "first")
        await self.cache.delete("k")
        self.assertTrue(await self.cache.set_nx("k", "third"))

    async def test_increment(self) -> None:
        self.assertEqual(await self.cache.increment("c"), 1)
        self.assertEqual(await self.cache.increment("c", 10), 11)
        self.assertEqual(await self.cache.increment("c", -4), 7)
        self.assertEqual(await self.cache.get("c"), 7)
        await self.cache.set("d", 5)
        self.assertEqual(await self.cache.increment("d"), 6)
        await self.cache.set("s", "not a number")
        with self.assertRaises(CacheError):
            await self.cache.increment("s")
        with self.assertRaises(CacheError):
            await self.cache.increment("c", 1.5)

    async def test_concurrent_increments(self) -> None:
        results = await defer.gatherResults([self.cache.increment("c") for _ in range(50)])
        self.assertEqual(sorted(results), list(range(1, 51)))
        self.assertEqual(await self.cache.get("c"), 50)

    async def test_many(self) -> None:
        await self.cache.set_many({"a": 1, "b": b"two", "c": ["three"]})
        got = await self.cache.get_many(["a", "b", "c", "missing"])
        self.assertEqual(got, {"a": 1, "b": b"two", "c": ["three"]})
        self.assertEqual(await self.cache.get_many([]), {})
        await self.cache.set_many({})

    async def test_invalid_keys(self) -> None:
        for key in ("has space", "tab\tkey", "nl\n", "ctl\x01", "", "x" * 251, 5, b"bytes"):
            with self.assertRaises(InvalidKey, msg=repr(key)):
                await self.cache.get(key)
            with self.assertRaises(InvalidKey, msg=repr(key)):
                await self.cache.set(key, b"v")
        # the namespace prefix counts towards the 250 bytes
        with self.assertRaises(InvalidKey):
            await self.cache.set("x" * (250 - len(self.ns)), b"v")
        with self.assertRaises(InvalidKey):
            await self.cache.get_many(["ok", "not ok"])
        await self.cache.set("\u00e9:/-_.x", b"ok")
        self.assertEqual(await self.cache.get("\u00e9:/-_.x"), b"ok")

    async def test_invalid_values_and_ttls(self) -> None:
        with self.assertRaises(SerializationError):
            await self.cache.set("k", object())
        with self.assertRaises(SerializationError):
            await self.cache.set("k", float("nan"))
        for ttl in (0, -1, "10", float("inf"), True):
            with self.assertRaises(InvalidTTL, msg=repr(ttl)):
                await self.cache.set("k", b"v", ttl=ttl)
        self.assertFalse(await self.cache.exists("k"))

    # TTL ------------------------------------------------------------------------------

    async def test_ttl_expiry(self) -> None:
        await self.cache.set("short", b"v", ttl=1)
        await self.cache.set("long", b"v", ttl=100)
        await self.cache.set("forever", b"v")
        await self.cache.set_many({"m1": 1, "m2": 2}, ttl=1)
        self.assertTrue(await self.cache.set_nx("nx", b"v", ttl=1))
        self.assertEqual(await self.cache.increment("ctr", ttl=1), 1)
        self.assertTrue(await self.cache.exists("short"))
        await self._elapse(1.1)
        self.assertIsNone(await self.cache.get("short"))
        self.assertFalse(await self.cache.exists("nx"))
        self.assertEqual(await self.cache.get_many(["m1", "m2", "long"]), {"long": b"v"})
        self.assertEqual(await self.cache.get("forever"), b"v")
        self.assertTrue(await self.cache.set_nx("nx", b"again", ttl=1))
        self.assertEqual(await self.cache.increment("ctr"), 1)

    # namespaces -----------------------------------------------------------------------

    async def test_namespaces(self) -> None:
        users = self.cache.namespace("users")
        orders = self.cache.namespace("orders")
        await users.set("1", "alice")
        await orders.set("1", "order")
        await self.cache.set("1", "root")
        self.assertEqual(await users.get("1"), "alice")
        self.assertEqual(await orders.get("1"), "order")
        self.assertEqual(await self.cache.get("1"), "root")
        await self.cache.clear("users")
        self.assertIsNone(await users.get("1"))
        self.assertEqual(await orders.get("1"), "order")
        self.assertEqual(await self.cache.get("1"), "root")
        await users.set("2", "bob")
        self.assertEqual(await users.get("2"), "bob")
        await self.cache.clear()
        self.assertIsNone(await orders.get("1"))
        self.assertIsNone(await users.get("2"))
        self.assertIsNone(await self.cache.get("1"))
        with self.assertRaises(InvalidKey):
            self.cache.namespace("has:colon")

    async def test_namespaces_isolated(self) -> None:
        other = await defer.maybeDeferred(self.make, self.ns + "x")
        self.addCleanup(other.close)
        await self.cache.set("k", b"mine")
        self.assertIsNone(await other.get("k"))
        await other.clear()
        self.assertEqual(await self.cache.get("k"), b"mine")

    # locks ----------------------------------------------------------------------------

    async def test_lock(self) -> None:
        lock = await self.cache.lock("job", ttl=30)
        self.assertIsNotNone(lock)
        self.assertEqual(len(lock.token), 32)
        self.assertIsNone(await self.cache.lock("job", ttl=30))
        self.assertIsNotNone(await self.cache.lock("other-job", ttl=30))
        self.assertTrue(await lock.release())
        self.assertFalse(await lock.release())
        again = await self.cache.lock("job", ttl=30)
        self.assertIsNotNone(again)
        async with again:
            self.assertIsNone(await self.cache.lock("job", ttl=30))
        self.assertIsNotNone(await self.cache.lock("job", ttl=30))

    async def test_lock_expiry_and_token(self) -> None:
        """
        An expired lock can be taken by someone else, and its former holder's release
        does not remove the new holder's lock.
        """
        old = await self.cache.lock("job", ttl=1)
        await self._elapse(1.1)
        new = await self.cache.lock("job", ttl=30)
        self.assertIsNotNone(new)
        self.assertFalse(await old.release())
        self.assertIsNone(await self.cache.lock("job", ttl=30))
        self.assertTrue(await new.release())

    async def test_lock_contention(self) -> None:
        holder = await self.cache.lock("job", ttl=30)
        gave_up = self.cache.lock("job", ttl=30, wait=0.2)
        self.assertIsNone(await self._settle(gave_up))
        waiting = self.cache.lock("job", ttl=30, wait=10)
        self.assertFalse(waiting.called)
        await holder.release()
        got = await self._settle(waiting)
        self.assertIsNotNone(got)
        self.assertNotEqual(got.token, holder.token)

    async def test_lock_contention_many(self) -> None:
        """
        Of many concurrent attempts, exactly one wins.
        """
        results = await defer.gatherResults([self.cache.lock("job", ttl=30) for _ in range(20)])
        self.assertEqual(sum(r is not None for r in results), 1)

    # cache-aside ----------------------------------------------------------------------

    async def test_cache_aside_single_loader(self) -> None:
        calls = []
        gate: defer.Deferred[str] = defer.Deferred()

        def loader() -> defer.Deferred[str]:
            calls.append(1)
            return gate

        waiters = [self.cache.cache_aside("k", loader, ttl=60) for _ in range(10)]
        # let the first caller's get() finish and reach the loader (on a fresh Redis or
        # Memcached cache that get() opens the connection first: allow seconds, not 0.5 s)
        for _ in range(2000):
            if calls:
                break
            await task.deferLater(reactor, 0.005, lambda: None)
        self.assertEqual(calls, [1])
        gate.callback("loaded")
        self.assertEqual(await defer.gatherResults(waiters), ["loaded"] * 10)
        self.assertEqual(calls, [1])
        self.assertEqual(await self.cache.get("k"), "loaded")
        self.assertEqual(await self.cache.cache_aside("k", loader), "loaded")
        self.assertEqual(calls, [1])

    async def test_cache_aside_coroutine_and_failure(self) -> None:
        async def good() -> dict[str, int]:
            return {"n": 1}

        self.assertEqual(await self.cache.cache_aside("k", good), {"n": 1})

        def bad() -> None:
            raise ZeroDivisionError()

        waiters = [self.cache.cache_aside("bad", bad) for _ in range(3)]
        for w in waiters:
            with self.assertRaises(ZeroDivisionError):
                await w
        self.assertFalse(await self.cache.exists("bad"))
        self.assertEqual(await self.cache.cache_aside("bad", lambda: b"fixed"), b"fixed")


class MemoryCacheTests(CacheSuiteMixin, TestCase):
    def make(self, namespace: str) -> Any:
        if self.fake_clock is None:
            self.fake_clock = task.Clock()
            self.shared = MemoryCache(clock=self.fake_clock)
        # namespaces of one process-local store, like the servers' shared keyspace
        return self.shared.namespace(namespace)


class FileCacheTests(CacheSuiteMixin, TestCase):
    def make(self, namespace: str) -> Any:
        if self.fake_clock is None:
            self.fake_clock = task.Clock()
            self.fake_clock.advance(1_700_000_000)
            self.directory = self.mktemp()
        return FileCache(self.directory, clock=self.fake_clock, namespace=namespace)


class RedisCacheTests(CacheSuiteMixin, TestCase):
    def make(self, namespace: str) -> Any:
        return Cache.from_url(require_service("redis"), namespace=namespace)

    async def _admin(self) -> Any:
        """
        A separate connection to the test server, to kill our own connections with.
        """
        import txredisapi

        parts = urlsplit(require_service("redis"))
        admin = await txredisapi.Connection(
            parts.hostname or "127.0.0.1", parts.port or 6379, reconnect=False, charset=None
        )
        self.addCleanup(admin.disconnect)
        return admin

    async def _until(self, what: str, condition: Callable[[], bool], seconds: float = 10.0) -> None:
        """
        Wait (in real time, bounded) for C{condition()}; fail naming C{what}.
        """
        for _ in range(int(seconds / 0.01)):
            if condition():
                return
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"timed out after {seconds} s waiting for {what}")

    def _fast_backoff(self, cache: Any) -> Any:
        """
        Shrink the pool's reconnect delays (no jitter) and record each one it uses.
        """
        factory = cache._store._redis._factory
        factory.initialDelay = 0.02
        factory.maxDelay = 5.0
        factory.jitter = 0
        factory.delays = []
        policy = factory.retryDelay

        def recording(attempt: int) -> float:
            delay = policy(attempt)
            factory.delays.append(delay)
            return delay

        factory.retryDelay = recording
        return factory

    async def test_server_kills_pool_connections(self) -> None:
        """
        The server closes every connection of the pool (killed by their own ids, no
        one else's); the pool reconnects and the next calls succeed, with no error
        logged or left unhandled.
        """
        admin = await self._admin()
        cache = Cache.from_url(require_service("redis"), namespace=self.ns, poolsize=2)
        self.addCleanup(cache.close)
        factory = self._fast_backoff(cache)
        await cache.set("k", b"v")
        await self._until("a full pool", lambda: factory.size == 2)
        old = list(factory.pool)
        ids = [await proto.execute_command("CLIENT", "ID") for proto in old]
        lost = [proto.whenDisconnected() for proto in old]
        for client_id in ids:
            await admin.execute_command("CLIENT", "KILL", "ID", client_id)
        await defer.gatherResults(lost)
        await self._until(
            "two new connections",
            lambda: factory.size == 2 and not set(factory.pool) & set(old),
        )
        self.assertEqual(await cache.get("k"), b"v")
        await cache.set("k2", b"v2")
        self.assertEqual(await cache.get("k2"), b"v2")
        # an error put into a Deferred nobody handles is logged when it is collected;
        # collect now so that trial sees it in this test
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_handshake_cut_reconnects_with_backoff(self) -> None:
        """
        The server closes new connections before they answer C{SELECT}: txredisapi
        stopped reconnecting for good on the first one. The command waiting for a
        connection fails at once with the reason; the pool keeps reconnecting, waiting
        longer after each failed connection, and works once the server lets a
        connection through.
        """
        admin = await self._admin()
        url = require_service("redis")
        # database 1: database 0 sends no SELECT, so that handshake cannot be cut
        url = urlunsplit(urlsplit(url)._replace(path="/1"))
        cache = Cache.from_url(url, namespace=self.ns, poolsize=1)
        self.addCleanup(cache.close)
        factory = self._fast_backoff(cache)
        cut = 3
        attempts: list[Any] = []
        build = factory.buildProtocol

        async def kill_then_handshake(proto: Any, handshake: Callable[[], None]) -> None:
            port = proto.transport.getHost().port
            # find our connection by its local port (the server may not have accepted
            # it yet), then kill it by id: only this test's connection
            client_id = None
            for _ in range(500):
                listing = await admin.execute_command("CLIENT", "LIST")
                for line in listing.decode().splitlines():
                    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                    if fields.get("addr", "").endswith(f":{port}"):
                        client_id = fields["id"]
                if client_id is not None:
                    break
                await task.deferLater(reactor, 0.01, lambda: None)
            self.assertIsNotNone(client_id, f"no connection from local port {port}")
            await admin.execute_command("CLIENT", "KILL", "ID", client_id)
            # the server has closed it: the SELECT this sends is never answered
            handshake()
            proto.transport.resumeProducing()

        def held(addr: Any) -> Any:
            proto = build(addr)
            attempts.append(proto)
            if len(attempts) <= cut:
                handshake = proto.connectionMade

                def made() -> None:
                    proto.transport.pauseProducing()
                    defer.ensureDeferred(kill_then_handshake(proto, handshake)).addErrback(log.err)

                proto.connectionMade = made
            return proto

        factory.buildProtocol = held
        first = cache.get("k")
        # txredisapi stopped after the first cut connection: no second attempt, ever
        await self._until(f"{cut + 1} connection attempts", lambda: len(attempts) > cut)
        with self.assertRaises(CacheUnavailable) as c:
            await first
        self.assertIn("SELECT 1 failed on a new connection", str(c.exception))
        # the connection that got through ends the outage
        await self._until("a usable connection", lambda: factory.size == 1)
        self.assertEqual(cache.health()["status"], "ok")
        await cache.set("k", b"v")
        self.assertEqual(await cache.get("k"), b"v")
        self.assertEqual(len(attempts), cut + 1)
        # one delay per cut connection, each longer than the one before
        self.assertEqual(len(factory.delays), cut)
        self.assertEqual(factory.delays, sorted(set(factory.delays)))
        self.assertAlmostEqual(factory.delays[0], 0.02)
        self.assertAlmostEqual(factory.delays[-1], 0.02 * math.e ** (cut - 1))
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])


class RedisPoolUnitTests(SynchronousTestCase):
    """
    The pool's handshake, ready Deferred and wait bound, on L{StringTransport}s and a
    L{task.Clock} (no server).
    """

    def setUp(self) -> None:
        import txredisapi

        # txredisapi hands ready connections to the pool with a callLater(0) on the
        # global reactor: keep that off the real reactor
        self.reactor = task.Clock()
        self.patch(txredisapi, "reactor", self.reactor)
        self.clock = task.Clock()
        self.events: list[dict[str, Any]] = []

    def factory(self, db: int = 0, password: str | None = None) -> Any:
        from twisted.logger import Logger

        from pywatt_twisted.data._cache.redis import _PoolFactory

        factory = _PoolFactory(
            db=db,
            password=password,
            username=None,
            poolsize=1,
            reply_timeout=None,
            connect_wait=10.0,
            clock=self.clock,
            url_redacted=f"redis://127.0.0.1:6379/{db}",
        )
        factory.log = Logger(observer=self.events.append)
        return factory

    def connect(self, factory: Any) -> tuple[Any, StringTransport]:
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def test_db0_sends_no_select(self) -> None:
        """
        Database 0 is every connection's default: nothing is sent, the connection is
        ready at once.
        """
        proto, transport = self.connect(self.factory(db=0))
        self.assertEqual(transport.value(), b"")
        self.assertIs(self.successResultOf(proto.whenConnected()), proto)

    def test_select_other_db(self) -> None:
        proto, transport = self.connect(self.factory(db=3))
        self.assertEqual(transport.value(), b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
        ready = proto.whenConnected()
        self.assertNoResult(ready)
        proto.dataReceived(b"+OK\r\n")
        self.assertIs(self.successResultOf(ready), proto)

    def test_auth_without_select(self) -> None:
        proto, transport = self.connect(self.factory(db=0, password="pw"))
        self.assertEqual(transport.value(), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")
        proto.dataReceived(b"+OK\r\n")
        self.assertIs(self.successResultOf(proto.whenConnected()), proto)

    def test_select_lost_keeps_reconnecting(self) -> None:
        """
        A connection lost during C{SELECT} (txredisapi called C{stopTrying()} then,
        and errbacked the pool's ready Deferred) closes only that connection: the pool
        is not stopped, the ready Deferred still waits, the problem is logged once,
        and its end is logged when a connection works again.
        """
        factory = self.factory(db=3)
        for _ in range(2):
            proto, _transport = self.connect(factory)
            proto.connectionLost(Failure(error.ConnectionDone()))
        self.assertFalse(factory.stopped)
        self.assertNoResult(factory.handler._connected)
        [problem] = self.messages()
        self.assertIn("redis://127.0.0.1:6379/3: SELECT 3 failed", problem)
        self.assertIn("Lost connection", problem)
        self.assertIn("reconnecting", problem)
        proto, _ = self.connect(factory)
        proto.dataReceived(b"+OK\r\n")
        self.assertEqual(
            self.messages()[1:], ["Redis at redis://127.0.0.1:6379/3: connected again"]
        )

    def test_select_refused_closes_connection(self) -> None:
        factory = self.factory(db=99)
        proto, transport = self.connect(factory)
        proto.dataReceived(b"-ERR DB index is out of range\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(factory.stopped)
        self.assertNoResult(proto.whenConnected())
        self.assertIn("DB index is out of range", self.messages()[0])

    def test_auth_failure_redacts_password(self) -> None:
        factory = self.factory(password="hunter2")
        proto, transport = self.connect(factory)
        proto.dataReceived(b"-WRONGPASS hunter2 is wrong\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(factory.stopped)
        [problem] = self.messages()
        self.assertIn("AUTH failed", problem)
        self.assertNotIn("hunter2", problem)

    def test_handshake_cut_by_close_is_quiet(self) -> None:
        factory = self.factory(db=3)
        proto, _ = self.connect(factory)
        self.successResultOf(factory.disconnect())
        proto.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.messages(), [])

    def test_close_fails_waiting_commands(self) -> None:
        """
        Closing the cache fails the commands waiting for a connection at once, and
        leaves no timer behind.
        """
        import txredisapi

        factory = self.factory()
        waiting = factory.handler.get(b"k")
        self.successResultOf(factory.disconnect())
        failure = self.failureResultOf(waiting, txredisapi.ConnectionError)
        self.assertIn("closed", str(failure.value))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.messages(), [])

    def test_ready_deferred_handled(self) -> None:
        """
        An error put into the pool's ready Deferred (which no caller of a lazy pool
        holds) is logged as a warning, never left unhandled.
        """
        factory = self.factory()
        ready = factory.handler._connected
        factory.connectionError("Redis error: boom")
        self.assertIsNone(self.successResultOf(ready))
        self.assertIn("boom", self.messages()[0])

    def test_connection_wait_bounded(self) -> None:
        """
        A command waits at most C{connect_timeout} for a usable connection, then fails
        naming the option (the cache's L{Availability} logs it, once per outage: see
        C{tests.data.test_cache_unavailable}).
        """
        import txredisapi

        factory = self.factory()
        first = factory.handler.get(b"k")
        second = factory.handler.set(b"k", b"v")
        self.clock.advance(9.9)
        self.assertNoResult(first)
        self.clock.advance(0.1)
        for d in (first, second):
            failure = self.failureResultOf(d, txredisapi.ConnectionError)
            self.assertIn("connect_timeout=10", str(failure.value))
        # a connection that turns up later serves the next command at once
        proto, transport = self.connect(factory)
        self.reactor.advance(0)
        third = factory.handler.get(b"k")
        self.assertEqual(transport.value(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        proto.dataReceived(b"$1\r\nv\r\n")
        self.assertEqual(self.successResultOf(third), b"v")


class MemcachedCacheTests(CacheSuiteMixin, TestCase):
    #: TTLs are whole seconds plus one (so an item lives at least its TTL, up to two
    #: seconds more), and the server's clock ticks once a second
    expiry_slack = 2.0

    def make(self, namespace: str) -> Any:
        return Cache.from_url(require_service("memcached"), namespace=namespace)

    async def test_dropped_connection(self) -> None:
        """
        Memcached cannot kill a client, so drop ours; the next call reconnects.
        """
        await self.cache.set("k", b"v")
        proto = self.cache._store._protocol
        proto.transport.abortConnection()
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(await self.cache.get("k"), b"v")
        self.assertIsNot(self.cache._store._protocol, proto)

    async def test_calls_the_protocol_itself(self) -> None:
        """
        The store calls the connected L{MemCacheProtocol} itself, not the proxy
        L{ClientService} hands out (each attribute read through it is a Python call),
        and forgets it when its connection is lost.
        """
        from twisted.protocols.memcache import MemCacheProtocol

        await self.cache.set("k", b"v")
        store = self.cache._store
        proto = store._protocol
        self.assertIs(type(proto), MemCacheProtocol)
        proto.transport.abortConnection()
        await task.deferLater(reactor, 0, lambda: None)
        self.assertIsNone(store._protocol)
        self.assertEqual(await self.cache.get("k"), b"v")

    async def test_known_keys_follow_the_namespace_version(self) -> None:
        """
        Checked keys are remembered under the versioned namespace prefix in use (so
        get and set skip the key check), and forgotten when a clear changes it.
        """
        await self.cache.set("k", b"v")  # reads the namespace's version first
        self.assertEqual(await self.cache.get("k"), b"v")
        prefix = self.cache._known_prefix
        self.assertTrue(prefix.startswith(f"{self.ns}."))
        self.assertEqual(self.cache._known, {"k": prefix + "k"})
        await self.cache.clear()
        self.assertIsNone(await self.cache.get("k"))
        self.assertNotEqual(self.cache._known_prefix, prefix)
        self.assertEqual(self.cache._known, {"k": self.cache._known_prefix + "k"})
        await self.cache.set("k", b"w")
        self.assertEqual(await self.cache.get("k"), b"w")

    async def test_clear_seen_by_other_process(self) -> None:
        other = Cache.from_url(
            require_service("memcached"), namespace=self.ns, namespace_check_interval=0.1
        )
        self.addCleanup(other.close)
        await self.cache.set("k", b"v")
        self.assertEqual(await other.get("k"), b"v")
        await self.cache.clear()
        await task.deferLater(reactor, 0.15, lambda: None)
        self.assertIsNone(await other.get("k"))


class MemcachedExpiryTests(SynchronousTestCase):
    def test_at_least_ttl(self) -> None:
        """
        Memcached's clock ticks in whole seconds, so an expiry of C{n} may end after
        C{n - 1} seconds (a 1-second item was seen gone 10 ms after its C{set}): one
        second is added to the rounded-up TTL.
        """
        from pywatt_twisted.data._cache.memcached import MemcachedStore

        self.assertEqual(MemcachedStore._expire(None), 0)
        self.assertEqual(MemcachedStore._expire(0.001), 2)
        self.assertEqual(MemcachedStore._expire(1), 2)
        self.assertEqual(MemcachedStore._expire(1.5), 3)


class MemoryCacheBoundsTests(SynchronousTestCase):
    """
    LRU bounds of L{MemoryCache}, fully synchronous.
    """

    def _get(self, d: defer.Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def test_max_entries_lru(self) -> None:
        cache = MemoryCache(max_entries=3, clock=task.Clock())
        for k in "abc":
            self._get(cache.set(k, b"x"))
        self._get(cache.get("a"))  # a is now most recent
        self._get(cache.set("d", b"x"))
        self.assertEqual(sorted(self._get(cache.get_many("abcd"))), ["a", "c", "d"])
        self.assertEqual(cache.store.evictions, 1)

    def test_max_bytes(self) -> None:
        cache = MemoryCache(max_bytes=100, clock=task.Clock())
        self._get(cache.set("a", b"x" * 40))
        self._get(cache.set("b", b"x" * 40))
        self._get(cache.set("c", b"x" * 40))
        self.assertLessEqual(cache.store.bytes, 100)
        self.assertIsNone(self._get(cache.get("a")))
        self.failureResultOf(cache.set("big", b"x" * 200), CacheError)

    def test_expired_evicted_first(self) -> None:
        clock = task.Clock()
        cache = MemoryCache(max_entries=2, clock=clock)
        self._get(cache.set("old", b"x"))
        self._get(cache.set("soon", b"x", ttl=1))
        clock.advance(2)
        self._get(cache.set("new", b"x"))
        self.assertEqual(self._get(cache.get("old")), b"x")
        self.assertEqual(cache.store.evictions, 0)

    def test_bad_bounds(self) -> None:
        self.assertRaises(CacheError, MemoryCache, max_entries=0)


class KnownKeyFastPathTests(SynchronousTestCase):
    """
    get and set remember checked keys and take a shorter path for them (issue 20); the
    answers are the same as on the first, fully checked, use.
    """

    def _get(self, d: defer.Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def test_second_use_same_answers(self) -> None:
        clock = task.Clock()
        cache = MemoryCache(clock=clock, namespace="ns")
        for value in VALUES:
            for _ in range(2):  # the first use checks the key, the second is remembered
                self._get(cache.set("k", value))
                got = self._get(cache.get("k"))
                self.assertEqual((got, type(got)), (value, type(value)))
        self.assertEqual(cache._known, {"k": "ns:k"})
        self.assertEqual(list(cache.store._data), ["ns:k"])

    def test_expiry_and_lru_on_the_short_path(self) -> None:
        clock = task.Clock()
        cache = MemoryCache(max_entries=2, clock=clock)
        self._get(cache.set("a", b"1", ttl=5))
        self._get(cache.set("b", b"2"))
        self.assertEqual(self._get(cache.get("a")), b"1")  # a remembered, most recent
        self._get(cache.set("c", b"3"))  # evicts b, the least recently used
        self.assertIsNone(self._get(cache.get("b")))
        self.assertEqual(self._get(cache.get("a")), b"1")
        clock.advance(5)
        self.assertIsNone(self._get(cache.get("a")))
        self.assertNotIn("a", cache.store._data)
        self.assertEqual(self._get(cache.get("c")), b"3")

    def test_bad_keys_and_values_still_rejected(self) -> None:
        cache = MemoryCache(clock=task.Clock())
        self._get(cache.set("k", b"x"))
        self.failureResultOf(cache.set("k", object()), SerializationError)
        self.failureResultOf(cache.set("k", b"x", ttl=-1), InvalidTTL)
        for bad in ("has space", "", "k" * 300, b"k", ["k"]):
            self.failureResultOf(cache.set(bad, b"x"), InvalidKey)  # type: ignore[arg-type]
            self.failureResultOf(cache.get(bad), InvalidKey)  # type: ignore[arg-type]
        self.assertEqual(cache._known, {"k": "k"})

    def test_byte_accounting_on_the_short_path(self) -> None:
        from pywatt_twisted.data._cache.memory import entry_size

        cache = MemoryCache(clock=task.Clock(), namespace="n")
        for value in (b"x" * 10, b"y" * 3, b"z" * 50, "text", b"w"):
            self._get(cache.set("a", value))
            self._get(cache.set("bb", b"q" * 7))
        data = cache.store._data
        self.assertEqual(cache.store.bytes, sum(entry_size(k, v[0]) for k, v in data.items()))
        # (the size of an entry is its key's and its codec form's: b"bw" is 2 bytes)
        self.assertEqual(cache.store.bytes, len("n:a") + 2 + len("n:bb") + 8)
        # a key checked before whose entry is gone
        self.assertTrue(self._get(cache.delete("a")))
        self._get(cache.set("a", b"xyz"))
        self.assertEqual(cache.store.bytes, len("n:a") + 4 + len("n:bb") + 8)

    def test_bytes_kept_as_given(self) -> None:
        """
        A bytes value is stored and read back as the very object given, without a
        copy, whether set on the short path, with a ttl, or on a bounded store; the
        store's own interface still reads and writes the codec form.
        """
        big = b"v" * 100_000
        for cache in (
            MemoryCache(clock=task.Clock()),
            MemoryCache(clock=task.Clock(), max_entries=10, max_bytes=1 << 20),
        ):
            for ttl in (None, 60):
                for _ in range(2):  # the first use checks the key, the second is remembered
                    self._get(cache.set("k", big, ttl=ttl))
                    self.assertIs(self._get(cache.get("k")), big)
                self.assertEqual(cache.store.get_now("k"), b"b" + big)
                self.assertEqual(cache.store.bytes, len("k") + 1 + len(big))
        cache = MemoryCache(clock=task.Clock())
        self._get(cache.store.set("s", b"braw", None))  # the codec form, as a backend gets it
        self.assertEqual(self._get(cache.get("s")), b"raw")
        self.assertEqual(self._get(cache.store.get_many(["s"])), {"s": b"braw"})

    def test_bytes_of_digits_are_not_a_counter(self) -> None:
        """
        A bytes value that reads as a number is still bytes: increment refuses it, as
        on every backend (only an int value is stored as bare digits).
        """
        cache = MemoryCache(clock=task.Clock())
        for _ in range(2):
            self._get(cache.set("n", b"42"))
            self.failureResultOf(cache.increment("n"), CacheError)
            self.assertEqual(self._get(cache.get("n")), b"42")
        self._get(cache.set("n", 42))
        self.assertEqual(self._get(cache.increment("n", 2)), 44)
        self.assertEqual(self._get(cache.get("n")), 44)
        self.assertEqual(cache.store.get_now("n"), b"44")
        self._get(cache.set("j", "text"))
        self.assertEqual(self._get(cache.get("j")), "text")
        self.assertTrue(self._get(cache.store.compare_delete("j", b'j"text"')))

    def test_bounded(self) -> None:
        from pywatt_twisted.data._cache._base import KNOWN_KEYS

        cache = MemoryCache(clock=task.Clock())
        for i in range(KNOWN_KEYS + 10):
            self._get(cache.set(f"k{i}", b"x"))
        self.assertLessEqual(len(cache._known), KNOWN_KEYS)
        self.assertEqual(self._get(cache.get("k0")), b"x")
        self.assertEqual(self._get(cache.get(f"k{KNOWN_KEYS + 9}")), b"x")


class StoreInterfaceTests(SynchronousTestCase):
    def test_every_store_declares_and_implements_icachestore(self) -> None:
        """
        Every backend's store class declares L{ICacheStore} and has its methods.
        """
        from zope.interface.verify import verifyClass

        from pywatt_twisted.data._cache._base import ICacheStore
        from pywatt_twisted.data._cache._proxy import ProxyCacheStore
        from pywatt_twisted.data._cache.file import FileStore
        from pywatt_twisted.data._cache.memcached import MemcachedStore
        from pywatt_twisted.data._cache.memory import MemoryStore
        from pywatt_twisted.data._cache.redis import RedisStore

        for store in (FileStore, MemcachedStore, MemoryStore, ProxyCacheStore, RedisStore):
            self.assertTrue(ICacheStore.implementedBy(store), store)
            verifyClass(ICacheStore, store)


class FileCacheWaitingBoundTests(SynchronousTestCase):
    """
    A L{FileCache} runs its calls in the reactor's thread pool through a L{BurstRunner}:
    at most C{threads} at once, at most C{max_waiting} waiting beyond those; a call
    made then fails at once with L{CacheUnavailable} and touches no file. (A thread
    pool and a reactor that only record what they are asked to run.)
    """

    def setUp(self) -> None:
        from twisted.logger import globalLogPublisher

        from tests.data.test_database_pool import _RecordingReactor, _RecordingThreadPool

        self.threads = _RecordingThreadPool()
        self.reactor = _RecordingReactor()
        self.reactor.getThreadPool = lambda: self.threads  # type: ignore[method-assign]
        self.directory = os.path.abspath(self.mktemp())
        self.cache = FileCache(self.directory, reactor=self.reactor, threads=1, max_waiting=2)
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    def _logged(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.log if text in e.get("log_format", "")]

    def test_refused_beyond_max_waiting(self) -> None:
        # one call the single loop is about to take, then two waiting: all accepted
        accepted = [self.cache.set("a", b"1"), self.cache.set("b", b"2"), self.cache.get("a")]
        self.assertEqual(len(self.threads.tasks), 1)  # one drain loop: threads=1
        refused = [self.cache.set("c", b"3"), self.cache.get("b"), self.cache.delete("a")]
        for d in refused:
            error = self.failureResultOf(d, CacheUnavailable).value
            self.assertIn("max_waiting=2", str(error))
            self.assertIn("not run", str(error))
        self.assertEqual(self.cache.health()["refused"], 3)
        self.assertEqual(len(self._logged("refusing calls")), 1)

        self.threads.run_next()  # the loop runs the three accepted calls, in order
        self.reactor.deliver()
        self.assertEqual([self.successResultOf(d) for d in accepted], [None, None, b"1"])
        self.assertFalse(os.path.exists(self.cache._store._path("c")))
        self.assertEqual(self._logged("accepting calls again"), [])

        d = self.cache.get("b")
        self.cache.get("a")  # (the run of refusals ended: logged once)
        again = self._logged("accepting calls again")
        self.assertEqual([e["count"] for e in again], [3])
        self.threads.run_next()
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(d), b"2")
        self.assertEqual(self.threads.tasks, [])

    def test_stopped_pool(self) -> None:
        """
        Once the reactor's thread pool has stopped, a call fails at once instead of
        waiting forever.
        """
        self.threads.joined = True
        error = self.failureResultOf(self.cache.get("a"), CacheUnavailable).value
        self.assertIn("stopped", str(error))
        self.assertEqual(self.threads.tasks, [])

    def test_bounds_validated(self) -> None:
        from pywatt_twisted.errors import ConfigurationError

        for bad in (0, -1, 1.5, "4", True, 1_000_001):
            with self.assertRaises(CacheError) as c:
                FileCache(self.directory, reactor=self.reactor, max_waiting=bad)  # type: ignore[arg-type]
            self.assertIn("max_waiting", str(c.exception))
        with self.assertRaises(CacheError):
            FileCache(self.directory, reactor=self.reactor, threads=0)
        cache = Cache.from_url(
            f"file://{self.directory}?threads=2&max_waiting=5", reactor=self.reactor
        )
        self.assertEqual((cache._store.max, cache._store.max_waiting), (2, 5))
        for query in ("max_waiting=0", "threads=x", "threads=65"):
            self.assertRaises(
                ConfigurationError, Cache.from_url, f"file://{self.directory}?{query}"
            )
        default = FileCache(self.directory, reactor=self.reactor)
        self.assertEqual((default._store.max, default._store.max_waiting), (4, 1000))
        self.assertEqual(default.health()["refused"], 0)


class FileCacheRestartTests(TestCase):
    async def test_survives_restart(self) -> None:
        directory = self.mktemp()
        first = FileCache(directory)
        await first.set("k", {"kept": True})
        await first.set("gone", b"x", ttl=0.01)
        await first.close()
        await task.deferLater(reactor, 0.02, lambda: None)
        second = FileCache(directory)
        self.assertEqual(await second.get("k"), {"kept": True})
        self.assertIsNone(await second.get("gone"))
        names = os.listdir(directory)
        self.assertFalse([n for n in names if n.startswith(".tmp-")], names)


class FromUrlTests(SynchronousTestCase):
    def test_schemes(self) -> None:
        from pywatt_twisted.errors import ConfigurationError

        memory = Cache.from_url("memory://?max_entries=5", clock=task.Clock())
        self.assertEqual(memory.store.max_entries, 5)
        self.assertIsInstance(Cache.from_url(f"file://{os.path.abspath(self.mktemp())}"), FileCache)
        for bad in ("ftp://x", "file://relative/dir", "memory://?max_entries=x", 5):
            self.assertRaises(ConfigurationError, Cache.from_url, bad)

    def test_bad_url_redacted(self) -> None:
        from pywatt_twisted.errors import ConfigurationError

        with self.assertRaises(ConfigurationError) as c:
            Cache.from_url("rediss://:hunter2@h:1/0")
        self.assertNotIn("hunter2", str(c.exception))
