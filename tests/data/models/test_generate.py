"""
C{pywatt db model generate} and C{pywatt db model drop}.

    - Unit: introspected tables -> models -> Python source -> the same models (every type
      and constraint of the everything-model), deterministic and ruff-clean; what the
      models cannot say is an error naming the column; the drop order and its refusals.
    - Round trip on real PostgreSQL, MariaDB and SQLite, through the real command: the
      everything-model applied to the source database, C{model generate} run on it,
      C{schema diff} of the generated file against the source is empty; applied to an
      empty database (its own PostgreSQL schema / MariaDB database / SQLite file) it diffs
      empty too and generates the same text again; C{model drop} refuses without
      C{--yes}, then drops exactly those tables.

Every live test uses its own table prefix and its own empty database, and drops both.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted._dbcli import models_source
from pywatt_twisted.data import Database
from pywatt_twisted.data.models import (
    MigrationError,
    ModelValidationError,
    introspect,
    load_models,
    plan,
    sync,
)
from pywatt_twisted.data.models._drop import drop_plan
from pywatt_twisted.data.models._generate import load_source, models_from_database, python_source
from pywatt_twisted.data.models._introspect import (
    ColumnInfo,
    DatabaseSchema,
    ForeignKeyInfo,
    IndexInfo,
    TableInfo,
)
from pywatt_twisted.data.models._model import Field, Model, Schema
from pywatt_twisted.errors import ConfigurationError
from tests.data.models.test_cli import run
from tests.data.models.test_live import deferred_test, everything
from tests.services import require_service

HERE = os.path.dirname(os.path.abspath(__file__))
EVERYTHING = os.path.join(HERE, "everything.yaml")
_counter = itertools.count()


def column(name: str, kind: str, **kw: Any) -> ColumnInfo:
    from pywatt_twisted.data.models._ddl import ColumnType

    return ColumnInfo(
        name=name,
        type=ColumnType(kind),
        raw_type=kw.pop("raw_type", kind),
        nullable=kw.pop("nullable", False),
        default=kw.pop("default", None),
        **kw,
    )


def table(name: str, columns: list[ColumnInfo], **kw: Any) -> TableInfo:
    return TableInfo(
        name=name,
        columns=tuple(columns),
        primary_key=kw.pop("primary_key", ("id",)),
        indexes=tuple(kw.pop("indexes", ())),
        foreign_keys=tuple(kw.pop("foreign_keys", ())),
        checks=(),
        **kw,
    )


class SourceTests(SynchronousTestCase):
    """
    Models -> Python source -> models.
    """

    def test_everything_loads_back_equal(self) -> None:
        """
        Every type, default, key (composite too), unique column, index, foreign key with
        its actions, check and comment survives the trip through Python source.
        """
        schema = load_models(EVERYTHING)
        source = python_source(schema)
        self.assertEqual(load_source(source), Schema(tuple(sorted(schema.models, key=_name))))
        self.assertIn("from pywatt_twisted.data.models import column, model", source)
        self.assertIn('@model("wm_line_items", primary_key=["order_id", "position"])', source)
        self.assertIn("class WmOrders:", source)
        self.assertIn("MODELS = [\n    WmCustomers,\n    WmLineItems,\n    WmOrders,\n]", source)

    def test_deterministic(self) -> None:
        """
        The same models in another order give the same text: tables sorted by name.
        """
        schema = load_models(EVERYTHING)
        reordered = Schema(tuple(reversed(schema.models)))
        self.assertEqual(python_source(schema), python_source(reordered))

    def test_keyword_columns_use_the_dict_form(self) -> None:
        """
        A column called C{class} cannot be an attribute: that table is written as a dict
        (an item of C{MODELS}), and still loads back equal.
        """
        schema = Schema(
            (
                Model(
                    "lessons",
                    (
                        Field("id", "integer", nullable=False, primary_key=True),
                        Field("class", "varchar", length=20, nullable=False, unique=True),
                    ),
                ),
                Model("plain", (Field("id", "integer", nullable=False, primary_key=True),)),
            )
        )
        source = python_source(schema)
        self.assertIn('        "name": "lessons",', source)
        self.assertIn("class Plain:", source)
        self.assertEqual(load_source(source), schema)

    def test_ruff_clean(self) -> None:
        """
        The generated file passes ruff's lint and format checks as they stand (line
        length 100), in a project that knows nothing of this one.
        """
        ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
        if not os.path.exists(ruff):
            raise self.skipTest("ruff is not installed")  # type: ignore[misc]
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "models.py"), "w") as f:
            f.write(python_source(load_models(EVERYTHING)))
        common = ["--isolated", "--line-length", "100"]
        for command in (
            [ruff, "check", *common, "--select", "E,F,W,I,UP,B", "models.py"],
            [ruff, "format", *common, "--check", "--diff", "models.py"],
        ):
            result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_python_file_as_models(self) -> None:
        """
        C{--models models.py} loads its C{MODELS} (C{models.py:ATTR} another name).
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "generated.py")
        with open(path, "w") as f:
            f.write(python_source(load_models(EVERYTHING)) + "\nSOME = MODELS[:1]\n")
        self.assertEqual(len(load_models(models_source(path)).models), 3)
        self.assertEqual(len(load_models(models_source(path + ":SOME")).models), 1)
        error = self.assertRaises(ConfigurationError, models_source, path + ":NOPE")
        self.assertIn("defines no NOPE", str(error))


def _name(m: Model) -> str:
    return m.name


class FromDatabaseTests(SynchronousTestCase):
    """
    Introspected tables -> models, without a database.
    """

    def test_tables_bring_their_references(self) -> None:
        """
        C{--table orders} also describes the table C{orders} references, and says so.
        """
        current = DatabaseSchema(
            "postgresql",
            {
                "customers": table("customers", [column("id", "integer")]),
                "orders": table(
                    "orders",
                    [column("id", "integer"), column("customer_id", "integer")],
                    foreign_keys=[
                        ForeignKeyInfo(
                            "fk_orders_customer_id",
                            ("customer_id",),
                            "customers",
                            ("id",),
                            "cascade",
                            "no_action",
                        )
                    ],
                ),
                "other": table("other", [column("id", "integer")]),
            },
        )
        generated = models_from_database(current, ["orders"])
        self.assertEqual([m.name for m in generated.schema.models], ["customers", "orders"])
        self.assertIn("included because orders.customer_id references it", str(generated.warnings))
        fk = generated.schema.models[1].fields[1].foreign_key
        assert fk is not None
        self.assertEqual((fk.table, fk.column, fk.on_delete), ("customers", "id", "cascade"))
        error = self.assertRaises(ModelValidationError, models_from_database, current, ["nope"])
        self.assertIn("nope: no such table in the database", str(error))

    def test_what_models_cannot_say(self) -> None:
        """
        A column type outside the model types and a foreign key over two columns are
        errors naming the table and column; nothing is generated.
        """
        current = DatabaseSchema(
            "postgresql",
            {
                "t": table(
                    "t",
                    [
                        column("id", "integer"),
                        column("a", "integer"),
                        column("b", "integer"),
                        column("shape", "other:point", raw_type="point"),
                    ],
                    foreign_keys=[
                        ForeignKeyInfo(None, ("a", "b"), "t", ("id", "id"), "cascade", "no_action")
                    ],
                )
            },
        )
        error = self.assertRaises(ModelValidationError, models_from_database, current)
        self.assertIn("t.shape: column type 'point' is not one of the model types", str(error))
        self.assertIn("t.a, b: foreign key over several columns (a, b) -> t", str(error))

    def test_mysql_quirks(self) -> None:
        """
        On MySQL/MariaDB, RESTRICT (what InnoDB reports for no action) becomes no_action,
        the index InnoDB makes for a foreign key is not an index of the model, and an
        index with a name of its own keeps it.
        """
        current = DatabaseSchema(
            "mysql",
            {
                "p": table("p", [column("id", "integer")]),
                "c": table(
                    "c",
                    [column("id", "integer"), column("p_id", "integer"), column("code", "integer")],
                    foreign_keys=[
                        ForeignKeyInfo("fk_c_p_id", ("p_id",), "p", ("id",), "restrict", "restrict")
                    ],
                    indexes=[
                        IndexInfo("fk_c_p_id", ("p_id",), False),
                        IndexInfo("code_lookup", ("code",), True),
                    ],
                ),
            },
        )
        c = models_from_database(current).schema.model("c")
        assert c is not None
        fk = c.fields[1].foreign_key
        assert fk is not None
        self.assertEqual((fk.on_delete, fk.on_update), ("no_action", "no_action"))
        self.assertEqual(
            [(i.columns, i.unique, i.name) for i in c.indexes], [(("code",), True, "code_lookup")]
        )


class DropPlanTests(SynchronousTestCase):
    def fk(self, name: str, column: str, target: str) -> ForeignKeyInfo:
        return ForeignKeyInfo(name, (column,), target, ("id",), "no_action", "no_action")

    def test_dependents_first_and_cycles(self) -> None:
        """
        Referencing tables go first; a foreign key of a reference cycle is dropped before
        the table it points at; tables outside the models stay.
        """
        schema = load_models(
            {
                "models": [
                    {
                        "name": "a",
                        "fields": [
                            {"name": "id", "type": "integer", "primary_key": True},
                            {"name": "b_id", "type": "integer", "foreign_key": "b.id"},
                        ],
                    },
                    {
                        "name": "b",
                        "fields": [
                            {"name": "id", "type": "integer", "primary_key": True},
                            {"name": "a_id", "type": "integer", "foreign_key": "a.id"},
                        ],
                    },
                    {
                        "name": "c",
                        "fields": [
                            {"name": "id", "type": "integer", "primary_key": True},
                            {"name": "a_id", "type": "integer", "foreign_key": "a.id"},
                        ],
                    },
                    {
                        "name": "gone",
                        "fields": [{"name": "id", "type": "integer", "primary_key": True}],
                    },
                ]
            }
        )
        ids = [column("id", "integer")]
        current = DatabaseSchema(
            "postgresql",
            {
                "a": table(
                    "a",
                    [*ids, column("b_id", "integer")],
                    foreign_keys=[self.fk("fk_a_b_id", "b_id", "b")],
                ),
                "b": table(
                    "b",
                    [*ids, column("a_id", "integer")],
                    foreign_keys=[self.fk("fk_b_a_id", "a_id", "a")],
                ),
                "c": table(
                    "c",
                    [*ids, column("a_id", "integer")],
                    foreign_keys=[self.fk("fk_c_a_id", "a_id", "a")],
                ),
                "keep": table("keep", ids),
            },
        )
        result = drop_plan(schema, current)
        self.assertEqual(result.tables[0], "c")
        self.assertEqual(set(result.tables), {"a", "b", "c"})
        self.assertEqual(result.missing, ("gone",))
        self.assertEqual(result.blockers, ())
        self.assertEqual(len(result.foreign_keys), 1)
        first, second = result.tables[1:]
        self.assertEqual(
            list(result.statements),
            [
                'DROP TABLE "c"',
                f'ALTER TABLE "{second}" DROP CONSTRAINT "fk_{second}_{first}_id"',
                f'DROP TABLE "{first}"',
                f'DROP TABLE "{second}"',
            ],
        )
        self.assertNotIn("keep", str(result))

    def test_references_from_outside_block(self) -> None:
        """
        A table outside the models that references one of them is a blocker, named.
        """
        schema = load_models(
            {
                "models": [
                    {
                        "name": "a",
                        "fields": [{"name": "id", "type": "integer", "primary_key": True}],
                    }
                ]
            }
        )
        current = DatabaseSchema(
            "mysql",
            {
                "a": table("a", [column("id", "integer")]),
                "theirs": table(
                    "theirs",
                    [column("id", "integer"), column("a_id", "integer")],
                    foreign_keys=[self.fk("x", "a_id", "a")],
                ),
            },
        )
        self.assertEqual(drop_plan(schema, current).blockers, ("theirs(a_id) -> a",))


class RoundTripMixin:
    """
    The live round trip; subclasses open the databases.
    """

    #: The round trip starts five commands one after another, each a new Python (1.15 G
    #: instructions: Twisted's imports alone are 0.9 G). They took 6-7 s together on a
    #: quiet machine, 44-53 s at load 16 on two cores (SQLite as long as the servers:
    #: waiting for a CPU, not for a database), so trial's default 120 s was exceeded
    #: under heavier load. A command that hangs still fails on its own 120 s timeout,
    #: naming the command, well within this one.
    timeout = 300

    def source_url(self) -> str:
        raise NotImplementedError

    def make_empty(self) -> Deferred[str] | str:
        """
        Create an empty database of the same kind and return its URL (cleanup added).
        """
        raise NotImplementedError

    def setUp(self) -> None:
        self.url = self.source_url()
        self.db = Database.from_url(self.url, min_pool=1, max_pool=2)
        self.prefix = f"g{os.getpid() % 100000}x{next(_counter)}_"
        self.addCleanup(self.db.close)  # type: ignore[attr-defined]
        self.addCleanup(self.drop_own_tables)  # type: ignore[attr-defined]

    def drop_own_tables(self) -> Deferred[None]:
        prefix, dialect = self.prefix, self.db.dialect

        def drop(tx: Any) -> None:
            from pywatt_twisted.data.models._introspect import introspect_transaction

            if dialect == "mysql":
                tx.execute("SET FOREIGN_KEY_CHECKS = 0")
            quote = "`" if dialect == "mysql" else '"'
            for t in introspect_transaction(tx, dialect).tables:
                if t.startswith(prefix):
                    cascade = " CASCADE" if dialect == "postgresql" else ""
                    tx.execute(f"DROP TABLE IF EXISTS {quote}{t}{quote}{cascade}")
            if dialect == "mysql":
                tx.execute("SET FOREIGN_KEY_CHECKS = 1")

        result: Deferred[None] = self.db.run_interaction(drop)
        return result

    @deferred_test
    async def test_round_trip(self) -> None:
        source_schema = everything(self.prefix)
        await sync(self.db, source_schema)
        directory = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(directory)
        generated = os.path.join(directory, "models.py")
        # only this test's tables (other engineers share the database): wm_customers
        # comes in because wm_orders references it
        tables = [f"{self.prefix}wm_orders", f"{self.prefix}wm_line_items"]
        args = ["model", "generate", "--url", self.url, "-o", generated]
        for t in tables:
            args += ["--table", t]
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)  # type: ignore[attr-defined]
        self.assertIn(  # type: ignore[attr-defined]
            f"{self.prefix}wm_customers: included because", result.stderr
        )
        with open(generated) as f:
            text = f.read()
        models = load_models(models_source(generated))
        self.assertEqual(  # type: ignore[attr-defined]
            sorted(m.name for m in models.models), sorted(m.name for m in source_schema.models)
        )
        # against the source database: nothing to change
        result = run("schema", "diff", "--models", generated, "--url", self.url, "--check")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            result.stdout, "no changes: the database matches the models\n"
        )
        # applied to an empty database: the same schema, the same generated text
        empty_url = await _maybe(self.make_empty())
        empty = Database.from_url(empty_url, min_pool=1, max_pool=1)
        self.addCleanup(empty.close)  # type: ignore[attr-defined]
        self.assertEqual(list((await introspect(empty)).tables), [])  # type: ignore[attr-defined]
        report = await sync(empty, models)
        self.assertEqual(len(report.plan.changes), 3)  # type: ignore[attr-defined]
        self.assertTrue((await plan(empty, models)).is_empty)  # type: ignore[attr-defined]
        self.assertTrue((await plan(self.db, models)).is_empty)  # type: ignore[attr-defined]
        again = run("model", "generate", "--url", empty_url)
        self.assertEqual(again.returncode, 0, again.stderr)  # type: ignore[attr-defined]
        self.assertEqual(again.stdout, text)  # type: ignore[attr-defined]
        # drop: refused without --yes (nothing dropped), then exactly the models' tables
        refused = run("model", "drop", "--models", generated, "--url", empty_url)
        self.assertEqual(refused.returncode, 1)  # type: ignore[attr-defined]
        self.assertIn(f"- drop table {self.prefix}wm_line_items", refused.stdout)  # type: ignore[attr-defined]
        self.assertIn("pass --yes", refused.stderr)  # type: ignore[attr-defined]
        self.assertEqual(len((await introspect(empty)).tables), 3)  # type: ignore[attr-defined]
        dropped = run("model", "drop", "--models", generated, "--url", empty_url, "--yes")
        self.assertEqual(dropped.returncode, 0, dropped.stderr)  # type: ignore[attr-defined]
        lines = [line for line in dropped.stdout.splitlines() if line.startswith("- drop table")]
        self.assertEqual(  # type: ignore[attr-defined]
            lines,
            [
                f"- drop table {self.prefix}{t}"
                for t in ("wm_line_items", "wm_orders", "wm_customers")
            ],
        )
        self.assertEqual(list((await introspect(empty)).tables), [])  # type: ignore[attr-defined]

    @deferred_test
    async def test_drop_refuses_when_referenced_from_outside(self) -> None:
        """
        A table outside the models referencing one of them: nothing is dropped.
        """
        from pywatt_twisted.data.models._drop import drop

        both = everything(self.prefix)
        await sync(self.db, both)
        customers = Schema(tuple(m for m in both.models if m.name.endswith("wm_customers")))
        error = await self.assertFailure(  # type: ignore[attr-defined]
            drop(self.db, customers, execute=True), MigrationError
        )
        self.assertIn(
            f"{self.prefix}wm_orders(customer_id) -> {self.prefix}wm_customers", str(error)
        )  # type: ignore[attr-defined]
        current = await introspect(self.db)
        self.assertIn(f"{self.prefix}wm_customers", current.tables)  # type: ignore[attr-defined]


async def _maybe(value: Any) -> Any:
    if isinstance(value, Deferred):
        return await value
    return value


class PostgreSQLRoundTripTests(RoundTripMixin, TestCase):
    def source_url(self) -> str:
        return require_service("postgres")

    async def _make_empty(self) -> str:
        name = f"gen_{os.getpid() % 100000}_{next(_counter)}"
        await self.db.execute(f'CREATE SCHEMA "{name}"')
        self.addCleanup(self.db.execute, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{name}"

    def make_empty(self) -> Deferred[str]:
        return Deferred.fromCoroutine(self._make_empty())


class MariaDBRoundTripTests(RoundTripMixin, TestCase):
    def source_url(self) -> str:
        return require_service("mysql")

    async def _make_empty(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        name = f"gen_{os.getpid() % 100000}_{next(_counter)}"
        await self.db.execute(f"CREATE DATABASE `{name}`")
        self.addCleanup(self.db.execute, f"DROP DATABASE IF EXISTS `{name}`")
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def make_empty(self) -> Deferred[str]:
        return Deferred.fromCoroutine(self._make_empty())


class SQLiteRoundTripTests(RoundTripMixin, TestCase):
    def source_url(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return "sqlite:///" + os.path.abspath(os.path.join(directory, "source.db"))

    def make_empty(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return "sqlite:///" + os.path.abspath(os.path.join(directory, "empty.db"))
