"""
Honest C{/health}, module metrics and build information, through a module run by the
L{FakeOrchestrator}: the author's own checks and metrics, a private Redis server that
the test stops and starts again, and a TCP proxy in front of the shared PostgreSQL that
the test closes and reopens (the shared servers are never touched).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from klein import Klein
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.protocols import portforward
from twisted.trial.unittest import SkipTest, TestCase

import pywatt_twisted
from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted.data import Database
from pywatt_twisted.data._cache import Cache
from pywatt_twisted.errors import BootstrapError
from pywatt_twisted.testing import FakeOrchestrator
from tests.data.test_database_unavailable import closed_port
from tests.services import require_service, services_required

FAST = RuntimeConfig(health_check_timeout=1.0, health_check_cache=0.001)


async def get_json(module: Any, path: str) -> tuple[int, Any]:
    response = await module.request("GET", path)
    return response.code, response.json()


async def eventually(module: Any, status: str, deadline: float = 15.0) -> dict[str, Any]:
    """
    Poll /health until its status is C{status} (a backend that came back is retried
    after its connect_timeout); fail after C{deadline} seconds.
    """
    end = time.monotonic() + deadline
    while True:
        _, body = await get_json(module, "/health")
        if body["status"] == status:
            return dict(body)
        if time.monotonic() > end:
            raise AssertionError(f"/health stayed {body['status']} (wanted {status}): {body}")
        await deferLater(reactor, 0.2, lambda: None)


def check(body: dict[str, Any], prefix: str) -> dict[str, Any]:
    [entry] = [c for c in body["checks"] if c["name"].startswith(prefix)]
    return dict(entry)


class MetricsAndBuildInfoTests(TestCase):
    async def test_module_counter_and_build_info_on_metrics(self) -> None:
        @pywatt_module
        def app(state: Any) -> Klein:
            orders = state.metrics.counter("orders_placed", "Orders placed.", ("kind",))
            web = Klein()

            @web.route("/order")
            def order(request: Any) -> dict[str, bool]:
                orders.labels("book").inc()
                return {"ok": True}

            return web

        orch = FakeOrchestrator(reactor=reactor)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        for _ in range(2):
            self.assertEqual((await module.request("GET", "/order")).code, 200)
        response = await module.request("GET", "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(response.text())}
        [sample] = [s for s in families["orders_placed"].samples if s.name.endswith("_total")]
        self.assertEqual((sample.labels, sample.value), ({"kind": "book"}, 2.0))
        [info] = families["pywatt_build_info"].samples
        self.assertEqual(info.value, 1.0)
        self.assertEqual(info.labels["version"], pywatt_twisted.__version__)
        self.assertEqual(info.labels["python"], platform.python_version())
        import twisted

        self.assertEqual(info.labels["twisted"], twisted.__version__)
        # the tests run from a git checkout: its commit is the label
        here = os.path.dirname(os.path.abspath(__file__))
        if shutil.which("git") is not None:
            head = subprocess.run(
                ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            if head:
                self.assertEqual(info.labels["git_sha"], head)
        # the same on /health
        _, body = await get_json(module, "/health")
        self.assertEqual(body["build"]["git_sha"] or "", info.labels["git_sha"])
        self.assertEqual(body["build"]["version"], pywatt_twisted.__version__)


class AuthorChecksTests(TestCase):
    async def test_optional_check_degrades_required_fails_and_both_recover(self) -> None:
        broken = {"cache": False, "queue": False}

        def cache_ok() -> None:
            if broken["cache"]:
                raise ConnectionError("cache unreachable")

        async def queue_ok() -> None:
            if broken["queue"]:
                raise RuntimeError("queue lag 900 s")

        @pywatt_module
        def app(state: Any) -> Klein:
            state.health_check("side-cache", cache_ok)
            state.health_check("job-queue", queue_ok, required=True)
            return Klein()

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        code, body = await get_json(module, "/health")
        self.assertEqual((code, body["status"]), (200, "ok"))
        self.assertEqual([c["status"] for c in body["checks"]], ["ok", "ok"])

        broken["cache"] = True
        body = await eventually(module, "degraded")
        code, _ = await get_json(module, "/health")
        self.assertEqual(code, 200)
        entry = check(body, "side-cache")
        self.assertEqual(entry["last_error"], "ConnectionError: cache unreachable")
        self.assertFalse(entry["required"])

        broken["queue"] = True
        await eventually(module, "failing")
        code, _ = await get_json(module, "/health")
        self.assertEqual(code, 503)

        broken["cache"] = broken["queue"] = False
        await eventually(module, "ok")

    async def test_hung_check_fails_within_the_timeout(self) -> None:
        @pywatt_module
        def app(state: Any) -> Klein:
            state.health_check("hangs", lambda: defer.Deferred(), required=True)
            return Klein()

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        started = time.monotonic()
        code, body = await get_json(module, "/health")
        elapsed = time.monotonic() - started
        self.assertEqual((code, body["status"]), (503, "failing"))
        self.assertLess(elapsed, FAST.health_check_timeout + 1.0)
        self.assertIn("no answer within 1 s", check(body, "hangs")["last_error"])

    async def test_required_backend_down_stops_the_start_optional_does_not(self) -> None:
        url = f"redis://127.0.0.1:{closed_port()}/0?connect_timeout=1"

        def make(required: bool) -> Any:
            @pywatt_module
            def app(state: Any) -> Klein:
                cache = Cache.from_url(url)
                if required:
                    # a failed start ends the process; here the test closes the cache
                    self.addCleanup(cache.close)
                state.register_cache(cache, required=required)
                return Klein()

            return app

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        with self.assertRaises(BootstrapError) as e:
            await orch.start(make(True))
        self.assertIn("required backend(s) did not answer: cache:redis", str(e.exception))

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        module = await orch.start(make(False))
        self.addCleanup(orch.shutdown)
        code, body = await get_json(module, "/health")
        self.assertEqual((code, body["status"]), (200, "degraded"))
        self.assertEqual(check(body, "cache:")["status"], "failing")


class PrivateRedis:
    """
    A redis-server of the test's own on a free loopback port (never the shared one).
    """

    def __init__(self, case: TestCase) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            reason = "redis-server is not installed; the private Redis test needs it"
            if services_required():
                raise AssertionError(f"PYWATT_REQUIRE_SERVICES=1 but {reason}")
            raise SkipTest(reason)
        self.binary = binary
        self.port = closed_port()
        self.process: subprocess.Popen[bytes] | None = None
        case.addCleanup(self.stop)

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > end or self.process.poll() is not None:
                    raise AssertionError("the private redis-server did not start") from None
                await deferLater(reactor, 0.05, lambda: None)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class RedisDownTests(TestCase):
    async def test_health_follows_a_private_redis(self) -> None:
        redis = PrivateRedis(self)
        await redis.start()
        url = f"redis://127.0.0.1:{redis.port}/0?connect_timeout=1&reply_timeout=1"

        @pywatt_module
        def app(state: Any) -> Klein:
            # made while the module starts: checked and closed without registering
            Cache.from_url(url, namespace="obsm-health")
            return Klein()

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        code, body = await get_json(module, "/health")
        self.assertEqual((code, body["status"]), (200, "ok"), body)
        self.assertEqual(check(body, "cache:redis")["status"], "ok")

        redis.stop()
        started = time.monotonic()
        code, body = await get_json(module, "/health")
        self.assertLess(time.monotonic() - started, FAST.health_check_timeout + 1.0)
        self.assertEqual((code, body["status"]), (200, "degraded"), body)
        self.assertEqual(check(body, "cache:redis")["status"], "failing")

        await redis.start()
        body = await eventually(module, "ok")
        self.assertEqual(check(body, "cache:redis")["status"], "ok")


class _TrackedServer(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)  # type: ignore[attr-defined]
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.live.discard(self)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class PostgresProxy:
    """
    A TCP proxy on a loopback port in front of the shared PostgreSQL; closing it stops
    listening and cuts every connection through it (the server itself is untouched).
    """

    def __init__(self, case: TestCase, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.target_port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.factory = portforward.ProxyFactory(self.host, self.target_port)
        self.factory.protocol = _TrackedServer
        self.factory.live = set()  # type: ignore[attr-defined]
        self.listening: Any = None
        self.port = 0
        case.addCleanup(self.close)

    def open(self) -> None:
        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    def close(self) -> defer.Deferred[None]:
        for proxy in list(self.factory.live):  # type: ignore[attr-defined]
            proxy.transport.abortConnection()
            if proxy.peer is not None and proxy.peer.transport is not None:
                proxy.peer.transport.abortConnection()
        listening, self.listening = self.listening, None
        if listening is None:
            return defer.succeed(None)
        stopped: defer.Deferred[None] = defer.maybeDeferred(listening.stopListening)
        return stopped


class PostgresDownTests(TestCase):
    async def test_health_follows_postgres_behind_a_proxy(self) -> None:
        target = require_service("postgres")
        proxy = PostgresProxy(self, target)
        proxy.open()
        parts = urlsplit(target)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{proxy.port}"
        url = urlunsplit(
            parts._replace(
                netloc=(f"{netloc[0]}@{host}" if len(netloc) == 2 else host),
                query="connect_timeout=1",
            )
        )
        opened: list[Database] = []

        @pywatt_module
        def app(state: Any) -> Klein:
            db = Database.from_url(url, reactor=reactor)
            opened.append(db)
            state.register_database(db, required=True)
            return Klein()

        orch = FakeOrchestrator(reactor=reactor, config=FAST)
        module = await orch.start(app)
        self.addCleanup(orch.shutdown)
        code, body = await get_json(module, "/health")
        self.assertEqual((code, body["status"]), (200, "ok"), body)
        entry = check(body, "database:")
        self.assertEqual((entry["kind"], entry["required"]), ("database", True))

        await proxy.close()
        started = time.monotonic()
        code, body = await get_json(module, "/health")
        self.assertLess(time.monotonic() - started, FAST.health_check_timeout + 1.5)
        self.assertEqual((code, body["status"]), (503, "failing"), body)
        self.assertIsNotNone(check(body, "database:")["last_error"])

        proxy.open()
        await eventually(module, "ok")
