"""
Versioned modules (C{@pywatt_module(version="v1")}): every route but the built-ins is
served and announced under the prefix.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pywatt_twisted import AnnouncedEndpoint, pywatt_module
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.web._version import check_version, prefixed
from tests.web._apps import direct_exchange, parse_response


def klein_app(state: Any) -> Any:
    app = Klein()

    @app.route("/", methods=["GET"])
    def root(request: Any) -> Any:
        return {"root": True}

    @app.route("/items/<int:item_id>", methods=["GET"])
    def item(request: Any, item_id: int) -> Any:
        return {
            "id": item_id,
            "url": request.getComponent(_klein_request()).url_for("item", {"item_id": item_id}),
        }

    @app.route("/health", methods=["POST"])
    def user_health(request: Any) -> bytes:
        return b"the app's own POST /health"

    return app


def _klein_request() -> Any:
    from klein.interfaces import IKleinRequest

    return IKleinRequest


class VersionTests(SynchronousTestCase):
    def start(self, create_app: Any = klein_app, **kwargs: Any) -> tuple[FakeOrchestrator, Any]:
        orchestrator = FakeOrchestrator()
        definition = pywatt_module(**{"version": "v1", **kwargs})(create_app)
        module = self.successResultOf(orchestrator.start(definition))
        return orchestrator, module

    def get(self, module: Any, path: str, method: str = "GET") -> Any:
        return self.successResultOf(module.request(method, path))

    def test_routes_served_under_the_prefix(self) -> None:
        _, module = self.start()
        response = self.get(module, "/v1/items/7")
        self.assertEqual(response.code, 200)
        # Klein sees /v1 as the script name: url_for builds the prefixed URL.
        self.assertEqual(response.json(), {"id": 7, "url": "/v1/items/7"})
        self.assertEqual(self.get(module, "/v1").json(), {"root": True})
        self.assertEqual(self.get(module, "/v1/").json(), {"root": True})
        self.assertEqual(self.get(module, "/v1/nowhere").code, 404)

    def test_unprefixed_paths_are_404_with_a_hint(self) -> None:
        _, module = self.start()
        for path in ("/items/7", "/", "/v2/items/7", "/v1x/items/7"):
            response = self.get(module, path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.json()["error"]["kind"], "not_found")
            self.assertIn("/v1/", response.json()["error"]["message"])

    def test_builtins_stay_unprefixed(self) -> None:
        _, module = self.start()
        self.assertEqual(self.get(module, "/health").json()["status"], "ok")
        self.assertEqual(self.get(module, "/metrics").code, 200)
        self.assertEqual(self.get(module, "/v1/health").code, 405)  # the app's POST only
        self.assertEqual(self.get(module, "/v1/health", "POST").body, b"the app's own POST /health")

    def test_direct_http_too(self) -> None:
        _, module = self.start()
        raw = b"GET /v1/items/3 HTTP/1.1\r\nHost: x\r\n\r\n"
        transport, _ = direct_exchange(module.service.site, raw)
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, body), (200, b'{"id":3,"url":"/v1/items/3"}'))

    def test_announced_prefixed(self) -> None:
        orchestrator, _ = self.start()
        assert orchestrator.announcement is not None
        announced = [(e.path, e.methods) for e in orchestrator.announcement.endpoints]
        self.assertEqual(
            announced,
            [
                ("/v1", ("GET",)),
                ("/v1/health", ("POST",)),
                ("/v1/items/:item_id", ("GET",)),
                ("/health", ("GET",)),
                ("/metrics", ("GET",)),
            ],
        )

    def test_custom_health_path_and_no_metrics(self) -> None:
        orchestrator, module = self.start(health="/status", metrics=False)
        assert orchestrator.announcement is not None
        paths = [e.path for e in orchestrator.announcement.endpoints]
        self.assertIn("/status", paths)
        self.assertIn("/v1/health", paths)
        self.assertNotIn("/metrics", paths)
        self.assertEqual(self.get(module, "/status").code, 200)

    def test_explicit_endpoints_are_prefixed(self) -> None:
        class Tree(Resource):
            pass

        def create_app(state: Any) -> Any:
            root = Tree()
            leaf = Resource()
            leaf.isLeaf = True
            leaf.render_GET = lambda request: b"tree"  # type: ignore[attr-defined]
            root.putChild(b"tree", leaf)
            return root

        orchestrator, module = self.start(
            create_app, endpoints=[AnnouncedEndpoint(path="/tree", methods=["GET"])]
        )
        assert orchestrator.announcement is not None
        paths = [e.path for e in orchestrator.announcement.endpoints]
        self.assertEqual(paths, ["/v1/tree", "/health", "/metrics"])
        self.assertEqual(self.get(module, "/v1/tree").body, b"tree")
        self.assertEqual(self.get(module, "/tree").code, 404)

    def test_metrics_label_is_the_announced_path(self) -> None:
        _, module = self.start()
        self.get(module, "/v1/items/3")
        self.get(module, "/items/3")
        text = module.service.metrics.render().decode()
        self.assertIn('route="/v1/items/:item_id"', text)
        self.assertNotIn('route="/items/:item_id"', text)

    def test_version_checked_at_decoration(self) -> None:
        self.assertEqual(check_version("/v2"), "v2")
        self.assertIsNone(check_version(None))
        for bad in ("", "/", "v1/beta", "v 1", "..", 1):
            with self.assertRaises(ConfigurationError, msg=repr(bad)):
                pywatt_module(version=bad)  # type: ignore[arg-type]

    def test_prefixed(self) -> None:
        self.assertEqual(prefixed("v1", "/"), "/v1")
        self.assertEqual(prefixed("v1", "/a/:b"), "/v1/a/:b")
        self.assertEqual(prefixed(None, "/a"), "/a")
