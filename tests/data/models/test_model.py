"""
Tests for L{pywatt_twisted.data.models._model}: the three ways to define a model load to the
same L{Schema}, and shape errors name their model and field.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import os
import uuid

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data.models import (
    Field,
    ForeignKey,
    Index,
    ModelValidationError,
    Schema,
    column,
    load_models,
    model,
)
from pywatt_twisted.errors import ConfigurationError

HERE = os.path.dirname(os.path.abspath(__file__))

ORDERS_DICT = {
    "models": [
        {
            "name": "customers",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True}
            ],
        },
        {
            "name": "orders",
            "comment": "orders",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True},
                {
                    "name": "customer_id",
                    "type": "integer",
                    "nullable": False,
                    "foreign_key": {"table": "customers", "column": "id", "on_delete": "CASCADE"},
                },
                {"name": "total", "type": "decimal", "precision": 10, "scale": 2, "default": 0},
                {"name": "status", "type": "enum", "values": ["new", "paid"], "default": "new"},
                {"name": "email", "type": "varchar", "length": 200, "unique": True},
                {"name": "created_at", "type": "datetime", "nullable": False, "default": "now"},
                {"name": "note", "type": "text"},
            ],
            "indexes": [{"columns": ["customer_id", "status"], "unique": False}],
        },
    ]
}

ORDERS_YAML = """\
models:
  - name: customers
    fields:
      - {name: id, type: integer, primary_key: true, auto_increment: true}
  - name: orders
    comment: orders
    fields:
      - {name: id, type: integer, primary_key: true, auto_increment: true}
      - {name: customer_id, type: integer, nullable: false,
         foreign_key: {table: customers, column: id, on_delete: cascade}}
      - {name: total, type: decimal, precision: 10, scale: 2, default: 0}
      - {name: status, type: enum, values: [new, paid], default: new}
      - {name: email, type: varchar, length: 200, unique: true}
      - {name: created_at, type: datetime, nullable: false, default: now}
      - {name: note, type: text}
    indexes:
      - {columns: [customer_id, status], unique: false}
"""


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


@model("customers")
@attrs.define
class Customer:
    id: int = column(primary_key=True, auto_increment=True)


@model("orders", indexes=[{"columns": ["customer_id", "status"]}], comment="orders")
@attrs.define
class Order:
    id: int = column(primary_key=True, auto_increment=True)
    customer_id: int = column(
        foreign_key={"table": "customers", "column": "id", "on_delete": "cascade"}
    )
    total: decimal.Decimal | None = column(precision=10, scale=2, default=0)  # noqa: RUF009
    status: Status | None = column(default="new")  # noqa: RUF009
    email: str | None = attrs.field(
        default=None, metadata={"pywatt": {"type": "varchar", "length": 200, "unique": True}}
    )
    created_at: datetime.datetime = column(default="now")  # noqa: RUF009
    note: str | None = None


class LoadModelsTests(SynchronousTestCase):
    """
    L{load_models} accepts a dict, a YAML or JSON file and attrs classes.
    """

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.mktemp())
        os.makedirs(path)
        path = os.path.join(path, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_dict(self) -> None:
        schema = load_models(ORDERS_DICT)
        orders = schema.model("orders")
        assert orders is not None
        self.assertEqual([m.name for m in schema.models], ["customers", "orders"])
        self.assertEqual(orders.primary_key_columns, ("id",))
        self.assertEqual(
            orders.field("customer_id"),
            Field(
                name="customer_id",
                type="integer",
                nullable=False,
                foreign_key=ForeignKey("customers", "id", on_delete="cascade"),
            ),
        )
        self.assertEqual(orders.field("status").values, ("new", "paid"))  # type: ignore[union-attr]
        self.assertEqual(orders.indexes, (Index(("customer_id", "status")),))
        self.assertFalse(orders.field("id").nullable)  # type: ignore[union-attr]
        self.assertTrue(orders.field("note").nullable)  # type: ignore[union-attr]

    def test_three_sources_agree(self) -> None:
        """
        The dict, the YAML file, the JSON file and the attrs classes give equal schemas.
        """
        from_dict = load_models(ORDERS_DICT)
        from_yaml = load_models(self.write("models.yaml", ORDERS_YAML))
        from_json = load_models(self.write("models.json", json.dumps(ORDERS_DICT)))
        from_attrs = load_models([Customer, Order])
        self.assertEqual(from_yaml, from_dict)
        self.assertEqual(from_json, from_dict)
        self.assertEqual(from_attrs, from_dict)

    def test_list_of_dicts_and_schema(self) -> None:
        schema = load_models(ORDERS_DICT["models"])
        self.assertEqual(schema, load_models(ORDERS_DICT))
        self.assertIs(load_models(schema), schema)

    def test_attrs_inference(self) -> None:
        """
        Without metadata, column types and nullability come from the annotations.
        """

        @attrs.define
        class EveryKind:
            a: int
            b: float
            c: bool
            d: bytes
            e: datetime.date
            f: datetime.datetime
            g: uuid.UUID
            h: dict  # type: ignore[type-arg]
            i: list[int]
            j: str | None
            k: Status

        schema = load_models([EveryKind])
        m = schema.models[0]
        self.assertEqual(m.name, "every_kind")
        self.assertEqual(
            [(f.name, f.type, f.nullable) for f in m.fields],
            [
                ("a", "integer", False),
                ("b", "float", False),
                ("c", "boolean", False),
                ("d", "bytes", False),
                ("e", "date", False),
                ("f", "datetime", False),
                ("g", "uuid", False),
                ("h", "json", False),
                ("i", "json", False),
                ("j", "text", True),
                ("k", "enum", False),
            ],
        )
        self.assertEqual(m.fields[-1].values, ("new", "paid"))

    def test_not_attrs(self) -> None:
        class Plain:
            pass

        e = self.assertRaises(ModelValidationError, load_models, [Plain])
        self.assertIn("Plain: is not an attrs class", str(e))

    def test_to_dict_round_trip(self) -> None:
        schema = load_models(os.path.join(HERE, "everything.yaml"))
        self.assertEqual(load_models(schema.to_dict()), schema)

    def test_type_aliases(self) -> None:
        schema = load_models(
            [
                {
                    "name": "t",
                    "fields": [{"name": "a", "type": "BigInt"}, {"name": "b", "type": "bool"}],
                }
            ]
        )
        self.assertEqual([f.type for f in schema.models[0].fields], ["big_integer", "boolean"])

    def test_composite_key_not_null(self) -> None:
        """
        Columns of a model-level primary key are NOT NULL unless said otherwise.
        """
        schema = load_models(
            [
                {
                    "name": "t",
                    "primary_key": ["a", "b"],
                    "fields": [{"name": "a", "type": "integer"}, {"name": "b", "type": "integer"}],
                }
            ]
        )
        self.assertEqual([f.nullable for f in schema.models[0].fields], [False, False])
        self.assertEqual(schema.models[0].primary_key_columns, ("a", "b"))


class ShapeErrorTests(SynchronousTestCase):
    """
    Malformed sources raise L{ModelValidationError} naming model and field.
    """

    def problems(self, source: object) -> list[str]:
        e = self.assertRaises(ModelValidationError, load_models, source)
        self.assertIsInstance(e, ConfigurationError)
        return [str(p) for p in e.problems]

    def test_unknown_field_key(self) -> None:
        problems = self.problems(
            {
                "models": [
                    {
                        "name": "orders",
                        "fields": [{"name": "id", "type": "integer", "nulable": True}],
                    }
                ]
            }
        )
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("orders.id: unknown key 'nulable'"), problems)

    def test_missing_models_key(self) -> None:
        self.assertEqual(
            self.problems({"tables": []}),
            [
                "unknown key 'tables' (expected one of models)",
                "expected a top-level 'models' list",
            ],
        )

    def test_wrong_kinds(self) -> None:
        problems = self.problems(
            {
                "models": [
                    {
                        "name": "t",
                        "fields": [
                            {"name": "a", "type": "varchar", "length": "200"},
                            {"name": "b", "type": "integer", "unique": "yes"},
                            {"type": "integer"},
                        ],
                    }
                ]
            }
        )
        self.assertEqual(
            problems,
            [
                "t.a: 'length' must be an integer, got '200'",
                "t.b: 'unique' must be true or false, got 'yes'",
                "t.fields[2]: 'name' must be a non-empty string, got None",
            ],
        )

    def test_unreadable_file(self) -> None:
        problems = self.problems(os.path.join(self.mktemp(), "missing.yaml"))
        self.assertIn("cannot read model file", problems[0])

    def test_bad_yaml(self) -> None:
        path = self.mktemp() + ".yaml"
        with open(path, "w") as f:
            f.write("models: [\n")
        self.assertIn("cannot parse model file", self.problems(path)[0])

    def test_not_a_source(self) -> None:
        self.assertIn("models must be a file path", self.problems(42)[0])


names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


@st.composite
def field_dicts(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["integer", "text", "varchar", "decimal", "enum", "boolean"]))
    out: dict[str, object] = {"name": draw(names), "type": kind}
    if kind == "varchar":
        out["length"] = draw(st.integers(1, 500))
    if kind == "decimal":
        out["precision"] = draw(st.integers(1, 30))
        out["scale"] = draw(st.integers(0, 1))
    if kind == "enum":
        out["values"] = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    if draw(st.booleans()):
        out["nullable"] = draw(st.booleans())
    if draw(st.booleans()):
        out["comment"] = draw(st.text(max_size=20))
    return out


class RoundTripPropertyTests(SynchronousTestCase):
    @given(st.lists(field_dicts(), min_size=1, max_size=6, unique_by=lambda f: f["name"]))
    def test_dict_round_trip(self, fields: list[dict[str, object]]) -> None:
        """
        Any well-shaped dict loads, and its dict form loads to an equal schema.
        """
        schema = load_models({"models": [{"name": "t", "fields": fields}]})
        self.assertIsInstance(schema, Schema)
        self.assertEqual(load_models(schema.to_dict()), schema)
        self.assertEqual([f.name for f in schema.models[0].fields], [f["name"] for f in fields])
