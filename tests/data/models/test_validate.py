"""
Tests for L{pywatt_twisted.data.models._validate}: every rule reports a problem naming model
and field, all problems are reported at once, and warnings do not raise.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data.models import ModelValidationError, load_models, validate

HERE = os.path.dirname(os.path.abspath(__file__))


def one(fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    pk = {"name": "id", "type": "integer", "primary_key": True}
    return {"models": [{"name": "t", "fields": [pk, *fields], **extra}]}


class ValidateTests(SynchronousTestCase):
    def errors(self, source: Any) -> list[str]:
        e = self.assertRaises(ModelValidationError, validate, load_models(source))
        return [str(p) for p in e.problems]

    def assertError(self, source: Any, expected: str) -> None:
        errors = self.errors(source)
        self.assertTrue(any(expected in e for e in errors), f"{expected!r} not in {errors}")

    def test_everything_model_is_valid(self) -> None:
        self.assertEqual(validate(load_models(os.path.join(HERE, "everything.yaml"))), [])

    def test_unknown_type(self) -> None:
        self.assertError(one([{"name": "a", "type": "strng"}]), "t.a: unknown type 'strng'")

    def test_duplicate_column(self) -> None:
        self.assertError(
            one([{"name": "a", "type": "text"}, {"name": "A", "type": "text"}]),
            "t.a: duplicate column: defined 2 times",
        )

    def test_duplicate_model(self) -> None:
        source = one([])
        source["models"].append(source["models"][0])
        self.assertError(source, "t: duplicate model")

    def test_enum_without_values(self) -> None:
        self.assertError(
            one([{"name": "s", "type": "enum"}]), "t.s: an enum needs a non-empty list"
        )

    def test_varchar_without_length(self) -> None:
        self.assertError(one([{"name": "s", "type": "varchar"}]), "t.s: a varchar needs a 'length'")

    def test_decimal_scale(self) -> None:
        self.assertError(
            one([{"name": "d", "type": "decimal", "precision": 4, "scale": 5}]),
            "t.d: decimal scale 5 must be between 0 and the precision (4)",
        )

    def test_parameters_on_wrong_type(self) -> None:
        errors = self.errors(
            one([{"name": "a", "type": "integer", "length": 3, "values": ["x"], "precision": 3}])
        )
        self.assertEqual(
            errors,
            [
                "t.a: 'length' applies only to varchar, not to integer",
                "t.a: 'precision' and 'scale' apply only to decimal, not to integer",
                "t.a: 'values' applies only to enum, not to integer",
            ],
        )

    def test_foreign_key_unknown_table(self) -> None:
        self.assertError(
            one(
                [{"name": "c", "type": "integer", "foreign_key": {"table": "nope", "column": "id"}}]
            ),
            "t.c: foreign key to unknown table 'nope'",
        )

    def test_foreign_key_unknown_column(self) -> None:
        self.assertError(
            one([{"name": "c", "type": "integer", "foreign_key": "t.nope"}]),
            "t.c: foreign key to unknown column t.nope",
        )

    def test_foreign_key_type_mismatch(self) -> None:
        self.assertError(
            one([{"name": "c", "type": "big_integer", "foreign_key": "t.id"}]),
            "t.c: foreign key type big_integer does not match t.id (integer)",
        )

    def test_foreign_key_target_not_unique(self) -> None:
        self.assertError(
            one(
                [
                    {"name": "x", "type": "integer"},
                    {"name": "c", "type": "integer", "foreign_key": "t.x"},
                ]
            ),
            "t.c: foreign key target t.x must be its table's primary key or unique",
        )

    def test_foreign_key_actions(self) -> None:
        errors = self.errors(
            one(
                [
                    {
                        "name": "c",
                        "type": "integer",
                        "nullable": False,
                        "foreign_key": {
                            "table": "t",
                            "column": "id",
                            "on_delete": "explode",
                            "on_update": "set null",
                        },
                    }
                ]
            )
        )
        self.assertEqual(
            errors,
            [
                "t.c: foreign key on_delete 'explode' is not one of no_action, restrict, cascade, "
                "set_null, set_default",
                "t.c: foreign key on_update set_null needs a nullable field",
            ],
        )

    def test_index_on_missing_column(self) -> None:
        self.assertError(
            one([], indexes=[{"columns": ["ghost"]}]),
            "t.indexes[0]: index on missing column 'ghost'",
        )

    def test_index_on_text(self) -> None:
        self.assertError(
            one([{"name": "body", "type": "text"}], indexes=[{"columns": ["body"]}]),
            "index on text column 'body' is not portable; use varchar(n)",
        )

    def test_duplicate_index(self) -> None:
        self.assertError(
            one([{"name": "a", "type": "integer"}], indexes=[["a"], {"columns": ["a"]}]),
            "t.indexes[1]: duplicate of indexes[0]",
        )

    def test_auto_increment_rules(self) -> None:
        errors = self.errors(one([{"name": "n", "type": "text", "auto_increment": True}]))
        self.assertEqual(
            errors,
            [
                "t.n: auto_increment needs an integer or big_integer field, not text",
                "t.n: auto_increment is only portable on the sole primary key column",
            ],
        )

    def test_nullable_primary_key(self) -> None:
        self.assertError(
            {
                "models": [
                    {
                        "name": "t",
                        "fields": [
                            {"name": "id", "type": "integer", "primary_key": True, "nullable": True}
                        ],
                    }
                ]
            },
            "t.id: a primary key column cannot be nullable",
        )

    def test_composite_key_missing_column(self) -> None:
        self.assertError(
            {
                "models": [
                    {
                        "name": "t",
                        "primary_key": ["a", "b"],
                        "fields": [{"name": "a", "type": "integer"}],
                    }
                ]
            },
            "t.b: primary key names a missing column",
        )

    def test_defaults_fit_type(self) -> None:
        errors = self.errors(
            one(
                [
                    {"name": "a", "type": "integer", "default": "1"},
                    {"name": "b", "type": "boolean", "default": 1},
                    {"name": "c", "type": "enum", "values": ["x"], "default": "y"},
                    {
                        "name": "d",
                        "type": "decimal",
                        "precision": 4,
                        "scale": 2,
                        "default": "123.4",
                    },
                    {"name": "e", "type": "varchar", "length": 2, "default": "abc"},
                    {"name": "f", "type": "datetime", "default": "2020-01-01T00:00:00"},
                    {"name": "g", "type": "date", "default": "yesterday"},
                    {"name": "h", "type": "uuid", "default": "not-a-uuid"},
                    {"name": "i", "type": "json", "default": "{}"},
                ]
            )
        )
        self.assertEqual([e.split(":")[0] for e in errors], [f"t.{c}" for c in "abcdefghi"])

    def test_bad_identifier(self) -> None:
        self.assertError(
            one([{"name": "my col", "type": "text"}]),
            "t.my col: column name 'my col' is not a plain identifier",
        )

    def test_long_identifier(self) -> None:
        self.assertError(
            one([{"name": "x" * 64, "type": "text"}]), "is 64 characters long; the limit is 63"
        )

    def test_all_problems_at_once(self) -> None:
        errors = self.errors(
            one([{"name": "a", "type": "nope"}, {"name": "b", "type": "enum"}], indexes=[["zz"]])
        )
        self.assertEqual(len(errors), 3)

    def test_reserved_word_is_a_warning(self) -> None:
        warnings = validate(load_models(one([{"name": "order", "type": "integer"}])))
        self.assertEqual(len(warnings), 1)
        self.assertIn("t.order: column name 'order' is a reserved SQL word", str(warnings[0]))

    def test_no_primary_key_is_a_warning(self) -> None:
        warnings = validate(
            load_models({"models": [{"name": "log", "fields": [{"name": "line", "type": "text"}]}]})
        )
        self.assertEqual(
            [str(w) for w in warnings],
            ["log: has no primary key; rows cannot be told apart reliably"],
        )

    def test_message_lists_problems(self) -> None:
        e = self.assertRaises(
            ModelValidationError, validate, load_models(one([{"name": "s", "type": "enum"}]))
        )
        self.assertEqual(
            str(e),
            "1 problem in the model definitions:\n"
            "  - t.s: an enum needs a non-empty list of 'values'",
        )
