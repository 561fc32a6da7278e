"""
An unreachable or silent cache server fails calls fast with L{CacheUnavailable} (issue
18, item 2, the cache half): bounded connect and command timeouts, one WARNING naming
the cache and its address (password redacted) per outage, C{"unavailable"} on
C{health()}, calls failing at once until the next attempt is due, C{timeout=} per call.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from pywatt_twisted.data._cache import Cache, CacheError, CacheUnavailable, ICacheStore, StoreCache
from pywatt_twisted.data._cache._availability import Availability
from pywatt_twisted.errors import BackendUnavailable, ConfigurationError
from tests.data.test_database_unavailable import blackhole, closed_port
from tests.services import require_service


class LogCapture:
    """
    Every log event while the test runs.
    """

    def __init__(self, case: Any) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level: LogLevel, containing: str = "") -> list[str]:
        return [
            formatEvent(e)
            for e in self.events
            if e.get("log_level") == level and containing in formatEvent(e)
        ]


@implementer(ICacheStore)
class ScriptedStore:
    """
    A store whose C{get} answers with the L{Deferred}s a test hands it, and which
    reports failures to its L{Availability} like the network stores do.
    """

    static_prefix = True
    backend = "redis"
    url_redacted = "redis://:***@10.0.0.7:6379/0"

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.inflight: dict[Any, Any] = {}
        self.availability = Availability(
            backend="Redis",
            url_redacted=self.url_redacted,
            address="10.0.0.7:6379",
            retry_after=3.0,
            clock=clock,
            hint="Raise ?connect_timeout= in the cache URL if the server is only slow.",
        )
        self.calls: list[defer.Deferred[Any]] = []

    def prefix(self, parts: tuple[str, ...]) -> str:
        return "".join(p + ":" for p in parts)

    def get(self, key: str) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append(d)
        return d

    def __getattr__(self, name: str) -> Any:
        # every other ICacheStore method: a call that waits like get
        if name in ICacheStore.names():
            return lambda *args: self.get("")
        raise AttributeError(name)

    def fail_next(self, message: str = "Connection refused") -> None:
        error = CacheUnavailable(f"could not reach Redis at {self.url_redacted}: {message}")
        self.availability.failed(error, connecting=True)
        self.calls.pop().errback(error)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class FailFastTests(SynchronousTestCase):
    """
    The shared rule of L{StoreCache} and L{Availability}, on a L{task.Clock}.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = ScriptedStore(self.clock)
        self.cache = StoreCache(self.store, ("app",))
        self.log = LogCapture(self)

    def test_outage(self) -> None:
        d = self.cache.get("k")
        self.store.fail_next()
        error = self.failureResultOf(d, CacheUnavailable).value
        self.assertIsInstance(error, BackendUnavailable)
        [warning] = self.log.lines(LogLevel.warn)
        self.assertIn(
            "Cache redis://:***@10.0.0.7:6379/0 (Redis at 10.0.0.7:6379) is unavailable: "
            "could not reach Redis",
            warning,
        )
        self.assertIn("HTTP 503", warning)
        self.assertIn("Raise ?connect_timeout=", warning)
        health = self.cache.health()
        self.assertEqual(
            (health["status"], health["backend"], health["url"], health["namespace"]),
            ("unavailable", "redis", "redis://:***@10.0.0.7:6379/0", "app"),
        )

        # within the window: every call fails at once, the store is not asked
        self.clock.advance(1)
        for call in (
            self.cache.get("k"),
            self.cache.set("k", 1),
            self.cache.delete("k"),
            self.cache.increment("n"),
            self.cache.get_many(["a"]),
            self.cache.clear(),
            self.cache.lock("l", ttl=5),
            self.cache.namespace("sub").exists("k"),
        ):
            fast = self.failureResultOf(call, CacheUnavailable).value
            self.assertIn("has been unreachable for 1.0 s", str(fast))
            self.assertIn("failing at once, calls try it again in 2.0 s", str(fast))
        self.assertEqual(self.store.calls, [])

        # then one call goes through; still down: no second WARNING
        self.clock.advance(2)
        d = self.cache.get("k")
        self.store.fail_next()
        self.failureResultOf(d, CacheUnavailable)
        self.assertEqual(len(self.log.lines(LogLevel.warn)), 1)

        # it answers again: the outage ends
        self.clock.advance(3)
        d = self.cache.get("k")
        self.store.calls.pop().callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.cache.health()["status"], "ok")
        self.assertEqual(
            self.log.lines(LogLevel.info, "available again"),
            [
                "Cache redis://:***@10.0.0.7:6379/0 (Redis at 10.0.0.7:6379) is available "
                "again after 6.0 s"
            ],
        )
        # a new outage warns again
        d = self.cache.get("k")
        self.store.fail_next()
        self.failureResultOf(d, CacheUnavailable)
        self.assertEqual(len(self.log.lines(LogLevel.warn)), 2)

    def test_usable_connection_ends_connect_outage(self) -> None:
        """
        An outage that began with a failure to connect ends with the first usable
        connection; one where the server stopped answering does not (its connections
        are usable, its replies are what is missing).
        """
        avail = self.store.availability
        avail.failed(CacheUnavailable("refused"), connecting=True)
        avail.connected()
        self.assertEqual(self.cache.health()["status"], "ok")
        avail.failed(CacheUnavailable("no reply"), connecting=False)
        avail.connected()
        self.assertEqual(self.cache.health()["status"], "unavailable")

    def test_per_call_timeout(self) -> None:
        """
        C{timeout=} bounds one call; the late reply is dropped quietly, and the
        cache is not marked down by a caller's own budget.
        """
        d = self.cache.get("k", timeout=2)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.failureResultOf(d, CacheUnavailable).value
        self.assertEqual(
            str(error),
            "the cache redis://:***@10.0.0.7:6379/0 did not answer within timeout=2 s "
            "(the timeout= of this call)",
        )
        self.store.calls.pop().errback(RuntimeError("late"))
        self.assertEqual(self.cache.health()["status"], "ok")
        # answered in time: the result, and no timer left behind
        d = self.cache.get("k", timeout=2)
        self.store.calls.pop().callback(b'j"x"')
        self.assertEqual(self.successResultOf(d), "x")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_timeout(self) -> None:
        for bad in (0, -1, float("inf"), "5", True):
            failure = self.failureResultOf(self.cache.get("k", timeout=bad), CacheError)  # type: ignore[arg-type]
            self.assertIn("expected timeout= as a positive number of seconds", str(failure.value))

    def test_memory_cache_has_no_outage(self) -> None:
        cache = Cache.from_url("memory://", clock=self.clock)
        self.assertEqual(self.successResultOf(cache.get("k", timeout=1)), None)
        self.assertEqual(cache.health()["status"], "ok")


class RedisPoolFailFastTests(SynchronousTestCase):
    """
    The Redis pool on a L{task.Clock} with no server: a failed connection attempt fails
    the waiting commands at once and the next ones too, until a connection is made.
    """

    def setUp(self) -> None:
        import txredisapi

        from pywatt_twisted.data._cache.redis import _PoolFactory

        self.reactor = task.Clock()
        self.patch(txredisapi, "reactor", self.reactor)
        self.clock = task.Clock()
        self.log = LogCapture(self)
        self.availability = Availability(
            backend="Redis",
            url_redacted="redis://127.0.0.1:1/0",
            address="127.0.0.1:1",
            retry_after=5,
            clock=self.clock,
            hint="",
        )
        self.factory = _PoolFactory(
            db=0,
            password=None,
            username=None,
            poolsize=1,
            reply_timeout=None,
            connect_wait=5.0,
            clock=self.clock,
            url_redacted="redis://127.0.0.1:1/0",
            availability=self.availability,
        )

    def test_refused(self) -> None:
        import txredisapi
        from twisted.internet.error import ConnectionRefusedError

        waiting = self.factory.handler.get(b"k")
        self.factory.connect_failed(Failure(ConnectionRefusedError()))
        failure = self.failureResultOf(waiting, txredisapi.ConnectionError)
        self.assertIn("could not connect: ConnectionRefusedError", str(failure.value))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # later commands: at once, while the pool has no connection
        later = self.failureResultOf(self.factory.handler.get(b"k"), txredisapi.ConnectionError)
        self.assertIn("keeps reconnecting in the background", str(later.value))
        [warning] = self.log.lines(LogLevel.warn)
        self.assertIn("Cache redis://127.0.0.1:1/0 (Redis at 127.0.0.1:1) is unavailable", warning)
        # a connection is made: commands wait for it, and it ends the outage
        proto = self.factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.reactor.advance(0)
        self.assertEqual(self.availability.health()["status"], "ok")
        self.assertNoResult(self.factory.handler.get(b"k"))


class UnreachableMixin:
    """
    Real clients against a closed loopback port and a port that never answers.
    """

    scheme = ""
    #: the URL option of the command timeout
    command_option = ""

    def url(self, port: int, query: str) -> str:
        return f"{self.scheme}://127.0.0.1:{port}/?{query}"

    def make(self, port: int, query: str) -> Any:
        cache = Cache.from_url(self.url(port, query), namespace="pywatt-cache-unavailable")
        self.addCleanup(cache.close)  # type: ignore[attr-defined]
        return cache

    async def test_closed_port(self) -> None:
        log = LogCapture(self)
        port = closed_port()
        cache = self.make(port, "connect_timeout=2")
        started = time.monotonic()
        with self.assertRaises(CacheUnavailable) as c:  # type: ignore[attr-defined]
            await cache.get("k")
        self.assertLess(time.monotonic() - started, 1.5)  # type: ignore[attr-defined]
        message = str(c.exception)
        self.assertIn(f"127.0.0.1:{port}", message)  # type: ignore[attr-defined]
        self.assertIn("ConnectionRefusedError", message)  # type: ignore[attr-defined]
        # the next call fails at once
        with self.assertRaises(CacheUnavailable):  # type: ignore[attr-defined]
            await cache.set("k", 1)
        warnings = log.lines(LogLevel.warn, "is unavailable")
        self.assertEqual(len(warnings), 1, warnings)  # type: ignore[attr-defined]
        self.assertIn(f"at 127.0.0.1:{port}) is unavailable", warnings[0])  # type: ignore[attr-defined]
        self.assertEqual(cache.health()["status"], "unavailable")  # type: ignore[attr-defined]

    async def test_blackhole(self) -> None:
        log = LogCapture(self)
        port = blackhole(self)
        cache = self.make(port, f"connect_timeout=2&{self.command_option}=0.5")
        started = time.monotonic()
        with self.assertRaises(CacheUnavailable) as c:  # type: ignore[attr-defined]
            await cache.get("k")
        self.assertLess(time.monotonic() - started, 2)  # type: ignore[attr-defined]
        self.assertIn(f"did not answer within {self.command_option}=0.5 s", str(c.exception))  # type: ignore[attr-defined]
        started = time.monotonic()
        with self.assertRaises(CacheUnavailable) as c:  # type: ignore[attr-defined]
            await cache.get("k")
        self.assertLess(time.monotonic() - started, 0.2)  # type: ignore[attr-defined]
        self.assertIn("failing at once", str(c.exception))  # type: ignore[attr-defined]
        self.assertEqual(len(log.lines(LogLevel.warn, "is unavailable")), 1)  # type: ignore[attr-defined]

    async def test_per_call_timeout(self) -> None:
        port = blackhole(self)
        cache = self.make(port, f"{self.command_option}=30")
        started = time.monotonic()
        with self.assertRaises(CacheUnavailable) as c:  # type: ignore[attr-defined]
            await cache.get("k", timeout=0.3)
        self.assertLess(time.monotonic() - started, 1.5)  # type: ignore[attr-defined]
        self.assertIn("did not answer within timeout=0.3 s", str(c.exception))  # type: ignore[attr-defined]


class RedisUnreachableTests(UnreachableMixin, TestCase):
    scheme = "redis"
    command_option = "reply_timeout"

    def setUp(self) -> None:
        require_service("redis")

    async def test_password_redacted(self) -> None:
        log = LogCapture(self)
        port = closed_port()
        cache = Cache.from_url(f"redis://:pw-hidden@127.0.0.1:{port}/0")
        self.addCleanup(cache.close)
        with self.assertRaises(CacheUnavailable) as c:
            await cache.get("k")
        self.assertIn(f"redis://:***@127.0.0.1:{port}/0", str(c.exception))
        text = str(c.exception) + repr(cache.health()) + " ".join(log.lines(LogLevel.warn))
        self.assertNotIn("pw-hidden", text)


class MemcachedUnreachableTests(UnreachableMixin, TestCase):
    scheme = "memcached"
    command_option = "timeout"

    def setUp(self) -> None:
        require_service("memcached")


class OptionTests(TestCase):
    def test_defaults(self) -> None:
        redis = Cache.from_url("redis://127.0.0.1:1/0")
        self.addCleanup(redis.close)
        store: Any = redis._store
        self.assertEqual(
            (store.availability.retry_after, store.reply_timeout, store._factory.connect_wait),
            (5.0, 5.0, 5.0),
        )
        memcached = Cache.from_url("memcached://127.0.0.1:1")
        self.addCleanup(memcached.close)
        mstore: Any = memcached._store
        self.assertEqual((mstore.connect_timeout, mstore.timeout), (5.0, 5.0))

    def test_no_reply_limit_and_bad_values(self) -> None:
        redis = Cache.from_url("redis://127.0.0.1:1/0?reply_timeout=0")
        self.addCleanup(redis.close)
        self.assertIsNone(redis._store.reply_timeout)  # type: ignore[attr-defined]
        for bad in ("redis://h/0?connect_timeout=0", "memcached://h?timeout=-1"):
            with self.assertRaises(ConfigurationError) as c:
                Cache.from_url(bad)
            self.assertIn("as a positive number of seconds", str(c.exception))
