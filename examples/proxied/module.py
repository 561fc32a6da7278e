"""
The stock module: a database and a cache it does not open itself. The orchestrator
provides them by name (``state.service``) and the module never sees their URLs.

Run it under the dev orchestrator, which provides them from real servers::

    pywatt dev --module=examples.proxied.module \\
        --provide-database=db-main=postgresql://root@127.0.0.1:5432/test \\
        --provide-cache=cache-main=redis://127.0.0.1:6379/0

(``sqlite:///stock.db`` and ``memory://`` work as well.)

Routes:

- ``PUT /stock/<sku>?qty=N``: set a quantity (an upsert in a transaction), then drop
  the cached copy.
- ``GET /stock/<sku>``: the quantity, from the cache (``cache_aside``, 30 s), 404 if
  unknown.
- ``POST /stock/<sku>/take``: take one unit, one taker at a time (a cache lock), 409
  when none is left.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from pywatt_twisted import pywatt_module

SCHEMA = "CREATE TABLE IF NOT EXISTS stock (sku VARCHAR(64) PRIMARY KEY, qty INTEGER NOT NULL)"


@pywatt_module()
async def create_app(state: Any) -> Klein:
    # Both are ready (or start-up fails, naming the missing service) before the module
    # announces its routes. They are closed when the module stops.
    db = await state.service("db-main", kind="database")
    cache = (await state.service("cache-main", kind="cache")).namespace("stock")
    await db.execute(SCHEMA)
    app = Klein()

    async def set_qty(tx: Any, sku: str, qty: int) -> None:
        await tx.execute("DELETE FROM stock WHERE sku = :sku", {"sku": sku})
        await tx.execute(
            "INSERT INTO stock (sku, qty) VALUES (:sku, :qty)", {"sku": sku, "qty": qty}
        )

    @app.route("/stock/<sku>", methods=["PUT"])
    async def put(request: Any, sku: str) -> dict[str, Any]:
        qty = int(request.args.get(b"qty", [b"0"])[0])
        async with db.transaction() as tx:
            await set_qty(tx, sku, qty)
        await cache.delete(sku)
        return {"sku": sku, "qty": qty}

    async def load(sku: str) -> dict[str, Any] | None:
        return await db.query_one("SELECT sku, qty FROM stock WHERE sku = :sku", {"sku": sku})

    @app.route("/stock/<sku>", methods=["GET"])
    async def get(request: Any, sku: str) -> Any:
        row = await cache.cache_aside(sku, lambda: load(sku), ttl=30)
        if row is None:
            request.setResponseCode(404)
            return {"error": f"no stock record for {sku!r}"}
        return row

    @app.route("/stock/<sku>/take", methods=["POST"])
    async def take(request: Any, sku: str) -> Any:
        lock = await cache.lock(f"take:{sku}", ttl=10, wait=2)
        if lock is None:
            request.setResponseCode(503)
            return {"error": "busy, try again"}
        async with lock:
            changed = await db.execute(
                "UPDATE stock SET qty = qty - 1 WHERE sku = :sku AND qty > 0", {"sku": sku}
            )
            await cache.delete(sku)
        if changed != 1:
            request.setResponseCode(409)
            return {"error": f"no {sku!r} left"}
        return await load(sku)

    return app
