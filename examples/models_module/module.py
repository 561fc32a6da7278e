"""
The notes module: it declares its tables (``models.py``, or ``models.yaml``) and lets the
bootstrap create or migrate them in ``DATABASE_URL`` before it announces.

Run it under the dev orchestrator::

    pywatt dev --module=examples.models_module.module \
        --secrets-file=examples/models_module/secrets.json

or prepare the database by hand first (what the bootstrap does)::

    pywatt db schema apply --models examples/models_module/models.yaml --url sqlite:///notes.db

Routes: ``GET /notes`` lists notes, ``POST /notes`` adds one
(``{"email": ..., "title": ..., "body": ...}``).
"""

from __future__ import annotations

import json

from klein import Klein

from examples.models_module.models import MODELS
from pywatt_twisted import pywatt_module
from pywatt_twisted.data import Database


def _json(request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, default=str).encode()


@pywatt_module(
    models=MODELS,  # or "examples/models_module/models.yaml"
    database="DATABASE_URL",  # the secret holding the database URL
)
def create_app(state):
    app = Klein()
    # Opened from the DATABASE_URL secret and already in step with MODELS.
    db: Database = state.database

    @app.route("/notes", methods=["GET"])
    async def list_notes(request):
        rows = await db.query(
            "SELECT n.id, n.title, n.status, a.email FROM notes n "
            "JOIN authors a ON a.id = n.author_id ORDER BY n.id"
        )
        return _json(request, 200, rows)

    @app.route("/notes", methods=["POST"])
    async def add_note(request):
        try:
            body = json.loads(request.content.read())
            email, title = body["email"], body["title"]
        except (ValueError, KeyError, TypeError):
            return _json(request, 400, {"error": 'expected {"email": ..., "title": ...}'})
        note_id = await db.run_interaction(_add_note, email, title, body.get("body"))
        return _json(request, 201, {"id": note_id})

    return app


def _add_note(tx, email: str, title: str, text: str | None) -> int:
    author = tx.query_one("SELECT id FROM authors WHERE email = :email", {"email": email})
    if author is None:
        tx.execute(
            "INSERT INTO authors (email, display_name) VALUES (:email, :email)", {"email": email}
        )
        author = tx.query_one("SELECT id FROM authors WHERE email = :email", {"email": email})
    tx.execute(
        "INSERT INTO notes (author_id, title, body) VALUES (:author, :title, :body)",
        {"author": author["id"], "title": title, "body": text},
    )
    row = tx.query_one("SELECT max(id) AS id FROM notes WHERE author_id = :a", {"a": author["id"]})
    return int(row["id"])
