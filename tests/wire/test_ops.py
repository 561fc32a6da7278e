"""
Tests for L{pywatt_twisted.wire._ops}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.wire._ops import op_name
from pywatt_twisted.wire.messages import Heartbeat, UnknownMessage


class OpNameTests(SynchronousTestCase):
    def test_message_class_op(self) -> None:
        self.assertEqual(op_name(Heartbeat()), "heartbeat")

    def test_unknown_message_keeps_its_op(self) -> None:
        self.assertEqual(op_name(UnknownMessage(op="frobnicate")), "frobnicate")

    def test_non_message_is_named_by_its_type(self) -> None:
        self.assertEqual(op_name(object()), "object")

    def test_non_text_op_is_named_by_its_type(self) -> None:
        class Odd:
            op = 3

        self.assertEqual(op_name(Odd()), "Odd")
