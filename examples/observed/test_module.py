"""
The observed module under the fake orchestrator: its metrics on /metrics, its checks on
/health.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from examples.observed import module
from pywatt_twisted.testing import FakeOrchestrator


class ObservedModuleTests(TestCase):
    async def test_metrics_and_health(self) -> None:
        orch = FakeOrchestrator(reactor=reactor)
        started = await orch.start(module.create_app)
        self.addCleanup(orch.shutdown)
        for region in ("eu", "eu", "us"):
            response = await started.request("POST", "/orders", json_body={"region": region})
            self.assertEqual(response.code, 200)

        text = (await started.request("GET", "/metrics")).text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        totals = {
            s.labels["region"]: s.value
            for s in families["orders_placed"].samples
            if s.name == "orders_placed_total"
        }
        self.assertEqual(totals, {"eu": 2.0, "us": 1.0})
        self.assertEqual(families["orders_waiting"].samples[0].value, 3.0)
        self.assertIn("pywatt_build_info", families)

        health = (await started.request("GET", "/health")).json()
        self.assertEqual(health["status"], "ok")
        names = [c["name"] for c in health["checks"]]
        self.assertEqual(names, ["order-queue", "cache:memory:memory://"])
