"""
The public API is what C{docs/api.md} lists: each listed name imports from its module,
the list matches the module's C{__all__} where it has one, and the docs, README and
examples import only from the listed modules.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings

from twisted.trial.unittest import SynchronousTestCase

from tests.test_layering import SHIMS, module_files

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_PAGE = os.path.join(PROJECT_ROOT, "docs", "api.md")

_SECTION = re.compile(r"^## `(?P<module>[\w.]+)`$", re.MULTILINE)
_NAME = re.compile(r"`(\w+)`")
_IMPORT = re.compile(
    r"^\s*(?:from\s+(?P<from>pywatt_twisted[\w.]*)\s+import\b|import\s+(?P<plain>pywatt_twisted[\w.]*))",
    re.MULTILINE,
)


def api_listing(text: str) -> dict[str, list[str]]:
    """
    C{{module: names}} from the API page: each C{## `module`} heading, and the
    backquoted names on the last non-empty line of its section.
    """
    listing = {}
    matches = list(_SECTION.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        lines = [line for line in text[match.end() : end].splitlines() if line.strip()]
        listing[match.group("module")] = _NAME.findall(lines[-1]) if lines else []
    return listing


def imported_modules(text: str) -> set[str]:
    """
    Every C{pywatt_twisted...} module named in an import statement in C{text}.
    """
    return {m.group("from") or m.group("plain") for m in _IMPORT.finditer(text)}


def doc_files() -> list[str]:
    """
    README.md, every Markdown page in docs/, every Python file and README in examples/.
    """
    paths = [os.path.join(PROJECT_ROOT, "README.md")]
    for top in ("docs", "examples"):
        for directory, _, files in os.walk(os.path.join(PROJECT_ROOT, top)):
            paths.extend(
                os.path.join(directory, f) for f in sorted(files) if f.endswith((".md", ".py"))
            )
    return paths


def unlisted_modules(modules: set[str], listed: set[str], shims: set[str]) -> list[str]:
    """
    The modules of C{modules} a user could take for public although they are not: not
    listed on the API page, not a deprecated re-export (C{shims}), not C{__main__}, not
    a package that holds a listed module or a shim, and with no C{_}-prefixed
    component in their dotted name.
    """
    kept = listed | shims
    parents = {name.rsplit(".", i)[0] for name in kept for i in range(name.count(".") + 1)}
    found = []
    for module in sorted(modules):
        if module in kept or module in parents or module.endswith(".__main__"):
            continue
        if any(part.startswith("_") for part in module.split(".")):
            continue
        found.append(module)
    return found


def _listing() -> dict[str, list[str]]:
    with open(API_PAGE, encoding="utf-8") as f:
        return api_listing(f.read())


class PublicApiTests(SynchronousTestCase):
    def test_listed_names_import(self) -> None:
        """
        Every name on the API page is importable from its module.
        """
        listing = _listing()
        self.assertIn("pywatt_twisted", listing)
        self.assertIn("pywatt_twisted.orchestrator", listing)
        for module, names in listing.items():
            self.assertTrue(names, module)
            imported = importlib.import_module(module)
            for name in names:
                self.assertTrue(hasattr(imported, name), f"{module}.{name}")

    def test_listing_matches_all(self) -> None:
        """
        For a module with C{__all__}, the page lists exactly those names.
        """
        for module, names in _listing().items():
            exported = getattr(importlib.import_module(module), "__all__", None)
            if exported is not None:
                self.assertEqual(sorted(names), sorted(exported), module)

    def test_docs_import_only_public_modules(self) -> None:
        """
        README.md, docs/ and examples/ import nothing but the modules on the API page.
        """
        public = set(_listing())
        private = []
        for path in doc_files():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for module in sorted(imported_modules(text) - public):
                private.append(f"{os.path.relpath(path, PROJECT_ROOT)}: {module}")
        self.assertEqual(private, [])

    def test_every_module_is_public_or_private(self) -> None:
        """
        Every module of the package is on the API page, a deprecated re-export, or
        private (a C{_}-prefixed module or package): nothing is public by accident.
        """
        self.assertEqual(unlisted_modules(set(module_files()), set(_listing()), set(SHIMS)), [])

    def test_old_paths_warn_and_re_export(self) -> None:
        """
        Each old import path still gives its names, and importing it warns with a
        L{DeprecationWarning} that names the old path.
        """
        for shim in sorted(SHIMS):
            previous = sys.modules.pop(shim, None)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    module = importlib.import_module(shim)
            finally:
                if previous is not None:
                    sys.modules[shim] = previous
            deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
            self.assertTrue(any(shim in str(w.message) for w in deprecations), (shim, deprecations))
            for name in module.__all__:
                self.assertTrue(hasattr(module, name), f"{shim}.{name}")


class CheckerTests(SynchronousTestCase):
    def test_unlisted_modules(self) -> None:
        modules = {
            "pkg",
            "pkg.__main__",
            "pkg.wire",
            "pkg.wire.codec",
            "pkg.wire.ops",
            "pkg.wire._json",
            "pkg._runtime",
            "pkg._runtime.service",
            "pkg.runtime",
            "pkg.runtime.channels",
            "pkg.dev",
            "pkg.dev.cli",
        }
        self.assertEqual(
            unlisted_modules(modules, {"pkg", "pkg.wire.codec"}, {"pkg.runtime.channels"}),
            ["pkg.dev", "pkg.dev.cli", "pkg.wire.ops"],
        )

    def test_reads_the_page_and_imports(self) -> None:
        page = "# API\n\n## `pkg`\n\nWhat it is.\n\n`A`, `b`\n\n## `pkg.sub`\n\n`C`\n"
        self.assertEqual(api_listing(page), {"pkg": ["A", "b"], "pkg.sub": ["C"]})
        code = (
            "```python\nfrom pywatt_twisted.runtime.providers import X\n"
            "import pywatt_twisted.wire.codec\n    from pywatt_twisted import y\n```\n"
        )
        self.assertEqual(
            imported_modules(code),
            {"pywatt_twisted.runtime.providers", "pywatt_twisted.wire.codec", "pywatt_twisted"},
        )
