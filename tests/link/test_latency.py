"""
Tests for L{pywatt_twisted.link._latency}: EWMA and the bounded percentile reservoir.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.link._latency import LatencyTracker


class LatencyTrackerTests(SynchronousTestCase):
    def test_first_sample_is_the_average(self) -> None:
        t = LatencyTracker(Clock(), alpha=0.5)
        self.assertIsNone(t.ewma)
        t.record(0.010)
        self.assertEqual(t.ewma, 0.010)

    def test_ewma_weights_the_newest_sample(self) -> None:
        t = LatencyTracker(Clock(), alpha=0.5)
        t.record(0.010)
        t.record(0.020)
        self.assertAlmostEqual(t.ewma or 0, 0.015)
        t.record(0.020)
        self.assertAlmostEqual(t.ewma or 0, 0.0175)

    def test_bad_samples_are_ignored(self) -> None:
        t = LatencyTracker(Clock())
        t.record(-1.0)
        t.record(float("nan"))
        t.record(float("inf"))
        self.assertEqual((t.ewma, t.count), (None, 0))

    def test_percentiles_nearest_rank(self) -> None:
        t = LatencyTracker(Clock())
        for ms in range(1, 101):
            t.record(ms / 1000)
        self.assertEqual(t.percentiles(), {"p50": 0.050, "p90": 0.090, "p99": 0.099})

    def test_reservoir_is_bounded(self) -> None:
        t = LatencyTracker(Clock(), size=4)
        for ms in range(1, 11):
            t.record(ms / 1000)
        self.assertEqual(sorted(t.recent()), [0.007, 0.008, 0.009, 0.010])
        self.assertEqual(t.count, 10)

    def test_old_samples_leave_the_window(self) -> None:
        clock = Clock()
        t = LatencyTracker(clock, window=10)
        t.record(1.0)
        clock.advance(5)
        t.record(0.001)
        clock.advance(6)
        self.assertEqual(t.percentiles(), {"p50": 0.001, "p90": 0.001, "p99": 0.001})
        clock.advance(10)
        self.assertEqual(t.percentiles(), {})
        snap = t.snapshot()
        self.assertEqual((snap["samples"], snap["recent"]), (2, 0))

    def test_snapshot_in_milliseconds(self) -> None:
        t = LatencyTracker(Clock())
        t.record(0.0025)
        self.assertEqual(
            t.snapshot(),
            {
                "ewma_ms": 2.5,
                "samples": 1,
                "recent": 1,
                "p50_ms": 2.5,
                "p90_ms": 2.5,
                "p99_ms": 2.5,
            },
        )

    def test_rejects_bad_parameters(self) -> None:
        for kwargs in ({"alpha": 0}, {"alpha": 1.5}, {"size": 0}, {"window": 0}):
            self.assertRaises(ValueError, LatencyTracker, Clock(), **kwargs)

    @given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=50))
    def test_percentiles_are_samples_in_order(self, samples: list[float]) -> None:
        t = LatencyTracker(Clock(), size=16)
        for s in samples:
            t.record(s)
        p = t.percentiles()
        kept = t.recent()
        self.assertLessEqual(len(kept), 16)
        self.assertIn(p["p50"], kept)
        self.assertLessEqual(p["p50"], p["p90"])
        self.assertLessEqual(p["p90"], p["p99"])
        self.assertGreaterEqual(t.ewma or 0, min(samples) - 1e-9)
        self.assertLessEqual(t.ewma or 0, max(samples) + 1e-9)

    @given(
        st.integers(min_value=1, max_value=8),
        st.lists(
            st.lists(
                st.one_of(
                    st.floats(min_value=0, max_value=10),
                    st.sampled_from([-1.0, float("nan"), float("inf")]),
                ),
                max_size=20,
            ),
            max_size=6,
        ),
    )
    def test_record_many_is_record_in_order(self, size: int, batches: list[list[float]]) -> None:
        """
        L{LatencyTracker.record_many} leaves the tracker as L{LatencyTracker.record} of
        each sample in order does: the average, the counts and the reservoir, slot for
        slot (batches longer than the reservoir, partly filled ones, bad samples).
        """
        one, many = LatencyTracker(Clock(), size=size), LatencyTracker(Clock(), size=size)
        at = 0.0
        for batch in batches:
            times = [at + i for i in range(len(batch))]
            at += len(batch)
            for seconds, now in zip(batch, times, strict=True):
                one.record(seconds, now)
            many.record_many(batch, times)
            self.assertEqual(
                (many.ewma, many.count, many.last_at, many._values, many._times, many._next),
                (one.ewma, one.count, one.last_at, one._values, one._times, one._next),
            )
