"""
Tests for L{pywatt_twisted._views.find_mark}.
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._views import find_mark


def _marked(value: Any) -> Any:
    def view() -> None:
        pass

    view.mark = value  # type: ignore[attr-defined]
    return view


class FindMarkTests(SynchronousTestCase):
    def test_on_the_view(self) -> None:
        self.assertEqual(find_mark(_marked("x"), "mark", lambda m: True), "x")

    def test_through_wraps_and_klein_original(self) -> None:
        inner = _marked("x")

        @functools.wraps(inner)
        def wrapper() -> None:
            pass

        del wrapper.mark  # type: ignore[attr-defined]  # (wraps copied __dict__)

        def klein_wrapper() -> None:
            pass

        klein_wrapper.__original__ = wrapper  # type: ignore[attr-defined]
        self.assertEqual(find_mark(klein_wrapper, "mark", lambda m: True), "x")

    def test_rejected_values_are_skipped(self) -> None:
        inner = _marked("deep")
        outer = _marked("")
        outer.__wrapped__ = inner
        self.assertEqual(find_mark(outer, "mark", bool), "deep")

    def test_none_and_cycles(self) -> None:
        a, b = _marked(0), _marked(0)
        a.__wrapped__, b.__wrapped__ = b, a
        self.assertIsNone(find_mark(a, "mark", bool))
        self.assertIsNone(find_mark(None, "mark", bool))
