"""
Unit tests for L{pywatt_twisted.data.models._diff}, against hand-made introspection results
(and, for SQLite, a real in-memory database read by the introspector).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data.models import generate_ddl, load_models
from pywatt_twisted.data.models._ddl import ColumnType, all_indexes, get_dialect
from pywatt_twisted.data.models._diff import MigrationPlan, diff, is_widening
from pywatt_twisted.data.models._introspect import (
    ColumnInfo,
    DatabaseSchema,
    ForeignKeyInfo,
    IndexInfo,
    TableInfo,
    introspect_sqlite,
    sqlite_checks,
)
from pywatt_twisted.data.models._model import Model, Schema


def base(**changes: Any) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True},
        {"name": "name", "type": "varchar", "length": 50, "nullable": False},
        {"name": "state", "type": "enum", "values": ["a", "b"], "default": "a"},
        {"name": "owner_id", "type": "integer", "foreign_key": {"table": "owners", "column": "id"}},
    ]
    model: dict[str, Any] = {"name": "things", "fields": fields, "indexes": [{"columns": ["name"]}]}
    model.update(changes)
    owners = {"name": "owners", "fields": [{"name": "id", "type": "integer", "primary_key": True}]}
    return {"models": [owners, model]}


def stored(schema: Schema, dialect: str) -> DatabaseSchema:
    """
    What introspection would report after creating C{schema} (built from the models).
    """
    d = get_dialect(dialect)
    tables = {}
    for m in schema.models:
        tables[m.name] = _table(m, d)
    return DatabaseSchema(d.name, tables)


def _table(m: Model, d: Any) -> TableInfo:
    from pywatt_twisted.data.models._ddl import check_constraints, constraint_name, fk_name

    columns = tuple(
        ColumnInfo(
            name=f.name,
            type=d.stored_type(m, f),
            raw_type=d.sql_type(m, f),
            nullable=f.nullable,
            default=d.default_sql(f),
            auto_increment=f.auto_increment,
            comment=f.comment,
        )
        for f in m.fields
    )
    checks = [name for f in m.fields for name, _ in check_constraints(m, f, d)]
    checks += [constraint_name("ck", m.name, c.name) for c in m.checks]
    return TableInfo(
        name=m.name,
        columns=columns,
        primary_key=m.primary_key_columns,
        indexes=tuple(IndexInfo(name, i.columns, i.unique) for name, i in all_indexes(m)),
        foreign_keys=tuple(
            ForeignKeyInfo(
                fk_name(m, f),
                (f.name,),
                f.foreign_key.table,
                (f.foreign_key.column,),
                f.foreign_key.on_delete,
                f.foreign_key.on_update,
            )
            for f in m.fields
            if f.foreign_key is not None
        ),
        checks=tuple(sorted(checks)),
        comment=m.comment,
    )


def replace_table(current: DatabaseSchema, name: str, **changes: Any) -> DatabaseSchema:
    tables = dict(current.tables)
    tables[name] = attrs.evolve(tables[name], **changes)
    return attrs.evolve(current, tables=tables)


class WideningTests(SynchronousTestCase):
    def test_widening(self) -> None:
        safe = [
            (ColumnType("integer"), ColumnType("big_integer")),
            (ColumnType("varchar", length=5), ColumnType("varchar", length=6)),
            (ColumnType("varchar", length=5), ColumnType("text")),
            (ColumnType("enum", values=("a",)), ColumnType("enum", values=("a", "b"))),
            (ColumnType("enum", values=("ab",)), ColumnType("varchar", length=2)),
            (
                ColumnType("decimal", precision=5, scale=2),
                ColumnType("decimal", precision=7, scale=3),
            ),
        ]
        for old, new in safe:
            self.assertTrue(is_widening(old, new), f"{old} -> {new}")

    def test_narrowing(self) -> None:
        unsafe = [
            (ColumnType("big_integer"), ColumnType("integer")),
            (ColumnType("varchar", length=6), ColumnType("varchar", length=5)),
            (ColumnType("text"), ColumnType("varchar", length=5)),
            (ColumnType("enum", values=("a", "b")), ColumnType("enum", values=("a",))),
            (
                ColumnType("decimal", precision=7, scale=3),
                ColumnType("decimal", precision=7, scale=2),
            ),
            (
                ColumnType("decimal", precision=5, scale=2),
                ColumnType("decimal", precision=5, scale=3),
            ),
            (ColumnType("text"), ColumnType("integer")),
        ]
        for old, new in unsafe:
            self.assertFalse(is_widening(old, new), f"{old} -> {new}")


class DiffTests(SynchronousTestCase):
    def test_same_is_empty(self) -> None:
        schema = load_models(base())
        for dialect in ("postgresql", "mysql", "sqlite"):
            result = diff(schema, stored(schema, dialect))
            self.assertTrue(result.is_empty, f"{dialect}: {result}")
            self.assertEqual(result.statements, [])

    def test_empty_database_creates_in_dependency_order(self) -> None:
        schema = load_models(base())
        result = diff(schema, DatabaseSchema("postgresql", {}))
        self.assertEqual(
            [c.description for c in result.changes], ["create table owners", "create table things"]
        )
        self.assertEqual(
            "".join(f"{s};\n\n" for s in result.statements).rstrip("\n") + "\n",
            generate_ddl(schema, "postgresql"),
        )

    def test_unrelated_tables_and_indexes_left_alone(self) -> None:
        schema = load_models(base())
        current = stored(schema, "postgresql")
        extra = TableInfo("someone_elses", (), (), (), (), ())
        things = current.tables["things"]
        current = replace_table(
            attrs.evolve(current, tables={**current.tables, "someone_elses": extra}),
            "things",
            indexes=(*things.indexes, IndexInfo("their_index", ("state",), False)),
        )
        self.assertTrue(diff(schema, current).is_empty)

    def test_own_index_dropped_when_no_longer_declared(self) -> None:
        schema = load_models(base())
        current = stored(schema, "postgresql")
        result = diff(load_models(base(indexes=[])), current)
        self.assertEqual(
            [c.description for c in result.changes], ["drop index ix_things_name on things"]
        )
        self.assertEqual(result.statements, ['DROP INDEX "ix_things_name"'])
        self.assertEqual(result.destructive, [])

    def test_index_matched_by_columns_not_name(self) -> None:
        schema = load_models(base())
        current = stored(schema, "mysql")
        current = replace_table(
            current, "things", indexes=(IndexInfo("renamed", ("name",), False),)
        )
        self.assertTrue(diff(schema, current).is_empty)

    def test_add_column_and_foreign_key_postgresql(self) -> None:
        source = base()
        source["models"][1]["fields"].append(
            {
                "name": "other_id",
                "type": "integer",
                "foreign_key": {"table": "owners", "column": "id"},
            }
        )
        result = diff(load_models(source), stored(load_models(base()), "postgresql"))
        self.assertEqual(
            result.statements,
            [
                'ALTER TABLE "things" ADD COLUMN "other_id" integer',
                'ALTER TABLE "things" ADD CONSTRAINT "fk_things_other_id" FOREIGN KEY ("other_id") '
                'REFERENCES "owners" ("id")',
            ],
        )

    def test_missing_foreign_key(self) -> None:
        schema = load_models(base())
        for dialect, supported in (("postgresql", True), ("mysql", True), ("sqlite", False)):
            current = replace_table(stored(schema, dialect), "things", foreign_keys=())
            result = diff(schema, current)
            if supported:
                self.assertEqual([c.kind for c in result.changes], ["add_foreign_key"])
            else:
                self.assertEqual(result.changes, ())
                self.assertEqual(
                    [c.reason for c in result.unsupported],
                    ["SQLite cannot add a foreign key to an existing table"],
                )

    def test_mysql_restrict_is_no_action(self) -> None:
        schema = load_models(base())
        current = stored(schema, "mysql")
        fk = current.tables["things"].foreign_keys[0]
        current = replace_table(
            current,
            "things",
            foreign_keys=(attrs.evolve(fk, on_delete="restrict", on_update="restrict"),),
        )
        self.assertTrue(diff(schema, current).is_empty)
        pg = replace_table(
            stored(schema, "postgresql"),
            "things",
            foreign_keys=(attrs.evolve(fk, on_delete="restrict"),),
        )
        result = diff(schema, pg)
        self.assertEqual([c.kind for c in result.changes], ["drop_foreign_key", "add_foreign_key"])

    def test_enum_values_postgresql(self) -> None:
        """
        PostgreSQL enums are checks: adding a value swaps the check (safe); removing one is
        destructive.
        """
        schema = load_models(base())
        current = stored(schema, "postgresql")
        source = base()
        source["models"][1]["fields"][2]["values"] = ["a", "b", "c"]
        wider = diff(load_models(source), current)
        self.assertEqual(
            wider.statements,
            [
                'ALTER TABLE "things" DROP CONSTRAINT "ck_things_state_enum"',
                'ALTER TABLE "things" ADD CONSTRAINT "ck_things_state_enum" '
                "CHECK (\"state\" IN ('a', 'b', 'c'))",
            ],
        )
        self.assertEqual(wider.destructive, [])
        source["models"][1]["fields"][2]["values"] = ["a"]
        narrower = diff(load_models(source), current)
        self.assertEqual(len(narrower.destructive), 1)

    def test_enum_values_mysql(self) -> None:
        schema = load_models(base())
        source = base()
        source["models"][1]["fields"][2]["values"] = ["a", "b", "c"]
        result = diff(load_models(source), stored(schema, "mysql"))
        self.assertEqual(
            result.statements,
            ["ALTER TABLE `things` MODIFY COLUMN `state` ENUM('a', 'b', 'c') DEFAULT 'a'"],
        )

    def test_default_and_nullability(self) -> None:
        schema = load_models(base())
        source = base()
        source["models"][1]["fields"][1].update(nullable=True, default="x")
        result = diff(load_models(source), stored(schema, "postgresql"))
        self.assertEqual(
            result.statements,
            [
                'ALTER TABLE "things" ALTER COLUMN "name" DROP NOT NULL',
                'ALTER TABLE "things" ALTER COLUMN "name" SET DEFAULT \'x\'',
            ],
        )
        self.assertEqual(
            [c.description for c in result.changes],
            ["alter column things.name: allow NULL, default none -> 'x'"],
        )

    def test_primary_key_change_unsupported(self) -> None:
        schema = load_models(base())
        current = replace_table(stored(schema, "postgresql"), "things", primary_key=("name",))
        result = diff(schema, current)
        self.assertEqual(result.changes, ())
        self.assertEqual(len(result.unsupported), 1)
        self.assertIn("primary keys are never changed automatically", str(result))

    def test_comments(self) -> None:
        schema = load_models(base(comment="the things"))
        current = stored(load_models(base()), "postgresql")
        result = diff(schema, current)
        self.assertEqual(result.statements, ["COMMENT ON TABLE \"things\" IS 'the things'"])
        self.assertTrue(diff(schema, stored(load_models(base()), "sqlite")).is_empty)

    def test_plan_str(self) -> None:
        schema = load_models(base(indexes=[]))
        source = base(indexes=[])
        source["models"][1]["fields"].pop()  # drop owner_id
        current = stored(schema, "postgresql")
        result = diff(load_models(source), current)
        self.assertEqual(
            str(result),
            "+ drop foreign key fk_things_owner_id things(owner_id) -> owners\n"
            "! drop column things.owner_id (loses the column's data)\n"
            "2 changes, 1 destructive (marked !)",
        )

    def test_empty_plan_str(self) -> None:
        self.assertEqual(
            str(MigrationPlan("sqlite")), "no changes: the database matches the models"
        )


class SQLiteIntrospectionTests(SynchronousTestCase):
    """
    The SQLite introspector reads back what the SQLite DDL wrote.
    """

    class Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db
            db.row_factory = sqlite3.Row

        def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
            return [dict(r) for r in self.db.execute(sql, params or {})]

    def test_round_trip(self) -> None:
        schema = load_models(base())
        db = sqlite3.connect(":memory:")
        self.addCleanup(db.close)
        db.executescript(generate_ddl(schema, "sqlite"))
        current = introspect_sqlite(self.Tx(db))
        self.assertEqual(
            current.tables["things"].column("state").type, ColumnType("enum", values=("a", "b"))
        )  # type: ignore[union-attr]
        self.assertTrue(diff(schema, current).is_empty)

    def test_checks_parsed_with_quotes_and_parentheses(self) -> None:
        sql = "CREATE TABLE t (a TEXT, CONSTRAINT \"ck_t_a\" CHECK (a IN ('x)', 'y')), b INT)"
        self.assertEqual(sqlite_checks(sql), {"ck_t_a": "a IN ('x)', 'y')"})
