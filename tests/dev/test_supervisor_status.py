"""
Tests for L{pywatt_twisted._dev._status}: the supervisor's status table, and that a
supervised module walks only through allowed transitions.
"""

from __future__ import annotations

import json

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev._status import ALLOWED, SupervisorStatus, check_transition
from pywatt_twisted._dev.supervisor import CRASHED, RUNNING, ModuleSupervisor


class TableTests(SynchronousTestCase):
    def test_every_status_has_a_row(self) -> None:
        self.assertEqual(set(ALLOWED), set(SupervisorStatus))

    def test_values_are_the_strings_the_status_page_shows(self) -> None:
        self.assertEqual(RUNNING, "running")
        self.assertEqual(json.dumps({"s": CRASHED}), '{"s": "crashed"}')

    def test_a_stopped_module_cannot_be_running_without_starting(self) -> None:
        self.assertNotIn(SupervisorStatus.RUNNING, ALLOWED[SupervisorStatus.STOPPED])
        self.assertNotIn(SupervisorStatus.RUNNING, ALLOWED[SupervisorStatus.CRASHED])


class CheckTransitionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_allowed_is_silent(self) -> None:
        check_transition("m", SupervisorStatus.STARTING, SupervisorStatus.RUNNING)
        self.assertEqual([e for e in self.events if "status table" in str(e.get("log_format"))], [])

    def test_disallowed_is_logged_as_an_error(self) -> None:
        check_transition("m", SupervisorStatus.STOPPED, SupervisorStatus.RUNNING)
        errors = [e for e in self.events if "status table" in str(e.get("log_format"))]
        self.assertEqual(len(errors), 1)
        self.assertEqual((errors[0]["old"], errors[0]["new"]), ("stopped", "running"))

    def test_supervisor_setter_checks(self) -> None:
        supervisor = ModuleSupervisor.__new__(ModuleSupervisor)
        supervisor.module_id = "m"
        supervisor._status = SupervisorStatus.STOPPED
        supervisor.status = SupervisorStatus.RUNNING
        self.assertEqual(supervisor.status, SupervisorStatus.RUNNING)
        self.assertEqual(
            len([e for e in self.events if "status table" in str(e.get("log_format"))]), 1
        )
