"""
Tests for L{pywatt_twisted._runtime.correlation}: L{CorrelationTable} (keyed waiters,
swept timeouts, shared waiters, retries, cancellation, stop) and L{FifoCalls} (replies
without an id), all on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.correlation import CorrelationTable, FifoCalls, Pending, Waiting
from pywatt_twisted.errors import NotAvailable, RequestTimeout, SecretError


class _Waiter(Waiting):
    """
    An entry of its own that records its outcomes (what L{CorrelationTable.wait}
    fires).
    """

    __slots__ = ("name", "outcomes")

    def __init__(self, name: str = "ctx") -> None:
        self.name = name
        self.outcomes: list[tuple[str, object]] = []

    def __repr__(self) -> str:
        return self.name

    def callback(self, value: object) -> None:
        self.outcomes.append(("callback", value))

    def errback(self, error: object) -> None:
        self.outcomes.append(("errback", error))


class _TableTestCase(SynchronousTestCase):
    """
    A table on a clock that records the keys it discards.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.discarded: list[object] = []
        self.table: CorrelationTable[str] = CorrelationTable(
            self.clock, on_discard=self.discarded.append
        )

    def assertCancelledAndGone(self, d: Deferred[Any], key: str) -> None:
        """
        C{d} failed with L{CancelledError}, and its entry left the table, discarded,
        leaving no timer behind.
        """
        self.failureResultOf(d, CancelledError)
        self.assertNotIn(key, self.table)
        self.assertEqual(self.discarded, [key])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CorrelationTableTests(_TableTestCase):
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

    def test_an_earlier_deadline_moves_the_timer_after_expiry_and_idle(self) -> None:
        """
        The table knows when its timer runs without asking it: after the timer fired
        (and was set again) or stopped (nothing waited), a shorter timeout still moves
        it earlier.
        """
        expired = self.table.add("a", 10, "x")
        self.clock.advance(10)
        self.failureResultOf(expired, RequestTimeout)
        late = self.table.add("late", 10, "x")
        early = self.table.add("early", 2, "x")
        self.clock.advance(2)
        self.failureResultOf(early, RequestTimeout)
        self.assertNoResult(late)
        self.table.resolve("late", 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        again = self.table.add("again", 30, "x")
        sooner = self.table.add("sooner", 1, "x")
        self.clock.advance(1)
        self.failureResultOf(sooner, RequestTimeout)
        self.assertNoResult(again)
        [timer] = self.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), 12 + 30)

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
        self.assertCancelledAndGone(d, "a")

    def test_duplicate_key_is_refused(self) -> None:
        self.table.add("a", 30, "x")
        self.assertRaises(KeyError, self.table.add, "a", 30, "x")

    def test_compaction_keeps_deadlines(self) -> None:
        keep = self.table.add("keep", 50, "keep timed out")
        # Many answered entries leave stale heap items behind; the heap is rebuilt.
        for i in range(1000):
            self.table.add(str(i), 10, "x")
            self.table.resolve(str(i), i)
        self.assertLess(len(self.table._deadlines.heap), 200)
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
        # The table still takes requests (the peer may come back).
        self.assertFalse(self.table.stopped)
        self.assertNoResult(self.table.add("later", 30, "x"))

    def test_pop_gives_the_context(self) -> None:
        self.table.add("a", 30, "x", context=("inventory", "get_stock"))
        self.assertEqual(self.table.context("a"), ("inventory", "get_stock"))
        entry = self.table.pop("a")
        assert entry is not None
        self.assertEqual(entry.context, ("inventory", "get_stock"))
        self.assertIsNone(self.table.pop("a"))

    def test_timeout_error_is_configurable(self) -> None:
        table: CorrelationTable[str] = CorrelationTable(self.clock, timeout_error=SecretError)
        d = table.add("A", 5, "no reply for secret 'A'")
        self.clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, SecretError).value), "no reply for secret 'A'")

    def test_timeout_text_written_only_on_timeout(self) -> None:
        """
        An entry added without a text gets the table's C{timeout_text} of its key and
        context, written when it times out (never for an answered one).
        """
        written: list[tuple[str, object]] = []

        def text(key: str, context: object) -> str:
            written.append((key, context))
            return f"nothing for {key} ({context})"

        table: CorrelationTable[str] = CorrelationTable(self.clock, timeout_text=text)
        answered = table.add("a", 5, None, "ctx-a")
        late = table.add("b", 5, None, "ctx-b")
        table.resolve("a", 1)
        self.assertEqual(self.successResultOf(answered), 1)
        self.assertEqual(written, [])
        self.clock.advance(5)
        failure = self.failureResultOf(late, RequestTimeout)
        self.assertEqual(str(failure.value), "nothing for b (ctx-b)")
        self.assertEqual(written, [("b", "ctx-b")])

    def test_no_text_and_no_timeout_text(self) -> None:
        d = self.table.add("a", 5, None)
        self.clock.advance(5)
        self.assertIn("'a'", str(self.failureResultOf(d, RequestTimeout).value))

    def test_deadline_from_the_given_now(self) -> None:
        """
        C{now}, when given, is the time the timeout counts from (the clock is not read).
        """
        self.clock.advance(100)
        d = self.table.add("a", 5, "late", now=98.0)
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, RequestTimeout)

    def test_wait_fires_the_waiter_itself(self) -> None:
        """
        L{CorrelationTable.wait}: the waiter's own callback or errback is called, once,
        with no Deferred; a timed-out one gets the table's timeout text.
        """
        table: CorrelationTable[str] = CorrelationTable(
            self.clock, timeout_text=lambda key, context: f"{key}/{context.name} timed out"
        )
        answered, late = _Waiter(), _Waiter()
        self.assertIsNone(table.wait("a", 5, answered))
        self.assertIsNone(table.wait("b", 5, late, now=0.0))
        self.assertRaises(KeyError, table.wait, "a", 5, _Waiter())
        self.assertIs(table.context("b"), late, "the entry is its own context")
        self.assertRaises(KeyError, table.join, "b", 5, "shared?")
        self.assertTrue(table.resolve("a", 42))
        self.assertEqual(answered.outcomes, [("callback", 42)])
        self.clock.advance(5)
        [(how, error)] = late.outcomes
        self.assertEqual(
            (how, type(error), str(error)), ("errback", RequestTimeout, "b/ctx timed out")
        )
        self.assertEqual(len(table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_forget_leaves_without_firing(self) -> None:
        waiter = _Waiter()
        self.assertIsNone(self.table.wait("a", 5, waiter))
        self.assertTrue(self.table.forget("a"))
        self.assertFalse(self.table.forget("a"))
        self.assertEqual(self.discarded, ["a"])
        self.assertNotIn("a", self.table)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(waiter.outcomes, [])

    def test_wait_on_a_stopped_table_returns_the_error(self) -> None:
        self.table.stop("closing")
        waiter = _Waiter()
        error = self.table.wait("a", 5, waiter)
        self.assertIsInstance(error, NotAvailable)
        self.assertIn("closing", str(error))
        self.assertEqual(waiter.outcomes, [])
        self.assertNotIn("a", self.table)

    def test_oldest(self) -> None:
        self.assertIsNone(self.table.oldest())
        for key in ("a", "b", "c"):
            self.table.add(key, 30, "x", context=key.upper())
        self.assertEqual(self.table.oldest(), "a")
        self.assertEqual(self.table.oldest(lambda key, context: context != "A"), "b")
        self.assertIsNone(self.table.oldest(lambda key, context: False))
        self.table.resolve("a", 1)
        self.assertEqual(self.table.oldest(), "b")
        self.assertEqual(list(self.table), ["b", "c"])

    def test_fail_gives_the_error(self) -> None:
        d = self.table.add("a", 30, "x")
        self.assertTrue(self.table.fail("a", OSError("closed")))
        self.assertEqual(str(self.failureResultOf(d, OSError).value), "closed")
        self.assertFalse(self.table.fail("a", OSError("closed")))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.discarded, [], "an answered entry is not discarded")


class SharedWaitersTests(_TableTestCase):
    """
    L{CorrelationTable.join}: several callers share one request under a key.
    """

    def test_one_request_for_all(self) -> None:
        first, new = self.table.join("A", 10, "x")
        self.assertTrue(new)
        second, new = self.table.join("A", 99, "y")
        self.assertFalse(new)
        self.assertEqual(len(self.table), 1)
        self.assertTrue(self.table.resolve("A", "value"))
        self.assertEqual([self.successResultOf(d) for d in (first, second)], ["value"] * 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_first_deadline_holds(self) -> None:
        first, _ = self.table.join("A", 10, "A timed out")
        self.clock.advance(5)
        second, _ = self.table.join("A", 10, "later text")
        self.clock.advance(5)
        for d in (first, second):
            self.assertEqual(str(self.failureResultOf(d, RequestTimeout).value), "A timed out")
        self.assertEqual(self.discarded, ["A"])

    def test_cancelling_one_keeps_the_others(self) -> None:
        first, _ = self.table.join("A", 10, "x")
        second, _ = self.table.join("A", 10, "x")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertIn("A", self.table)
        self.assertEqual(self.discarded, [])
        second.cancel()
        self.assertCancelledAndGone(second, "A")

    def test_a_waiter_cancelling_another_while_fired(self) -> None:
        """
        A waiter's callback that cancels another waiter of the same entry neither
        skips a third one nor fires the cancelled one twice.
        """
        first, _ = self.table.join("A", 10, "x")
        second, _ = self.table.join("A", 10, "x")
        third, _ = self.table.join("A", 10, "x")
        first.addCallback(lambda value: (second.cancel(), value)[1])
        self.table.resolve("A", "v")
        self.assertEqual(self.successResultOf(first), "v")
        self.failureResultOf(second, CancelledError)
        self.assertEqual(self.successResultOf(third), "v")

    def test_a_new_request_after_the_answer(self) -> None:
        self.table.join("A", 10, "x")
        self.table.resolve("A", 1)
        _, new = self.table.join("A", 10, "x")
        self.assertTrue(new)


class RetryTests(SynchronousTestCase):
    """
    The C{retry} hook: at a deadline, send again and wait longer, or give up.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.calls: list[tuple[str, float]] = []
        self.waits = {"a": [4.0, 5.0], "b": []}
        self.table: CorrelationTable[str] = CorrelationTable(self.clock, retry=self.retry)

    def retry(self, key: str, entry: Pending) -> float | None:
        self.calls.append((key, self.clock.seconds()))
        waits = self.waits[key]
        return waits.pop(0) if waits else None

    def test_retries_keep_the_entry_then_time_out(self) -> None:
        d = self.table.add("a", 3, "a timed out")
        self.clock.advance(3)
        self.clock.advance(4)
        self.assertNoResult(d)
        self.assertEqual(self.calls, [("a", 3), ("a", 7)])
        self.assertEqual(self.table.oldest(), "a")
        self.clock.advance(5)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(self.calls[-1], ("a", 12))
        self.assertEqual(self.table.timeouts, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answer_between_retries(self) -> None:
        d = self.table.add("a", 3, "x")
        self.clock.advance(3)
        self.assertTrue(self.table.resolve("a", 9001))
        self.assertEqual(self.successResultOf(d), 9001)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_retried_entry_does_not_delay_an_earlier_deadline(self) -> None:
        """
        After a retry the timer is set for the earliest live deadline, not for the
        re-armed one.
        """
        retried = self.table.add("a", 1, "x")
        other = self.table.add("b", 3, "b timed out")
        self.clock.advance(1)  # "a" is re-armed to 5
        self.clock.advance(2)
        self.failureResultOf(other, RequestTimeout)
        self.assertNoResult(retried)

    def test_the_retry_may_fail_the_entry(self) -> None:
        def broken(key: str, entry: Pending) -> float | None:
            self.table.fail(key, OSError("stdout closed"))
            return 4.0

        self.table = CorrelationTable(self.clock, retry=broken)
        d = self.table.add("a", 3, "x")
        self.clock.advance(3)
        self.failureResultOf(d, OSError)
        self.assertEqual(self.table.timeouts, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StopTests(SynchronousTestCase):
    def test_stop_fails_every_waiter_and_refuses_new_ones(self) -> None:
        clock = Clock()
        table: CorrelationTable[str] = CorrelationTable(
            clock, abandoned=lambda key, context, reason: NotAvailable(f"{key}/{context}: {reason}")
        )
        d = table.add("a", 30, "x", context="ctx")
        shared, _ = table.join("b", 30, "x", context="ctx-b")
        self.assertEqual(table.stop("bye"), 2)
        self.assertTrue(table.stopped)
        self.assertEqual(str(self.failureResultOf(d, NotAvailable).value), "a/ctx: bye")
        self.assertEqual(str(self.failureResultOf(shared, NotAvailable).value), "b/ctx-b: bye")
        self.assertEqual(clock.getDelayedCalls(), [])
        later = table.add("c", 30, "x", context="late")
        self.assertEqual(str(self.failureResultOf(later, NotAvailable).value), "c/late: bye")
        joined, new = table.join("d", 30, "x")
        self.assertFalse(new, "nothing to send once stopped")
        self.failureResultOf(joined, NotAvailable)
        self.assertEqual(len(table), 0)

    def test_default_abandoned_error(self) -> None:
        table: CorrelationTable[str] = CorrelationTable(Clock())
        d = table.add("a", 30, "x")
        table.stop("the module is stopping")
        self.assertIn("the module is stopping", str(self.failureResultOf(d, NotAvailable).value))


class FifoCallsTests(SynchronousTestCase):
    """
    L{FifoCalls}: replies without an id, first in first out per line, one on the wire.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.table: CorrelationTable[tuple[str, int]] = CorrelationTable(self.clock)
        self.sent: list[Any] = []
        self.failing: set[Any] = set()
        self.calls = FifoCalls(self.table, self.send)

    def send(self, message: Any) -> Deferred[None]:
        self.sent.append(message)
        if message in self.failing:
            return fail(OSError(f"cannot send {message}"))
        return succeed(None)

    def assertSentThenAnswered(self, sent: list[str], d: Deferred[Any]) -> None:
        """
        C{sent} went out, and a reply on C{discover} answers C{d}.
        """
        self.assertEqual(self.sent, sent)
        self.assertTrue(self.calls.reply("discover", "r"))
        self.assertEqual(self.successResultOf(d), "r")

    def test_one_on_the_wire_per_line(self) -> None:
        first = self.calls.call("discover", 30, "x", "d1")
        second = self.calls.call("discover", 30, "x", "d2")
        other = self.calls.call("register", 30, "x", "r1")
        self.assertEqual(self.sent, ["d1", "r1"])
        self.assertTrue(self.calls.reply("discover", "reply-1"))
        self.assertEqual(self.successResultOf(first), "reply-1")
        self.assertEqual(self.sent, ["d1", "r1", "d2"])
        self.assertTrue(self.calls.reply("discover", "reply-2"))
        self.assertEqual(self.successResultOf(second), "reply-2")
        self.assertTrue(self.calls.reply("register", "reply-r"))
        self.assertEqual(self.successResultOf(other), "reply-r")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reply_with_nothing_on_the_wire(self) -> None:
        self.assertFalse(self.calls.reply("discover", "stray"))
        d = self.calls.call("discover", 30, "x", "d1")
        self.assertFalse(self.calls.reply("register", "stray"))
        self.assertNoResult(d)

    def test_head_timeout_sends_the_next(self) -> None:
        first = self.calls.call("discover", 5, "first timed out", "d1")
        second = self.calls.call("discover", 30, "x", "d2")
        self.clock.advance(5)
        self.failureResultOf(first, RequestTimeout)
        self.assertSentThenAnswered(["d1", "d2"], second)

    def test_queued_calls_time_out_on_their_own(self) -> None:
        first = self.calls.call("discover", 30, "x", "d1")
        queued = self.calls.call("discover", 5, "queued timed out", "d2")
        self.clock.advance(5)
        self.failureResultOf(queued, RequestTimeout)
        self.assertNoResult(first)
        self.calls.reply("discover", "r")
        self.successResultOf(first)
        self.assertEqual(self.sent, ["d1"], "a timed-out queued call is never sent")

    def test_calls_timing_out_together_are_not_sent(self) -> None:
        first = self.calls.call("discover", 5, "x", "d1")
        second = self.calls.call("discover", 5, "x", "d2")
        self.clock.advance(5)
        self.failureResultOf(first, RequestTimeout)
        self.failureResultOf(second, RequestTimeout)
        self.assertEqual(self.sent, ["d1"])

    def test_cancelled_head_sends_the_next(self) -> None:
        first = self.calls.call("discover", 30, "x", "d1")
        self.calls.call("discover", 30, "x", "d2")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.sent, ["d1", "d2"])

    def test_send_failure_fails_the_call_and_sends_the_next(self) -> None:
        self.failing.add("d1")
        first = self.calls.call("discover", 30, "x", "d1")
        self.assertEqual(str(self.failureResultOf(first, OSError).value), "cannot send d1")
        second = self.calls.call("discover", 30, "x", "d2")
        self.assertSentThenAnswered(["d1", "d2"], second)

    def test_stopped_table(self) -> None:
        on_wire = self.calls.call("discover", 30, "x", "d1")
        queued = self.calls.call("discover", 30, "x", "d2")
        self.table.stop("stopping")
        self.failureResultOf(on_wire, NotAvailable)
        self.failureResultOf(queued, NotAvailable)
        self.failureResultOf(self.calls.call("discover", 30, "x", "d3"), NotAvailable)
        self.assertEqual(self.sent, ["d1"])
        self.assertFalse(self.calls.reply("discover", "late"))
