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

from tests.source_tree import copy_source_tree

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PluginTests(TestCase):
    def test_plugin_discovered(self) -> None:
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("pywatt", makers)
        self.assertEqual(makers["pywatt"].module, "pywatt_twisted._tap")

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


class LazyImportTests(TestCase):
    """
    What a module pays for at start-up: the runtime does not load the data layer (its
    backends, their drivers) unless the module uses it.
    """

    def _loaded(self, code: str, prefixes: tuple[str, ...]) -> list[str]:
        code += f";import sys;print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        return list(eval(out))

    def test_runtime_does_not_load_the_data_layer(self) -> None:
        loaded = self._loaded(
            "import pywatt_twisted._runtime.process, pywatt_twisted._tap",
            (
                "pywatt_twisted.data.",
                "psycopg",
                "pymysql",
                "txredisapi",
                "yaml",
                "hypothesis",
                "treq",
                "jwt",
            ),
        )
        self.assertEqual(loaded, ["pywatt_twisted.data._resources"])

    def test_runtime_does_not_load_channels_or_distribution_metadata(self) -> None:
        """
        Issue 20: the channel code loads with the first channel, and the search for the
        module's distribution (importlib.metadata) waits for the first /health or
        /metrics.
        """
        loaded = self._loaded(
            "import pywatt_twisted._runtime.process, pywatt_twisted._tap",
            (
                "pywatt_twisted.link._channel",
                "pywatt_twisted.link._manager",
                "pywatt_twisted.link._endpoints",
                "pywatt_twisted._transport.channel",
                "importlib.metadata",
            ),
        )
        self.assertEqual(loaded, [])

    def test_runtime_does_not_load_the_http_client(self) -> None:
        """
        Issue 20: nothing on the way to the announce imports C{twisted.web.client} (the
        streaming reader takes C{ResponseDone} from where it is defined).
        """
        loaded = self._loaded(
            "import pywatt_twisted._runtime.process, pywatt_twisted._tap, pywatt_twisted.streaming",
            ("twisted.web.client",),
        )
        self.assertEqual(loaded, [])

    def test_link_names_load_on_first_use(self) -> None:
        loaded = self._loaded(
            "from pywatt_twisted.link import ChannelManager, SloMonitor",
            ("pywatt_twisted.link._manager", "pywatt_twisted.link._slo"),
        )
        self.assertEqual(loaded, ["pywatt_twisted.link._manager", "pywatt_twisted.link._slo"])

    def test_finding_resources_does_not_load_the_data_layer(self) -> None:
        """
        The service looks for databases and caches in every module's state; a state
        that holds none must not make it import them.
        """
        loaded = self._loaded(
            "from pywatt_twisted.data._resources import found_in;"
            "assert found_in({'n': 1, 'o': object()}) == []",
            ("pywatt_twisted.data.",),
        )
        self.assertEqual(loaded, ["pywatt_twisted.data._resources"])

    def test_health_caches_do_not_load_the_data_layer(self) -> None:
        """
        Listing the caches for /health (done at every start) does not import the cache
        package when the module opened none: nothing can provide ICache before it is
        imported.
        """
        loaded = self._loaded(
            "from pywatt_twisted._runtime.parts import ModuleParts;"
            "parts = ModuleParts(); parts.resources.add(object());"
            "assert parts.caches_on_health() == []",
            ("pywatt_twisted.data.",),
        )
        self.assertEqual(loaded, ["pywatt_twisted.data._resources"])

    def test_health_caches_find_an_opened_cache(self) -> None:
        """
        A cache the module opened (in its resources) is listed once the package is
        loaded; a registered one comes first, and one store is listed once.
        """
        from pywatt_twisted._runtime.parts import ModuleParts
        from pywatt_twisted.data import MemoryCache

        registered, opened = MemoryCache(), MemoryCache()
        parts = ModuleParts()
        parts.caches.append(registered)
        for resource in (object(), opened, registered):
            parts.resources.add(resource)
        self.assertEqual(parts.caches_on_health(), [registered, opened])

    def test_data_names_load_on_first_use(self) -> None:
        import pywatt_twisted.data as data

        for name in data.__all__:
            self.assertIsNotNone(getattr(data, name), name)
        from pywatt_twisted.data import Database
        from pywatt_twisted.data._database import Database as Defined

        self.assertIs(Database, Defined)
        self.assertIn("Database", dir(data))
        with self.assertRaises(AttributeError):
            data.NoSuchName  # noqa: B018


class WheelTests(TestCase):
    def test_wheel_ships_plugin_without_twisted_package_files(self) -> None:
        if not os.path.exists(os.path.join(PROJECT_ROOT, "pyproject.toml")):
            raise SkipTest("not running from a source checkout")
        out = os.path.abspath(self.mktemp())
        source = copy_source_tree(os.path.join(out, "source"))
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
                source,
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
        # the pywatt dev dashboard's page, script and style sheet
        for asset in ("dashboard.html", "dashboard.js", "dashboard.css"):
            self.assertIn(f"pywatt_twisted/_dev/_static/{asset}", names)
