"""
Tests for L{pywatt_twisted._runtime.status}: the module status machine.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.status import ModuleStatus, StatusMachine

S = ModuleStatus

ALLOWED = {
    (S.STARTING, S.READY),
    (S.STARTING, S.STOPPING),
    (S.STARTING, S.FAILED),
    (S.READY, S.STOPPING),
    (S.READY, S.FAILED),
    (S.STOPPING, S.STOPPED),
    (S.STOPPING, S.FAILED),
}


class StatusMachineTests(SynchronousTestCase):
    def test_starts_starting(self) -> None:
        self.assertIs(StatusMachine().current, S.STARTING)

    def test_every_pair(self) -> None:
        """
        Exactly the transitions of the table are allowed; a refused one leaves the
        status where it was.
        """
        for source in S:
            for target in S:
                machine = StatusMachine()
                machine.current = source
                moved = machine.move_to(target)
                expected = (source, target) in ALLOWED
                self.assertEqual(moved, expected, (source, target))
                self.assertIs(machine.current, target if expected else source)
                self.assertEqual(StatusMachine.allowed(source, target), expected)

    def test_normal_life(self) -> None:
        machine = StatusMachine()
        for status in (S.READY, S.STOPPING, S.STOPPED):
            self.assertTrue(machine.move_to(status))
        self.assertFalse(machine.move_to(S.FAILED))
        self.assertIs(machine.current, S.STOPPED)

    def test_failed_is_final(self) -> None:
        machine = StatusMachine()
        self.assertTrue(machine.move_to(S.FAILED))
        for status in S:
            self.assertFalse(machine.move_to(status))
        self.assertIs(machine.current, S.FAILED)

    def test_accepting(self) -> None:
        machine = StatusMachine()
        self.assertTrue(machine.accepting)
        machine.move_to(S.READY)
        self.assertTrue(machine.accepting)
        machine.move_to(S.STOPPING)
        self.assertFalse(machine.accepting)

    def test_health_values(self) -> None:
        """
        The values are the C{status} strings C{/health} has always reported.
        """
        self.assertEqual([s.value for s in S], ["starting", "ok", "stopping", "failed", "stopped"])
        self.assertEqual(S.READY, "ok")
        self.assertEqual(json.dumps({"status": S.READY}), '{"status": "ok"}')
