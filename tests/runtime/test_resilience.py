"""
Tests for L{pywatt_twisted._runtime.resilience}: the circuit breaker's state machine on a
clock, the registry of breakers, and the retry policy.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.resilience import (
    BreakerPolicy,
    Breakers,
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
)
from pywatt_twisted.errors import (
    ChannelError,
    CircuitOpen,
    HandlerError,
    RemoteError,
    TargetExited,
    Timeout,
    Unavailable,
)

S = BreakerState


def fail_n(breaker: CircuitBreaker, n: int, error: BaseException | None = None) -> None:
    for _ in range(n):
        breaker.record(breaker.acquire(), error or Timeout("no reply"))


class BreakerTransitionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.changes: list[tuple[S, S]] = []
        self.breaker = CircuitBreaker(
            "inventory", self.clock, on_change=lambda b, old, new: self.changes.append((old, new))
        )

    def test_closed_to_open_after_five_consecutive_failures(self) -> None:
        fail_n(self.breaker, 4)
        self.assertIs(self.breaker.state, S.CLOSED)
        fail_n(self.breaker, 1, TargetExited("gone"))
        self.assertIs(self.breaker.state, S.OPEN)
        self.assertEqual(self.changes, [(S.CLOSED, S.OPEN)])
        self.assertEqual(self.breaker.last_failure, "target_exited: gone")

    def test_a_success_resets_the_consecutive_count(self) -> None:
        fail_n(self.breaker, 4)
        self.breaker.record(self.breaker.acquire(), None)
        fail_n(self.breaker, 4)
        self.assertIs(self.breaker.state, S.CLOSED)

    def test_handler_errors_are_answers_not_failures(self) -> None:
        fail_n(self.breaker, 10, HandlerError("boom"))
        fail_n(self.breaker, 10, RemoteError("none left", kind="out_of_stock"))
        self.assertIs(self.breaker.state, S.CLOSED)

    def test_channel_errors_and_cancellations_do_not_count(self) -> None:
        fail_n(self.breaker, 10, ChannelError("queue full"))
        self.assertIs(self.breaker.state, S.CLOSED)

    def test_open_fails_fast_until_the_reset_timeout(self) -> None:
        fail_n(self.breaker, 5)
        self.clock.advance(9.9)
        error = self.assertRaises(CircuitOpen, self.breaker.acquire)
        self.assertEqual((error.kind, error.target), ("circuit_open", "inventory"))
        self.assertAlmostEqual(error.retry_after or 0, 0.1)
        self.assertIsInstance(error, RemoteError)
        self.assertEqual(self.breaker.rejected, 1)

    def test_half_open_lets_one_probe_through(self) -> None:
        fail_n(self.breaker, 5)
        self.clock.advance(10)
        self.assertIs(self.breaker.state, S.HALF_OPEN)
        probe = self.breaker.acquire()
        self.assertTrue(probe[1])
        self.assertRaises(CircuitOpen, self.breaker.acquire)

    def test_probe_success_closes(self) -> None:
        fail_n(self.breaker, 5)
        self.clock.advance(10)
        self.breaker.record(self.breaker.acquire(), None)
        self.assertIs(self.breaker.state, S.CLOSED)
        self.assertEqual(
            self.changes, [(S.CLOSED, S.OPEN), (S.OPEN, S.HALF_OPEN), (S.HALF_OPEN, S.CLOSED)]
        )
        self.assertEqual(self.breaker.reset_delay, 10)

    def test_probe_failure_reopens_with_doubling_reset_up_to_the_max(self) -> None:
        fail_n(self.breaker, 5)
        delays = []
        for _ in range(5):
            self.clock.advance(self.breaker.reset_delay)
            self.breaker.record(self.breaker.acquire(), Unavailable("stopping"))
            self.assertIs(self.breaker.state, S.OPEN)
            delays.append(self.breaker.reset_delay)
        self.assertEqual(delays, [20, 40, 60, 60, 60])
        self.clock.advance(59)
        self.assertIs(self.breaker.state, S.OPEN)
        self.clock.advance(1)
        self.breaker.record(self.breaker.acquire(), None)
        self.assertIs(self.breaker.state, S.CLOSED)
        self.assertEqual(self.breaker.reset_delay, 10)

    def test_cancelled_probe_frees_the_slot(self) -> None:
        fail_n(self.breaker, 5)
        self.clock.advance(10)
        self.breaker.released(self.breaker.acquire())
        self.assertTrue(self.breaker.acquire()[1])

    def test_late_outcomes_of_an_earlier_state_are_ignored(self) -> None:
        early = self.breaker.acquire()
        fail_n(self.breaker, 5)
        self.breaker.record(early, None)  # a slow reply from before it opened
        self.assertIs(self.breaker.state, S.OPEN)

    def test_opens_on_error_rate_over_the_window(self) -> None:
        breaker = CircuitBreaker("x", self.clock, BreakerPolicy(failures=100))
        for i in range(20):
            breaker.record(breaker.acquire(), Timeout("t") if i % 2 else None)
            self.clock.advance(0.1)
        self.assertIs(breaker.state, S.OPEN)

    def test_error_rate_needs_min_calls(self) -> None:
        breaker = CircuitBreaker("x", self.clock, BreakerPolicy(failures=100))
        for i in range(19):
            breaker.record(breaker.acquire(), Timeout("t") if i % 2 else None)
        self.assertIs(breaker.state, S.CLOSED)

    def test_old_calls_leave_the_error_rate_window(self) -> None:
        breaker = CircuitBreaker("x", self.clock, BreakerPolicy(failures=100))
        for _ in range(15):
            breaker.record(breaker.acquire(), Timeout("t"))
        self.clock.advance(12)
        for _ in range(10):
            breaker.record(breaker.acquire(), None)
        breaker.record(breaker.acquire(), Timeout("t"))
        self.assertIs(breaker.state, S.CLOSED)

    def test_successes_in_the_window_count_in_the_rate(self) -> None:
        """
        Successes (tallied without summing the window) weigh in the error rate while in
        the window, across its buckets, and not once they left it.
        """
        breaker = CircuitBreaker("x", self.clock, BreakerPolicy(failures=100))
        for _ in range(15):
            breaker.record(breaker.acquire(), None)
            self.clock.advance(0.3)
        for _ in range(14):
            breaker.record(breaker.acquire(), Timeout("t"))
        self.assertIs(breaker.state, S.CLOSED)  # 14 of 29
        breaker.record(breaker.acquire(), Timeout("t"))
        self.assertIs(breaker.state, S.OPEN)  # 15 of 30

        later = CircuitBreaker("y", self.clock, BreakerPolicy(failures=100))
        for _ in range(30):
            later.record(later.acquire(), None)
            self.clock.advance(0.3)
        self.clock.advance(12)  # every success left the window
        for _ in range(20):
            later.record(later.acquire(), Timeout("t"))
        self.assertIs(later.state, S.OPEN)
        self.assertLessEqual(len(later._buckets), 11)

    def test_success_counted_at_the_given_now(self) -> None:
        """
        A success reported with C{now} (the caller read the clock already) is counted
        in the window at that time, not at the clock's.
        """
        self.clock.advance(100)
        for now, expected in ((85.0, S.OPEN), (None, S.CLOSED)):
            breaker = CircuitBreaker("x", self.clock, BreakerPolicy(failures=100))
            for _ in range(30):  # 15 s ago (out of the 10 s window), or now
                breaker.succeeded(breaker.acquire(), now)
            for _ in range(20):
                breaker.record(breaker.acquire(), Timeout("t"))
            self.assertIs(breaker.state, expected, now)

    def test_policy_validation(self) -> None:
        self.assertRaises(ValueError, BreakerPolicy, failures=0)
        self.assertRaises(ValueError, BreakerPolicy, error_rate=1.5)
        self.assertRaises(ValueError, BreakerPolicy, reset=30, max_reset=10)

    def test_custom_failure_kinds(self) -> None:
        breaker = CircuitBreaker(
            "x", self.clock, BreakerPolicy(failures=2, failure_kinds={"overloaded"})
        )
        fail_n(breaker, 2, RemoteError("busy", kind="overloaded"))
        self.assertIs(breaker.state, S.OPEN)

    def test_snapshot(self) -> None:
        fail_n(self.breaker, 5)
        snap = self.breaker.snapshot()
        self.assertEqual((snap["state"], snap["retry_after"], snap["opened"]), ("open", 10.0, 1))


class BreakersTests(SynchronousTestCase):
    def test_one_breaker_per_target_with_its_policy(self) -> None:
        breakers = Breakers(Clock())
        breakers.set_policy("db-main", BreakerPolicy(failures=1))
        self.assertIs(breakers.get("a"), breakers.get("a"))
        fail_n(breakers.get("db-main"), 1)
        self.assertIs(breakers.get("db-main").state, S.OPEN)
        self.assertIs(breakers.get("a").state, S.CLOSED)

    def test_bounded_keeping_open_breakers(self) -> None:
        breakers = Breakers(Clock(), max_targets=2)
        fail_n(breakers.get("bad"), 5)
        breakers.get("b")
        breakers.get("c")
        self.assertEqual(len(breakers), 2)
        self.assertIn("bad", breakers.snapshot())
        self.assertIs(breakers.get("bad").state, S.OPEN)

    def test_metrics(self) -> None:
        breakers = Breakers(Clock())
        fail_n(breakers.get("bad"), 5)
        self.assertRaises(CircuitOpen, breakers.get("bad").acquire)
        families = {f.name: f for f in breakers.collect()}
        state = families["pywatt_circuit_state"].samples[0]
        self.assertEqual((state.labels, state.value), ({"target": "bad"}, 2))
        self.assertEqual(families["pywatt_circuit_rejected"].samples[0].value, 1)


class RetryPolicyTests(SynchronousTestCase):
    def test_exponential_backoff_with_jitter(self) -> None:
        policy = RetryPolicy(backoff=0.1, multiplier=2, max_backoff=0.3, jitter=0.5)
        self.assertEqual([policy.delay(n, lambda: 0.0) for n in (1, 2, 3)], [0.1, 0.2, 0.3])
        self.assertAlmostEqual(policy.delay(1, lambda: 1.0), 0.05)

    def test_retries_only_the_listed_errors(self) -> None:
        policy = RetryPolicy()
        self.assertTrue(policy.retries(Timeout("t")))
        self.assertTrue(policy.retries(Unavailable("u")))
        self.assertFalse(policy.retries(HandlerError("h")))
        self.assertFalse(policy.retries(CircuitOpen("c")))
        self.assertTrue(RetryPolicy(on=(HandlerError,)).retries(HandlerError("h")))

    def test_attempt_timeout_shares_the_deadline(self) -> None:
        self.assertEqual(RetryPolicy().timeout_for(9.0, 3), 3.0)
        self.assertEqual(RetryPolicy(attempt_timeout=1).timeout_for(9.0, 3), 1.0)
        self.assertEqual(RetryPolicy(attempt_timeout=5).timeout_for(2.0, 3), 2.0)

    def test_validation(self) -> None:
        self.assertRaises(ValueError, RetryPolicy, attempts=0)
        self.assertRaises(ValueError, RetryPolicy, jitter=2)
        self.assertRaises(TypeError, RetryPolicy, on=("Timeout",))
