"""
Tests for L{pywatt_twisted.data.models._ddl}: golden DDL per dialect for the everything-model,
quoting, ordering, names; the SQLite DDL is also run to check it means what it says.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data.models import ModelValidationError, generate_ddl, load_models
from pywatt_twisted.data.models._ddl import (
    ColumnType,
    canonical_default,
    constraint_name,
    get_dialect,
    parse_default_sql,
)
from pywatt_twisted.data.models._model import Field
from pywatt_twisted.errors import ConfigurationError

HERE = os.path.dirname(os.path.abspath(__file__))
EVERYTHING = os.path.join(HERE, "everything.yaml")


def golden(dialect: str) -> str:
    with open(os.path.join(HERE, "golden", f"everything.{dialect}.sql")) as f:
        return f.read()


class GoldenTests(SynchronousTestCase):
    """
    The everything-model generates exactly the reviewed DDL in C{golden/}. To update after
    an intended change, regenerate with C{pywatt db schema generate} and review the diff.
    """

    def test_postgresql(self) -> None:
        self.assertEqual(generate_ddl(load_models(EVERYTHING), "postgres"), golden("postgresql"))

    def test_mysql(self) -> None:
        self.assertEqual(generate_ddl(load_models(EVERYTHING), "mariadb"), golden("mysql"))

    def test_sqlite(self) -> None:
        self.assertEqual(generate_ddl(load_models(EVERYTHING), "sqlite"), golden("sqlite"))

    def test_native_types(self) -> None:
        """
        Each dialect uses its native types where it has them.
        """
        pg, my, lite = golden("postgresql"), golden("mysql"), golden("sqlite")
        self.assertIn('"token" uuid NOT NULL', pg)
        self.assertIn('"attributes" jsonb', pg)
        self.assertIn(
            '"created_at" timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP', pg
        )
        self.assertIn("`status` ENUM('new', 'paid', 'shipped') NOT NULL DEFAULT 'new'", my)
        self.assertIn("`attributes` JSON", my)
        self.assertIn('CHECK ("attributes" IS NULL OR json_valid("attributes"))', lite)
        self.assertIn('"id" INTEGER PRIMARY KEY AUTOINCREMENT', lite)

    def test_deterministic(self) -> None:
        for dialect in ("postgresql", "mysql", "sqlite"):
            self.assertEqual(
                generate_ddl(load_models(EVERYTHING), dialect),
                generate_ddl(load_models(load_models(EVERYTHING).to_dict()), dialect),
            )

    def test_referenced_tables_first(self) -> None:
        """
        wm_customers is declared after wm_orders but created before it.
        """
        ddl = golden("postgresql")
        self.assertLess(
            ddl.index('CREATE TABLE "wm_customers"'), ddl.index('CREATE TABLE "wm_orders"')
        )
        self.assertLess(
            ddl.index('CREATE TABLE "wm_orders"'), ddl.index('CREATE TABLE "wm_line_items"')
        )

    def test_invalid_schema(self) -> None:
        schema = load_models([{"name": "t", "fields": [{"name": "a", "type": "nope"}]}])
        self.assertRaises(ModelValidationError, generate_ddl, schema, "sqlite")

    def test_unknown_dialect(self) -> None:
        e = self.assertRaises(ConfigurationError, generate_ddl, load_models(EVERYTHING), "oracle")
        self.assertEqual(
            str(e), "unknown SQL dialect 'oracle'; expected one of postgres, mysql, sqlite"
        )


class SQLiteExecutionTests(SynchronousTestCase):
    """
    The generated SQLite DDL runs and its constraints hold.
    """

    def setUp(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(golden("sqlite"))
        self.addCleanup(self.db.close)

    def test_defaults(self) -> None:
        self.db.execute("INSERT INTO wm_customers (name) VALUES ('ann')")
        self.db.execute("INSERT INTO wm_orders (customer_id) VALUES (1)")
        row = self.db.execute(
            "SELECT total, ratio, status, note, paid, due, token, quantity, created_at "
            "FROM wm_orders"
        ).fetchone()
        self.assertEqual(
            row[:8],
            (
                0,
                0.5,
                "new",
                "it's a:note 100%",
                0,
                "2024-01-31",
                "00000000-0000-0000-0000-000000000000",
                -1,
            ),
        )
        self.assertRegex(row[8], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")

    def test_enum_check(self) -> None:
        self.db.execute("INSERT INTO wm_customers (name) VALUES ('ann')")
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id, status) VALUES (1, 'lost')",
        )

    def test_json_check(self) -> None:
        self.db.execute("INSERT INTO wm_customers (name) VALUES ('ann')")
        self.db.execute(
            """INSERT INTO wm_orders (customer_id, attributes) VALUES (1, '{"a": 1}')"""
        )
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id, attributes) VALUES (1, '{not json')",
        )

    def test_foreign_key_cascade(self) -> None:
        self.db.execute("INSERT INTO wm_customers (name) VALUES ('ann')")
        self.db.execute("INSERT INTO wm_orders (customer_id) VALUES (1)")
        self.db.execute("INSERT INTO wm_line_items (order_id, position, sku) VALUES (1, 1, 'x')")
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id) VALUES (99)",
        )
        self.db.execute("DELETE FROM wm_customers")
        self.assertEqual(self.db.execute("SELECT count(*) FROM wm_line_items").fetchone(), (0,))

    def test_unique_and_checks(self) -> None:
        self.db.execute("INSERT INTO wm_customers (name) VALUES ('ann')")
        self.db.execute("INSERT INTO wm_orders (customer_id, email) VALUES (1, 'a@x')")
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id, email) VALUES (1, 'a@x')",
        )
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id, total) VALUES (1, -1)",
        )
        self.assertRaises(
            sqlite3.IntegrityError,
            self.db.execute,
            "INSERT INTO wm_orders (customer_id, paid, total) VALUES (1, 1, 0)",
        )


class DetailTests(SynchronousTestCase):
    def test_quoting(self) -> None:
        self.assertEqual(get_dialect("pg").quote('a"b'), '"a""b"')
        self.assertEqual(get_dialect("mysql").quote("a`b"), "`a``b`")
        self.assertEqual(get_dialect("mysql").string_literal("a\\'b"), "'a\\\\''b'")
        self.assertEqual(get_dialect("sqlite").string_literal("it's"), "'it''s'")

    def test_reserved_words_quoted(self) -> None:
        schema = load_models(
            [
                {
                    "name": "order",
                    "fields": [{"name": "select", "type": "integer", "primary_key": True}],
                }
            ]
        )
        ddl = generate_ddl(schema, "sqlite")
        self.assertIn('CREATE TABLE "order" (\n    "select" INTEGER NOT NULL', ddl)
        db = sqlite3.connect(":memory:")
        self.addCleanup(db.close)
        db.executescript(ddl)

    def test_long_names_shortened_stably(self) -> None:
        name = constraint_name("ix", "t" * 40, "c" * 40)
        self.assertEqual(len(name), 63)
        self.assertEqual(name, constraint_name("ix", "t" * 40, "c" * 40))
        self.assertNotEqual(name, constraint_name("ix", "t" * 40, "c" * 39 + "d"))

    def test_reference_cycle_deferred(self) -> None:
        """
        Tables that reference each other: the foreign key that cannot be inline is added
        after both tables exist (PostgreSQL, MySQL); SQLite keeps it inline.
        """
        schema = load_models(
            [
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
            ]
        )
        pg = generate_ddl(schema, "postgresql")
        self.assertTrue(
            pg.endswith(
                'ALTER TABLE "a" ADD CONSTRAINT "fk_a_b_id" FOREIGN KEY ("b_id") '
                'REFERENCES "b" ("id");\n'
            ),
            pg,
        )
        self.assertIn(
            'CONSTRAINT "fk_a_b_id"', generate_ddl(schema, "sqlite").split("CREATE TABLE")[1]
        )

    def test_column_type_str(self) -> None:
        self.assertEqual(str(ColumnType("decimal", precision=10, scale=2)), "decimal(10, 2)")
        self.assertEqual(str(ColumnType("varchar", length=5)), "varchar(5)")


class DefaultParsingTests(SynchronousTestCase):
    """
    Defaults as each database reports them compare equal to the model's value.
    """

    def check(self, dialect: str, field: Field, reported: str | None) -> None:
        d = get_dialect(dialect)
        self.assertEqual(
            canonical_default(field, parse_default_sql(reported, d)),
            canonical_default(field, field.default),
        )

    def test_postgresql(self) -> None:
        self.check("pg", Field("s", "text", default="new"), "'new'::text")
        self.check(
            "pg", Field("s", "varchar", length=3, default="it's"), "'it''s'::character varying"
        )
        self.check("pg", Field("n", "integer", default=-1), "'-1'::integer")
        self.check("pg", Field("n", "decimal", precision=5, scale=2, default=0), "0")
        self.check("pg", Field("n", "decimal", precision=5, scale=2, default="1.50"), "1.50")
        self.check("pg", Field("b", "boolean", default=False), "false")
        self.check("pg", Field("t", "datetime", default="now"), "CURRENT_TIMESTAMP")
        self.check("pg", Field("t", "datetime", default="now"), "now()")
        self.check("pg", Field("d", "date", default="2024-01-31"), "'2024-01-31'::date")

    def test_mysql(self) -> None:
        self.check("mysql", Field("s", "text", default="it's a\\b"), "'it''s a\\\\b'")
        self.check("mysql", Field("n", "decimal", precision=5, scale=2, default=0), "0.00")
        self.check("mysql", Field("b", "boolean", default=True), "1")
        self.check("mysql", Field("t", "datetime", default="now"), "current_timestamp(6)")
        self.check("mysql", Field("x", "text"), "NULL")

    def test_sqlite(self) -> None:
        self.check("sqlite", Field("f", "float", default=0.5), "0.5")
        self.check("sqlite", Field("b", "boolean", default=False), "0")
        self.check("sqlite", Field("x", "text"), None)

    def test_difference_detected(self) -> None:
        f = Field("s", "text", default="new")
        d = get_dialect("pg")
        self.assertNotEqual(
            canonical_default(f, parse_default_sql("'old'::text", d)), canonical_default(f, "new")
        )
