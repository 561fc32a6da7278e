"""
A module declared with C{models=...} and C{database="DATABASE_URL"}: the schema is synced
at start-up, before the announce, and the database is C{state.database}.
"""

from __future__ import annotations

import os
import sqlite3

from klein import Klein
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted.errors import BootstrapError
from pywatt_twisted.testing import FakeOrchestrator

MODELS = {
    "models": [
        {
            "name": "notes",
            "fields": [
                {"name": "id", "type": "integer", "primary_key": True, "auto_increment": True},
                {"name": "body", "type": "text", "nullable": False},
            ],
        }
    ]
}


@pywatt_module(models=MODELS, database="DATABASE_URL")
def notes_app(state):
    app = Klein()

    @app.route("/notes", methods=["POST"])
    async def add(request):
        await state.database.execute(
            "INSERT INTO notes (body) VALUES (:body)", {"body": request.content.read().decode()}
        )
        row = await state.database.query_one("SELECT count(*) AS n FROM notes")
        return str(row["n"]).encode()

    return app


class ModuleDatabaseTests(TestCase):
    def url(self) -> tuple[str, str]:
        path = os.path.abspath(self.mktemp()) + ".db"
        return path, f"sqlite:///{path}"

    async def test_schema_synced_before_announce(self) -> None:
        _, url = self.url()
        orch = FakeOrchestrator(secrets={"DATABASE_URL": url}, reactor=reactor)
        module = await orch.start(notes_app)
        self.addCleanup(orch.shutdown)
        self.assertIn("DATABASE_URL", orch.secret_requests)
        response = await module.request("POST", "/notes", body=b"first")
        self.assertEqual((response.code, response.text()), (200, "1"))
        health = module.service.health_status()
        self.assertEqual([d["dialect"] for d in health["databases"]], ["sqlite"])
        metrics = await module.request("GET", "/metrics")
        self.assertIn("pywatt_db_pool", metrics.text())

    async def test_destructive_change_fails_bootstrap(self) -> None:
        path, url = self.url()
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, old TEXT)"
            )
        orch = FakeOrchestrator(secrets={"DATABASE_URL": url}, reactor=reactor)
        with self.assertRaises(BootstrapError) as caught:
            await orch.start(notes_app)
        self.assertIn("old", str(caught.exception))
        self.assertEqual(orch.exit_codes, [1])
        self.assertIsNone(orch.announcement)
        await orch.module.service.stopService()
        # Nothing was dropped.
        with sqlite3.connect(path) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(notes)")]
        self.assertIn("old", columns)


class RegisteredDatabaseTests(TestCase):
    async def test_register_database(self) -> None:
        from pywatt_twisted.data import Database

        path = os.path.abspath(self.mktemp()) + ".db"
        opened = []

        @pywatt_module
        def app(state):
            db = Database.from_url(f"sqlite:///{path}", reactor=state.reactor)
            opened.append(db)
            state.register_database(db)
            return Klein()

        orch = FakeOrchestrator(reactor=reactor)
        module = await orch.start(app)
        self.addCleanup(opened[0].close)
        self.addCleanup(orch.shutdown)
        await opened[0].ping()
        health = module.service.health_status()
        self.assertEqual([d["dialect"] for d in health["databases"]], ["sqlite"])
        metrics = await module.request("GET", "/metrics")
        self.assertIn("pywatt_db_calls_total", metrics.text())
