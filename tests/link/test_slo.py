"""
L{SloMonitor}: windows, rates, availability, alerts firing once and clearing, on a
L{Clock}; its metrics parsed from the text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

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
