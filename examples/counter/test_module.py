"""
The counter module's own tests, written with FakeOrchestrator: in memory, no process, no
network. Copy this file as the starting point for your module's tests.

    trial examples.counter.test_module
"""

from twisted.trial.unittest import SynchronousTestCase

from examples.counter.module import create_app
from pywatt_twisted.testing import FakeOrchestrator


class CounterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orch = FakeOrchestrator(secrets={"API_KEY": "k1"}, env={"COUNTER_START": "5"})
        self.module = self.successResultOf(self.orch.start(create_app))

    def test_announces_its_routes(self) -> None:
        paths = {e.path: e.methods for e in self.orch.announcement.endpoints}
        self.assertEqual(paths["/count"], ("GET", "POST"))
        self.assertIn("/hello/:name", paths)

    def test_count_starts_from_env(self) -> None:
        response = self.successResultOf(self.module.request("GET", "/count"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json(), {"count": 5, "module": "test-module"})

    def test_post_needs_the_api_key(self) -> None:
        response = self.successResultOf(self.module.request("POST", "/count", json_body={"by": 2}))
        self.assertEqual(response.code, 401)
        response = self.successResultOf(
            self.module.request("POST", "/count", headers={"x-api-key": "k1"}, json_body={"by": 2})
        )
        self.assertEqual(response.json(), {"count": 7})

    def test_bad_body(self) -> None:
        response = self.successResultOf(
            self.module.request("POST", "/count", headers={"x-api-key": "k1"}, body="not json")
        )
        self.assertEqual(response.code, 400)

    def test_rotation_switches_the_key(self) -> None:
        ack = self.successResultOf(self.orch.rotate({"API_KEY": "k2"}))
        self.assertEqual(ack.status, "success")
        old = self.successResultOf(
            self.module.request("POST", "/count", headers={"x-api-key": "k1"})
        )
        new = self.successResultOf(
            self.module.request("POST", "/count", headers={"x-api-key": "k2"})
        )
        self.assertEqual((old.code, new.code), (401, 200))

    def test_async_route(self) -> None:
        d = self.module.request("GET", "/hello/ada")
        self.orch.reactor.advance(0)  # the route waits one tick on the module's reactor
        self.assertEqual(self.successResultOf(d).json(), {"hello": "ada", "from": "test-module"})
