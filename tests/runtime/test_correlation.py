"""
Tests for L{pywatt_twisted.runtime.correlation.CorrelationTable}.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import RequestTimeout
from pywatt_twisted.runtime.correlation import CorrelationTable


class CorrelationTableTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.discarded: list[object] = []
        self.table: CorrelationTable[str] = CorrelationTable(
            self.clock, on_discard=self.discarded.append
        )

    def test_resolve_fires_and_leaves_no_timer(self) -> None:
        d = self.table.add("a", 30, "no reply to a")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertTrue(self.table.resolve("a", 42))
        self.assertEqual(self.successResultOf(d), 42)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.table.resolve("a", 43))

    def test_one_timer_for_many_entries(self) -> None:
        for i in range(100):
            self.table.add(str(i), 30, "x")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_timeouts_fire_at_their_own_deadline_and_clean_up(self) -> None:
        late = self.table.add("late", 10, "late timed out")
        early = self.table.add("early", 5, "early timed out")
        self.clock.advance(4.9)
        self.assertNoResult(early)
        self.clock.advance(0.1)
        failure = self.failureResultOf(early, RequestTimeout)
        self.assertEqual(str(failure.value), "early timed out")
        self.assertNoResult(late)
        self.assertNotIn("early", self.table)
        self.assertEqual(self.discarded, ["early"])
        self.clock.advance(5)
        self.failureResultOf(late, RequestTimeout)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.table.timeouts, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answered_head_does_not_time_out_the_rest_early(self) -> None:
        first = self.table.add("first", 5, "x")
        second = self.table.add("second", 10, "x")
        self.table.resolve("first", 1)
        self.successResultOf(first)
        self.clock.advance(5)
        self.assertNoResult(second)
        self.clock.advance(5)
        self.failureResultOf(second, RequestTimeout)

    def test_cancel_removes_the_entry(self) -> None:
        d = self.table.add("a", 30, "x")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertNotIn("a", self.table)
        self.assertEqual(self.discarded, ["a"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_duplicate_key_is_refused(self) -> None:
        self.table.add("a", 30, "x")
        self.assertRaises(KeyError, self.table.add, "a", 30, "x")

    def test_compaction_keeps_deadlines(self) -> None:
        keep = self.table.add("keep", 50, "keep timed out")
        # Many answered entries leave stale heap items behind; the heap is rebuilt.
        for i in range(1000):
            self.table.add(str(i), 10, "x")
            self.table.resolve(str(i), i)
        self.assertLess(len(self.table._heap), 200)
        self.clock.advance(49)
        self.assertNoResult(keep)
        self.clock.advance(1)
        self.failureResultOf(keep, RequestTimeout)

    def test_fail_all(self) -> None:
        ds = [self.table.add(str(i), 30, "x", context=i) for i in range(3)]
        count = self.table.fail_all(lambda key, entry: ValueError(f"{key}:{entry.context}"))
        self.assertEqual(count, 3)
        self.assertEqual(
            [str(self.failureResultOf(d, ValueError).value) for d in ds], ["0:0", "1:1", "2:2"]
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pop_gives_the_context(self) -> None:
        self.table.add("a", 30, "x", context=("inventory", "get_stock"))
        self.assertEqual(self.table.context("a"), ("inventory", "get_stock"))
        entry = self.table.pop("a")
        assert entry is not None
        self.assertEqual(entry.context, ("inventory", "get_stock"))
        self.assertIsNone(self.table.pop("a"))
