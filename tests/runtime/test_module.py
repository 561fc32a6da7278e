"""
Tests for L{pywatt_twisted._runtime.module} and L{pywatt_twisted._runtime.loader}.
"""

from __future__ import annotations

import sys
import types

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import AnnouncedEndpoint, ModuleDefinition, pywatt_module
from pywatt_twisted._runtime.loader import load_module_definition
from pywatt_twisted.errors import ConfigurationError, ModuleLoadError


class DecoratorTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        @pywatt_module()
        def app(state):
            return "app"

        self.assertIsInstance(app, ModuleDefinition)
        self.assertEqual(
            (app.secrets, app.rotate, app.endpoints, app.health, app.metrics),
            ((), True, None, "/health", True),
        )
        self.assertEqual(app("state"), "app")
        self.assertIn("app", app.name)

    def test_bare_decorator(self) -> None:
        @pywatt_module
        def app(state):
            return None

        self.assertIsInstance(app, ModuleDefinition)

    def test_keywords(self) -> None:
        endpoints = [
            AnnouncedEndpoint(path="/x", methods=["GET"]),
            {"path": "/y", "methods": ["POST"]},
        ]

        @pywatt_module(secrets=["A"], rotate=False, endpoints=endpoints, health=None, metrics=False)
        def app(state):
            return None

        self.assertEqual(app.secrets, ("A",))
        self.assertEqual([e.path for e in app.endpoints], ["/x", "/y"])
        self.assertEqual(app.endpoints[0].methods, ("GET",))

    def test_database_secret_is_fetched(self) -> None:
        @pywatt_module(secrets=["A"], models=[], database="DATABASE_URL")
        def app(state):
            return None

        self.assertEqual(app.secrets, ("A", "DATABASE_URL"))

    def test_bad_configuration(self) -> None:
        self.assertRaises(ConfigurationError, pywatt_module(secrets="API_KEY"), lambda s: None)
        self.assertRaises(ConfigurationError, pywatt_module(health="health"), lambda s: None)
        self.assertRaises(ConfigurationError, pywatt_module(endpoints=["/x"]), lambda s: None)
        self.assertRaises(ConfigurationError, pywatt_module, models=[])


class LoaderTests(SynchronousTestCase):
    def fake_module(self, name: str, **attrs) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        self.patch(sys, "modules", {**sys.modules, name: module})

    def test_single_definition_found(self) -> None:
        definition = pywatt_module(lambda s: None)
        self.fake_module("pw_fake_one", app=definition, other=1)
        self.assertIs(load_module_definition("pw_fake_one"), definition)

    def test_attribute(self) -> None:
        a, b = pywatt_module(lambda s: 1), pywatt_module(lambda s: 2)
        self.fake_module("pw_fake_two", a=a, b=b)
        self.assertIs(load_module_definition("pw_fake_two:b"), b)
        error = self.assertRaises(ModuleLoadError, load_module_definition, "pw_fake_two")
        self.assertIn("pw_fake_two:a", str(error))
        self.assertIn("--module=mod:attr", str(error))

    def test_same_definition_twice_is_one(self) -> None:
        a = pywatt_module(lambda s: 1)
        self.fake_module("pw_fake_alias", a=a, alias=a)
        self.assertIs(load_module_definition("pw_fake_alias"), a)

    def test_errors(self) -> None:
        self.fake_module("pw_fake_none", x=1)
        self.assertIn(
            "no @pywatt_module",
            str(self.assertRaises(ModuleLoadError, load_module_definition, "pw_fake_none")),
        )
        self.assertIn(
            "no attribute",
            str(self.assertRaises(ModuleLoadError, load_module_definition, "pw_fake_none:y")),
        )
        self.assertIn(
            "not a module definition",
            str(self.assertRaises(ModuleLoadError, load_module_definition, "pw_fake_none:x")),
        )
        self.assertIn(
            "cannot import",
            str(self.assertRaises(ModuleLoadError, load_module_definition, "pw_no_such_mod_zz")),
        )
        self.assertRaises(ModuleLoadError, load_module_definition, "  ")

    def test_import_error_inside_module(self) -> None:
        path = self.mktemp()
        import os

        os.makedirs(path)
        with open(os.path.join(path, "pw_broken_mod.py"), "w") as f:
            f.write("import pw_missing_dependency_qq\n")
        self.patch(sys, "path", [path, *sys.path])
        error = self.assertRaises(ModuleLoadError, load_module_definition, "pw_broken_mod")
        self.assertIn("pw_missing_dependency_qq", str(error))
        self.assertIn("failed", str(error))

    def test_example_counter(self) -> None:
        definition = load_module_definition("examples.counter.module")
        self.assertEqual(definition.secrets, ("API_KEY",))
