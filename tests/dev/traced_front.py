"""
The front module of L{tests.dev.test_traces}: C{GET /items/<sku>} asks module C{stock}
for the level of C{sku} and answers with it.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein

from pywatt_twisted import pywatt_module


@pywatt_module()
def create_app(state: Any) -> Klein:
    app = Klein()

    @app.route("/items/<sku>")
    async def item(request: Any, sku: str) -> bytes:
        reply = await state.send_request("stock", "lookup", {"sku": sku}, timeout=20)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(reply).encode()

    return app
