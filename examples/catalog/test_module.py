"""
The catalog module's own tests, written with FakeOrchestrator.

    trial examples.catalog.test_module
"""

from twisted.trial.unittest import SynchronousTestCase

from examples.catalog.module import create_app
from pywatt_twisted.testing import FakeOrchestrator

APP = "http://localhost:5173"


class CatalogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.orchestrator = FakeOrchestrator()
        self.module = self.successResultOf(self.orchestrator.start(create_app))

    def test_routes_are_announced_under_v1(self) -> None:
        announced = {e.path: e.methods for e in self.orchestrator.announcement.endpoints}
        self.assertEqual(announced["/v1/items"], ("GET", "OPTIONS"))
        self.assertEqual(announced["/v1/status"], ("GET", "OPTIONS"))
        self.assertIn("/health", announced)

    def test_the_app_origin_reads_the_list(self) -> None:
        response = self.successResultOf(
            self.module.request("GET", "/v1/items", headers={"origin": APP})
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["access-control-allow-origin"], APP)
        self.assertEqual(response.headers["access-control-allow-credentials"], "true")
        self.assertEqual(response.headers["access-control-expose-headers"], "X-Total-Count")
        self.assertEqual(response.json()[0], {"id": 1, "name": "kettle"})

    def test_preflight_for_delete(self) -> None:
        response = self.successResultOf(
            self.module.request(
                "OPTIONS",
                "/v1/items/2",
                headers={"origin": APP, "access-control-request-method": "DELETE"},
            )
        )
        self.assertEqual(response.code, 204)
        self.assertIn("DELETE", response.headers["access-control-allow-methods"])
        # Answered before the route: the item is still there.
        items = self.successResultOf(self.module.request("GET", "/v1/items")).json()
        self.assertEqual(len(items), 2)

    def test_another_origin_gets_no_cors_headers(self) -> None:
        response = self.successResultOf(
            self.module.request("GET", "/v1/items", headers={"origin": "https://evil.example"})
        )
        self.assertNotIn("access-control-allow-origin", response.headers)

    def test_status_is_public(self) -> None:
        response = self.successResultOf(
            self.module.request("GET", "/v1/status", headers={"origin": "https://any.example"})
        )
        self.assertEqual(response.headers["access-control-allow-origin"], "*")
