"""
An unreachable or silent database fails calls fast with L{DatabaseUnavailable} (issue
18, item 2): bounded connect and statement timeouts, one WARNING naming the server
(password redacted) per outage, C{"unavailable"} on C{/health}, fail-fast until the next
connection attempt is due.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data import Database
from pywatt_twisted.data._database import (
    DatabaseConfig,
    DatabaseUnavailable,
    StatementInterrupted,
)
from pywatt_twisted.errors import BackendUnavailable, ConfigurationError
from tests.data import fakedbapi
from tests.data.test_database import _InlineThreadPool, _ThreadlessReactor
from tests.services import require_service


def closed_port() -> int:
    """
    A loopback port nothing listens on: bound, then closed.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def blackhole(case: Any) -> int:
    """
    A loopback port that completes TCP connections (backlog) but never answers.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    case.addCleanup(sock.close)
    return int(sock.getsockname()[1])


def with_port(url: str, port: int, query: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "root"
    auth = f"{user}:{password}" if password else user
    return urlunsplit((parts.scheme, f"{auth}@127.0.0.1:{port}", parts.path, query, ""))


class TimeoutConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = DatabaseConfig.from_url("postgresql://u@h/db")
        self.assertEqual((config.connect_timeout, config.statement_timeout), (5.0, 30.0))
        self.assertIn("-c statement_timeout=30000", config.connect_kwargs()["options"])

    def test_from_url(self) -> None:
        config = DatabaseConfig.from_url(
            "mysql://u@h/db?connect_timeout=2&statement_timeout=10&charset=latin1"
        )
        self.assertEqual((config.connect_timeout, config.statement_timeout), (2.0, 10.0))
        kw = config.connect_kwargs()
        self.assertEqual(
            (kw["connect_timeout"], kw["read_timeout"], kw["charset"]), (2, 2.0, "latin1")
        )
        self.assertNotIn("statement_timeout", kw)

    def test_no_statement_limit(self) -> None:
        config = DatabaseConfig.from_url("postgresql://u@h/db?statement_timeout=0")
        self.assertIsNone(config.statement_timeout)
        self.assertNotIn("options", config.connect_kwargs())

    def test_keyword_wins(self) -> None:
        db = Database.from_url("sqlite://:memory:?connect_timeout=2", connect_timeout=7)
        self.addCleanup(db.close)
        self.assertEqual(db.config.connect_timeout, 7)

    def test_bad_value(self) -> None:
        with self.assertRaises(ConfigurationError) as c:
            DatabaseConfig.from_url("postgresql://u:pw@h/db?connect_timeout=soon")
        self.assertIn("expected connect_timeout in seconds", str(c.exception))
        self.assertNotIn(":pw@", str(c.exception))


class FailFastTests(SynchronousTestCase):
    """
    With a scripted driver whose connect fails: the first failure logs one WARNING,
    later calls fail at once until C{connect_timeout} has passed, a success ends it.
    """

    def setUp(self) -> None:
        from pywatt_twisted.data._database import _core

        self.server = fakedbapi.FakeServer()
        self.patch(fakedbapi, "server", self.server)
        self.patch(_core, "DRIVERS", {"postgresql": "tests.data.fakedbapi"})
        self.attempts = 0
        self.refuse = True

        def connect(**kw: Any) -> fakedbapi.FakeConnection:
            self.attempts += 1
            if self.refuse:
                raise fakedbapi.OperationalError(
                    'connection to server at "10.0.0.9", port 5432 failed: password '
                    "s3cret-pw refused"
                )
            return fakedbapi.FakeConnection(self.server)

        self.patch(fakedbapi, "connect", connect)
        self.reactor = _ThreadlessReactor()
        config = DatabaseConfig(
            dialect="postgresql",
            database="app",
            host="10.0.0.9",
            user="app",
            password="s3cret-pw",
            connect_timeout=3,
        )
        self.db = Database.from_config(config, reactor=self.reactor, name="main")
        self.db._pool.threadpool = _InlineThreadPool()  # type: ignore[assignment]
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    def warnings(self) -> list[str]:
        from twisted.logger import formatEvent

        return [
            formatEvent(e)
            for e in self.log
            if e.get("log_level") == LogLevel.warn and "Database" in formatEvent(e)
        ]

    def test_outage(self) -> None:
        error = self.failureResultOf(self.db.query("SELECT 1"), DatabaseUnavailable).value
        self.assertIsInstance(error, BackendUnavailable)
        self.assertTrue(error.connecting)
        message = str(error)
        self.assertIn(
            "could not connect to the postgresql database app:***@10.0.0.9",
            message.replace("postgresql://", ""),
        )
        self.assertIn("connect_timeout=3 s", message)
        self.assertNotIn("s3cret-pw", message)
        [warning] = self.warnings()
        self.assertIn("Database main (postgresql at 10.0.0.9:5432) is unavailable", warning)
        self.assertIn("Raise ?connect_timeout=", warning)
        self.assertNotIn("s3cret-pw", warning)
        health = self.db.health()
        self.assertEqual(health["status"], "unavailable")
        self.assertNotIn("s3cret-pw", str(health))

        # within connect_timeout: fail at once, the server is not tried again
        self.reactor.advance(1)
        fast = self.failureResultOf(self.db.execute("UPDATE t SET x = 1"), DatabaseUnavailable)
        self.assertIn("unreachable for 1.0 s", str(fast.value))
        self.assertIn("next connection attempt is in 2.0 s", str(fast.value))
        self.assertEqual(self.attempts, 1)
        self.assertEqual(self.server.sent, [])

        # then one attempt, still down: no second WARNING
        self.reactor.advance(2)
        self.failureResultOf(self.db.query("SELECT 1"), DatabaseUnavailable)
        self.assertEqual(self.attempts, 2)
        self.assertEqual(len(self.warnings()), 1)

        # it comes back
        self.reactor.advance(3)
        self.refuse = False
        self.assertEqual(self.successResultOf(self.db.query_one("SELECT 1")), {"n": 1})
        self.assertEqual(self.db.health()["status"], "ok")
        from twisted.logger import formatEvent

        self.assertTrue(any("is available again after 6.0 s" in formatEvent(e) for e in self.log))

        # a new outage warns again
        self.refuse = True
        self.db._pool.disconnect(self.db._pool.connect())
        self.failureResultOf(self.db.query("SELECT 1"), DatabaseUnavailable)
        self.assertEqual(len(self.warnings()), 2)


class UnreachableServerMixin:
    """
    Real drivers against a closed loopback port and a port that never answers.
    """

    service = ""
    #: the smallest connect timeout the driver honours
    connect_timeout = 1

    def base_url(self) -> str:
        return require_service(self.service)

    def make(self, port: int) -> Database:
        url = with_port(
            self.base_url(),
            port,
            f"connect_timeout={self.connect_timeout}&statement_timeout=5",
            password="pw-not-shown",
        )
        db = Database.from_url(url)
        self.addCleanup(db.close)  # type: ignore[attr-defined]
        return db

    async def test_closed_port(self) -> None:
        port = closed_port()
        db = self.make(port)
        started = time.monotonic()
        with self.assertRaises(DatabaseUnavailable) as c:  # type: ignore[attr-defined]
            await db.ping()
        self.assertLess(time.monotonic() - started, self.connect_timeout + 1)  # type: ignore[attr-defined]
        message = str(c.exception)
        self.assertIn(f":***@127.0.0.1:{port}/", message)  # type: ignore[attr-defined]
        self.assertIn("could not connect", message)  # type: ignore[attr-defined]
        self.assertNotIn("pw-not-shown", message)  # type: ignore[attr-defined]
        self.assertEqual(db.health()["status"], "unavailable")  # type: ignore[attr-defined]

    async def test_blackhole(self) -> None:
        port = blackhole(self)
        db = self.make(port)
        started = time.monotonic()
        with self.assertRaises(DatabaseUnavailable) as c:  # type: ignore[attr-defined]
            await db.query("SELECT 1")
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, self.connect_timeout + 3)  # type: ignore[attr-defined]
        self.assertIn(f"connect_timeout={self.connect_timeout} s", str(c.exception))  # type: ignore[attr-defined]
        # the next call fails at once instead of waiting again
        started = time.monotonic()
        with self.assertRaises(DatabaseUnavailable) as c:  # type: ignore[attr-defined]
            await db.query("SELECT 1")
        self.assertLess(time.monotonic() - started, 0.5)  # type: ignore[attr-defined]
        self.assertIn("failing at once", str(c.exception))  # type: ignore[attr-defined]


class PostgreSQLUnreachableTests(UnreachableServerMixin, TestCase):
    service = "postgres"
    connect_timeout = 2  # libpq treats less than 2 s as 2


class MySQLUnreachableTests(UnreachableServerMixin, TestCase):
    service = "mysql"


class StatementTimeoutMixin:
    """
    A statement running past its timeout is cancelled by the server and reported as
    L{StatementInterrupted} (not applied, not re-sent); the connection stays usable.
    """

    service = ""
    sleep = ""

    async def test_default_and_per_call(self) -> None:
        url = require_service(self.service)
        sep = "&" if "?" in url else "?"
        db = Database.from_url(url + sep + "statement_timeout=0.5", max_pool=1)
        self.addCleanup(db.close)  # type: ignore[attr-defined]
        started = time.monotonic()
        with self.assertRaises(StatementInterrupted) as c:  # type: ignore[attr-defined]
            await db.query(self.sleep.format(seconds=5))
        self.assertLess(time.monotonic() - started, 4)  # type: ignore[attr-defined]
        self.assertFalse(c.exception.connection_lost)  # type: ignore[attr-defined]
        self.assertIn("statement timeout", str(c.exception))  # type: ignore[attr-defined]
        # a longer limit for one call, then the default again on the same connection
        await db.query(self.sleep.format(seconds=1), timeout=3)
        with self.assertRaises(StatementInterrupted):  # type: ignore[attr-defined]
            await db.query(self.sleep.format(seconds=5))
        self.assertEqual(db.health()["status"], "ok")  # type: ignore[attr-defined]


class PostgreSQLStatementTimeoutTests(StatementTimeoutMixin, TestCase):
    service = "postgres"
    sleep = "SELECT pg_sleep({seconds}) AS s"


class MySQLStatementTimeoutTests(StatementTimeoutMixin, TestCase):
    service = "mysql"
    sleep = "SELECT SLEEP({seconds}) AS s FROM (SELECT 1) AS t"
