"""
One test suite for L{pywatt_twisted.data.Database}, run against every backend: SQLite
(file and memory, always), PostgreSQL and MariaDB/MySQL (real servers on loopback, via
L{tests.services.require_service}).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from pywatt_twisted.data import (
    Database,
    DatabaseCollector,
    DatabaseConfig,
    DatabaseError,
    DatabaseUnavailable,
    IDatabase,
    IntegrityError,
    ParameterError,
    QueryError,
    StatementInterrupted,
    TransactionClosed,
)
from pywatt_twisted.errors import DataError
from tests.data import fakedbapi
from tests.services import require_service


class DatabaseSuiteMixin:
    """
    The tests every backend must pass. Subclasses set C{url()}.
    """

    #: extra pool options for this backend
    pool: ClassVar[dict[str, Any]] = {}
    #: can the suite kill its own server connection?
    server = False

    def url(self) -> str:
        raise NotImplementedError

    def open_db(self) -> Any:
        """
        The database under test (or a Deferred of it): a direct one for C{url()}.
        """
        return Database.from_url(self.url(), **self.pool)

    def setUp(self) -> defer.Deferred[None]:
        self.table = f"t_{uuid.uuid4().hex[:12]}"

        def opened(db: Any) -> defer.Deferred[None]:
            self.db = db
            self.addCleanup(self.db.close)
            return self.db.execute(
                f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT "
                "NULL, n INTEGER NOT NULL DEFAULT 0)"
            ).addCallback(lambda _: self.addCleanup(self._drop))

        return defer.maybeDeferred(self.open_db).addCallback(opened)

    def _drop(self) -> defer.Deferred[Any]:
        if self.db._closed:
            return defer.succeed(None)
        return self.db.execute(f"DROP TABLE IF EXISTS {self.table}")

    async def _insert(self, id: int, name: str, n: int = 0) -> int:
        return await self.db.execute(
            f"INSERT INTO {self.table} (id, name, n) VALUES (:id, :name, :n)",
            {"id": id, "name": name, "n": n},
        )

    async def _count(self) -> int:
        row = await self.db.query_one(f"SELECT count(*) AS c FROM {self.table}")
        assert row is not None
        return int(row["c"])  # type: ignore[call-overload]

    # basics -------------------------------------------------------------------------

    async def test_interface(self) -> None:
        self.assertTrue(IDatabase.providedBy(self.db))
        self.assertIn(self.db.dialect, ("postgresql", "mysql", "sqlite"))

    async def test_execute_query(self) -> None:
        self.assertEqual(await self._insert(1, "one"), 1)
        self.assertEqual(await self._insert(2, "two"), 1)
        rows = await self.db.query(
            f"SELECT id, name FROM {self.table} WHERE id >= :low ORDER BY id", {"low": 1}
        )
        self.assertEqual(rows, [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
        changed = await self.db.execute(f"UPDATE {self.table} SET n = n + :d", {"d": 5})
        self.assertEqual(changed, 2)
        self.assertEqual(
            await self.db.query_one(f"SELECT name, n FROM {self.table} WHERE id = :id", {"id": 2}),
            {"name": "two", "n": 5},
        )
        self.assertIsNone(
            await self.db.query_one(f"SELECT * FROM {self.table} WHERE id = :id", {"id": 9})
        )
        self.assertEqual(await self.db.query(f"SELECT * FROM {self.table} WHERE 1 = 0"), [])

    async def test_param_edge_cases(self) -> None:
        """
        A repeated placeholder, a literal C{%}, and C{:word} inside a string literal
        behave the same on every backend.
        """
        await self._insert(1, "50% off :x")
        row = await self.db.query_one(
            f"SELECT name, ':x' AS lit FROM {self.table} "
            "WHERE name LIKE '50%' AND id = :id AND id <= :id",
            {"id": 1},
        )
        self.assertEqual(row, {"name": "50% off :x", "lit": ":x"})

    async def test_missing_parameter(self) -> None:
        with self.assertRaises(ParameterError) as c:
            await self.db.query(f"SELECT * FROM {self.table} WHERE id = :id", {"other": 1})
        self.assertIn(":id", str(c.exception))

    async def test_query_error(self) -> None:
        with self.assertRaises(QueryError) as c:
            await self.db.query("SELEKT nothing")
        self.assertIsInstance(c.exception, DataError)
        self.assertIn(self.db.dialect, str(c.exception))
        self.assertIsNotNone(c.exception.driver_error)
        self.assertIn("SELEKT", str(c.exception))

    async def test_integrity_error(self) -> None:
        await self._insert(1, "one")
        with self.assertRaises(IntegrityError) as c:
            await self._insert(1, "again")
        self.assertIsNotNone(c.exception.code)

    async def test_ping_and_health(self) -> None:
        self.assertIsNone(await self.db.ping())
        health = self.db.health()
        self.assertEqual(health["status"], "ok")
        self.assertEqual(health["dialect"], self.db.dialect)
        self.assertGreaterEqual(health["pool"]["open"], 1)
        self.assertLessEqual(health["pool"]["open"], health["pool"]["max"])
        self.assertEqual(health["pool"]["in_flight"], 0)
        self.assertGreaterEqual(health["calls"], 2)

    async def test_metrics(self) -> None:
        await self.db.ping()
        with self.assertRaises(QueryError):
            await self.db.query("SELEKT 1")
        registry = CollectorRegistry()
        registry.register(DatabaseCollector(self.db))
        text = generate_latest(registry).decode()
        self.assertIn(f'pywatt_db_errors_total{{database="{self.db.name}"', text)
        self.assertIn("pywatt_db_pool_connections{", text)
        errors = registry.get_sample_value(
            "pywatt_db_errors_total", {"database": self.db.name, "dialect": self.db.dialect}
        )
        self.assertEqual(errors, 1.0)

    # transactions -------------------------------------------------------------------

    async def test_run_interaction_commits(self) -> None:
        def work(tx: Any, base: int) -> int:
            tx.execute(
                f"INSERT INTO {self.table} (id, name) VALUES (:id, :name)",
                {"id": base, "name": "a"},
            )
            tx.execute(
                f"INSERT INTO {self.table} (id, name) VALUES (:id, :name)",
                {"id": base + 1, "name": "b"},
            )
            return len(tx.query(f"SELECT id FROM {self.table}"))

        self.assertEqual(await self.db.run_interaction(work, 10), 2)
        self.assertEqual(await self._count(), 2)

    async def test_run_interaction_rolls_back(self) -> None:
        await self._insert(1, "kept")

        def work(tx: Any) -> None:
            tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (2, 'lost')")
            tx.execute(f"UPDATE {self.table} SET name = 'changed' WHERE id = 1")
            raise ValueError("abort")

        with self.assertRaises(ValueError):
            await self.db.transaction(work)
        self.assertEqual(await self._count(), 1)
        row = await self.db.query_one(f"SELECT name FROM {self.table}")
        self.assertEqual(row, {"name": "kept"})

    async def test_run_interaction_rolls_back_on_sql_error(self) -> None:
        def work(tx: Any) -> None:
            tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
            tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'duplicate')")

        with self.assertRaises(IntegrityError):
            await self.db.run_interaction(work)
        self.assertEqual(await self._count(), 0)

    async def test_async_transaction_commits(self) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO {self.table} (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"}
            )
            row = await tx.query_one(f"SELECT count(*) AS c FROM {self.table}")
            self.assertEqual(int(row["c"]), 1)
            self.assertEqual(self.db.health()["pool"]["transactions"], 1)
        self.assertEqual(self.db.health()["pool"]["transactions"], 0)
        self.assertEqual(await self._count(), 1)
        with self.assertRaises(TransactionClosed):
            await tx.query("SELECT 1")

    async def test_async_transaction_rolls_back(self) -> None:
        await self._insert(1, "kept")
        with self.assertRaises(ZeroDivisionError):
            async with self.db.transaction() as tx:
                await tx.execute(f"DELETE FROM {self.table}")
                self.assertEqual(await tx.query(f"SELECT * FROM {self.table}"), [])
                1 / 0  # noqa: B018
        self.assertEqual(await self._count(), 1)

    async def test_async_transaction_sql_error_then_rollback(self) -> None:
        with self.assertRaises(QueryError):
            async with self.db.transaction() as tx:
                await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
                await tx.execute("SELEKT")
        self.assertEqual(await self._count(), 0)

    async def test_async_transaction_explicit_rollback(self) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
            await tx.rollback()
        self.assertEqual(await self._count(), 0)

    async def test_transaction_isolation_from_other_calls(self) -> None:
        """
        Other calls do not see an open transaction's writes until it commits.
        """
        if self.db._max_pool < 2:
            raise self.skipTest("needs two connections")  # type: ignore[attr-defined]
        async with self.db.transaction() as tx:
            await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
            if self.db.dialect != "sqlite":
                self.assertEqual(await self._count(), 0)
        self.assertEqual(await self._count(), 1)

    # concurrency --------------------------------------------------------------------

    async def test_concurrent_calls(self) -> None:
        count = 40
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._insert(i, f"n{i}")) for i in range(count)]
        )
        self.assertEqual(results, [1] * count)
        self.assertEqual(await self._count(), count)
        self.assertLessEqual(self.db.health()["pool"]["open"], self.db._max_pool)

    async def test_concurrent_transactions(self) -> None:
        await self._insert(1, "counter")

        def bump(tx: Any) -> None:
            if self.db.dialect == "sqlite":
                tx.execute(f"UPDATE {self.table} SET n = n + 1 WHERE id = 1")
                return
            row = tx.query_one(f"SELECT n FROM {self.table} WHERE id = 1 FOR UPDATE")
            tx.execute(f"UPDATE {self.table} SET n = :n WHERE id = 1", {"n": row["n"] + 1})

        await defer.gatherResults([self.db.transaction(bump) for _ in range(20)])
        row = await self.db.query_one(f"SELECT n FROM {self.table} WHERE id = 1")
        self.assertEqual(row, {"n": 20})

    # lifecycle ----------------------------------------------------------------------

    async def test_close(self) -> None:
        await self.db.ping()
        await self.db.close()
        await self.db.close()
        self.assertEqual(self.db.health()["status"], "closed")
        with self.assertRaises(TransactionClosed):
            await self.db.query("SELECT 1")

    async def test_pool_stopped_under_the_database(self) -> None:
        """
        A pool whose threads were stopped without L{Database.close} (adbapi's own
        shutdown trigger runs after ours, but a module may close it) fails calls and
        new transactions at once, saying so, instead of leaving them waiting forever.
        """
        db = Database.from_url(self.url(), **self.pool)
        self.addCleanup(db.close)
        await db.ping()
        db._pool.close()
        with self.assertRaises(TransactionClosed) as caught:
            await db.query("SELECT 1")
        self.assertIn("already closed", str(caught.exception))
        with self.assertRaises(TransactionClosed):
            async with db.transaction():
                pass
        self.assertEqual(db.health()["pool"]["in_flight"], 0)

    async def test_close_rolls_back_open_transaction(self) -> None:
        tx = self.db.transaction()
        await tx.__aenter__()
        await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
        await self.db.close()
        with self.assertRaises(TransactionClosed):
            await tx.execute("SELECT 1")
        other = Database.from_url(self.url(), **self.pool)
        self.addCleanup(other.close)
        if self.url() != "sqlite://:memory:":
            row = await other.query_one(f"SELECT count(*) AS c FROM {self.table}")
            self.assertEqual(int(row["c"]), 0)
            await other.execute(f"DROP TABLE {self.table}")

    # server connections -------------------------------------------------------------

    async def _connection_id(self, via: Any) -> int:
        if self.db.dialect == "postgresql":
            row = await via.query_one("SELECT pg_backend_pid() AS id")
        else:
            row = await via.query_one("SELECT CONNECTION_ID() AS id")
        return int(row["id"])

    async def _kill(self, connection_id: int, *, query_only: bool = False) -> None:
        """
        Kill one server connection of this test (by its id), or with C{query_only} only
        cancel the statement it runs. Killing waits until the connection is gone.
        """
        admin = Database.from_url(self.url())
        try:
            if self.db.dialect == "postgresql":
                if query_only:
                    sql = "SELECT pg_cancel_backend(:id) AS done"
                else:
                    # the timeout makes it wait until the backend has exited
                    sql = "SELECT pg_terminate_backend(:id, 10000) AS done"
                row = await admin.query_one(sql, {"id": connection_id})
                assert row is not None and row["done"], f"could not kill {connection_id}"
            else:
                what = "QUERY" if query_only else "CONNECTION"
                await admin.execute(f"KILL {what} {int(connection_id)}")
        finally:
            await admin.close()

    async def _wait_running(self, connection_id: int, marker: str) -> None:
        """
        Wait (10 s at most) until the server connection C{connection_id} runs a
        statement containing C{marker}.
        """
        if self.db.dialect == "postgresql":
            sql = (
                "SELECT count(*) AS c FROM pg_stat_activity "
                "WHERE pid = :id AND state = 'active' AND query LIKE :m"
            )
        else:
            sql = (
                "SELECT count(*) AS c FROM information_schema.PROCESSLIST "
                "WHERE ID = :id AND INFO LIKE :m"
            )
        for _ in range(200):
            row = await self.db.query_one(sql, {"id": connection_id, "m": f"%{marker}%"})
            if row is not None and int(row["c"]):  # type: ignore[call-overload]
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"connection {connection_id} never ran a statement with {marker}")  # type: ignore[attr-defined]

    def _slow_insert(self, id: int) -> str:
        """
        An C{INSERT ... SELECT} of row C{id} that sleeps 30 s when run by the server
        connection C{:victim}, and not at all on any other connection (so a re-run on a
        new connection is quick).
        """
        if self.db.dialect == "postgresql":
            sleep = (
                "EXISTS (SELECT 1 FROM pg_sleep(CASE WHEN pg_backend_pid() = :victim "
                "THEN 30 ELSE 0 END))"
            )
            source = ""
        else:
            sleep = "SLEEP(CASE WHEN CONNECTION_ID() = :victim THEN 30 ELSE 0 END) = 0"
            source = " FROM DUAL"
        return f"INSERT INTO {self.table} (id, name) SELECT {int(id)}, 'slow'{source} WHERE {sleep}"

    async def _one_connection_db(self) -> tuple[Database, int]:
        if not self.server:
            raise self.skipTest("no server connection to kill")  # type: ignore[attr-defined]
        db = Database.from_url(self.url(), max_pool=1)
        self.addCleanup(db.close)
        return db, await self._connection_id(db)

    async def test_killed_statement_not_replayed(self) -> None:
        """
        A statement whose connection is killed while it runs fails with
        L{StatementInterrupted}, is not run again (no row), and the next call opens a
        new connection and works.
        """
        db, victim = await self._one_connection_db()
        d = db.execute(self._slow_insert(1), {"victim": victim})
        await self._wait_running(victim, self.table)
        await self._kill(victim)
        with self.assertRaises(StatementInterrupted) as c:
            await d
        self.assertTrue(c.exception.connection_lost)
        self.assertIn("outcome is unknown", str(c.exception))
        self.assertIn(self.db.dialect, str(c.exception))
        self.assertEqual(await self._count(), 0)
        self.assertNotEqual(await self._connection_id(db), victim)
        await db.execute(f"INSERT INTO {self.table} (id, name) VALUES (2, 'b')")
        self.assertEqual(await self._count(), 1)
        self.assertEqual(db.interrupted, 1)

    async def test_cancelled_statement_not_replayed(self) -> None:
        """
        A statement the server cancels (C{KILL QUERY}, C{pg_cancel_backend}) fails with
        L{StatementInterrupted}, even with C{idempotent=True}; no row; the connection
        stays in use.
        """
        db, victim = await self._one_connection_db()
        d = db.execute(self._slow_insert(1), {"victim": victim}, idempotent=True)
        await self._wait_running(victim, self.table)
        await self._kill(victim, query_only=True)
        with self.assertRaises(StatementInterrupted) as c:
            await d
        self.assertFalse(c.exception.connection_lost)
        self.assertEqual(await self._count(), 0)
        self.assertEqual(await self._connection_id(db), victim)
        self.assertEqual(db.retries, 0)

    async def test_killed_idempotent_statement_retried_once(self) -> None:
        """
        With C{idempotent=True}, a statement whose connection is killed while it runs
        runs once more on a new connection: the call succeeds with one row.
        """
        db, victim = await self._one_connection_db()
        d = db.execute(self._slow_insert(1), {"victim": victim}, idempotent=True)
        await self._wait_running(victim, self.table)
        await self._kill(victim)
        self.assertEqual(await d, 1)
        self.assertEqual(await self._count(), 1)
        self.assertEqual(db.retries, 1)
        self.assertEqual(db.errors, 0)
        self.assertNotEqual(await self._connection_id(db), victim)

    async def test_killed_transaction_fails_whole(self) -> None:
        """
        A transaction whose first statement is killed while it runs fails whole: the
        statement is not re-sent, the rest does not run, no row lands.
        """
        db, victim = await self._one_connection_db()
        slow = self._slow_insert(1)
        table = self.table

        def work(tx: Any) -> None:
            tx.execute(slow, {"victim": victim})
            tx.execute(f"INSERT INTO {table} (id, name) VALUES (2, 'b')")

        d = db.transaction(work)
        await self._wait_running(victim, self.table)
        await self._kill(victim)
        with self.assertRaises(StatementInterrupted) as c:
            await d
        self.assertIn("whole transaction failed", str(c.exception))
        self.assertEqual(await self._count(), 0)
        self.assertEqual(await db.execute(f"INSERT INTO {table} (id, name) VALUES (3, 'c')"), 1)

    async def test_killed_async_transaction_fails_whole(self) -> None:
        """
        In an C{async with} transaction, a statement killed while it runs fails; the
        statements after it are refused (not run on a new connection); the block's end
        raises instead of committing; no row of it lands.
        """
        db, _ = await self._one_connection_db()
        with self.assertRaises(StatementInterrupted):
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
                victim = await self._connection_id(tx)
                d = tx.execute(self._slow_insert(2), {"victim": victim})
                await self._wait_running(victim, self.table)
                await self._kill(victim)
                with self.assertRaises(StatementInterrupted):
                    await d
                with self.assertRaises(TransactionClosed):
                    await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (3, 'c')")
        self.assertEqual(await self._count(), 0)
        self.assertNotEqual(await self._connection_id(db), victim)

    async def test_killed_connection_next_call_reconnects(self) -> None:
        if not self.server:
            raise self.skipTest("no server connection to kill")  # type: ignore[attr-defined]
        # one connection, so the next call surely meets the killed one
        db = Database.from_url(self.url(), max_pool=1)
        self.addCleanup(db.close)
        first = await self._connection_id(db)
        await self._kill(first)
        # the next call notices the dead connection before anything of its
        # transaction reached the server, reconnects and succeeds
        second = await self._connection_id(db)
        self.assertNotEqual(first, second)
        self.assertEqual(db.reconnects, 1)
        self.assertEqual(db.health()["reconnects"], 1)
        self.assertEqual(db.errors, 0)

    async def test_killed_connection_async_transaction(self) -> None:
        if not self.server:
            raise self.skipTest("no server connection to kill")  # type: ignore[attr-defined]
        db = Database.from_url(self.url(), max_pool=1)
        self.addCleanup(db.close)
        await self._kill(await self._connection_id(db))
        async with db.transaction() as tx:
            await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
        self.assertEqual(db.reconnects, 1)
        self.assertEqual(await self._count(), 1)

    async def test_killed_mid_transaction(self) -> None:
        """
        A connection lost after the transaction did something fails that transaction
        (the server rolled it back); the call after it succeeds.
        """
        if not self.server:
            raise self.skipTest("no server connection to kill")  # type: ignore[attr-defined]
        with self.assertRaises(DatabaseUnavailable) as c:
            async with self.db.transaction() as tx:
                await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (1, 'a')")
                await self._kill(await self._connection_id(tx))
                await tx.execute(f"INSERT INTO {self.table} (id, name) VALUES (2, 'b')")
        self.assertIn("next call opens a new connection", str(c.exception))
        self.assertEqual(await self._count(), 0)

    async def test_unreachable_server_error_has_no_password(self) -> None:
        if not self.server:
            raise self.skipTest("no server")  # type: ignore[attr-defined]
        scheme = self.db.dialect
        db = Database.from_url(
            f"{scheme}://someone:hunter2-secret@127.0.0.1:1/test", connect_timeout=2
        )
        self.addCleanup(db.close)
        with self.assertRaises(DatabaseUnavailable) as c:
            await db.ping()
        message = str(c.exception)
        self.assertNotIn("hunter2-secret", message)
        self.assertIn("someone:***@127.0.0.1:1", message)
        self.assertNotIn("hunter2-secret", str(db.health()))
        self.assertNotIn("hunter2-secret", repr(db))


class SQLiteFileTests(DatabaseSuiteMixin, TestCase):
    pool = {"max_pool": 3}

    def url(self) -> str:
        if not hasattr(self, "_path"):
            self._path = os.path.abspath(self.mktemp()) + ".db"
        return f"sqlite:///{self._path}"


class SQLiteMemoryTests(DatabaseSuiteMixin, TestCase):
    def url(self) -> str:
        return "sqlite://:memory:"


class SQLiteStatementsSentTests(TestCase):
    """
    What reaches SQLite: a single statement (C{execute}, C{query}, C{query_one}) runs
    alone in autocommit mode, atomic on its own; a transaction is opened with C{BEGIN}
    and ends with C{COMMIT} or C{ROLLBACK}.
    """

    async def test_statements(self) -> None:
        path = os.path.abspath(self.mktemp()) + ".db"
        db = Database.from_url(f"sqlite:///{path}", max_pool=1)
        self.addCleanup(db.close)
        sent: list[str] = []
        await db.run_interaction(lambda tx: db._pool.connect().set_trace_callback(sent.append))
        sent.clear()
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.execute("INSERT INTO t VALUES (:x)", {"x": 1})
        self.assertEqual(await db.query_one("SELECT x FROM t"), {"x": 1})
        self.assertEqual(
            sent,
            ["CREATE TABLE t (x INTEGER)", "INSERT INTO t VALUES (1)", "SELECT x FROM t"],
        )
        sent.clear()

        def two(tx: Any) -> None:
            tx.execute("INSERT INTO t VALUES (2)")
            tx.execute("INSERT INTO t VALUES (3)")

        await db.run_interaction(two)
        self.assertEqual(
            sent, ["BEGIN", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)", "COMMIT"]
        )

        def half(tx: Any) -> None:
            tx.execute("INSERT INTO t VALUES (4)")
            tx.execute("INSERT INTO nowhere VALUES (5)")

        with self.assertRaises(DatabaseError):
            await db.run_interaction(half)
        self.assertEqual(
            await db.query("SELECT x FROM t ORDER BY x"), [{"x": n} for n in (1, 2, 3)]
        )
        with self.assertRaises(DatabaseError):
            await db.execute("INSERT INTO t VALUES ('not', 'one column')")
        self.assertEqual(len(await db.query("SELECT x FROM t")), 3)


class PostgreSQLTests(DatabaseSuiteMixin, TestCase):
    server = True
    pool = {"max_pool": 4, "connect_timeout": 5}

    def url(self) -> str:
        return require_service("postgres")


class MySQLTests(DatabaseSuiteMixin, TestCase):
    server = True
    pool = {"max_pool": 4, "connect_timeout": 5}

    def url(self) -> str:
        return require_service("mysql")


class ErrorWrappingTests(SynchronousTestCase):
    """
    Driver errors become L{DatabaseError}s without the password, whatever the driver
    put in its message.
    """

    def test_password_scrubbed(self) -> None:
        import sqlite3

        db = Database.from_url("sqlite://:memory:")
        self.addCleanup(db.close)
        db.config = db.config.__class__(dialect="sqlite", database=":memory:", password="hunter2")
        wrapped = db._wrap(sqlite3.OperationalError("bad hunter2 here"), "run a query")
        self.assertIsInstance(wrapped, DatabaseError)
        self.assertNotIn("hunter2", str(wrapped))
        self.assertIn("bad *** here", str(wrapped))
        self.assertIsNone(wrapped.__cause__)

    def test_other_errors_pass_through(self) -> None:
        db = Database.from_url("sqlite://:memory:")
        self.addCleanup(db.close)
        error = KeyError("x")
        self.assertIs(db._wrap(error, "x"), error)


class FakeReactorTests(SynchronousTestCase):
    """
    A real L{Database} on a memory reactor (what a C{SynchronousTestCase} with
    C{FakeOrchestrator} gives) is refused with an error that says what to use instead.
    """

    def assertSaysUseTestCase(self, message: str) -> None:
        self.assertIn("need a real, running reactor", message)
        self.assertIn("MemoryReactorClock", message)
        self.assertIn("twisted.trial.unittest.TestCase (not SynchronousTestCase)", message)
        self.assertIn("FakeOrchestrator(..., reactor=reactor)", message)

    def test_from_url(self) -> None:
        with self.assertRaises(TypeError) as c:
            Database.from_url("sqlite://", reactor=MemoryReactorClock())
        self.assertSaysUseTestCase(str(c.exception))

    def test_module_database_under_fake_orchestrator(self) -> None:
        """
        The mistake as a module author makes it: C{@pywatt_module(database=...)} started
        by C{FakeOrchestrator} in a C{SynchronousTestCase}; C{start()} fails with it.
        """
        from klein import Klein

        from pywatt_twisted import pywatt_module
        from pywatt_twisted.testing import FakeOrchestrator

        @pywatt_module(secrets=["DATABASE_URL"], database="DATABASE_URL")
        def create_app(state: Any) -> Klein:
            return Klein()

        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        orch = FakeOrchestrator(secrets={"DATABASE_URL": "sqlite://"})
        failure = self.failureResultOf(orch.start(create_app))
        self.assertSaysUseTestCase(failure.getErrorMessage())
        # the start-up failure is also logged, as one critical line (on stderr, as JSON,
        # in a real process)
        (logged,) = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.critical]
        self.assertTrue(logged.startswith("module start-up failed: TypeError: "), logged)
        self.assertSaysUseTestCase(logged)


@implementer(IReactorThreads)
class _ThreadlessReactor(MemoryReactorClock):
    """
    A memory reactor whose "threads" are the calling thread, so that L{Database} calls
    run to completion synchronously.
    """

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def callInThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def getThreadPool(self) -> Any:
        raise NotImplementedError

    def suggestThreadPoolSize(self, size: int) -> None:
        pass


class _InlineThreadPool:
    """
    Runs the work handed to C{callInThread} or C{callInThreadWithCallback} at once, in
    the calling thread.
    """

    name = "inline"
    joined = False

    def callInThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kw: Any) -> None:
        try:
            result = f(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def stop(self) -> None:
        self.joined = True


class InterruptionTests(SynchronousTestCase):
    """
    What a L{Database} does when a connection dies or a statement is cancelled at a
    chosen moment, with the scripted driver L{tests.data.fakedbapi} (psycopg-shaped, so
    the dialect is C{postgresql}): a statement that reached the server is never sent
    again unless the call is C{idempotent=True}.
    """

    def setUp(self) -> None:
        from pywatt_twisted.data._database import _core

        self.server = fakedbapi.FakeServer()
        self.patch(fakedbapi, "server", self.server)
        self.patch(_core, "DRIVERS", {"postgresql": "tests.data.fakedbapi"})
        self.reactor = _ThreadlessReactor()
        config = DatabaseConfig(dialect="postgresql", database="fake", host="127.0.0.1")
        self.db = Database.from_config(config, reactor=self.reactor, name="fake")
        self.db._pool.threadpool = _InlineThreadPool()  # type: ignore[assignment]
        self.log: list[dict[str, Any]] = []
        observer = self.log.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _interrupted(self, d: defer.Deferred[Any]) -> StatementInterrupted:
        error = self.failureResultOf(d, StatementInterrupted).value
        assert isinstance(error, StatementInterrupted)
        return error

    def test_lost_statement_not_replayed(self) -> None:
        """
        A statement whose connection dies after it was sent fails with
        L{StatementInterrupted} (a L{DatabaseUnavailable}) saying the outcome is
        unknown; it reached the server once, and the next call opens a new connection.
        """
        self.server.plan = ["lost"]
        error = self._interrupted(self.db.execute("INSERT 1"))
        self.assertIsInstance(error, DatabaseUnavailable)
        self.assertTrue(error.connection_lost)
        self.assertIn("fake", str(error))
        self.assertIn("outcome is unknown", str(error))
        self.assertIn("not run again", str(error))
        self.assertIn("idempotent=True", str(error))
        self.assertEqual(self.server.sent, ["INSERT 1"])
        self.assertEqual(self.server.committed, [])
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(self.db.health()["interrupted"], 1)
        self.assertEqual(self.db.health()["retries"], 0)
        warnings = [e for e in self.log if "outcome is unknown" in str(e.get("error"))]
        self.assertEqual(len(warnings), 1)

        self.assertEqual(self.successResultOf(self.db.execute("INSERT 2")), 1)
        self.assertEqual(self.server.sent, ["INSERT 1", "INSERT 2"])
        self.assertEqual(self.server.committed, ["INSERT 2"])
        self.assertEqual(len(self.server.connections), 2)

    def test_lost_query_not_replayed(self) -> None:
        """
        Reads follow the same rule: a C{SELECT} can have side effects.
        """
        self.server.plan = ["lost"]
        self._interrupted(self.db.query("SELECT f()"))
        self.server.plan = ["lost"]
        self._interrupted(self.db.query_one("SELECT f()"))
        self.assertEqual(self.server.sent, ["SELECT f()", "SELECT f()"])

    def test_idempotent_retried_once(self) -> None:
        """
        With C{idempotent=True}, a statement whose connection died runs once more on a
        new connection and the call succeeds.
        """
        self.server.plan = ["lost"]
        self.assertEqual(self.successResultOf(self.db.execute("UPSERT", idempotent=True)), 1)
        self.assertEqual(self.server.sent, ["UPSERT", "UPSERT"])
        self.assertEqual(self.server.committed, ["UPSERT"])
        self.assertEqual(len(self.server.connections), 2)
        self.assertEqual(self.db.retries, 1)
        self.assertEqual(self.db.errors, 0)
        retried = [e for e in self.log if "once more" in str(e.get("log_format"))]
        self.assertEqual(len(retried), 1)

    def test_idempotent_query_retried(self) -> None:
        self.server.plan = ["lost"]
        self.assertEqual(
            self.successResultOf(self.db.query_one("SELECT 2", idempotent=True)), {"n": 2}
        )

    def test_idempotent_retried_only_once(self) -> None:
        """
        A second lost connection fails the call: exactly two sends, never more.
        """
        self.server.plan = ["lost", "lost", "ok"]
        error = self._interrupted(self.db.execute("UPSERT", idempotent=True))
        self.assertTrue(error.connection_lost)
        self.assertEqual(self.server.sent, ["UPSERT", "UPSERT"])
        self.assertEqual(self.server.committed, [])

    def test_cancelled_not_retried(self) -> None:
        """
        A statement the server cancelled fails with L{StatementInterrupted}
        (C{connection_lost} false), even when idempotent; the connection is kept.
        """
        self.server.plan = ["cancelled"]
        error = self._interrupted(self.db.execute("UPDATE", idempotent=True))
        self.assertFalse(error.connection_lost)
        self.assertEqual(error.code, "57014")
        self.assertIn("cancelled", str(error))
        self.assertEqual(self.server.sent, ["UPDATE"])
        self.successResultOf(self.db.execute("UPDATE 2"))
        self.assertEqual(len(self.server.connections), 1)

    def test_lost_commit_not_replayed(self) -> None:
        """
        A connection lost while committing (the commit applied, its reply lost) fails
        the call, saying the commit may or may not have happened; nothing is re-run.
        """
        self.server.commit_plan = ["lost"]
        error = self._interrupted(self.db.execute("INSERT 1"))
        self.assertIn("may or may not have been committed", str(error))
        self.assertEqual(self.server.sent, ["INSERT 1"])
        self.assertEqual(self.server.committed, ["INSERT 1"])

    def test_lost_commit_idempotent_retried(self) -> None:
        self.server.commit_plan = ["lost"]
        self.successResultOf(self.db.execute("UPSERT", idempotent=True))
        self.assertEqual(self.server.committed, ["UPSERT", "UPSERT"])

    def test_known_dead_replaced_before_sending(self) -> None:
        """
        A pooled connection the driver already marked closed is replaced before
        anything is sent on it: the call succeeds, the statement is sent once.
        """
        self.successResultOf(self.db.execute("INSERT 1"))
        self.server.connections[0].lose()
        self.successResultOf(self.db.execute("INSERT 2"))
        self.assertEqual(self.server.sent, ["INSERT 1", "INSERT 2"])
        self.assertEqual(len(self.server.connections), 2)
        self.assertEqual(self.db.reconnects, 1)
        self.assertEqual(self.db.errors, 0)

    def test_ordinary_error_is_not_an_interruption(self) -> None:
        self.server.plan = ["error"]
        error = self.failureResultOf(self.db.execute("SELEKT", idempotent=True), QueryError).value
        self.assertNotIsInstance(error, StatementInterrupted)
        self.assertEqual(self.server.sent, ["SELEKT"])
        self.assertEqual(len(self.server.connections), 1)

    def test_transaction_fails_whole(self) -> None:
        """
        In a transaction, a lost connection fails the whole transaction: no statement
        is re-sent, later statements are refused (not run on a new connection), and
        the transaction does not commit even if the function swallows the error.
        """
        refused: list[BaseException] = []

        def work(tx: Any) -> str:
            tx.execute("INSERT 1")
            try:
                tx.execute("INSERT 2")
            except StatementInterrupted:
                pass
            try:
                tx.execute("INSERT 3")
            except TransactionClosed as e:
                refused.append(e)
            return "done"

        self.server.plan = ["ok", "lost"]
        error = self._interrupted(self.db.transaction(work))
        self.assertIn("whole transaction failed", str(error))
        self.assertEqual(len(refused), 1)
        self.assertIn("interrupted", str(refused[0]))
        self.assertEqual(self.server.sent, ["INSERT 1", "INSERT 2"])
        self.assertEqual(self.server.committed, [])
        self.assertEqual(len(self.server.connections), 1)

    def test_transaction_first_statement_not_replayed(self) -> None:
        """
        Even the first statement of a transaction is not sent again once sent.
        """

        def work(tx: Any) -> None:
            tx.execute("INSERT 1")
            tx.execute("INSERT 2")

        self.server.plan = ["lost"]
        self._interrupted(self.db.run_interaction(work))
        self.assertEqual(self.server.sent, ["INSERT 1"])
        self.assertEqual(self.server.committed, [])

    def test_ping_retries(self) -> None:
        self.server.plan = ["lost"]
        self.assertIsNone(self.successResultOf(self.db.ping()))
        self.assertEqual(self.server.sent, ["SELECT 1", "SELECT 1"])


class InterruptionClassificationTests(SynchronousTestCase):
    """
    L{_core._interruption} tells a lost connection and a cancelled statement from an
    ordinary error, per backend; L{_core._known_dead} spots a closed idle socket.
    """

    def test_mysql(self) -> None:
        import pymysql

        from pywatt_twisted.data._database._core import CANCELLED, LOST, _interruption

        class Conn:
            open = True

        for number, expected in [
            (2013, LOST),
            (2006, LOST),
            (1927, LOST),
            (1317, CANCELLED),
            (1969, CANCELLED),
            (1062, None),
            (1064, None),
        ]:
            error = pymysql.err.OperationalError(number, "x")
            self.assertEqual(_interruption("mysql", error, Conn()), expected, number)
        closed = Conn()
        closed.open = False
        self.assertEqual(_interruption("mysql", pymysql.err.InterfaceError(0, ""), closed), LOST)

    def test_postgresql(self) -> None:
        from pywatt_twisted.data._database._core import CANCELLED, LOST, _interruption

        class Conn:
            closed = False
            broken = False

        def error(state: str | None) -> Exception:
            e = fakedbapi.OperationalError("x")
            e.sqlstate = state
            return e

        for state, expected in [
            ("57P01", LOST),
            ("08006", LOST),
            ("57014", CANCELLED),
            ("23505", None),
            (None, None),
        ]:
            self.assertEqual(_interruption("postgresql", error(state), Conn()), expected)
        broken = Conn()
        broken.broken = True
        self.assertEqual(_interruption("postgresql", error(None), broken), LOST)

    def test_sqlite_never(self) -> None:
        import sqlite3

        from pywatt_twisted.data._database._core import _interruption

        self.assertIsNone(_interruption("sqlite", sqlite3.OperationalError("interrupted"), None))

    def test_known_dead_socket(self) -> None:
        """
        An idle connection whose server closed the socket is known dead; an idle one
        with nothing waiting is not.
        """
        from pywatt_twisted.data._database._core import _known_dead

        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)

        class Conn:
            open = True
            _sock = ours

        self.assertFalse(_known_dead("mysql", Conn()))
        theirs.close()
        self.assertTrue(_known_dead("mysql", Conn()))
