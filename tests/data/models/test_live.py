"""
The model manager against real databases: PostgreSQL and MariaDB on loopback (see
C{tests/services.py}), SQLite in a temporary file.

    - Round trip: the everything-model is applied, introspected back and diffed to an
      empty plan.
    - Migrations: a column and an index are added, a destructive change is refused
      without the flag (nothing applied) and applied with it, and the rows inserted before
      the migration are still there after.

Every test uses its own table-name prefix (so C{trial --jobs} runs do not collide) and
drops what it created.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from pywatt_twisted.data import Database
from pywatt_twisted.data.models import (
    DestructiveChangeError,
    MigrationError,
    Schema,
    introspect,
    load_models,
    plan,
    sync,
)
from tests.services import require_service

HERE = os.path.dirname(os.path.abspath(__file__))
_counter = itertools.count()


def deferred_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    @functools.wraps(fn)
    def wrapper(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(fn(self))

    return wrapper


def prefixed(source: dict[str, Any], prefix: str) -> Schema:
    """
    The schema with every table (and foreign key target) renamed C{prefix + name}.
    """
    models = []
    for m in source["models"]:
        m = dict(m, name=prefix + m["name"])
        fields = []
        for f in m["fields"]:
            if isinstance(f.get("foreign_key"), dict):
                f = dict(
                    f, foreign_key=dict(f["foreign_key"], table=prefix + f["foreign_key"]["table"])
                )
            fields.append(f)
        m["fields"] = fields
        models.append(m)
    return load_models({"models": models})


def everything(prefix: str) -> Schema:
    import yaml

    with open(os.path.join(HERE, "everything.yaml")) as f:
        return prefixed(yaml.safe_load(f), prefix)


def people(prefix: str, *, version: int) -> Schema:
    """
    A small model in two versions: v2 adds a column and an index, widens C{code}, and
    drops C{legacy} (the destructive part).
    """
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True},
        {"name": "name", "type": "varchar", "length": 50, "nullable": False},
        {"name": "code", "type": "varchar", "length": 10},
    ]
    indexes: list[dict[str, Any]] = []
    if version == 1:
        fields.append({"name": "legacy", "type": "text"})
    else:
        fields.append({"name": "score", "type": "integer", "nullable": False, "default": 0})
        fields.append({"name": "email", "type": "varchar", "length": 100})
        indexes.append({"columns": ["name", "score"]})
    return load_models(
        {"models": [{"name": f"{prefix}people", "fields": fields, "indexes": indexes}]}
    )


class LiveMixin:
    """
    The tests; subclasses say which database.
    """

    url: str
    #: whether the dialect can alter a column in place (SQLite cannot)
    alters_columns = True

    def open_database(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        url = self.open_database()
        self.db = Database.from_url(url, min_pool=1, max_pool=2)
        self.prefix = f"p{os.getpid() % 100000}x{next(_counter)}_"
        self.addCleanup(self.db.close)  # type: ignore[attr-defined]
        self.addCleanup(self.drop_tables)  # type: ignore[attr-defined]

    def drop_tables(self) -> Deferred[None]:
        prefix = self.prefix
        dialect = self.db.dialect

        def drop(tx: Any) -> None:
            if dialect == "mysql":
                tx.execute("SET FOREIGN_KEY_CHECKS = 0")
            from pywatt_twisted.data.models._introspect import introspect_transaction

            tables = [t for t in introspect_transaction(tx, dialect).tables if t.startswith(prefix)]
            quote = "`" if dialect == "mysql" else '"'
            for t in tables:
                cascade = " CASCADE" if dialect == "postgresql" else ""
                tx.execute(f"DROP TABLE IF EXISTS {quote}{t}{quote}{cascade}")
            if dialect == "mysql":
                tx.execute("SET FOREIGN_KEY_CHECKS = 1")

        if dialect == "sqlite":
            return Deferred.fromCoroutine(self._noop())
        return self.db.run_interaction(drop)

    async def _noop(self) -> None:
        return None

    @deferred_test
    async def test_round_trip_everything(self) -> None:
        """
        The everything-model applied, introspected back and diffed gives an empty plan.
        """
        schema = everything(self.prefix)
        first = await plan(self.db, schema)
        self.assertEqual(  # type: ignore[attr-defined]
            [c.kind for c in first.changes], ["create_table"] * 3
        )
        report = await sync(self.db, schema)
        self.assertTrue(report.changed)  # type: ignore[attr-defined]
        current = await introspect(self.db)
        orders = current.tables[f"{self.prefix}wm_orders"]
        self.assertEqual(  # type: ignore[attr-defined]
            [c.name for c in orders.columns],
            [f.name for f in schema.models[0].fields],
        )
        self.assertEqual(orders.primary_key, ("id",))  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            current.tables[f"{self.prefix}wm_line_items"].primary_key, ("order_id", "position")
        )
        again = await plan(self.db, schema)
        self.assertTrue(again.is_empty, str(again))  # type: ignore[attr-defined]
        self.assertEqual(str(again), "no changes: the database matches the models")  # type: ignore[attr-defined]
        second = await sync(self.db, schema)
        self.assertFalse(second.changed)  # type: ignore[attr-defined]
        # the defaults work as declared
        q = '"' if self.db.dialect != "mysql" else "`"
        await self.db.execute(f"INSERT INTO {q}{self.prefix}wm_customers{q} (name) VALUES ('ann')")
        customer = await self.db.query_one(f"SELECT id FROM {q}{self.prefix}wm_customers{q}")
        assert customer is not None
        await self.db.execute(
            f"INSERT INTO {q}{self.prefix}wm_orders{q} (customer_id) VALUES (:c)",
            {"c": customer["id"]},
        )
        row = await self.db.query_one(
            f"SELECT status, note, quantity FROM {q}{self.prefix}wm_orders{q}"
        )
        self.assertEqual(row, {"status": "new", "note": "it's a:note 100%", "quantity": -1})  # type: ignore[attr-defined]

    @deferred_test
    async def test_migration(self) -> None:
        """
        Add a column and an index; drop a column only with the flag; rows survive.
        """
        v1 = people(self.prefix, version=1)
        await sync(self.db, v1)
        q = '"' if self.db.dialect != "mysql" else "`"
        table = f"{q}{self.prefix}people{q}"
        for name in ("ann", "bob"):
            await self.db.execute(
                f"INSERT INTO {table} (name, code, legacy) VALUES (:n, 'c', 'old')", {"n": name}
            )
        v2 = people(self.prefix, version=2)
        pending = await plan(self.db, v2)
        kinds = sorted(c.kind for c in pending.changes)
        self.assertEqual(  # type: ignore[attr-defined]
            kinds, ["add_column", "add_column", "create_index", "drop_column"]
        )
        self.assertEqual(  # type: ignore[attr-defined]
            [c.description for c in pending.destructive],
            [f"drop column {self.prefix}people.legacy"],
        )
        error = await self.assertFailure(  # type: ignore[attr-defined]
            sync(self.db, v2), DestructiveChangeError
        )
        self.assertIn(f"drop column {self.prefix}people.legacy", str(error))  # type: ignore[attr-defined]
        self.assertIn("--allow-destructive", str(error))  # type: ignore[attr-defined]
        still = await plan(self.db, v2)
        self.assertEqual(still, pending)  # type: ignore[attr-defined]  # nothing was applied
        report = await sync(self.db, v2, allow_destructive=True)
        self.assertEqual(len(report.plan.changes), 4)  # type: ignore[attr-defined]
        rows = await self.db.query(f"SELECT name, code, score, email FROM {table} ORDER BY name")
        self.assertEqual(  # type: ignore[attr-defined]
            rows,
            [
                {"name": "ann", "code": "c", "score": 0, "email": None},
                {"name": "bob", "code": "c", "score": 0, "email": None},
            ],
        )
        after = await introspect(self.db)
        info = after.tables[f"{self.prefix}people"]
        self.assertIsNone(info.column("legacy"))  # type: ignore[attr-defined]
        self.assertIn(  # type: ignore[attr-defined]
            ("name", "score"), [i.columns for i in info.indexes]
        )
        self.assertTrue((await plan(self.db, v2)).is_empty)  # type: ignore[attr-defined]

    @deferred_test
    async def test_type_changes(self) -> None:
        """
        Widening a varchar is applied without the flag; narrowing is destructive. On
        SQLite both are reported as unsupported and nothing is applied.
        """
        v1 = people(self.prefix, version=1)
        await sync(self.db, v1)
        q = '"' if self.db.dialect != "mysql" else "`"
        table = f"{q}{self.prefix}people{q}"
        await self.db.execute(f"INSERT INTO {table} (name, code) VALUES ('ann', 'abc')")
        source = v1.to_dict()
        source["models"][0]["fields"][2]["length"] = 30
        wider = load_models(source)
        if not self.alters_columns:
            error = await self.assertFailure(sync(self.db, wider), MigrationError)  # type: ignore[attr-defined]
            self.assertIn("SQLite cannot alter a column in place", str(error))  # type: ignore[attr-defined]
            return
        report = await sync(self.db, wider)
        self.assertEqual(  # type: ignore[attr-defined]
            [c.description for c in report.plan.changes],
            [f"alter column {self.prefix}people.code: type varchar(10) -> varchar(30)"],
        )
        source["models"][0]["fields"][2]["length"] = 5
        narrower = load_models(source)
        error = await self.assertFailure(sync(self.db, narrower), DestructiveChangeError)  # type: ignore[attr-defined]
        self.assertIn("narrows the type", str(error))  # type: ignore[attr-defined]
        await sync(self.db, narrower, allow_destructive=True)
        self.assertEqual(  # type: ignore[attr-defined]
            await self.db.query(f"SELECT code FROM {table}"), [{"code": "abc"}]
        )
        # a new default and allowing NULL are safe alterations
        source["models"][0]["fields"][1].update(nullable=True, default="x")
        report = await sync(self.db, load_models(source))
        self.assertEqual(len(report.plan.changes), 1)  # type: ignore[attr-defined]
        self.assertTrue((await plan(self.db, load_models(source))).is_empty)  # type: ignore[attr-defined]

    @deferred_test
    async def test_invalid_models_change_nothing(self) -> None:
        from pywatt_twisted.data.models import ModelValidationError

        bad = {"models": [{"name": f"{self.prefix}bad", "fields": [{"name": "a", "type": "nope"}]}]}
        await self.assertFailure(sync(self.db, bad), ModelValidationError)  # type: ignore[attr-defined]
        current = await introspect(self.db)
        self.assertNotIn(f"{self.prefix}bad", current.tables)  # type: ignore[attr-defined]


class PostgreSQLTests(LiveMixin, TestCase):
    def open_database(self) -> str:
        return require_service("postgres")


class MariaDBTests(LiveMixin, TestCase):
    def open_database(self) -> str:
        return require_service("mysql")


class SQLiteTests(LiveMixin, TestCase):
    alters_columns = False

    def open_database(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return "sqlite:///" + os.path.abspath(os.path.join(directory, "models.db"))
