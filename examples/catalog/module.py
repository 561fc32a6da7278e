"""
The catalog module: a versioned API (every route under ``/v1``) that a single-page app
served from another origin calls, so it declares a CORS policy; one route is public to
every origin. Run it under the dev orchestrator:

    pywatt dev --module=examples.catalog.module

then ``curl -i -H 'Origin: http://localhost:5173' localhost:8080/catalog/v1/items``.
It serves HTTP-over-IPC only (no listen socket) when started with ``PYWATT_IPC_ONLY=1``.
"""

from __future__ import annotations

from klein import Klein

from pywatt_twisted import CorsPolicy, cors, pywatt_module

#: The browser app's origins: its dev server and its deployed site.
APP_ORIGINS = ["http://localhost:5173", "https://shop.example.com"]

ITEMS = {1: {"id": 1, "name": "kettle"}, 2: {"id": 2, "name": "teapot"}}


@pywatt_module(
    version="v1",
    cors=CorsPolicy(
        origins=APP_ORIGINS,
        methods=["GET", "POST", "DELETE"],
        headers=["Content-Type", "Authorization"],
        expose_headers=["X-Total-Count"],
        credentials=True,
        max_age=600,
    ),
)
def create_app(state):
    app = Klein()
    items = dict(ITEMS)

    @app.route("/items", methods=["GET"])
    def list_items(request):
        request.setHeader(b"x-total-count", str(len(items)).encode())
        return sorted(items.values(), key=lambda item: item["id"])

    @app.route("/items/<int:item_id>", methods=["DELETE"])
    def delete_item(request, item_id):
        if items.pop(item_id, None) is None:
            request.setResponseCode(404)
            return {"error": f"no item {item_id}"}
        return {"deleted": item_id}

    @app.route("/status", methods=["GET"])
    @cors(CorsPolicy(origins=["*"], methods=["GET"]))
    def public_status(request):
        return {"items": len(items)}

    return app
