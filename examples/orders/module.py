"""
The orders module: serves HTTP and asks the inventory module for stock over
module-to-module messaging (``state.send_request``), mapping the outcomes to HTTP.

    pywatt dev --module=examples.inventory.module --module=examples.orders.module
    curl -s localhost:8080/orders/stock/A1
    curl -s -X POST localhost:8080/orders/orders -d '{"sku": "A1", "quantity": 2}'

Routes:

- ``GET /stock/<sku>[?delay=s][&timeout=s]``: the inventory's ``get_stock`` answer.
- ``POST /orders`` ``{"sku", "quantity"}``: reserves at the inventory; 201 with the
  reservation, 409 when it is out of stock, 404 for an unknown sku.
- ``GET /providers``: the providers of the ``Custom("stock")`` service (discovery).

Outcomes of a request: the reply (200/201); an error reply (``RemoteError``: 404/409,
or 502 when the inventory module is gone or failed); no reply in time
(``Timeout``, a ``RemoteError`` and a ``RequestTimeout``: 504); no channel to send on
(503). The timeout is ``ORDERS_INVENTORY_TIMEOUT`` from the init blob's env (default 5 s),
or ``?timeout=``.
"""

from __future__ import annotations

import json

from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.errors import ChannelError, NotAvailable, RemoteError, RequestTimeout, Timeout
from pywatt_twisted.wire.messages import ServiceType

INVENTORY = "inventory"
STOCK_SERVICE = ServiceType.custom("stock")
STATUS_FOR_KIND = {"unknown_sku": 404, "out_of_stock": 409}


def _json(request, status: int, body) -> str:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body)


@pywatt_module()
def create_app(state):
    app = Klein()
    default_timeout = float(state.init.env.get("ORDERS_INVENTORY_TIMEOUT", "5"))

    async def ask(request, endpoint, payload, success=200):
        timeout = float(request.args.get(b"timeout", [default_timeout])[0])
        try:
            reply = await state.send_request(INVENTORY, endpoint, payload, timeout=timeout)
        except Timeout as e:  # before RemoteError: a Timeout is one too (kind "timeout")
            return _json(request, 504, {"error": "timeout", "message": str(e)})
        except RemoteError as e:
            return _json(
                request, STATUS_FOR_KIND.get(e.kind, 502), {"error": e.kind, "message": str(e)}
            )
        except (ChannelError, NotAvailable) as e:
            return _json(request, 503, {"error": "unavailable", "message": str(e)})
        return _json(request, success, reply)

    @app.route("/stock/<sku>", methods=["GET"])
    async def stock(request, sku):
        payload = {"sku": sku}
        if b"delay" in request.args:
            payload["delay"] = float(request.args[b"delay"][0])
        return await ask(request, "get_stock", payload)

    @app.route("/orders", methods=["POST"])
    async def place(request):
        try:
            order = json.loads(request.content.read() or b"{}")
            payload = {"sku": str(order["sku"]), "quantity": int(order.get("quantity", 1))}
        except (ValueError, KeyError, TypeError):
            return _json(request, 400, {"error": 'expected {"sku": str, "quantity": int}'})
        return await ask(request, "reserve", payload, success=201)

    @app.route("/providers", methods=["GET"])
    async def providers(request):
        try:
            found = await state.discover_service_providers(STOCK_SERVICE, timeout=5)
        except (RemoteError, RequestTimeout) as e:
            return _json(request, 502, {"error": str(e)})
        return _json(
            request,
            200,
            [
                {
                    "module_id": p.module_id,
                    "name": p.name,
                    "address": p.address,
                    "healthy": p.is_healthy,
                }
                for p in found
            ],
        )

    return app
