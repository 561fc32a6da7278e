"""
The stock module's tests: FakeOrchestrator provides an SQLite database and a memory
cache under the names the module asks for, in memory.

    trial examples.proxied.test_module
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from examples.proxied.module import create_app
from pywatt_twisted.data import Database, MemoryCache
from pywatt_twisted.errors import BootstrapError, UnknownService
from pywatt_twisted.testing import FakeOrchestrator


class StockTests(TestCase):
    async def start(self, **services: Any) -> Any:
        db = Database.from_url(f"sqlite:///{self.mktemp()}.db")
        self.addCleanup(db.close)
        orch = FakeOrchestrator(
            reactor=reactor,
            services=services or {"db-main": db, "cache-main": MemoryCache()},
        )
        self.orch = orch
        module = await orch.start(create_app)
        self.addCleanup(orch.shutdown)
        return module

    async def test_put_get_take(self) -> None:
        module = await self.start()
        self.assertEqual((await module.request("GET", "/stock/A1")).code, 404)
        put = await module.request("PUT", "/stock/A1?qty=1")
        self.assertEqual(put.json(), {"sku": "A1", "qty": 1})
        self.assertEqual((await module.request("GET", "/stock/A1")).json()["qty"], 1)
        taken = await module.request("POST", "/stock/A1/take")
        self.assertEqual(taken.json(), {"sku": "A1", "qty": 0})
        self.assertEqual((await module.request("GET", "/stock/A1")).json()["qty"], 0)
        self.assertEqual((await module.request("POST", "/stock/A1/take")).code, 409)
        # everything went through the orchestrator's end
        self.assertGreater(self.orch.services.operations["db-main"], 5)
        self.assertGreater(self.orch.services.operations["cache-main"], 3)

    async def test_missing_service_fails_start_up(self) -> None:
        db = Database.from_url("sqlite://")
        self.addCleanup(db.close)
        orch = FakeOrchestrator(reactor=reactor, services={"db-main": db})
        with self.assertRaises((BootstrapError, UnknownService)) as c:
            await orch.start(create_app)
        self.assertIn("cache-main", str(c.exception))
        self.assertIn("db-main (Database)", str(c.exception))
