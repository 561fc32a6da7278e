"""
Proxied services end to end through a real C{pywatt dev}: it runs with
C{--provide-database db-main=<PostgreSQL>} and C{--provide-cache cache-main=<Redis>},
and the same conformance suites as the direct backends
(L{tests.data.test_database.DatabaseSuiteMixin},
L{tests.data.test_cache.CacheSuiteMixin}) run against C{state.service(...)}.

The module's runtime runs in this test process (so the tests hold its objects); its
stdin and stdout are those of the module process C{pywatt dev} spawned, relayed over a
Unix socket by L{tests.dev.relay_module}. Everything between the two, the stdio
protocol, C{pywatt dev}'s L{ServiceHost} and the servers, is real.
"""

from __future__ import annotations

import inspect
import io
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any

from klein import Klein
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.module import pywatt_module
from pywatt_twisted._runtime.service import ModuleService
from pywatt_twisted.data import Database
from pywatt_twisted.errors import ConfigurationError
from tests.data.test_cache import CacheSuiteMixin
from tests.data.test_database import DatabaseSuiteMixin
from tests.dev.process import DevProcess, stop_dev
from tests.integration.process import PROJECT_ROOT, child_environment
from tests.services import require_service


class _RelayedModule(Factory):
    """
    Accepts the relay's connection and runs a real L{ModuleService} on it.
    """

    def __init__(self) -> None:
        self.state: Any = None
        self.service: ModuleService | None = None
        self.connected: defer.Deferred[ModuleService] = defer.Deferred()

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if self.service is not None:
            return None
        holder = self

        def create_app(state: Any) -> Klein:
            holder.state = state
            return Klein()

        stdio: list[Protocol] = []
        self.service = ModuleService(
            pywatt_module(create_app),
            reactor=reactor,
            connect_stdio=stdio.append,
            # a module process exits; here the relay's connection closes (and the
            # relay process exits with it)
            stop_process=lambda code: stdio[0].transport.loseConnection(),
            config=RuntimeConfig(),
            listen_reactor=MemoryReactor(),
        )
        self.service.startService()
        self.connected.callback(self.service)
        return stdio[0]


async def start_module(case: TestCase, *dev_args: str) -> Any:
    """
    Start C{pywatt dev DEV_ARGS} with the relay module; fire with the module's
    L{AppState} once it has announced.
    """
    directory = tempfile.mkdtemp(prefix="pw-relay-")
    case.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, "s")
    relayed = _RelayedModule()
    port = reactor.listenUNIX(path, relayed)
    case.addCleanup(port.stopListening)
    proto = DevProcess()
    argv = [
        sys.executable,
        "-m",
        "pywatt_twisted._cli",
        "dev",
        "--module=tests.dev.relay_module",
        *dev_args,
        "--port=0",
        "--heartbeat-interval=0.5",
        "--heartbeat-timeout=10",
        "--stop-deadline=5",
    ]
    env = child_environment(PYTHONUNBUFFERED="1", PYWATT_TEST_RELAY=path)

    def stop_runtime() -> Any:
        # after pywatt dev's shutdown reached it, the runtime has stopped already
        service = relayed.service
        if service is not None and service.running:
            return service.stopService()
        return None

    # cleanups run last-added first: pywatt dev stops (and shuts the module down
    # through the relay) before the runtime is stopped for sure
    case.addCleanup(stop_runtime)
    reactor.spawnProcess(proto, argv[0], argv, env=env, path=PROJECT_ROOT)
    case.addCleanup(stop_dev, proto)
    case.dev = proto  # type: ignore[attr-defined]
    service = await relayed.connected
    await service.whenReady()
    await proto.wait_for(r"relay_module announced|relay-module announced")
    return relayed.state


async def run_conformance(case: TestCase, suite: type[TestCase]) -> None:
    """
    Run every C{test_*} method of C{suite} (a conformance suite class) one after another
    inside this one test, each with its own C{setUp} and cleanups as trial would run
    it, against the one C{pywatt dev} the suite's C{open_db} / C{make} reaches; fail
    listing every method that failed. (One C{pywatt dev} per method would take
    minutes; trial does not let a process outlive a test.)
    """
    passed: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    for name in sorted(n for n in dir(suite) if n.startswith("test_")):
        inner = suite(name)
        try:
            try:
                await defer.maybeDeferred(inner.setUp)
                outcome = getattr(inner, name)()
                if inspect.isawaitable(outcome):
                    await outcome
            finally:
                while inner._cleanups:  # type: ignore[attr-defined]
                    f, args, kwargs = inner._cleanups.pop()  # type: ignore[attr-defined]
                    done = f(*args, **kwargs)
                    if inspect.isawaitable(done):
                        await done
        except SkipTest as e:
            skipped.append(f"{name}: {e}")
        except Exception:
            failed.append(f"{name}:\n{traceback.format_exc()}")
        else:
            passed.append(name)
    case.assertEqual(failed, [], f"{len(failed)} of {len(passed) + len(failed)} failed")
    case.assertGreater(len(passed), 10)
    case.passed = passed  # type: ignore[attr-defined]
    case.skipped = skipped  # type: ignore[attr-defined]


def _suite(mixin: type, state: Any) -> type[TestCase]:
    """
    The conformance suite C{mixin} as a L{TestCase} class whose backend is the proxied
    service of C{state} (made here, so that trial does not collect it on its own).
    """

    class Suite(mixin, TestCase):  # type: ignore[valid-type,misc]
        def url(self) -> str:
            return require_service("postgres")

        async def open_db(self) -> Any:
            return await state.service("db-main")

        async def make(self, namespace: str) -> Any:
            cache = await state.service("cache-main")
            return cache.namespace(namespace)

    return Suite


class DevProxiedConformanceTests(TestCase):
    """
    The direct backends' conformance suites, through C{pywatt dev}.
    """

    timeout = 300

    async def test_postgresql(self) -> None:
        """
        C{DatabaseSuiteMixin} against PostgreSQL provided with C{--provide-database}.
        (Its tests that kill the server's connections need a direct one and skip.)
        """
        url = require_service("postgres")
        state = await start_module(self, f"--provide-database=db-main={url}")
        self.assertIn("providing database 'db-main'", self.dev.output)  # type: ignore[attr-defined]
        await run_conformance(self, _suite(DatabaseSuiteMixin, state))
        self.assertIn("test_run_interaction_commits", self.passed)  # type: ignore[attr-defined]
        self.assertIn("test_concurrent_transactions", self.passed)  # type: ignore[attr-defined]

    async def test_redis(self) -> None:
        """
        C{CacheSuiteMixin} against Redis provided with C{--provide-cache}.
        """
        url = require_service("redis")
        state = await start_module(self, f"--provide-cache=cache-main={url}")
        await run_conformance(self, _suite(CacheSuiteMixin, state))
        self.assertEqual(self.skipped, [])  # type: ignore[attr-defined]
        self.assertIn("test_lock_contention", self.passed)  # type: ignore[attr-defined]


class DevProvideOptionsTests(TestCase):
    """
    What C{pywatt dev} says about its services.
    """

    timeout = 60

    async def test_unknown_service_and_direct_check(self) -> None:
        """
        An unknown name fails with the names provided; a row written through the
        proxied database is there for a direct connection.
        """
        from pywatt_twisted.errors import UnknownService

        url = require_service("postgres")
        state = await start_module(self, f"--provide-database=db-main={url}")
        with self.assertRaises(UnknownService) as c:
            await state.service("db-other")
        self.assertIn("db-main (Database)", str(c.exception))
        db = await state.service("db-main", kind="database")
        table = f"t_proxy_{os.getpid()}"
        direct = Database.from_url(url)
        self.addCleanup(direct.close)
        self.addCleanup(direct.execute, f"DROP TABLE IF EXISTS {table}")
        await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        await db.execute(f"INSERT INTO {table} (id) VALUES (:id)", {"id": 7})
        self.assertEqual(await direct.query(f"SELECT id FROM {table}"), [{"id": 7}])
        self.assertEqual(db.dialect, "postgresql")
        self.assertIn("service:db-main", db.url_redacted)

    async def test_killed_statement_not_replayed(self) -> None:
        """
        The server connection running a proxied statement is killed: the module gets
        the data layer's L{StatementInterrupted} (outcome unknown), typed across the
        wire, and the statement is not run again (no row, nothing running with its
        marker afterwards).
        """
        from pywatt_twisted.data import StatementInterrupted

        url = require_service("postgres")
        state = await start_module(self, f"--provide-database=db-main={url}")
        db = await state.service("db-main")
        table = f"t_proxy_kill_{os.getpid()}"
        direct = Database.from_url(url)
        self.addCleanup(direct.close)
        self.addCleanup(direct.execute, f"DROP TABLE IF EXISTS {table}")
        await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        marker = f"kill_marker_{os.getpid()}"
        running = db.execute(f"INSERT INTO {table} (id) SELECT 1 FROM pg_sleep(30) /* {marker} */")
        find = (
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE :m "
            "AND pid <> pg_backend_pid()"
        )
        pid = None
        for _ in range(200):
            row = await direct.query_one(find, {"m": f"%{marker}%"})
            if row is not None:
                pid = row["pid"]
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIsNotNone(pid, "the proxied statement never ran")
        await direct.query_one("SELECT pg_terminate_backend(:pid, 10000) AS done", {"pid": pid})
        with self.assertRaises(StatementInterrupted) as c:
            await running
        self.assertTrue(c.exception.connection_lost)
        self.assertIn("outcome is unknown", str(c.exception))
        self.assertEqual(db.interrupted, 1)
        await deferLater(reactor, 0.5, lambda: None)
        self.assertIsNone(await direct.query_one(find, {"m": f"%{marker}%"}))
        self.assertEqual(await direct.query(f"SELECT id FROM {table}"), [])
        # the proxied database goes on working (a new server connection)
        await db.execute(f"INSERT INTO {table} (id) VALUES (2)")
        self.assertEqual(await db.query(f"SELECT id FROM {table}"), [{"id": 2}])


class ProvideOptionTests(SynchronousTestCase):
    """
    C{--provide-database} / C{--provide-cache} values.
    """

    def host(self, *argv: str) -> Any:
        from pywatt_twisted._dev.cli import build_parser, service_host
        from pywatt_twisted._dev.supervisor import Console

        args = build_parser().parse_args(["--module=m", *argv])
        return service_host(args, reactor, Console(write=io.StringIO().write))

    def test_bad_values(self) -> None:
        for bad in ("no-url", "=sqlite://", "name="):
            with self.assertRaises(ConfigurationError) as c:
                self.host(f"--provide-database={bad}")
            self.assertIn("--provide-database takes NAME=URL", str(c.exception))
        with self.assertRaises(ConfigurationError) as c:
            self.host("--provide-cache=a=memory://", "--provide-cache=a=memory://")
        self.assertIn("a twice", str(c.exception))
        with self.assertRaises(ConfigurationError) as c:
            self.host("--provide-cache=a=nosuch://x")
        self.assertIn(
            "cannot provide cache 'a' (--provide-cache): expected a cache URL", str(c.exception)
        )
        with self.assertRaises(ConfigurationError) as c:
            self.host("--provide-database=d=oracle://u:hunter2@127.0.0.1:1/x")
        self.assertIn("cannot provide database 'd' (--provide-database)", str(c.exception))
        self.assertNotIn("hunter2", str(c.exception))

    def test_none_and_some(self) -> None:
        self.assertIsNone(self.host())
        host = self.host("--provide-cache=c=memory://")
        self.assertEqual(host.describe(), {"c": "Cache"})
        self.assertTrue(host.owned)
