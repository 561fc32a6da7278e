"""
What a module author sees when the data layer misbehaves (issue 18, items 2-4): a
database down at start-up (the module starts, /health and the log say so, routes
answer 503), C{state.on_stop} hooks and automatic closing of the databases and caches
the module opened, and the rotation of the C{database=} secret.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from klein import Klein
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted.data import Database
from pywatt_twisted.data._cache import Cache, CacheUnavailable
from pywatt_twisted.testing import FakeOrchestrator
from tests.data.test_database_unavailable import closed_port
from tests.services import require_service


class LogCapture:
    def __init__(self, case: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]


@pywatt_module(database="DATABASE_URL")
def items_app(state: Any) -> Klein:
    app = Klein()

    @app.route("/items")
    async def items(request: Any) -> bytes:
        rows = await state.database.query("SELECT 1 AS n")
        return json.dumps(rows).encode()

    @app.route("/cached")
    def cached(request: Any) -> Any:
        raise CacheUnavailable("could not reach Redis at redis://127.0.0.1:1/0")

    return app


class DatabaseDownAtStartTests(TestCase):
    async def test_module_starts_and_routes_answer_503(self) -> None:
        log = LogCapture(self)
        port = closed_port()
        url = f"postgresql://app:pw-hidden@127.0.0.1:{port}/app?connect_timeout=2"
        orch = FakeOrchestrator(secrets={"DATABASE_URL": url}, reactor=reactor)
        module = await orch.start(items_app)
        self.addCleanup(orch.shutdown)
        self.assertIsNotNone(orch.announcement)

        response = await module.request("GET", "/items")
        self.assertEqual(response.code, 503)
        self.assertEqual(
            response.json(),
            {
                "error": "backend_unavailable",
                "backend": "database",
                "message": "the database this module uses is unavailable; try again later",
            },
        )
        # the start-up ping (or the request) logged it once, naming the server
        warnings = [w for w in log.lines(LogLevel.warn) if "is unavailable" in w]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(
            f"Database postgresql (postgresql at 127.0.0.1:{port}) is unavailable", warnings[0]
        )
        self.assertIn(f"postgresql://app:***@127.0.0.1:{port}/app", warnings[0])
        self.assertNotIn("pw-hidden", " ".join(log.lines(LogLevel.warn)))

        health = module.service.health_status()
        [db] = health["databases"]
        self.assertEqual(db["status"], "unavailable")
        self.assertIn("could not connect", db["last_error"])
        self.assertNotIn("pw-hidden", json.dumps(health))

    async def test_cache_unavailable_is_503(self) -> None:
        path = os.path.abspath(self.mktemp()) + ".db"
        orch = FakeOrchestrator(secrets={"DATABASE_URL": f"sqlite:///{path}"}, reactor=reactor)
        module = await orch.start(items_app)
        self.addCleanup(orch.shutdown)
        response = await module.request("GET", "/cached")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.json()["backend"], "cache")
        ok = await module.request("GET", "/items")
        self.assertEqual((ok.code, ok.json()), (200, [{"n": 1}]))


class OnStopTests(TestCase):
    async def test_hooks_reverse_order_bounded_and_resources_closed(self) -> None:
        log = LogCapture(self)
        clock = Clock()
        ran: list[str] = []
        path = os.path.abspath(self.mktemp()) + ".db"
        databases: list[Database] = []
        hung: defer.Deferred[None] = defer.Deferred()

        def state_builder(init: Any, secrets: Any) -> Any:
            return {"db": Database.from_url(f"sqlite:///{path}", reactor=reactor)}

        @pywatt_module(state_builder=state_builder)
        def app(state: Any) -> Klein:
            databases.append(state.user_state["db"])
            databases.append(Database.from_url(f"sqlite:///{path}", reactor=reactor))

            @state.on_stop
            def first() -> None:
                ran.append("first")

            @state.on_stop
            def broken() -> None:
                ran.append("broken")
                raise RuntimeError("hook exploded")

            @state.on_stop
            def slow() -> defer.Deferred[None]:
                ran.append("slow")
                return hung

            return Klein()

        orch = FakeOrchestrator(reactor=clock, config=RuntimeConfig(shutdown_deadline=3))
        await orch.start(app)
        stopped = orch.shutdown()
        self.assertEqual(ran, ["slow"])
        clock.advance(3)
        await stopped
        self.assertEqual(ran, ["slow", "broken", "first"])
        text = "\n".join(log.lines(LogLevel.warn))
        self.assertIn("on_stop hook", text)
        self.assertIn("slow did not finish within 3.0 s", text)
        self.assertIn("--shutdown-deadline / PYWATT_SHUTDOWN_DEADLINE", text)
        critical = "\n".join(formatEvent(e) for e in log.events if e.get("log_failure"))
        self.assertIn("broken failed; the stop goes on", critical)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([db.health()["status"] for db in databases], ["closed", "closed"])

    async def test_redis_cache_from_state_builder_closed(self) -> None:
        url = require_service("redis")
        caches: list[Any] = []

        def state_builder(init: Any, secrets: Any) -> Any:
            cache = Cache.from_url(url, namespace="pywatt-data2-onstop")
            caches.append(cache)
            return {"cache": cache}

        @pywatt_module(state_builder=state_builder)
        def app(state: Any) -> Klein:
            return Klein()

        orch = FakeOrchestrator(reactor=reactor)
        await orch.start(app)
        await caches[0].set("k", "v")
        factory = caches[0]._store._redis._factory
        self.assertGreater(factory.size, 0)
        await orch.shutdown()
        self.assertTrue(factory.stopped)  # no reconnect attempts after stop
        self.assertEqual(factory.size, 0)


def _with(url: str, *, port: int | None = None, query: str = "", password: str = "") -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    auth = f"{user}:{password}" if password else user
    host = f"127.0.0.1:{port if port is not None else (parts.port or 5432)}"
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, query, ""))


@pywatt_module(database="DATABASE_URL")
def whoami_app(state: Any) -> Klein:
    app = Klein()

    @app.route("/name")
    async def name(request: Any) -> bytes:
        row = await state.database.query_one("SELECT current_setting('application_name') AS name")
        return str(row["name"]).encode()

    return app


class DatabaseRotationTests(TestCase):
    async def test_rotation_reconnects_or_reports(self) -> None:
        base = require_service("postgres")
        before = _with(base, query="application_name=before", password="old-pw")
        orch = FakeOrchestrator(secrets={"DATABASE_URL": before}, reactor=reactor)
        module = await orch.start(whoami_app)
        self.addCleanup(orch.shutdown)
        db = module.state.database
        self.assertEqual((await module.request("GET", "/name")).text(), "before")
        old_pool = db._pool

        # a working new value: new calls use it, the old pool is closed
        after = _with(base, query="application_name=after", password="new-pw")
        ack = await orch.rotate({"DATABASE_URL": after})
        self.assertEqual((ack.status, ack.message), ("success", None))
        self.assertEqual((await module.request("GET", "/name")).text(), "after")
        self.assertIsNot(db._pool, old_pool)
        # The old pool closes once the calls on it have finished. The start-up ping is
        # not awaited by the start (a server down at start-up must not hold it), so on a
        # loaded machine it can still be running here: wait for the pool's calls (the
        # pool's own closing waits first), then it must be closed.
        await db._pool_drained(old_pool)
        self.assertTrue(old_pool.threadpool.joined)

        # a value that cannot connect: the ack says why, the current pool stays
        port = closed_port()
        broken = _with(base, port=port, query="connect_timeout=2", password="bad-pw")
        ack = await orch.rotate({"DATABASE_URL": broken})
        self.assertEqual(ack.status, "error")
        self.assertIn("the database in secret 'DATABASE_URL' still uses its old value", ack.message)
        self.assertIn("the new database URL postgresql://", ack.message)
        self.assertIn(f":***@127.0.0.1:{port}/", ack.message)
        self.assertIn("could not connect", ack.message)
        self.assertNotIn("bad-pw", ack.message)
        self.assertEqual((await module.request("GET", "/name")).text(), "after")
        self.assertEqual(module.service.health_status()["databases"][0]["status"], "ok")


class CacheDownAtStartTests(TestCase):
    """
    A module whose Redis cache (made in C{create_app}) cannot be reached starts; the
    log says so once, C{/health} shows it, a route using it answers 503 at once.
    """

    async def test_module_starts_routes_answer_503_health_shows_it(self) -> None:
        require_service("redis")
        log = LogCapture(self)
        port = closed_port()
        url = f"redis://:pw-hidden@127.0.0.1:{port}/0?connect_timeout=2"

        @pywatt_module(secrets=["CACHE_URL"])
        def app(state: Any) -> Klein:
            cache = Cache.from_url(state.secret("CACHE_URL"), namespace="pywatt-cache-down")
            web = Klein()

            @web.route("/value")
            async def value(request: Any) -> bytes:
                return json.dumps(await cache.get("k")).encode()

            return web

        orch = FakeOrchestrator(secrets={"CACHE_URL": url}, reactor=reactor)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        self.assertIsNotNone(orch.announcement)

        response = await module.request("GET", "/value")
        self.assertEqual(response.code, 503)
        self.assertEqual(
            response.json(),
            {
                "error": "backend_unavailable",
                "backend": "cache",
                "message": "the cache this module uses is unavailable; try again later",
            },
        )
        warnings = [w for w in log.lines(LogLevel.warn) if "is unavailable" in w]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(
            f"Cache redis://:***@127.0.0.1:{port}/0 (Redis at 127.0.0.1:{port}) is unavailable",
            warnings[0],
        )
        self.assertIn("Raise ?connect_timeout=", warnings[0])
        answered = [line for line in log.lines(LogLevel.info) if "answered 503" in line]
        self.assertEqual(len(answered), 1, answered)
        self.assertIn(
            f"GET /value answered 503: could not reach Redis at redis://:***@127.0.0.1:{port}/0",
            answered[0],
        )

        health = module.service.health_status()
        [cache] = health["caches"]
        self.assertEqual(
            (cache["status"], cache["backend"], cache["url"]),
            ("unavailable", "redis", f"redis://:***@127.0.0.1:{port}/0"),
        )
        self.assertIn("ConnectionRefusedError", cache["last_error"])
        text = json.dumps(health) + " ".join(e and formatEvent(e) for e in log.events)
        self.assertNotIn("pw-hidden", text)


class CacheClosedAtStopTests(TestCase):
    async def test_redis_cache_from_create_app_closed(self) -> None:
        """
        A Redis cache made in C{create_app} (and not returned, registered or closed
        by the module) is closed when the module stops: its connections are gone from
        the server and nothing reconnects.
        """
        import txredisapi

        url = require_service("redis")
        caches: list[Any] = []

        @pywatt_module()
        def app(state: Any) -> Klein:
            caches.append(Cache.from_url(url, namespace="pywatt-cache-closed", poolsize=2))
            return Klein()

        orch = FakeOrchestrator(reactor=reactor)
        module = await orch.start(app)
        cache = caches[0]
        await cache.set("k", "v")
        self.assertEqual([c["status"] for c in module.service.health_status()["caches"]], ["ok"])
        factory = cache._store._redis._factory
        for _ in range(500):
            if factory.size == 2:
                break
            await deferLater(reactor, 0.01, lambda: None)
        ports = {proto.transport.getHost().port for proto in factory.pool}
        self.assertEqual(len(ports), 2)
        attempts: list[Any] = []
        endpoint = cache._store._endpoint
        connect = endpoint.connect

        def counting(factory_: Any) -> Any:
            attempts.append(factory_)
            return connect(factory_)

        self.patch(endpoint, "connect", counting)

        await orch.shutdown()

        self.assertEqual(cache.health()["status"], "closed")
        self.assertEqual(factory.size, 0)
        self.assertTrue(all(not slot.service.running for slot in factory.slots))
        admin = await txredisapi.Connection(
            urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 6379, reconnect=False
        )
        self.addCleanup(admin.disconnect)
        listing = await admin.execute_command("CLIENT", "LIST")
        ours = [
            line
            for line in str(listing).splitlines()
            if any(f"addr=127.0.0.1:{port} " in line + " " for port in ports)
        ]
        self.assertEqual(ours, [])
        # past the pool's first reconnect delay: still no attempt
        await deferLater(reactor, factory.initialDelay + 0.2, lambda: None)
        self.assertEqual(attempts, [])

    async def test_registered_cache_on_health_and_closed(self) -> None:
        """
        A cache opened before the module starts is published on C{/health} and
        closed at stop once passed to C{state.register_cache}.
        """
        cache = MemcachedLike()

        @pywatt_module()
        def app(state: Any) -> Klein:
            self.assertIs(state.register_cache(cache), cache)
            return Klein()

        orch = FakeOrchestrator(reactor=reactor)
        module = await orch.start(app)
        self.assertEqual(module.service.health_status()["caches"], [cache.health()])
        await orch.shutdown()
        self.assertTrue(cache.closed)


class MemcachedLike:
    """
    A cache opened outside the module's start-up (not tracked).
    """

    def __init__(self) -> None:
        self.closed = False

    def health(self) -> dict[str, Any]:
        return {"status": "closed" if self.closed else "ok", "backend": "memcached"}

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return defer.succeed(None)
