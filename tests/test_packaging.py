"""
Packaging: the twistd plugin is found, it is import-light, and installing the project never
touches Twisted's own package files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SkipTest, TestCase

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PluginTests(TestCase):
    def test_plugin_discovered(self) -> None:
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("pywatt", makers)
        self.assertEqual(makers["pywatt"].module, "pywatt_twisted.tap")

    def test_twisted_plugins_init_is_twisteds_own(self) -> None:
        import twisted.plugins

        with open(twisted.plugins.__file__, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("pluginPackagePaths", text)
        self.assertEqual(
            os.path.dirname(os.path.dirname(twisted.plugins.__file__)),
            os.path.dirname(__import__("twisted").__file__),
        )
        self.assertFalse(
            os.path.exists(os.path.join(PROJECT_ROOT, "src", "twisted", "__init__.py"))
        )
        self.assertFalse(
            os.path.exists(os.path.join(PROJECT_ROOT, "src", "twisted", "plugins", "__init__.py"))
        )

    def test_plugin_is_import_light(self) -> None:
        code = (
            "import sys, twisted.plugins.pywatt_plugin as p;"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('klein', 'treq', 'txredisapi', 'pywatt_twisted'));"
            "print(heavy, 'twisted.internet.reactor' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        self.assertEqual(out, "[] False")


class WheelTests(TestCase):
    def test_wheel_ships_plugin_without_twisted_package_files(self) -> None:
        if not os.path.exists(os.path.join(PROJECT_ROOT, "pyproject.toml")):
            raise SkipTest("not running from a source checkout")
        out = os.path.abspath(self.mktemp())
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--quiet",
                "--wheel-dir",
                out,
                PROJECT_ROOT,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        (wheel,) = [f for f in os.listdir(out) if f.endswith(".whl")]
        names = set(zipfile.ZipFile(os.path.join(out, wheel)).namelist())
        self.assertIn("twisted/plugins/pywatt_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertIn("pywatt_twisted/wire/codec.py", names)
        self.assertIn("pywatt_twisted/py.typed", names)
        # the templates of pywatt new, dotfile and nested ones included
        for template in (
            "README.md.tmpl",
            "gitignore.tmpl",
            "src/__package__/module.py.tmpl",
            "tests/test_module.py.tmpl",
        ):
            self.assertIn(f"pywatt_twisted/_templates/new/{template}", names)
