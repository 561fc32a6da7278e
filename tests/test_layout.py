"""
The source tree's layout: every C{test-case-name} header in C{src/} names a test module
that exists, so C{trial --testmodule} and editors that follow the header find the tests.
"""

from __future__ import annotations

import importlib.util
import os
import re

from twisted.trial.unittest import SynchronousTestCase

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_ROOT = os.path.join(PROJECT_ROOT, "src")

_HEADER = re.compile(r"-\*-\s*test-case-name:\s*(?P<names>.+?)\s*-\*-")


def test_case_headers(root: str = SOURCE_ROOT) -> dict[str, list[str]]:
    """
    C{{path relative to root: [test module names]}} for every C{.py} file under C{root}
    whose first line is a C{test-case-name} header (trial reads only the first line).
    """
    found: dict[str, list[str]] = {}
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            match = _HEADER.search(first)
            if match is not None:
                names = [n.strip() for n in match.group("names").split(",") if n.strip()]
                found[os.path.relpath(path, root)] = names
    return found


def missing_test_modules(headers: dict[str, list[str]]) -> list[str]:
    """
    One C{"path: name"} line per header entry that names no importable module.
    """
    missing = []
    for path, names in sorted(headers.items()):
        for name in names:
            try:
                spec = importlib.util.find_spec(name)
            except ImportError:
                spec = None
            if spec is None:
                missing.append(f"{path}: {name}")
    return missing


class TestCaseNameHeaderTests(SynchronousTestCase):
    def test_every_header_names_an_existing_test_module(self) -> None:
        """
        Each C{# -*- test-case-name: ... -*-} header in C{src/} names a module under
        C{tests/} that can be imported.
        """
        headers = test_case_headers()
        self.assertGreater(len(headers), 40)
        self.assertEqual(missing_test_modules(headers), [])

    def test_a_wrong_header_is_reported(self) -> None:
        """
        The check itself finds a header naming a module that does not exist, and reads
        comma-separated lists.
        """
        root = self.mktemp()
        os.makedirs(os.path.join(root, "pkg"))
        with open(os.path.join(root, "pkg", "good.py"), "w", encoding="utf-8") as f:
            f.write("# -*- test-case-name: tests.test_layout, tests.test_cli -*-\n")
        with open(os.path.join(root, "pkg", "bad.py"), "w", encoding="utf-8") as f:
            f.write("# -*- test-case-name: tests.test_no_such_module -*-\n")
        with open(os.path.join(root, "pkg", "none.py"), "w", encoding="utf-8") as f:
            f.write('"""no header"""\n')
        headers = test_case_headers(root)
        self.assertEqual(
            headers,
            {
                os.path.join("pkg", "bad.py"): ["tests.test_no_such_module"],
                os.path.join("pkg", "good.py"): ["tests.test_layout", "tests.test_cli"],
            },
        )
        self.assertEqual(
            missing_test_modules(headers),
            [os.path.join("pkg", "bad.py") + ": tests.test_no_such_module"],
        )
