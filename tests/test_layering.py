"""
The import layering of the package: every module is mapped to a layer, and an import
may only go to the same layer or a lower one, with no cycle between layer units.

The layers, lowest first (C{docs/architecture.md} explains each)::

    errors < wire < transport < link < clients < web, data < module < process
           < orchestrator < dev, testing < tap, cli

Units on one rank (C{web} and C{data}, C{dev} and C{testing}, C{tap} and C{cli}) may
import each other only if that makes no cycle. Our folders are not all named after the
layers (C{_runtime/} holds the clients, the module API and the process), so L{UNITS}
maps modules to units: the longest matching prefix wins. Imports are read with C{ast}
(function-level imports too; C{if TYPE_CHECKING:} blocks are ignored, they never run).
What a lower layer needs from a higher one is handed to it at run time.
"""

from __future__ import annotations

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_ROOT = os.path.join(PROJECT_ROOT, "src", "pywatt_twisted")

#: The rank of each unit: an import must go to a unit of the same or a lower rank.
RANKS: dict[str, int] = {
    "errors": 0,
    "wire": 1,
    "transport": 2,
    "link": 3,
    "clients": 4,
    "web": 5,
    "data": 5,
    "module": 6,
    "process": 7,
    "orchestrator": 8,
    "dev": 9,
    "testing": 9,
    "tap": 10,
    "cli": 10,
}

#: Module name prefix -> unit; the longest matching prefix wins.
UNITS: dict[str, str] = {
    # The package root only holds __version__ and lazy re-exports loaded on first use:
    # at import time it imports nothing of ours, so anything may import it.
    "pywatt_twisted": "errors",
    "pywatt_twisted.errors": "errors",
    "pywatt_twisted.wire": "wire",
    "pywatt_twisted._transport": "transport",
    # OpenTelemetry hooks: used by the clients, web and data paths, imports only wire
    # and below (the dev OTLP receiver lives in dev/).
    "pywatt_twisted.tracing": "transport",
    # (the stream state machines: wire values on an injected clock; used from the
    # runtime, web, dev and testing)
    "pywatt_twisted.streaming": "transport",
    # (private helper: the lowest layer that uses it is streaming)
    "pywatt_twisted._views": "transport",
    "pywatt_twisted.link": "link",
    # _runtime/: the request/response conversations with the orchestrator ...
    "pywatt_twisted._runtime.correlation": "clients",
    "pywatt_twisted._runtime.secrets": "clients",
    "pywatt_twisted._runtime.secret": "clients",
    "pywatt_twisted._runtime.redaction": "clients",
    "pywatt_twisted._runtime.ports": "clients",
    "pywatt_twisted._runtime.discovery": "clients",
    "pywatt_twisted._runtime.messaging": "clients",
    "pywatt_twisted._runtime.routed_envelopes": "clients",
    "pywatt_twisted._runtime.routed_handlers": "clients",
    "pywatt_twisted._runtime.routed_requests": "clients",
    "pywatt_twisted._runtime.registration": "clients",
    "pywatt_twisted._runtime.proxied": "clients",
    "pywatt_twisted._runtime.resilience": "clients",
    # (private helper: the lowest layer that uses it is _runtime.messaging)
    "pywatt_twisted._inflight": "clients",
    # ... what a module author touches ...
    "pywatt_twisted._runtime.module": "module",
    "pywatt_twisted._runtime.state": "module",
    "pywatt_twisted._runtime.loader": "module",
    # ... and the running process (bootstrap, dispatch, lifecycle, config, logging).
    "pywatt_twisted._runtime": "process",
    "pywatt_twisted.web": "web",
    "pywatt_twisted.data": "data",
    "pywatt_twisted.orchestrator": "orchestrator",
    "pywatt_twisted._dev": "dev",
    # (argument-parsing helper shared by the commands; the lowest user is _dev.cli)
    "pywatt_twisted._cliparse": "dev",
    "pywatt_twisted.testing": "testing",
    "pywatt_twisted._tap": "tap",
    "pywatt_twisted._cli": "cli",
    # 'pywatt db': a command-line front end that loads the user's module definition.
    "pywatt_twisted._dbcli": "cli",
    "pywatt_twisted.__main__": "cli",
    "pywatt_twisted._scaffold": "cli",
}

#: Re-export modules kept for old import paths: they take the unit of what they
#: re-export, and code in the package must not import them (use the new path).
SHIMS: dict[str, str] = {
    "pywatt_twisted.runtime.channels": "link",
    "pywatt_twisted.runtime.providers": "orchestrator",
    "pywatt_twisted.runtime.messaging": "clients",
    "pywatt_twisted.dev.channel_server": "orchestrator",
    "pywatt_twisted.data.models.cli": "cli",
}


def module_files(root: str = PACKAGE_ROOT) -> dict[str, str]:
    """
    C{{dotted module name: path}} for every C{.py} file of the package under C{root}.
    """
    parent = os.path.dirname(root)
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path, parent)[:-3].replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[: -len(".__init__")]
                found[dotted] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """
    Every dotted name C{module} imports at run time (module-level and in functions),
    with C{from a import b} giving both C{a} and C{a.b}; C{TYPE_CHECKING} blocks are
    skipped (their C{else} is kept).
    """
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        visit(node)

    visit(ast.parse(source))
    return names


def import_graph(files: dict[str, str]) -> dict[str, set[str]]:
    """
    C{{module: modules of the package it imports}}; C{from a import b} counts as an
    import of C{a.b} when that is a module, else of C{a}.
    """
    graph = {}
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        names = imported_names(source, module, path.endswith("__init__.py"))
        targets = set()
        for name in names:
            if name in files:
                targets.add(name)
            elif name.rsplit(".", 1)[0] in files and "." in name:
                targets.add(name.rsplit(".", 1)[0])
        targets.discard(module)
        graph[module] = targets
    return graph


def unit_of(module: str) -> str | None:
    """
    The unit of C{module}: its shim entry, else the longest matching L{UNITS} prefix.
    """
    if module in SHIMS:
        return SHIMS[module]
    best = None
    for prefix in UNITS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return None if best is None else UNITS[best]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """
    One line per import that goes to a higher rank.
    """
    found = []
    for module, targets in sorted(graph.items()):
        here = unit_of(module)
        for target in sorted(targets):
            there = unit_of(target)
            if here is None or there is None:
                continue
            if RANKS[there] > RANKS[here]:
                found.append(f"{module} ({here}) imports {target} ({there})")
    return found


def unit_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The cycles between units (strongly connected components of more than one unit),
    each sorted.
    """
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = unit_of(module)
        for target in targets:
            there = unit_of(target)
            if here is not None and there is not None and here != there:
                edges.setdefault(here, set()).add(there)

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = []
    done: set[str] = set()
    for unit in sorted(edges):
        if unit in done:
            continue
        component = {u for u in reachable(unit) if unit in reachable(u)} | {unit}
        done |= component
        if len(component) > 1:
            cycles.append(sorted(component))
    return cycles


class LayeringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.files = module_files()
        self.graph = import_graph(self.files)

    def test_every_module_has_a_unit(self) -> None:
        """
        Each module of the package is mapped to a known unit, so a new module must be
        placed in a layer.
        """
        self.assertGreater(len(self.files), 80)
        unmapped = [m for m in sorted(self.files) if unit_of(m) not in RANKS]
        self.assertEqual(unmapped, [])

    def test_no_upward_import(self) -> None:
        """
        No module imports a module of a higher layer.
        """
        self.assertEqual(upward_imports(self.graph), [])

    def test_no_cycle_between_units(self) -> None:
        """
        The units import each other without cycles.
        """
        self.assertEqual(unit_cycles(self.graph), [])

    def test_shims_are_not_imported_by_the_package(self) -> None:
        """
        The re-export modules kept for old import paths exist, and the package's own
        code imports the new paths.
        """
        for shim in SHIMS:
            self.assertIn(shim, self.files)
        users = [
            f"{module} imports {target}"
            for module, targets in sorted(self.graph.items())
            for target in sorted(targets)
            if target in SHIMS and module not in SHIMS
        ]
        self.assertEqual(users, [])


class ToolImportTests(SynchronousTestCase):
    def test_bench_and_tools_import_existing_paths(self) -> None:
        """
        The benches and tools (run by hand, not by the suite) import modules of the
        package that exist, by their current paths rather than a deprecated shim.
        """
        files = module_files()
        found = []
        for top in ("bench", "tools"):
            for directory, _, names in os.walk(os.path.join(PROJECT_ROOT, top)):
                for name in sorted(names):
                    if not name.endswith(".py"):
                        continue
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        imported = imported_names(f.read(), "bench.x", is_package=False)
                    found.extend(
                        f"{os.path.relpath(path, PROJECT_ROOT)}: {module}"
                        for module in sorted(stale_imports(imported, files))
                    )
        self.assertEqual(found, [])


def stale_imports(imported: set[str], files: dict[str, str]) -> set[str]:
    """
    The names in C{imported} (as L{imported_names} gives them) that name a module of
    the package that does not exist or is a deprecated shim.
    """
    stale = set()
    for name in imported:
        if not name.startswith("pywatt_twisted."):
            continue
        if name in SHIMS:
            stale.add(name)
        elif name not in files and name.rsplit(".", 1)[0] not in files:
            stale.add(name)
    return stale


class CheckerTests(SynchronousTestCase):
    """
    The checks themselves find what they look for.
    """

    def test_stale_imports(self) -> None:
        files = {"pywatt_twisted.wire.codec": "", "pywatt_twisted._transport.framed": ""}
        imported = {
            "os",
            "pywatt_twisted.wire.codec",
            "pywatt_twisted.wire.codec.encode",
            "pywatt_twisted.transport.framed",
            "pywatt_twisted.transport.framed.FramedProtocol",
            "pywatt_twisted.runtime.channels",
        }
        self.assertEqual(
            stale_imports(imported, files),
            {
                "pywatt_twisted.transport.framed",
                "pywatt_twisted.transport.framed.FramedProtocol",
                "pywatt_twisted.runtime.channels",
            },
        )

    def test_imports_in_functions_count_type_checking_does_not(self) -> None:
        source = (
            "from typing import TYPE_CHECKING\n"
            "import pywatt_twisted.wire.codec\n"
            "if TYPE_CHECKING:\n"
            "    from pywatt_twisted.web import site\n"
            "def f():\n"
            "    from pywatt_twisted._runtime.module import pywatt_module\n"
            "    from . import framing\n"
        )
        names = imported_names(source, "pywatt_twisted.wire.lines", is_package=False)
        self.assertIn("pywatt_twisted.wire.codec", names)
        self.assertIn("pywatt_twisted._runtime.module.pywatt_module", names)
        self.assertIn("pywatt_twisted.wire.framing", names)
        self.assertNotIn("pywatt_twisted.web.site", names)
        self.assertNotIn("pywatt_twisted.web", names)

    def test_upward_import_and_cycle_found(self) -> None:
        graph = {
            "pywatt_twisted.wire.codec": {"pywatt_twisted.web.site"},
            "pywatt_twisted.web.site": {"pywatt_twisted.data._cache"},
            "pywatt_twisted.data._cache": {"pywatt_twisted.web._jwt"},
            "pywatt_twisted.web._jwt": set(),
        }
        self.assertEqual(
            upward_imports(graph),
            ["pywatt_twisted.wire.codec (wire) imports pywatt_twisted.web.site (web)"],
        )
        self.assertEqual(unit_cycles(graph), [["data", "web"]])

    def test_units(self) -> None:
        self.assertEqual(unit_of("pywatt_twisted._runtime.secrets"), "clients")
        self.assertEqual(unit_of("pywatt_twisted._runtime.bootstrap"), "process")
        self.assertEqual(unit_of("pywatt_twisted.data.models.cli"), "cli")
        self.assertEqual(unit_of("pywatt_twisted.data.models._ddl"), "data")
        self.assertEqual(unit_of("pywatt_twisted.runtime.providers"), "orchestrator")
        self.assertEqual(unit_of("pywatt_twisted"), "errors")
