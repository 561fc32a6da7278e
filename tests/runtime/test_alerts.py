"""
Channel and module-to-module SLO alerts through a module run by the FakeOrchestrator on
its memory reactor: a target that errors and times out fires C{state.on_alert}, logs a
line and counts C{pywatt_alerts_total{kind}}, then clears; a channel down for N seconds
fires and clears when it is back.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted.link._slo import Alert
from pywatt_twisted.testing import FakeOrchestrator

CONFIG = RuntimeConfig(
    slo_window=30.0,
    slo_error_rate=0.2,
    slo_latency_p99=0.5,
    slo_channel_down=5.0,
    slo_min_samples=5,
)


class AlertTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.alerts: list[Alert] = []
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

        @pywatt_module
        def app(state: Any) -> Klein:
            state.on_alert(self.alerts.append)
            return Klein()

        self.orch = FakeOrchestrator(module_id="front", channels=("tcp",), config=CONFIG)
        self.module = self.successResultOf(self.orch.start(app))
        self.addCleanup(self.orch.shutdown)

    def call(self, answer: str) -> None:
        d = self.module.state.send_request("inventory", "get_stock", {"sku": "A1"}, timeout=2)
        d.addErrback(lambda _: None)
        if answer == "ok":
            self.orch.reactor.advance(0.01)
            self.orch.answer_routed({"in_stock": 1})
        elif answer == "error":
            self.orch.answer_routed(error=("out_of_stock", "none left"))
        else:
            self.orch.reactor.advance(2)
        self.successResultOf(d)

    def metrics(self) -> dict[str, Any]:
        text = self.successResultOf(self.module.request("GET", "/metrics")).text()
        return {f.name: f for f in text_string_to_metric_families(text)}

    def alerts_total(self) -> dict[str, float]:
        return {
            s.labels["kind"]: s.value
            for s in self.metrics()["pywatt_alerts"].samples
            if s.name == "pywatt_alerts_total"
        }

    def test_target_error_rate_fires_and_clears(self) -> None:
        for _ in range(4):
            self.call("ok")
        self.call("error")
        self.assertEqual(self.alerts, [])  # 1 of 5 is 20 %: not above
        self.call("timeout")
        [alert] = [a for a in self.alerts if a.path_kind == "target"]
        self.assertEqual((alert.kind, alert.name, alert.firing), ("error_rate", "inventory", True))
        # the channel the requests went on has the same window
        self.assertIn(
            ("error_rate", "channel", "tcp", True),
            [(a.kind, a.path_kind, a.name, a.firing) for a in self.alerts],
        )
        self.assertEqual(self.alerts_total()["error_rate"], 2.0)
        warnings = [e for e in self.logged if e.get("alert") == "error_rate"]
        self.assertTrue(warnings)
        health = self.successResultOf(self.module.request("GET", "/health")).json()
        path = health["slo"]["paths"]["target:inventory"]
        self.assertEqual((path["requests"], path["errors"], path["timeouts"]), (6, 1, 1))
        self.assertEqual(path["availability"], round(4 / 6, 4))
        # healthy traffic for a window: cleared
        self.orch.reactor.advance(31)
        cleared = [a for a in self.alerts if not a.firing]
        self.assertEqual(
            sorted((a.path_kind, a.kind) for a in cleared),
            [("channel", "error_rate"), ("target", "error_rate")],
        )
        availability = {
            (s.labels["kind"], s.labels["name"]): s.value
            for s in self.metrics()["pywatt_slo_availability"].samples
        }
        self.assertEqual(availability, {})  # nothing left in the window

    def test_slow_target_fires_latency_p99(self) -> None:
        for _ in range(5):
            d = self.module.state.send_request("inventory", "get_stock", {}, timeout=5)
            self.orch.reactor.advance(0.8)
            self.orch.answer_routed({"in_stock": 1})
            self.successResultOf(d)
        self.orch.reactor.advance(1)  # the percentiles are read on the next tick
        kinds = {(a.kind, a.path_kind, a.firing) for a in self.alerts}
        self.assertIn(("latency_p99", "target", True), kinds)
        hist = self.metrics()["pywatt_round_trip_seconds"]
        [count] = [
            s.value
            for s in hist.samples
            if s.name.endswith("_count") and s.labels == {"kind": "target", "name": "inventory"}
        ]
        self.assertEqual(count, 5.0)

    def test_channel_down_fires_after_n_seconds_and_clears(self) -> None:
        self.orch.drop_channel("tcp", refuse=True)
        self.orch.reactor.advance(4)
        self.assertEqual([a for a in self.alerts if a.kind == "channel_down"], [])
        for _ in range(3):
            self.orch.reactor.advance(1)
        [fired] = [a for a in self.alerts if a.kind == "channel_down"]
        self.assertEqual((fired.name, fired.firing), ("tcp", True))
        self.assertIn("FIRING channel_down on channel tcp", fired.summary)
        self.orch.restore_channel("tcp")
        self.orch.reactor.advance(60)
        self.assertEqual(
            [(a.kind, a.firing) for a in self.alerts if a.kind == "channel_down"],
            [("channel_down", True), ("channel_down", False)],
        )
        self.assertEqual(self.alerts_total()["channel_down"], 1.0)

    def test_callback_that_raises_is_logged(self) -> None:
        def broken(alert: Alert) -> None:
            raise RuntimeError("pager is down")

        self.module.state.on_alert(broken)
        self.orch.drop_channel("tcp", refuse=True)
        self.orch.reactor.advance(10)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(any(a.kind == "channel_down" for a in self.alerts))
