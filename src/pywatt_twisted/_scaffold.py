# -*- test-case-name: tests.test_scaffold -*-
"""
C{pywatt new NAME}: write a ready project for one module from the templates shipped in
C{pywatt_twisted/_templates/new/}.

A template is plain text with two constructs, kept deliberately small so that a template
still reads like the file it makes:

  - C{{{name}}} is replaced by a value (C{name}, C{package}, C{dependency}...);
  - a line holding only C{{% if FLAG %}} or C{{% if not FLAG %}} opens a block, kept only
    when the flag is (not) set, closed by a line holding only C{{% endif %}}. Blocks nest.
    Flags are the features (C{database}, C{cache}, C{jwt}, C{streaming}, C{metrics}) and
    the backends (C{database-sqlite}, C{cache-redis}...).
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

from attrs import field, frozen

from pywatt_twisted._cliparse import Parser

FEATURES = ("database", "cache", "jwt", "streaming", "metrics")
DATABASES = ("sqlite", "postgresql", "mysql")
CACHES = ("memory", "redis", "memcached")

#: the version spec the generated project depends on: development versions included
DEPENDENCY = "pywatt_twisted>=0.1.0.dev0"

#: pip extras a backend needs
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}

#: the URL the generated C{secrets.json} serves under C{pywatt dev}
_DEV_URLS = {
    "sqlite": "sqlite:///{package}.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/postgres",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "memory": "memory://",
    "redis": "redis://127.0.0.1:6379/0",
    "memcached": "memcached://127.0.0.1:11211",
}

#: template path -> the flag that must be set for the file to be written
_ONLY_WITH = {
    "tests/test_database.py": "database",
    "tests/test_cache.py": "cache",
}

#: template names that cannot be shipped as they are named in the project
_RENAMED = {"gitignore": ".gitignore"}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_IF = re.compile(r"^\s*\{%\s*if\s+(not\s+)?([a-z-]+)\s*%\}\s*$")
_ENDIF = re.compile(r"^\s*\{%\s*endif\s*%\}\s*$")


class ScaffoldError(Exception):
    """
    C{pywatt new} cannot do what was asked; the message says why and what to do.
    """


def package_name(name: str) -> str:
    """
    The Python package for the project C{name}: C{demo-mod} -> C{demo_mod}.

    @raise ScaffoldError: C{name} cannot name a project and a package.
    """
    if not _NAME.match(name):
        raise ScaffoldError(
            f"invalid project name {name!r}: use letters, digits, '-' and '_', starting "
            "with a letter (e.g. demo-mod)"
        )
    package = name.replace("-", "_").lower()
    if keyword.iskeyword(package) or package in sys.stdlib_module_names:
        raise ScaffoldError(
            f"invalid project name {name!r}: its package {package!r} would shadow "
            "a Python keyword or standard library module; choose another name"
        )
    if package in ("pywatt_twisted", "twisted", "klein", "tests", "test"):
        raise ScaffoldError(
            f"invalid project name {name!r}: its package {package!r} would shadow "
            "a package it needs; choose another name"
        )
    return package


@frozen
class ProjectOptions:
    """
    What to generate.

    @ivar name: the project (distribution) name, e.g. C{demo-mod}.
    @ivar features: the optional features, a subset of L{FEATURES}.
    @ivar database: the database backend (used with the C{database} feature).
    @ivar cache: the cache backend (used with the C{cache} feature).
    """

    name: str
    features: frozenset[str] = field(default=frozenset(), converter=frozenset)
    database: str = "sqlite"
    cache: str = "memory"

    @property
    def package(self) -> str:
        return package_name(self.name)

    def flags(self) -> frozenset[str]:
        """
        The template flags: the features, and C{database-<backend>} / C{cache-<backend>}
        for the ones chosen, plus C{database-server} / C{cache-server} when that backend
        needs a server.
        """
        flags = set(self.features)
        if "database" in self.features:
            flags.add(f"database-{self.database}")
            if self.database != "sqlite":
                flags.add("database-server")
        if "cache" in self.features:
            flags.add(f"cache-{self.cache}")
            if self.cache != "memory":
                flags.add("cache-server")
        return frozenset(flags)

    def variables(self) -> dict[str, str]:
        """
        The values of the C{{{name}}} placeholders.
        """
        package = self.package
        extras = []
        if "database" in self.features and self.database in _EXTRAS:
            extras.append(_EXTRAS[self.database])
        dependency = DEPENDENCY
        if extras:
            dependency = dependency.replace(">=", f"[{','.join(extras)}]>=", 1)
        prefix = package.upper()
        return {
            "name": self.name,
            "package": package,
            "module_id": package,
            "dependency": dependency,
            "database": self.database,
            "cache": self.cache,
            "database_dev_url": _DEV_URLS[self.database].format(package=package),
            "cache_dev_url": _DEV_URLS[self.cache],
            "database_env": f"{prefix}_TEST_DATABASE_URL",
            "cache_env": f"{prefix}_TEST_CACHE_URL",
            "features": ", ".join(sorted(self.features)) or "none",
        }


def render(text: str, flags: Iterable[str], variables: Mapping[str, str]) -> str:
    """
    Render one template (see the module docstring).

    @raise ScaffoldError: unbalanced C{if}/C{endif}, or an unknown placeholder.
    """
    flags = frozenset(flags)
    out: list[str] = []
    stack: list[bool] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        opened = _IF.match(line)
        if opened:
            negate, flag = opened.groups()
            stack.append((flag in flags) != bool(negate))
            continue
        if _ENDIF.match(line):
            if not stack:
                raise ScaffoldError(f"template line {number}: endif without if")
            stack.pop()
            continue
        if all(stack):
            out.append(line)
    if stack:
        raise ScaffoldError("template: if without endif")

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise ScaffoldError(f"template: unknown placeholder {{{{{key}}}}}")
        return variables[key]

    return _VARIABLE.sub(substitute, "".join(out))


def _templates() -> list[tuple[str, str]]:
    """
    (relative template path without C{.tmpl}, text) for every shipped template.
    """
    root = resources.files("pywatt_twisted") / "_templates" / "new"
    found: list[tuple[str, str]] = []

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".tmpl"):
                found.append((prefix + child.name[: -len(".tmpl")], child.read_text("utf-8")))

    walk(root, "")
    return found


def plan(options: ProjectOptions) -> dict[str, str]:
    """
    The project's files: relative path -> content, for C{options}.
    """
    flags = options.flags()
    variables = options.variables()
    files: dict[str, str] = {}
    for path, text in _templates():
        needed = _ONLY_WITH.get(path)
        if needed is not None and needed not in flags:
            continue
        head, _, base = path.rpartition("/")
        base = _RENAMED.get(base, base)
        target = (f"{head}/" if head else "") + base
        target = target.replace("__package__", variables["package"])
        files[target] = render(text, flags, variables)
    return files


def generate(
    options: ProjectOptions, directory: str | os.PathLike[str], force: bool = False
) -> list[str]:
    """
    Write the project into C{directory} (created if missing).

    @param force: overwrite files that exist; without it, a directory that is not empty
        is refused and nothing is written.
    @return: the relative paths written, sorted.
    @raise ScaffoldError: the directory is not empty (without C{force}) or is a file.
    """
    root = Path(directory)
    files = plan(options)
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"{root} exists and is not a directory")
    if root.exists() and any(root.iterdir()) and not force:
        raise ScaffoldError(
            f"{root} already exists and is not empty; nothing was written "
            "(use --force to overwrite the generated files in it)"
        )
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return sorted(files)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pywatt new",
        description=(
            "Create a ready project for one PyWatt module: pyproject.toml, "
            "src/<package>/module.py (a route, a secret, the health check, a routed "
            "handler), FakeOrchestrator tests, tox.ini and a README with the commands to "
            "run it under 'pywatt dev' and to run its tests."
        ),
    )
    parser.add_argument("name", help="project name, e.g. demo-mod (its package: demo_mod)")
    parser.add_argument(
        "--with",
        dest="features",
        action="append",
        choices=FEATURES,
        default=[],
        metavar="FEATURE",
        help=f"add a feature (repeatable): {', '.join(FEATURES)}",
    )
    parser.add_argument(
        "--database",
        choices=DATABASES,
        help="the database of --with database (default: sqlite; implies --with database)",
    )
    parser.add_argument(
        "--cache",
        choices=CACHES,
        help="the cache of --with cache (default: memory; implies --with cache)",
    )
    parser.add_argument(
        "--directory",
        "-d",
        metavar="DIR",
        help="where to write the project (default: ./NAME)",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a directory that is not empty"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """
    C{pywatt new}: 0 when the project was written, 1 when refused, 2 on bad usage.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    features = set(args.features)
    # --database/--cache imply their feature: asking for a backend means wanting it.
    if args.database is not None:
        features.add("database")
    if args.cache is not None:
        features.add("cache")
    try:
        options = ProjectOptions(
            args.name,
            frozenset(features),
            database=args.database or "sqlite",
            cache=args.cache or "memory",
        )
        package = options.package
    except ScaffoldError as e:
        sys.stderr.write(f"pywatt new: {e}\n")
        return 2
    directory = args.directory or args.name
    try:
        written = generate(options, directory, force=args.force)
    except ScaffoldError as e:
        sys.stderr.write(f"pywatt new: {e}\n")
        return 1
    sys.stdout.write(
        f"created {directory}/ ({len(written)} files; features: "
        f"{options.variables()['features']})\n\n"
        f"  cd {directory}\n"
        "  PYTHONPATH=src python -m twisted.trial tests     # run its tests\n"
        f"  PYTHONPATH=src pywatt dev --module={package}.module --secrets-file=secrets.json\n"
        f"                                                   # serve it on "
        f"http://127.0.0.1:8080/{package}/\n"
    )
    return 0


__all__ = [
    "CACHES",
    "DATABASES",
    "FEATURES",
    "ProjectOptions",
    "ScaffoldError",
    "generate",
    "main",
    "package_name",
    "plan",
    "render",
]
