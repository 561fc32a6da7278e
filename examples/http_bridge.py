"""
The web layer on its own: what a module announces, and the same Klein app answering
over HTTP-over-IPC (in memory) and over a real listening port.

Run: ``.venv/bin/python -m examples.http_bridge``

The runtime (``@pywatt_module``) wires exactly these pieces together for you; this
example only shows what each one does.
"""

from __future__ import annotations

import json

import treq
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import react

from pywatt_twisted.web.bridge import HttpBridge
from pywatt_twisted.web.discovery import discover_endpoints, mark_auth
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import PyWattSite, build_root_resource
from pywatt_twisted.wire.messages import HttpRequest


def build_app() -> Klein:
    app = Klein()
    items = {1: "watt", 2: "volt"}

    @app.route("/items/<int:item_id>", methods=["GET"])
    def get_item(request, item_id):
        if item_id not in items:
            request.setResponseCode(404)
            return b'{"error":"no such item"}'
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"id": item_id, "name": items[item_id]})

    @app.route("/items", methods=["POST"])
    def add_item(request):  # announced with auth="jwt" (state.require_jwt does this)
        name = json.loads(request.content.read())["name"]
        items[len(items) + 1] = name
        request.setResponseCode(201)
        request.setHeader(b"location", f"/items/{len(items)}".encode())
        return b""

    mark_auth(add_item, "jwt")
    return app


async def main(reactor) -> None:
    app = build_app()
    print("announced endpoints:")
    for endpoint in discover_endpoints(app):
        print("  ", endpoint)

    metrics = ModuleMetrics()
    root = build_root_resource(
        app.resource(),
        health_path="/health",
        metrics=metrics,
        status=lambda: {"status": "ok", "module_id": "example"},
    )
    site = PyWattSite(root, metrics, reactor=reactor)
    bridge = HttpBridge(site, reactor=reactor, max_concurrent=64, timeout=60)

    print("\nHTTP-over-IPC (what an http_request line becomes):")
    for message in [
        HttpRequest("r1", "GET", "/items/1?verbose=1", {"accept": "application/json"}, None),
        HttpRequest(
            "r2", "POST", "/items", {"content-type": "application/json"}, b'{"name":"amp"}'
        ),
        HttpRequest("r3", "GET", "/items/9", {}, None),
        HttpRequest("r4", "GET", "/health", {}, None),
        HttpRequest("r5", "GET", "no-leading-slash", {}, None),
    ]:
        response = await bridge.handle(message, "stdio")
        print(f"   {message.method} {message.uri} -> {response.status_code} {response.body!r}")

    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/items/3"
        response = await treq.get(url, persistent=False)
        print(f"\ndirect HTTP GET {url} -> {response.code} {await response.content()!r}")
    finally:
        await port.stopListening()

    print("\n/metrics (excerpt):")
    for line in metrics.render().decode().splitlines():
        if line.startswith(("pywatt_http_requests_total", "pywatt_ipc_requests_total")):
            print("  ", line)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
