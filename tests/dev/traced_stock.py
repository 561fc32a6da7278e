"""
The stock module of L{tests.dev.test_traces}: handler C{lookup} reads a SQLite table
(the file named by C{TRACED_STOCK_DB}).
"""

from __future__ import annotations

import os
from typing import Any

from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.data import Database


@pywatt_module()
async def create_app(state: Any) -> Klein:
    db = state.register_database(Database.from_url(f"sqlite:///{os.environ['TRACED_STOCK_DB']}"))
    await db.execute("CREATE TABLE IF NOT EXISTS levels (sku TEXT PRIMARY KEY, n INTEGER)")
    await db.execute("INSERT OR REPLACE INTO levels VALUES ('A1', 7)")

    @state.handler("lookup")
    async def lookup(source: str, payload: Any) -> Any:
        row = await db.query_one("SELECT n FROM levels WHERE sku = :sku", {"sku": payload["sku"]})
        return {"sku": payload["sku"], "n": row["n"] if row else 0}

    return Klein()
