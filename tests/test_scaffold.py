"""
C{pywatt new}: name validation, refusing to overwrite, the files of each option set, and
the generated code is clean (ruff) and compiles. The projects are installed and their
tests run in C{tests.integration.test_scaffold_venv}.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pywatt_twisted._cli import main as pywatt_main
from pywatt_twisted._scaffold import (
    FEATURES,
    ProjectOptions,
    ScaffoldError,
    generate,
    package_name,
    plan,
    render,
)

BASE_FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "secrets.json",
    "src/demo_mod/__init__.py",
    "src/demo_mod/module.py",
    "tests/__init__.py",
    "tests/test_module.py",
    "tox.ini",
}

#: every option set the end-to-end tests install
OPTION_SETS: dict[str, list[str]] = {
    "default": [],
    "all-sqlite-memory": [f"--with={f}" for f in FEATURES],
    "postgresql-redis": ["--database=postgresql", "--cache=redis", "--with=jwt"],
    "mysql-memcached": ["--database=mysql", "--cache=memcached", "--with=streaming"],
}


def run_new(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = pywatt_main(["new", *argv])
    return code, out.getvalue(), err.getvalue()


class NameTests(SynchronousTestCase):
    def test_dash_becomes_underscore(self) -> None:
        self.assertEqual(package_name("demo-mod"), "demo_mod")
        self.assertEqual(package_name("Billing_API"), "billing_api")

    def test_invalid_names_refused(self) -> None:
        for name in ("", "1mod", "-mod", "demo mod", "demo.mod", "../x", "démo"):
            with self.assertRaises(ScaffoldError, msg=name) as caught:
                package_name(name)
            self.assertIn("invalid project name", str(caught.exception))

    def test_shadowing_names_refused(self) -> None:
        for name in ("json", "class", "twisted", "pywatt-twisted", "tests"):
            with self.assertRaises(ScaffoldError, msg=name):
                package_name(name)

    def test_cli_refuses_a_bad_name_without_writing(self) -> None:
        directory = self.mktemp()
        code, _, err = run_new("1bad", f"--directory={directory}")
        self.assertEqual(code, 2)
        self.assertIn("invalid project name '1bad'", err)
        self.assertFalse(os.path.exists(directory))


class GenerateTests(SynchronousTestCase):
    def test_default_files(self) -> None:
        directory = self.mktemp()
        code, out, err = run_new("demo-mod", f"--directory={directory}")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("python -m twisted.trial tests", out)
        written = {
            os.path.relpath(os.path.join(root, f), directory)
            for root, _, files in os.walk(directory)
            for f in files
        }
        self.assertEqual(written, BASE_FILES)

    def test_files_per_option_set(self) -> None:
        self.assertEqual(set(plan(ProjectOptions("demo-mod"))), BASE_FILES)
        everything = plan(ProjectOptions("demo-mod", frozenset(FEATURES)))
        self.assertEqual(
            set(everything), BASE_FILES | {"tests/test_database.py", "tests/test_cache.py"}
        )
        jwt_only = plan(ProjectOptions("demo-mod", frozenset({"jwt"})))
        self.assertEqual(set(jwt_only), BASE_FILES)
        self.assertIn("JwtConfig", jwt_only["src/demo_mod/module.py"])
        self.assertIn('"JWT_SECRET"', jwt_only["secrets.json"])
        self.assertNotIn("Database", jwt_only["src/demo_mod/module.py"])

    def test_no_template_syntax_left(self) -> None:
        for name, argv in OPTION_SETS.items():
            options = _options(argv)
            for path, text in plan(options).items():
                self.assertNotIn("{%", text, f"{name}: {path}")
                self.assertNotIn("{{", text, f"{name}: {path}")

    def test_backend_choices(self) -> None:
        files = plan(ProjectOptions("demo-mod", frozenset({"database"}), database="postgresql"))
        self.assertIn('"pywatt_twisted[postgres]>=0.1.0.dev0"', files["pyproject.toml"])
        self.assertIn("DEMO_MOD_TEST_DATABASE_URL", files["tests/test_database.py"])
        self.assertIn("postgresql://", files["secrets.json"])
        files = plan(ProjectOptions("demo-mod", frozenset({"cache"}), cache="redis"))
        self.assertIn('"pywatt_twisted>=0.1.0.dev0"', files["pyproject.toml"])
        self.assertIn("redis://127.0.0.1:6379/0", files["secrets.json"])
        self.assertIn("SkipTest", files["tests/test_cache.py"])

    def test_backend_option_implies_its_feature(self) -> None:
        directory = self.mktemp()
        code, _, _ = run_new("demo-mod", f"--directory={directory}", "--database=mysql")
        self.assertEqual(code, 0)
        with open(os.path.join(directory, "pyproject.toml")) as f:
            self.assertIn("pywatt_twisted[mysql]", f.read())
        self.assertTrue(os.path.exists(os.path.join(directory, "tests", "test_database.py")))

    def test_unknown_feature_suggests(self) -> None:
        code, _, err = run_new("demo-mod", "--with=databse")
        self.assertEqual(code, 2)
        self.assertIn("invalid choice: 'databse'", err)
        code, _, err = run_new("demo-mod", "--databse=mysql")
        self.assertEqual(code, 2)
        self.assertIn("did you mean --database?", err)

    def test_refuses_to_overwrite_without_force(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        module = os.path.join(directory, "keep.txt")
        with open(module, "w") as f:
            f.write("mine")
        code, out, err = run_new("demo-mod", f"--directory={directory}")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("already exists and is not empty; nothing was written", err)
        self.assertIn("--force", err)
        self.assertEqual(os.listdir(directory), ["keep.txt"])
        code, _, _ = run_new("demo-mod", f"--directory={directory}", "--force")
        self.assertEqual(code, 0)
        self.assertTrue(os.path.exists(os.path.join(directory, "src", "demo_mod", "module.py")))
        with open(module) as f:
            self.assertEqual(f.read(), "mine")  # --force overwrites only generated files

    def test_a_file_in_the_way(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        with self.assertRaises(ScaffoldError):
            generate(ProjectOptions("demo-mod"), path, force=True)

    def test_generated_code_compiles_and_is_ruff_clean(self) -> None:
        ruff = shutil.which("ruff", path=os.path.dirname(sys.executable))
        for name, argv in OPTION_SETS.items():
            directory = os.path.abspath(self.mktemp())
            generate(_options(argv), directory)
            for root, _, files in os.walk(directory):
                for f in files:
                    if f.endswith(".py"):
                        path = os.path.join(root, f)
                        with open(path) as source:
                            compile(source.read(), path, "exec")
            if ruff is None:
                continue
            for command in (["check", "-q"], ["format", "-q", "--check"]):
                result = subprocess.run(
                    [ruff, *command, "src", "tests"],
                    cwd=directory,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                self.assertEqual(result.returncode, 0, f"{name}: {result.stdout}{result.stderr}")
        if ruff is None:
            raise SkipTest("ruff is not installed next to this Python: only compiled")


class RenderTests(SynchronousTestCase):
    def test_blocks_and_variables(self) -> None:
        text = "a {{x}}\n{% if f %}\nf\n{% if not g %}\nnot g\n{% endif %}\n{% endif %}\nz\n"
        self.assertEqual(render(text, {"f"}, {"x": "1"}), "a 1\nf\nnot g\nz\n")
        self.assertEqual(render(text, {"f", "g"}, {"x": "1"}), "a 1\nf\nz\n")
        self.assertEqual(render(text, set(), {"x": "1"}), "a 1\nz\n")

    def test_errors(self) -> None:
        self.assertRaises(ScaffoldError, render, "{% if a %}\n", set(), {})
        self.assertRaises(ScaffoldError, render, "{% endif %}\n", set(), {})
        self.assertRaises(ScaffoldError, render, "{{nope}}", set(), {})


def _options(argv: list[str]) -> ProjectOptions:
    features = {a.split("=", 1)[1] for a in argv if a.startswith("--with=")}
    database, cache = "sqlite", "memory"
    for a in argv:
        if a.startswith("--database="):
            database = a.split("=", 1)[1]
            features.add("database")
        if a.startswith("--cache="):
            cache = a.split("=", 1)[1]
            features.add("cache")
    return ProjectOptions("demo-mod", frozenset(features), database=database, cache=cache)
