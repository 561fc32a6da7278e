"""
The start-up heap is frozen once the module announced (L{pywatt_twisted._runtime.heap}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime import heap


class _Module:
    def __init__(self, ready: Deferred[Any]) -> None:
        self.ready = ready

    def whenReady(self) -> Deferred[Any]:
        return self.ready


class FreezeTests(SynchronousTestCase):
    def setUp(self) -> None:
        # (the test process's own heap is never frozen: the gc calls are recorded)
        self.calls: list[str] = []
        self.patch(heap.gc, "collect", lambda: self.calls.append("collect"))
        self.patch(heap.gc, "freeze", lambda: self.calls.append("freeze"))

    def test_frozen_in_the_turn_after_the_announce(self) -> None:
        clock = Clock()
        ready: Deferred[Any] = Deferred()
        heap.freeze_after_ready(_Module(ready), clock)
        clock.advance(1)
        self.assertEqual(self.calls, [])
        ready.callback(object())
        self.assertEqual(self.calls, [])  # (not in the announce's own call stack)
        clock.advance(0)
        self.assertEqual(self.calls, ["collect", "freeze"])

    def test_not_frozen_when_the_start_fails(self) -> None:
        clock = Clock()
        heap.freeze_after_ready(_Module(fail(RuntimeError("no init blob"))), clock)
        clock.advance(1)
        self.assertEqual(self.calls, [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_freeze_start_up_heap_collects_first(self) -> None:
        heap.freeze_start_up_heap()
        self.assertEqual(self.calls, ["collect", "freeze"])
