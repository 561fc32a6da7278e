"""
Tests for the routing rules of the C{pywatt dev} front port.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev.front import allowed_methods, endpoint_matches
from pywatt_twisted._dev.orchestrator import module_ids
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire.messages import Endpoint


class MatchTests(SynchronousTestCase):
    def test_literal_and_params(self) -> None:
        self.assertTrue(endpoint_matches("/count", "/count"))
        self.assertTrue(endpoint_matches("/items/:id", "/items/7"))
        self.assertFalse(endpoint_matches("/items/:id", "/items"))
        self.assertFalse(endpoint_matches("/items/:id", "/items/"))
        self.assertFalse(endpoint_matches("/items/:id", "/items/7/x"))
        self.assertFalse(endpoint_matches("/count", "/counts"))

    def test_prefixes(self) -> None:
        self.assertTrue(endpoint_matches("/static/*", "/static/a/b.css"))
        self.assertTrue(endpoint_matches("/static/", "/static/a"))
        self.assertFalse(endpoint_matches("/static/*", "/other"))

    def test_allowed_methods(self) -> None:
        endpoints = (
            Endpoint(path="/count", methods=("GET",)),
            Endpoint(path="/count", methods=("POST",)),
            Endpoint(path="/items/:id", methods=("DELETE",)),
        )
        self.assertEqual(allowed_methods(endpoints, "/count"), {"GET", "HEAD", "POST"})
        self.assertEqual(allowed_methods(endpoints, "/items/3"), {"DELETE"})
        self.assertIsNone(allowed_methods(endpoints, "/nope"))


class ModuleIdTests(SynchronousTestCase):
    def test_ids(self) -> None:
        self.assertEqual(
            module_ids(["examples.counter.module", "x=pkg.mod:app", "examples.counter.module"]),
            [
                ("counter", "examples.counter.module"),
                ("x", "pkg.mod:app"),
                ("counter-2", "examples.counter.module"),
            ],
        )
        self.assertEqual(module_ids(["module"]), [("module", "module")])
        self.assertRaises(ConfigurationError, module_ids, ["=pkg"])
