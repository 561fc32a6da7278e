"""
The docs run: every fenced code block of C{README.md} and C{docs/*.md} is extracted and
checked, so that a broken sample fails the suite. One test per block, named after its
file and line (C{test_docs_data_md_71} is the block that starts on line 71 of
C{docs/data.md}).

What happens to a block is decided by its language and by an optional marker, an HTML
comment on the line right before the opening fence (invisible in rendered markdown)::

    <!-- docs-test: module=mymod.py -->

No marker, C{python}: the block is executed in a fresh namespace, with the current
directory a temporary one (so files it creates land there) and that directory on
C{sys.path}.

C{module=NAME.py}: the block is also written to C{NAME.py} in that directory, so that
later blocks of the same file can import it (C{from mymod import create_app}); it is
imported once to run it.

C{trial}: the block is a trial test file; it is written next to the modules of the earlier
blocks and run with C{python -m twisted.trial}, which must pass.

C{typecheck NAME NAME...}: the block needs a server, a running module or names from the
prose around it; it is compiled inside an C{async def} taking the listed names (so
C{await} works) and type-checked with mypy, all such blocks in one mypy run. Names with
a known type (C{state}, C{db}, C{cache}, C{orch}, C{self}...) get it; others are C{Any}.
Any other name the block uses must be defined or imported in it.

C{skip REASON}: not checked (for text that only looks like code); the reason is required.

C{sh} blocks are not run, but each C{pywatt ...}, C{twistd ... pywatt ...} and
C{python -m pywatt_twisted ...} command line in them is parsed with the real option
parsers, so a misspelt or removed option fails. Other languages are not checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<spec>.*?)\s*-->\s*$")

#: names a C{typecheck} block may take from its surroundings, with their real types
KNOWN_NAMES = {
    "state": "pywatt_twisted._runtime.state.AppState",
    "db": "pywatt_twisted.data.Database",
    "cache": "pywatt_twisted.data.ICache",
    "orch": "pywatt_twisted.testing.FakeOrchestrator",
    "module": "pywatt_twisted.testing.FakeModule",
    "self": "twisted.trial.unittest.SynchronousTestCase",
    "metrics": "pywatt_twisted.web.metrics.ModuleMetrics",
}


@dataclass(frozen=True)
class Block:
    """
    One fenced code block.

    @ivar path: the markdown file.
    @ivar line: the 1-based line of the block's first line of code.
    @ivar lang: the fence's language, C{""} if none.
    @ivar marker: the words of the C{docs-test} marker before it (empty if none).
    @ivar code: the block's text, dedented.
    """

    path: Path
    line: int
    lang: str
    marker: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str:
        return self.marker[0].partition("=")[0] if self.marker else "run"

    @property
    def module_file(self) -> str | None:
        for word in self.marker:
            if word.startswith("module="):
                return word.partition("=")[2]
        return None


def extract_blocks(path: Path) -> list[Block]:
    """
    The fenced code blocks of a markdown file, with their markers.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: code block never closed")
        marker: tuple[str, ...] = ()
        if i > 0:
            found = _MARKER.match(lines[i - 1])
            if found is not None:
                marker = tuple(found.group("spec").split())
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        blocks.append(Block(path, i + 2, opening.group("lang"), marker, code))
        i = end + 1
    return blocks


def _all_blocks() -> Iterator[Block]:
    for path in DOC_FILES:
        yield from extract_blocks(path)


def _test_name(block: Block) -> str:
    slug = re.sub(r"\W", "_", str(block.path.relative_to(REPO)).lower())
    return f"test_{slug}_{block.line}"


# -- typecheck --------------------------------------------------------------------------

_HEADER_LINES = 4


def typecheck_source(block: Block) -> str:
    """
    The module mypy checks for a C{typecheck} block: the block inside an C{async def}
    taking the names the marker lists.
    """
    params = []
    imports = []
    for name in block.marker[1:]:
        known = KNOWN_NAMES.get(name)
        if known is None:
            params.append(f"{name}: Any")
        else:
            module, _, cls = known.rpartition(".")
            imports.append(f"from {module} import {cls}")
            params.append(f"{name}: {cls}")
    header = [
        "from typing import Any",
        "; ".join(imports) or "pass",
        "",
        f"async def _docs_block({', '.join(params)}) -> Any:",
    ]
    assert len(header) == _HEADER_LINES
    return "\n".join(header) + "\n" + textwrap.indent(block.code, "    ") + "    pass\n"


_mypy_results: dict[str, list[str]] | None = None


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """
    Hold an exclusive lock on C{lock} (created if missing) for the block.

    Every trial worker (C{--jobs}) that runs a docs test type-checks the blocks once, and
    they share one mypy cache: two mypy runs writing the same cache at once can crash
    mypy (CI saw an INTERNAL ERROR from exactly that). The lock makes them take turns; the
    second run then finds the cache warm.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def _mypy_all() -> dict[str, list[str]]:
    """
    Type-check every C{typecheck} block in one mypy run; map each block's C{where} to
    its errors (with the markdown line numbers).
    """
    global _mypy_results
    if _mypy_results is not None:
        return _mypy_results
    blocks = [b for b in _all_blocks() if b.kind == "typecheck" and b.lang == "python"]
    results: dict[str, list[str]] = {b.where: [] for b in blocks}
    with tempfile.TemporaryDirectory(prefix="docs-mypy-") as tmp:
        files = {}
        for n, block in enumerate(blocks):
            name = os.path.join(tmp, f"docs_block_{n}.py")
            Path(name).write_text(typecheck_source(block), encoding="utf-8")
            files[name] = block
        cache = REPO / ".mypy_cache"
        with _exclusive(cache / "pywatt-docs.lock"):
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mypy",
                    "--config-file",
                    str(REPO / "pyproject.toml"),
                    "--cache-dir",
                    str(cache),
                    "--check-untyped-defs",
                    "--no-error-summary",
                    "--show-error-codes",
                    "--show-traceback",
                    # samples stay short: no "assert x is not None" before using an Optional
                    "--disable-error-code=union-attr",
                    *files,
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
        if run.returncode not in (0, 1):
            raise AssertionError(f"mypy crashed:\n{run.stdout}\n{run.stderr}")
        for line in run.stdout.splitlines():
            filename, _, rest = line.partition(":")
            block = files.get(filename)
            if block is None:
                # an error in a file the blocks import: blame every block
                for errors in results.values():
                    errors.append(line)
                continue
            number, _, message = rest.partition(":")
            md_line = block.line + int(number) - _HEADER_LINES - 1
            results[block.where].append(f"{block.path.relative_to(REPO)}:{md_line}:{message}")
    _mypy_results = results
    return results


# -- shell command lines ----------------------------------------------------------------


class _TapOptions:
    """
    C{twistd pywatt} / C{python -m pywatt_twisted} options, names only (the module is
    not loaded).
    """

    @staticmethod
    def parse(args: list[str]) -> None:
        from pywatt_twisted._tap import Options

        class NamesOnly(Options):
            def postOptions(self) -> None:
                pass

        NamesOnly().parseOptions(args)


def _parse_argparse(build: Callable[[], object], args: list[str]) -> None:
    import argparse

    parser = build()
    assert isinstance(parser, argparse.ArgumentParser)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as e:
        raise usage.UsageError(f"rejected (exit status {e.code})") from None


def check_command(words: list[str]) -> str | None:
    """
    Parse one shell command line with the real option parser of the command it runs.

    @return: C{None} if the line is not one of ours or parses; else the error.
    """
    while words and re.match(r"^\w+=", words[0]):
        words = words[1:]
    if not words:
        return None
    program = os.path.basename(words[0])
    args = words[1:]
    try:
        if program == "pywatt" and args[:1] == ["dev"]:
            from pywatt_twisted._dev.cli import build_parser as dev_parser

            _parse_argparse(dev_parser, args[1:])
        elif program == "pywatt" and args[:1] == ["db"]:
            from pywatt_twisted._dbcli import build_parser as db_parser

            _parse_argparse(db_parser, args[1:])
        elif program == "pywatt" and args[:1] == ["new"]:
            from pywatt_twisted._scaffold import build_parser as new_parser

            _parse_argparse(new_parser, args[1:])
        elif program == "twistd":
            if "pywatt" not in args:
                return None
            _TapOptions.parse(args[args.index("pywatt") + 1 :])
        elif program.startswith("python") and args[:2] == ["-m", "pywatt_twisted"]:
            _TapOptions.parse(args[2:])
        else:
            return None
    except (usage.UsageError, Exception) as e:
        return f"{' '.join(words)}: {e}"
    return None


def shell_commands(code: str) -> Iterator[list[str]]:
    """
    The command lines of a shell block: continuations joined, comments dropped.
    """
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words


# -- the tests --------------------------------------------------------------------------


class DocsRunTests(SynchronousTestCase):
    """
    One test per code block of the README and C{docs/}; see the module docstring.
    """

    def _workdir(self, block: Block) -> Path:
        """
        A fresh current directory for C{block}, on C{sys.path}, holding the
        C{module=} blocks that come before it in its file; undone at cleanup.
        """
        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        before = set(sys.modules)
        old_cwd = os.getcwd()
        sys.path[:0] = [str(work), str(REPO)]
        os.chdir(work)

        def restore() -> None:
            os.chdir(old_cwd)
            for entry in (str(work), str(REPO)):
                sys.path.remove(entry)
            for name in set(sys.modules) - before:
                module_file = getattr(sys.modules[name], "__file__", None) or ""
                if module_file.startswith(str(work)):
                    del sys.modules[name]

        self.addCleanup(restore)
        for earlier in extract_blocks(block.path):
            if earlier.line >= block.line:
                break
            if earlier.module_file is not None:
                (work / earlier.module_file).write_text(earlier.code, encoding="utf-8")
        importlib.invalidate_caches()
        return work

    def _check(self, block: Block) -> None:
        kind = block.kind
        if kind == "skip":
            self.assertTrue(block.marker[1:], f"{block.where}: docs-test: skip needs a reason")
            return
        if block.lang in ("sh", "bash", "console"):
            errors = [e for e in map(check_command, shell_commands(block.code)) if e]
            self.assertEqual(errors, [], f"{block.where}: unknown option in a command line")
            return
        if block.lang != "python":
            self.assertFalse(block.marker, f"{block.where}: docs-test marker on a non-python block")
            return
        if kind == "typecheck":
            compile(typecheck_source(block), block.where, "exec")
            errors = _mypy_all()[block.where]
            self.assertEqual(errors, [], f"{block.where}: mypy errors")
            return
        work = self._workdir(block)
        if kind == "trial":
            self._run_trial(block, work)
            return
        self.assertIn(kind, ("run", "module"), f"{block.where}: unknown marker {block.marker}")
        code = compile(block.code, block.where, "exec")
        if block.module_file is not None:
            (work / block.module_file).write_text(block.code, encoding="utf-8")
            importlib.invalidate_caches()
            importlib.import_module(block.module_file.removesuffix(".py"))
        else:
            exec(code, {"__name__": "__docs__"})

    def _run_trial(self, block: Block, work: Path) -> None:
        name = f"test_docs_block_{block.line}"
        (work / f"{name}.py").write_text(block.code, encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(work), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
        )
        run = subprocess.run(
            [sys.executable, "-m", "twisted.trial", "--temp-directory=_trial_docs", name],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(
            run.returncode, 0, f"{block.where}: the trial sample failed:\n{run.stdout}{run.stderr}"
        )
        self.assertIn("PASSED", run.stdout)


def _make_test(block: Block) -> Callable[[DocsRunTests], None]:
    def test(self: DocsRunTests) -> None:
        self._check(block)

    test.__doc__ = f"The {block.lang or 'plain'} block at {block.where} ({block.kind})."
    return test


for _block in _all_blocks():
    setattr(DocsRunTests, _test_name(_block), _make_test(_block))
del _block


class ExtractionTests(SynchronousTestCase):
    """
    The extraction and the checks themselves.
    """

    def _blocks(self, text: str) -> list[Block]:
        path = Path(self.mktemp())
        path.write_text(text, encoding="utf-8")
        return extract_blocks(path)

    def test_markers_and_lines(self) -> None:
        blocks = self._blocks(
            "# t\n\n<!-- docs-test: module=m.py -->\n```python\nx = 1\n```\n\n```sh\nls\n```\n"
        )
        self.assertEqual(
            [(b.line, b.lang, b.marker, b.code) for b in blocks],
            [(5, "python", ("module=m.py",), "x = 1\n"), (9, "sh", (), "ls\n")],
        )
        self.assertEqual((blocks[0].kind, blocks[0].module_file), ("module", "m.py"))

    def test_unknown_option_is_found(self) -> None:
        self.assertIsNone(check_command(["pywatt", "dev", "--module=m", "--port=8080"]))
        self.assertIn("--prot", check_command(["pywatt", "dev", "--module=m", "--prot=1"]) or "")
        self.assertIsNone(check_command(["pywatt", "new", "demo-mod", "--with=jwt"]))
        self.assertIn("--with", check_command(["pywatt", "new", "demo-mod", "--with=nope"]) or "")
        self.assertIsNone(check_command(["twistd", "-n", "pywatt", "--module=m"]))
        self.assertIsNotNone(check_command(["twistd", "-n", "pywatt", "--nodule=m"]))
        self.assertIsNotNone(check_command(["python", "-m", "pywatt_twisted", "--nope"]))
        self.assertIsNone(check_command(["make", "demo"]))

    def test_typecheck_lines_map_back(self) -> None:
        (block,) = self._blocks("a\n<!-- docs-test: typecheck state x -->\n```python\ny = 1\n```\n")
        source = typecheck_source(block).splitlines()
        self.assertEqual(source[_HEADER_LINES], "    y = 1")
        self.assertIn("state: AppState", source[_HEADER_LINES - 1])
        self.assertIn("x: Any", source[_HEADER_LINES - 1])

    def test_mypy_runs_take_turns(self) -> None:
        # while one worker's mypy run holds the cache lock, another cannot take it
        lock = Path(self.mktemp()) / "cache" / "pywatt-docs.lock"
        with _exclusive(lock):
            with lock.open("a") as other:
                with self.assertRaises(BlockingIOError):
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with lock.open("a") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_every_block_is_reached(self) -> None:
        # a sanity bound: the docs have dozens of blocks, and each gets a test
        names = [n for n in dir(DocsRunTests) if n.startswith("test_")]
        self.assertGreater(len(names), 40)
        self.assertEqual(len(names), len(set(names)))


class SampleRegressionTests(SynchronousTestCase):
    """
    Samples that were wrong in a way only running them shows.
    """

    def test_writing_a_module_sample_accepts_the_right_key(self) -> None:
        """
        The first sample of C{docs/writing-a-module.md} answers 200 to a POST carrying
        the right C{x-api-key} (it used to compare the header's bytes to the secret's
        str, and so answered 401 to everyone), and still 401 to a wrong key.
        """
        from pywatt_twisted.testing import FakeOrchestrator

        path = REPO / "docs" / "writing-a-module.md"
        (block,) = [b for b in extract_blocks(path) if b.module_file == "counter_sample.py"]
        namespace: dict[str, object] = {"__name__": "counter_sample"}
        exec(compile(block.code, block.where, "exec"), namespace)
        orch = FakeOrchestrator(secrets={"API_KEY": "k1"})
        module = self.successResultOf(orch.start(namespace["create_app"]))
        right = self.successResultOf(module.request("POST", "/count", headers={"x-api-key": "k1"}))
        wrong = self.successResultOf(module.request("POST", "/count", headers={"x-api-key": "k2"}))
        self.assertEqual((right.code, right.body), (200, b"ok"))
        self.assertEqual((wrong.code, wrong.body), (401, b"no"))


_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


class LinkTests(SynchronousTestCase):
    """
    The docs point only at files that are in the repository.
    """

    def test_relative_links_resolve(self) -> None:
        broken = []
        for path in DOC_FILES:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for found in _LINK.finditer(line):
                    target = found.group("target").partition("#")[0]
                    if not target or re.match(r"^[a-z]+:", target):
                        continue
                    if not (path.parent / target).exists():
                        broken.append(f"{path.relative_to(REPO)}:{number}: {target}")
        self.assertEqual(broken, [], "links to files that do not exist")

    def test_spec_is_linked_not_named(self) -> None:
        """
        C{PROTOCOL.md} and C{EXTENSIONS.md} are not in the repository (the code cites
        them by those names): the docs link to C{docs/wire-reference.md} and
        C{docs/wire-extensions.md}, which hold their text, instead of naming them.
        """
        bare = []
        for path in DOC_FILES:
            if path.name in ("wire-reference.md", "wire-extensions.md"):
                continue  # they say which name the code uses for them
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for name in ("PROTOCOL.md", "EXTENSIONS.md"):
                    if name in line:
                        bare.append(f"{path.relative_to(REPO)}:{number}: {name}")
        self.assertEqual(bare, [], "link docs/wire-reference.md or docs/wire-extensions.md")
        for page in ("wire-reference.md", "wire-extensions.md"):
            self.assertTrue((REPO / "docs" / page).exists(), page)
        self.assertIn("## 6. Flows end to end", (REPO / "docs/wire-reference.md").read_text())
        self.assertIn("## X0. Negotiation", (REPO / "docs/wire-extensions.md").read_text())
