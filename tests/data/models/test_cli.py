"""
C{pywatt db} run as the real command (a subprocess), as a person or a CI script would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tests.services import require_service

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
EVERYTHING = os.path.join(HERE, "everything.yaml")

V1 = {
    "models": [
        {
            "name": "cli_people",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True},
                {"name": "name", "type": "varchar", "length": 50, "nullable": False},
                {"name": "legacy", "type": "text"},
            ],
        }
    ]
}


def command_environment() -> dict[str, str]:
    """
    The environment of a C{pywatt db} child: this one without C{DATABASE_URL}, and
    without C{PYTHONDONTWRITEBYTECODE} (as C{bench/bench_startup.py} does), so that the
    package's compiled bytecode is written once and read by the next children: with it,
    every child compiled the package's sources again, 1.60 G instructions per command
    instead of 1.15 G, in tests that start up to five commands one after another.
    """
    drop = ("DATABASE_URL", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = command_environment()
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pywatt_twisted._cli", "db", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


class CommandTests(SynchronousTestCase):
    def write_models(self, source: dict[str, object], name: str = "models.yaml") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            if name.endswith(".json"):
                json.dump(source, f)
            else:
                yaml.safe_dump(source, f)
        return path

    def test_help(self) -> None:
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("usage: pywatt db", result.stdout)
        self.assertIn("2 bad usage", result.stdout)

    def test_help_shows_defaults_and_module_models(self) -> None:
        result = run("schema", "generate", "--help")
        self.assertEqual(result.returncode, 0)
        text = " ".join(result.stdout.split())
        self.assertIn("PKG.MOD:ATTR naming what a module passes as models=", text)
        self.assertIn("@pywatt_module(models=...)", text)

    def test_unknown_option_suggests_the_closest(self) -> None:
        result = run("schema", "generate", "--models", EVERYTHING, "--dialekt", "sqlite")
        self.assertEqual(result.returncode, 2)
        self.assertIn(
            "pywatt db: error: unrecognized arguments: --dialekt (did you mean --dialect?)",
            result.stderr,
        )

    def test_models_of_a_module(self) -> None:
        """
        C{--models} takes what a module takes as C{models=}: attrs classes named as
        C{pkg.mod:attr}, a single class, a module definition, or the module itself.
        """
        env = {"PYTHONPATH": PROJECT_ROOT}
        for spec in (
            "tests.data.models.cli_module:MODELS",
            "tests.data.models.cli_module:Person",
            "tests.data.models.cli_module:app",
            "tests.data.models.cli_module",
        ):
            result = run("schema", "generate", "--models", spec, "--dialect", "sqlite", env=env)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn('CREATE TABLE "cli_attrs_people"', result.stdout)
            self.assertIn('"name" VARCHAR(50) NOT NULL', result.stdout)
        result = run("model", "validate", "--models", "tests.data.models.cli_module", env=env)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_models_of_a_module_errors(self) -> None:
        env = {"PYTHONPATH": PROJECT_ROOT}
        result = run("model", "validate", "-m", "tests.data.models.cli_module:Nope", env=env)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            "pywatt db: error: --models tests.data.models.cli_module:Nope: "
            "'tests.data.models.cli_module' has no 'Nope'\n",
        )
        # A missing model file is still a missing file, not a module to import.
        result = run("model", "validate", "-m", "missing-models.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot read model file 'missing-models.yaml'", result.stderr)

    def test_no_arguments_is_bad_usage(self) -> None:
        result = run()
        self.assertEqual(result.returncode, 2)
        self.assertIn("usage: pywatt db", result.stderr)
        self.assertEqual(result.stdout, "")

    def test_unknown_dialect_is_bad_usage(self) -> None:
        result = run("schema", "generate", "--models", EVERYTHING, "--dialect", "oracle")
        self.assertEqual(result.returncode, 2)
        self.assertIn("invalid choice: 'oracle'", result.stderr)

    def test_missing_url_is_bad_usage(self) -> None:
        result = run("schema", "diff", "--models", EVERYTHING)
        self.assertEqual(result.returncode, 2)
        self.assertIn("pass --url URL or set DATABASE_URL", result.stderr)

    def test_validate_ok(self) -> None:
        result = run("model", "validate", "--models", EVERYTHING)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout, f"{EVERYTHING}: 3 models, valid\n")

    def test_validate_problems(self) -> None:
        path = self.write_models(
            {
                "models": [
                    {
                        "name": "t",
                        "fields": [
                            {"name": "id", "type": "integer", "primary_key": True},
                            {"name": "s", "type": "enum"},
                            {"name": "r", "type": "integer", "foreign_key": "nowhere.id"},
                        ],
                    }
                ]
            }
        )
        result = run("model", "validate", "--models", path)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertIn("pywatt db: error: 2 problems in the model definitions:", result.stderr)
        self.assertIn("  - t.s: an enum needs a non-empty list of 'values'", result.stderr)
        self.assertIn("  - t.r: foreign key to unknown table 'nowhere'", result.stderr)

    def test_validate_warnings(self) -> None:
        path = self.write_models(
            {"models": [{"name": "log", "fields": [{"name": "order", "type": "text"}]}]}, "m.json"
        )
        result = run("model", "validate", "--models", path)
        self.assertEqual(result.returncode, 0)
        self.assertIn(
            "pywatt db: warning: log.order: column name 'order' is a reserved", result.stderr
        )

    def test_validate_missing_file(self) -> None:
        result = run("model", "validate", "--models", "/nonexistent/models.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot read model file '/nonexistent/models.yaml'", result.stderr)

    def test_generate_matches_golden(self) -> None:
        for dialect, golden in (
            ("postgres", "postgresql"),
            ("mysql", "mysql"),
            ("sqlite", "sqlite"),
        ):
            result = run("schema", "generate", "--models", EVERYTHING, "--dialect", dialect)
            self.assertEqual(result.returncode, 0, result.stderr)
            with open(os.path.join(HERE, "golden", f"everything.{golden}.sql")) as f:
                self.assertEqual(result.stdout, f.read())

    def test_generate_to_file(self) -> None:
        output = self.mktemp()
        result = run("schema", "generate", "-m", EVERYTHING, "-d", "sqlite", "-o", output)
        self.assertEqual((result.returncode, result.stdout), (0, ""))
        with open(output) as f:
            self.assertTrue(f.read().startswith('CREATE TABLE "wm_customers"'))

    def test_diff_apply_sqlite(self) -> None:
        """
        diff shows the plan, apply applies it, then diff prints only the no-changes line;
        a destructive change is refused (status 1) until --allow-destructive.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        url = "sqlite:///" + os.path.abspath(os.path.join(directory, "cli.db"))
        v1 = self.write_models(V1)
        result = run("schema", "diff", "--models", v1, "--url", url)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "+ create table cli_people\n1 change\n")
        self.assertEqual(
            run("schema", "diff", "--models", v1, "--url", url, "--check").returncode, 1
        )
        result = run("schema", "apply", "--models", v1, "--url", url)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout, "applied 1 change (1 statements):\n  - create table cli_people\n"
        )
        result = run("schema", "diff", "--models", v1, "--url", url, "--check")
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, "no changes: the database matches the models\n", ""),
        )
        v2_source = yaml.safe_load(yaml.safe_dump(V1))
        v2_source["models"][0]["fields"].pop()
        v2 = self.write_models(v2_source)
        result = run("schema", "apply", "--models", v2, "--url", url)
        self.assertEqual(result.returncode, 1)
        self.assertIn("destructive changes are not allowed", result.stderr)
        self.assertIn("drop column cli_people.legacy", result.stderr)
        result = run("schema", "apply", "--models", v2, "--url", url, "--allow-destructive")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("drop column cli_people.legacy", result.stdout)
        # DATABASE_URL is the default for --url
        result = run("schema", "diff", "--models", v2, env={"DATABASE_URL": url})
        self.assertEqual(result.stdout, "no changes: the database matches the models\n")

    def test_unreachable_database(self) -> None:
        result = run(
            "schema",
            "diff",
            "--models",
            EVERYTHING,
            "--url",
            "postgresql://root:hunter2@127.0.0.1:1/test",
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("pywatt db: error:", result.stderr)
        self.assertNotIn("hunter2", result.stderr + result.stdout)

    def test_postgres_round_trip(self) -> None:
        """
        The real command against PostgreSQL: apply, then diff reports no changes.
        """
        url = require_service("postgres")
        prefix = f"cli{os.getpid()}_"
        source = {"models": [dict(V1["models"][0], name=prefix + "people")]}
        path = self.write_models(source)
        self.addCleanup(
            subprocess.run,
            ["psql", url, "-qc", f'DROP TABLE IF EXISTS "{prefix}people"'],
            capture_output=True,
        )
        result = run("schema", "apply", "--models", path, "--url", url)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = run("schema", "diff", "--models", path, "--url", url)
        self.assertEqual(result.stdout, "no changes: the database matches the models\n")


class OldPathTests(SynchronousTestCase):
    def test_old_import_path_reexports_the_command(self) -> None:
        """
        C{pywatt_twisted.data.models.cli} (the command's old home) still gives the
        same names as L{pywatt_twisted._dbcli}, where the command now lives.
        """
        from pywatt_twisted import _dbcli
        from pywatt_twisted.data.models import cli as old

        for name in old.__all__:
            self.assertIs(getattr(old, name), getattr(_dbcli, name))
        self.assertIs(old.main, _dbcli.main)
        self.assertIs(old.models_source, _dbcli.models_source)
        self.assertIs(old.build_parser, _dbcli.build_parser)
