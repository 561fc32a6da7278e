"""
Tests for L{pywatt_twisted.web._bridge_request.validate}'s set of header names already
found to be tokens: the same answers as the regular expression, before and after a
name is remembered, and a bounded set.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.web import _bridge_request
from pywatt_twisted.web._bridge_request import validate
from pywatt_twisted.wire.messages import HttpRequest


def message(headers: Any) -> HttpRequest:
    return HttpRequest(request_id="r", method="GET", uri="/", headers=headers)


class KnownHeaderNameTests(SynchronousTestCase):
    def setUp(self) -> None:
        saved = set(_bridge_request._KNOWN_NAMES)
        _bridge_request._KNOWN_NAMES.clear()

        def restore() -> None:
            _bridge_request._KNOWN_NAMES.clear()
            _bridge_request._KNOWN_NAMES.update(saved)

        self.addCleanup(restore)

    def test_same_answer_before_and_after_a_name_is_remembered(self) -> None:
        for _ in range(2):
            self.assertIsNone(validate(message({"x-ok": "1", "Host": "m"})))
        self.assertIn("x-ok", _bridge_request._KNOWN_NAMES)

    def test_bad_names_are_never_remembered(self) -> None:
        for bad in ("bad name", "", "x:y", "caf\u00e9"):
            for _ in range(2):
                error = validate(message({bad: "1"}))
                self.assertIsNotNone(error, bad)
                self.assertIn("HTTP tokens", str(error))
            self.assertNotIn(bad, _bridge_request._KNOWN_NAMES)

    def test_non_string_names_refused_every_time(self) -> None:
        for _ in range(2):
            self.assertIn("HTTP tokens", str(validate(message({b"host": "m"}))))
            self.assertIn("HTTP tokens", str(validate(message({5: "m"}))))

    def test_value_still_checked_for_a_remembered_name(self) -> None:
        self.assertIsNone(validate(message({"x-a": "fine"})))
        error = validate(message({"x-a": "bad\r\nvalue"}))
        self.assertIn("CR, LF or NUL", str(error))

    def test_bounded(self) -> None:
        self.patch(_bridge_request, "_KNOWN_NAMES_MAX", 3)
        self.assertIsNone(validate(message({f"x-{n}": "1" for n in range(10)})))
        self.assertEqual(len(_bridge_request._KNOWN_NAMES), 3)
        self.assertIsNone(validate(message({"x-9": "1"})))  # checked, not remembered
        self.assertEqual(len(_bridge_request._KNOWN_NAMES), 3)
