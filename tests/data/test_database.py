"""
One test suite for L{pywatt_twisted.data.Database}, run against every backend: SQLite
(file and memory, always), PostgreSQL and MariaDB/MySQL (real servers on loopback, via
L{tests.services.require_service}).
"""

from __future__ import annotations

import os
import uuid
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data import (
    Database,
    DatabaseCollector,
    DatabaseError,
    DatabaseUnavailable,
    IDatabase,
    IntegrityError,
    ParameterError,
    QueryError,
    TransactionClosed,
)
from pywatt_twisted.errors import DataError
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

    def setUp(self) -> defer.Deferred[None]:
        self.db = Database.from_url(self.url(), **self.pool)
        self.addCleanup(self.db.close)
        self.table = f"t_{uuid.uuid4().hex[:12]}"
        return self.db.execute(
            f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, "
            "n INTEGER NOT NULL DEFAULT 0)"
        ).addCallback(lambda _: self.addCleanup(self._drop))

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

    async def _kill(self, connection_id: int) -> None:
        admin = Database.from_url(self.url())
        try:
            if self.db.dialect == "postgresql":
                await admin.query("SELECT pg_terminate_backend(:id)", {"id": connection_id})
            else:
                await admin.execute(f"KILL {int(connection_id)}")
        finally:
            await admin.close()

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
        return f"sqlite://{self._path}"


class SQLiteMemoryTests(DatabaseSuiteMixin, TestCase):
    def url(self) -> str:
        return "sqlite://:memory:"


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
