"""
The example module of docs/models.md: its two model forms agree, its definition carries the
models and the database secret, and the sync it documents works end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data.models import load_models, validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
YAML = os.path.join(ROOT, "examples", "models_module", "models.yaml")


class ExampleTests(SynchronousTestCase):
    def test_yaml_and_attrs_agree(self) -> None:
        from examples.models_module.models import MODELS

        schema = load_models(YAML)
        self.assertEqual(validate(schema), [])
        self.assertEqual(load_models(MODELS), schema)
        self.assertEqual([m.name for m in schema.models], ["authors", "notes"])

    def test_module_declares_models(self) -> None:
        from examples.models_module.models import MODELS
        from examples.models_module.module import create_app

        self.assertEqual(create_app.models, MODELS)
        self.assertEqual(create_app.database, "DATABASE_URL")
        self.assertIn("DATABASE_URL", create_app.secrets)

    def test_sync_script_then_cli_diff(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        url = "sqlite:///" + os.path.abspath(os.path.join(directory, "notes.db"))
        first = subprocess.run(
            [sys.executable, "-m", "examples.models_module.sync_schema", url],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(
            first.stdout,
            "applied 2 changes (4 statements):\n  - create table authors\n  - create table notes\n",
        )
        diff = subprocess.run(
            [
                sys.executable,
                "-m",
                "pywatt_twisted._cli",
                "db",
                "schema",
                "diff",
                "--models",
                YAML,
                "--url",
                url,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        self.assertEqual(diff.stdout, "no changes: the database matches the models\n", diff.stderr)


class ExampleModuleTests(TestCase):
    async def test_tables_created_at_start_up(self) -> None:
        from examples.models_module.module import create_app
        from twisted.internet import reactor

        from pywatt_twisted.testing import FakeOrchestrator

        path = os.path.abspath(self.mktemp()) + ".db"
        orch = FakeOrchestrator(secrets={"DATABASE_URL": f"sqlite:///{path}"}, reactor=reactor)
        module = await orch.start(create_app)
        self.addCleanup(orch.shutdown)
        created = await module.request(
            "POST", "/notes", json_body={"email": "ada@example.org", "title": "first"}
        )
        self.assertEqual(created.code, 201, created.text())
        listed = await module.request("GET", "/notes")
        self.assertEqual(
            [(n["title"], n["email"]) for n in listed.json()], [("first", "ada@example.org")]
        )
