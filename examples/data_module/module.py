"""
The items module: a database and a cache, both configured by secrets.

Run it under the dev orchestrator::

    pywatt dev --module=examples.data_module.module \
        --secrets-file=examples/data_module/secrets.json

Point the secrets at real servers to use them, e.g.
``{"DATABASE_URL": "postgresql://root@127.0.0.1:5432/test",
"CACHE_URL": "redis://127.0.0.1:6379/0"}``; the code does not change.

Routes:

- ``GET /items``: every item, served from the cache (``cache_aside``, 30 s).
- ``POST /items``: add ``{"name": ..., "qty": n}`` in a transaction, then drop the
  cached list.
- ``POST /items/<name>/take``: take one unit under a cache lock (one taker at a time).
- ``GET /data/health``: the database pool's statistics.
"""

from __future__ import annotations

import json

from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.data import Cache, Database

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS items ("
    " name VARCHAR(100) PRIMARY KEY,"
    " qty INTEGER NOT NULL DEFAULT 0)"
)


class Data:
    """
    What the routes use: the database and the cache.
    """

    def __init__(self, db: Database, cache) -> None:
        self.db = db
        self.cache = cache


async def open_data(init, secrets) -> Data:
    # Both URLs are secrets (Secret objects): from_url exposes them itself, and the
    # password never shows up in logs or errors (db.url_redacted hides it).
    db = Database.from_url(secrets["DATABASE_URL"], max_pool=4)
    cache = Cache.from_url(secrets["CACHE_URL"], namespace="items-module")
    await db.execute(SCHEMA)
    return Data(db, cache)


def _json(request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, default=str).encode()


@pywatt_module(secrets=["DATABASE_URL", "CACHE_URL"], state_builder=open_data)
def create_app(state):
    app = Klein()
    data: Data = state.user_state

    async def load_items():
        return await data.db.query("SELECT name, qty FROM items ORDER BY name")

    @app.route("/items", methods=["GET"])
    async def list_items(request):
        # one query per 30 s at most; concurrent misses share one loader
        items = await data.cache.cache_aside("all-items", load_items, ttl=30)
        return _json(request, 200, items)

    @app.route("/items", methods=["POST"])
    async def add_item(request):
        try:
            body = json.loads(request.content.read())
            name, qty = str(body["name"]), int(body.get("qty", 0))
        except (ValueError, KeyError, TypeError):
            return _json(request, 400, {"error": 'expected {"name": ..., "qty": n}'})
        async with data.db.transaction() as tx:
            existing = await tx.query_one("SELECT qty FROM items WHERE name = :n", {"n": name})
            if existing is None:
                await tx.execute(
                    "INSERT INTO items (name, qty) VALUES (:n, :q)", {"n": name, "q": qty}
                )
            else:
                await tx.execute(
                    "UPDATE items SET qty = qty + :q WHERE name = :n", {"n": name, "q": qty}
                )
        await data.cache.delete("all-items")
        return _json(request, 201, {"name": name})

    @app.route("/items/<name>/take", methods=["POST"])
    async def take(request, name):
        lock = await data.cache.lock(f"take.{name}", ttl=10, wait=2)
        if lock is None:
            return _json(request, 409, {"error": "busy, try again"})
        async with lock:
            row = await data.db.query_one("SELECT qty FROM items WHERE name = :n", {"n": name})
            if row is None or row["qty"] < 1:
                return _json(request, 409, {"error": f"no {name} left"})
            await data.db.execute("UPDATE items SET qty = qty - 1 WHERE name = :n", {"n": name})
        await data.cache.delete("all-items")
        return _json(request, 200, {"took": name, "left": row["qty"] - 1})

    @app.route("/data/health", methods=["GET"])
    def data_health(request):
        return _json(request, 200, data.db.health())

    return app
