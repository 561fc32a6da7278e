"""
Tests for L{pywatt_twisted._runtime.secret.Secret}.
"""

from __future__ import annotations

import json
import pickle

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.secret import Secret
from pywatt_twisted.errors import SecretError


class SecretTests(SynchronousTestCase):
    def test_never_shown(self) -> None:
        s = Secret("API_KEY", "value-123")
        self.assertEqual(str(s), "[REDACTED]")
        self.assertNotIn("value-123", repr(s))
        self.assertEqual(f"{s}", "[REDACTED]")
        self.assertEqual("{}".format(s), "[REDACTED]")  # noqa: UP032
        self.assertRaises(TypeError, json.dumps, {"k": s})
        self.assertRaises(TypeError, pickle.dumps, s)
        self.assertEqual(s.expose(), "value-123")

    def test_typed(self) -> None:
        self.assertEqual(Secret("N", " 42 ").get_int(), 42)
        self.assertEqual(Secret("F", "2.5").get_float(), 2.5)
        self.assertIs(Secret("B", "Yes").get_bool(), True)
        self.assertIs(Secret("B", "off").get_bool(), False)
        self.assertEqual(Secret("J", '{"a": [1]}').get_json(), {"a": [1]})

    def test_typed_errors_never_include_value(self) -> None:
        for method, value in [
            ("get_int", "sekrit-int"),
            ("get_float", "sekrit-float"),
            ("get_bool", "sekrit-bool"),
            ("get_json", "{sekrit-json"),
        ]:
            error = self.assertRaises(SecretError, getattr(Secret("NAME", value), method))
            self.assertIn("'NAME'", str(error))
            self.assertNotIn("sekrit", str(error))

    def test_equality(self) -> None:
        self.assertEqual(Secret("a", "1"), Secret("a", "1"))
        self.assertNotEqual(Secret("a", "1"), Secret("a", "2"))
        self.assertEqual(len({Secret("a", "1"), Secret("a", "1")}), 1)
