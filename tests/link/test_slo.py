"""
L{SloMonitor}: windows, rates, availability, alerts firing once and clearing, on a
L{Clock}; its metrics parsed from the text format.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.link import _slo
from pywatt_twisted.link._slo import (
    CHANNEL_DOWN,
    ERROR_RATE,
    LATENCY_P99,
    Alert,
    SloMonitor,
    SloThresholds,
)


class Collect:
    def __init__(self, produce):  # type: ignore[no-untyped-def]
        self.collect = produce


class SloMonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.alerts: list[Alert] = []
        self.monitor = SloMonitor(
            self.clock,
            SloThresholds(
                latency_p99=0.5, error_rate=0.1, channel_down=10, window=60, min_samples=10
            ),
            on_alert=self.alerts.append,
        )

    def test_error_rate_fires_once_and_clears(self) -> None:
        for _ in range(9):
            self.monitor.observe("target", "orders", "ok", 0.01)
        self.monitor.observe("target", "orders", "timeout", 2.0)
        self.assertEqual(self.alerts, [])  # 10 % is not above 10 %
        self.monitor.observe("target", "orders", "error", 0.01)
        [alert] = self.alerts
        self.assertEqual(
            (alert.kind, alert.path_kind, alert.name, alert.firing),
            (ERROR_RATE, "target", "orders", True),
        )
        self.assertAlmostEqual(alert.value, 2 / 11)
        self.assertIn("FIRING error_rate on target orders: error rate 18.2%", alert.summary)
        # still failing: no second alert
        self.monitor.observe("target", "orders", "error", 0.01)
        self.assertEqual(len(self.alerts), 1)
        snap = self.monitor.snapshot("target", "orders")
        self.assertEqual((snap["requests"], snap["errors"], snap["timeouts"]), (12, 2, 1))
        self.assertEqual(snap["availability"], round(9 / 12, 4))
        self.assertEqual(snap["alerts"], [ERROR_RATE])
        # the window slides past the failures: cleared on the next tick
        self.clock.advance(61)
        self.monitor.tick()
        self.assertEqual(
            [(a.kind, a.firing) for a in self.alerts], [(ERROR_RATE, True), (ERROR_RATE, False)]
        )
        self.assertEqual(self.monitor.snapshot("target", "orders")["availability"], None)

    def test_latency_p99_on_tick(self) -> None:
        for _ in range(20):
            self.monitor.observe("channel", "tcp", "ok", 0.9)
        self.assertEqual(self.alerts, [])  # percentiles are read on the tick
        self.monitor.tick()
        [alert] = self.alerts
        self.assertEqual((alert.kind, alert.firing, alert.value), (LATENCY_P99, True, 0.9))
        self.clock.advance(61)
        for _ in range(20):
            self.monitor.observe("channel", "tcp", "ok", 0.01)
        self.monitor.tick()
        self.assertEqual(self.alerts[-1].kind, LATENCY_P99)
        self.assertFalse(self.alerts[-1].firing)

    def test_too_few_samples_never_fire(self) -> None:
        for _ in range(5):
            self.monitor.observe("target", "x", "error", 3.0)
        self.monitor.tick()
        self.assertEqual(self.alerts, [])

    def test_channel_down_for_n_seconds(self) -> None:
        self.monitor.channel_up("tcp", False)
        self.clock.advance(9.9)
        self.monitor.tick()
        self.assertEqual(self.alerts, [])
        self.clock.advance(0.1)
        self.monitor.tick()
        [alert] = self.alerts
        self.assertEqual((alert.kind, alert.name, alert.firing), (CHANNEL_DOWN, "tcp", True))
        self.monitor.channel_up("tcp", False)  # still down: same outage
        self.monitor.channel_up("tcp", True)
        self.assertEqual(
            [(a.kind, a.firing) for a in self.alerts], [(CHANNEL_DOWN, True), (CHANNEL_DOWN, False)]
        )

    def test_callback_errors_are_logged_not_raised(self) -> None:
        def boom(alert: Alert) -> None:
            raise RuntimeError("callback bug")

        monitor = SloMonitor(self.clock, SloThresholds(channel_down=1), on_alert=boom)
        monitor.channel_up("ipc", False)
        self.clock.advance(1)
        monitor.tick()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(monitor.alerts_total[CHANNEL_DOWN], 1)

    def test_bounded_paths_and_samples(self) -> None:
        monitor = SloMonitor(self.clock, max_samples=5, max_paths=2)
        for i in range(4):
            monitor.observe("target", f"m{i}", "ok", 0.01)
        self.assertEqual(set(monitor.health()["paths"]), {"target:m0", "target:m1", "target:other"})
        for _ in range(50):
            monitor.observe("target", "m0", "error", 0.01)
        self.assertEqual(monitor.snapshot("target", "m0")["requests"], 5)

    def test_off_thresholds_and_bad_values(self) -> None:
        monitor = SloMonitor(
            self.clock,
            SloThresholds(latency_p99=0, error_rate=None, channel_down=0, min_samples=1),
            on_alert=self.alerts.append,
        )
        monitor.observe("target", "x", "error", 99.0)
        monitor.channel_up("tcp", False)
        self.clock.advance(1000)
        monitor.tick()
        self.assertEqual(self.alerts, [])
        self.assertRaises(ValueError, SloThresholds, error_rate=2)
        self.assertRaises(ValueError, SloThresholds, window=0)
        self.assertRaises(ValueError, monitor.observe, "target", "x", "weird", 1.0)

    def test_metrics(self) -> None:
        for outcome in ("ok",) * 8 + ("error", "timeout"):
            self.monitor.observe("target", "orders", outcome, 0.02)
        self.monitor.channel_up("tcp", False)
        self.clock.advance(10)
        self.monitor.tick()
        registry = CollectorRegistry()
        registry.register(Collect(self.monitor.collect))  # type: ignore[arg-type]
        text = generate_latest(registry).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        alerts = {
            s.labels["kind"]: s.value
            for s in families["pywatt_alerts"].samples
            if s.name == "pywatt_alerts_total"
        }
        self.assertEqual(alerts, {LATENCY_P99: 0.0, ERROR_RATE: 1.0, CHANNEL_DOWN: 1.0})
        [avail] = families["pywatt_slo_availability"].samples
        self.assertEqual((avail.labels, avail.value), ({"kind": "target", "name": "orders"}, 0.8))
        count = [
            s for s in families["pywatt_round_trip_seconds"].samples if s.name.endswith("_count")
        ]
        self.assertEqual([c.value for c in count], [10.0])
        trips = {
            s.labels["outcome"]: s.value
            for s in families["pywatt_round_trips"].samples
            if s.name.endswith("_total")
        }
        self.assertEqual(trips, {"ok": 8.0, "error": 1.0, "timeout": 1.0})


def _observe_at_once(
    monitor: SloMonitor, kind: str, name: str, outcome: str, seconds: float
) -> None:
    """
    What L{SloMonitor.observe} did before it kept C{ok} round trips aside: each one
    added to the window, the latencies and the histogram at once, then the checks.
    """
    path = monitor._path(kind, name)
    now = monitor.clock.seconds()
    path.observe(now, outcome, seconds)
    if path.active or path.down_since is not None:
        monitor._evaluate(kind, name, path, latency=False)
    else:
        monitor._check_error_rate(kind, name, path, now)
    if monitor._call is None:
        monitor._schedule()


_steps = st.lists(
    st.tuples(
        st.sampled_from(["ok"] * 12 + ["error", "timeout", "down", "up", "tick"]),
        st.sampled_from(["tcp", "tcp", "ipc"]),
        st.one_of(
            st.floats(min_value=0, max_value=2),
            st.sampled_from([-1.0, 45.0, float("nan"), float("inf")]),
        ),
        st.sampled_from([0.0, 0.0, 0.0, 0.5, 7.0]),
    ),
    min_size=10,
    max_size=80,
)


class FoldTests(SynchronousTestCase):
    """
    The C{ok} round trips a path keeps aside (L{_slo.FOLD_EVERY} at most) end up where
    observing each at once put them.
    """

    def setUp(self) -> None:
        self.patch(_slo, "FOLD_EVERY", 5)

    def _monitor(self, alerts: list[Alert], max_paths: int = 256) -> SloMonitor:
        return SloMonitor(
            Clock(),
            SloThresholds(
                latency_p99=0.5, error_rate=0.2, channel_down=3, window=10, min_samples=4
            ),
            on_alert=alerts.append,
            max_samples=4,  # (fewer than FOLD_EVERY: a fold may drop some of its own)
            max_paths=max_paths,
        )

    def _state(self, monitor: SloMonitor) -> list[object]:
        out: list[object] = [_exposition(monitor), monitor.health()]
        for key, path in sorted(monitor._paths.items()):
            path.fold()
            t = path.latency
            out.append((key, list(path.outcomes), path.counts, path.totals, path.buckets, path.sum))
            out.append((t.ewma, t.count, t.last_at, t._values, t._times, t._next))
        return out

    @given(_steps)
    def test_same_as_observing_at_once(self, steps: list[tuple[str, str, float, float]]) -> None:
        folded: list[Alert] = []
        at_once: list[Alert] = []
        a, b = self._monitor(folded), self._monitor(at_once)
        for what, name, seconds, later in steps:
            for monitor in (a, b):
                monitor.clock.advance(later)  # type: ignore[attr-defined]
                if what in ("down", "up"):
                    monitor.channel_up(name, what == "up")
                elif what == "tick":
                    monitor.tick()
                elif monitor is a:
                    monitor.observe("channel", name, what, seconds)
                else:
                    _observe_at_once(monitor, "channel", name, what, seconds)
            self.assertEqual(folded, at_once)
        self.assertEqual(self._state(a), self._state(b))

    def test_bounded(self) -> None:
        """
        At most L{_slo.FOLD_EVERY} round trips wait: the next one folds them.
        """
        monitor = self._monitor([])
        for _ in range(5):  # (the first one makes the path)
            monitor.observe("target", "orders", "ok", 0.01)
        path = monitor._paths[("target", "orders")]
        self.assertEqual((len(path.pending_times), len(path.outcomes)), (4, 1))
        monitor.observe("target", "orders", "ok", 0.01)
        self.assertEqual((len(path.pending_times), len(path.outcomes)), (0, 4))
        for _ in range(20):  # more than max_samples (4): the oldest leave the window
            monitor.observe("target", "orders", "ok", 0.01)
        snapshot = monitor.snapshot("target", "orders")
        self.assertEqual((snapshot["requests"], path.totals["ok"]), (4, 26))


def _exposition(monitor: SloMonitor) -> str:
    registry = CollectorRegistry()
    registry.register(Collect(monitor.collect))  # type: ignore[arg-type]
    return generate_latest(registry).decode()
