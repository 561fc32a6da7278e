"""
PostgreSQL introspection retries when another session drops a table while the catalog
functions read it.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import DataError

# (the package exports a function of the same name as the module)
introspect = importlib.import_module("pywatt_twisted.data.models._introspect")


class RecordingTransaction:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str, params: Any = None) -> int:
        self.statements.append(sql)
        return 0


class RetryTests(SynchronousTestCase):
    def patch_introspector(self, failures: list[Exception]) -> list[int]:
        calls: list[int] = []

        def fake(tx: Any) -> str:
            calls.append(1)
            if failures:
                raise failures.pop(0)
            return "schema"

        self.patch(introspect, "introspect_postgresql", fake)
        return calls

    def test_retries_a_concurrent_drop(self) -> None:
        calls = self.patch_introspector([DataError("could not open relation with OID 16384")])
        tx = RecordingTransaction()
        self.assertEqual(introspect.introspect_transaction(tx, "postgresql"), "schema")
        self.assertEqual(len(calls), 2)
        self.assertEqual(
            tx.statements,
            [
                "SAVEPOINT pywatt_introspect",
                "ROLLBACK TO SAVEPOINT pywatt_introspect",
                "SAVEPOINT pywatt_introspect",
                "RELEASE SAVEPOINT pywatt_introspect",
            ],
        )

    def test_other_errors_are_not_retried(self) -> None:
        calls = self.patch_introspector([DataError("permission denied for table x")])
        self.assertRaises(
            DataError, introspect.introspect_transaction, RecordingTransaction(), "postgresql"
        )
        self.assertEqual(len(calls), 1)

    def test_gives_up_after_the_last_attempt(self) -> None:
        errors = [DataError("could not open relation with OID 1") for _ in range(5)]
        calls = self.patch_introspector(errors)
        self.assertRaises(
            DataError, introspect.introspect_transaction, RecordingTransaction(), "postgresql"
        )
        self.assertEqual(len(calls), introspect.PG_INTROSPECTION_ATTEMPTS)
