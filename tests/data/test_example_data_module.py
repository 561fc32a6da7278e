"""
The data example module (C{examples/data_module}) runs under the fake orchestrator with
its database and cache coming from secrets.
"""

from __future__ import annotations

import json

from examples.data_module.module import create_app
from twisted.trial.unittest import TestCase

from pywatt_twisted.testing import FakeOrchestrator


class DataModuleExampleTests(TestCase):
    async def test_items(self) -> None:
        orch = FakeOrchestrator(
            secrets={"DATABASE_URL": "sqlite://:memory:", "CACHE_URL": "memory://"}
        )
        module = await orch.start(create_app)
        data = module.state.user_state
        self.addCleanup(data.db.close)

        async def call(method: str, path: str, body: object = None) -> tuple[int, object]:
            kw = {} if body is None else {"body": json.dumps(body).encode()}
            response = await module.request(method, path, **kw)
            return response.code, json.loads(response.body)

        self.assertEqual(await call("GET", "/items"), (200, []))
        self.assertEqual((await call("POST", "/items", {"name": "bolt", "qty": 2}))[0], 201)
        self.assertEqual(await call("GET", "/items"), (200, [{"name": "bolt", "qty": 2}]))
        self.assertEqual(await call("POST", "/items/bolt/take"), (200, {"took": "bolt", "left": 1}))
        self.assertEqual(await call("GET", "/items"), (200, [{"name": "bolt", "qty": 1}]))
        code, health = await call("GET", "/data/health")
        self.assertEqual((code, health["dialect"]), (200, "sqlite"))
