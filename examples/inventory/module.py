"""
The inventory module: answers other modules' requests (module-to-module messaging)
and registers itself as the provider of the ``Custom("stock")`` service.

    pywatt dev --module=examples.inventory.module --module=examples.orders.module

Handlers (called by other modules with ``state.send_request("inventory", ...)``):

- ``get_stock`` ``{"sku", "delay"?}``: ``{"sku", "in_stock"}``; with ``delay`` (seconds)
  it answers that much later, to show an asynchronous handler.
- ``reserve`` ``{"sku", "quantity"}``: takes items out of stock and answers
  ``{"sku", "reserved", "left"}``, or an error reply of kind ``out_of_stock`` or
  ``unknown_sku`` (a ``RemoteError`` raised by the handler keeps its kind).
- ``restock`` ``{"sku", "quantity"}``: adds items (sent with ``state.send_message``, so
  no reply is expected).

Route: ``GET /stock/<sku>``, the same answer over HTTP.
"""

from __future__ import annotations

import json

from klein import Klein
from twisted.internet.task import deferLater

from pywatt_twisted import pywatt_module
from pywatt_twisted.errors import RemoteError
from pywatt_twisted.wire.messages import ServiceType

STOCK_SERVICE = ServiceType.custom("stock")


def initial_stock(init, secrets):
    return {"A1": 7, "B2": 0, "C3": 120}


@pywatt_module(state_builder=initial_stock)
def create_app(state):
    app = Klein()
    stock: dict[str, int] = state.user_state

    def count(sku: str) -> int:
        if sku not in stock:
            raise RemoteError(f"no such sku {sku!r}", kind="unknown_sku")
        return stock[sku]

    @state.handler("get_stock")
    def get_stock(source, payload):
        sku = payload["sku"]
        answer = {"sku": sku, "in_stock": count(sku)}
        delay = float(payload.get("delay", 0))
        if delay > 0:
            state.log.info(
                "get_stock {sku} from {source}: answering in {delay} s",
                sku=sku,
                source=source,
                delay=delay,
            )
            return deferLater(state.reactor, delay, lambda: answer)
        return answer

    @state.handler("reserve")
    def reserve(source, payload):
        sku, quantity = payload["sku"], int(payload["quantity"])
        have = count(sku)
        if quantity > have:
            raise RemoteError(f"{sku}: {quantity} wanted, {have} in stock", kind="out_of_stock")
        stock[sku] = have - quantity
        state.log.info(
            "{source} reserved {quantity} x {sku}", source=source, quantity=quantity, sku=sku
        )
        return {"sku": sku, "reserved": quantity, "left": stock[sku]}

    @state.handler("restock")
    def restock(source, payload):
        stock[payload["sku"]] = stock.get(payload["sku"], 0) + int(payload["quantity"])

    @app.route("/stock/<sku>", methods=["GET"])
    def stock_route(request, sku):
        request.setHeader(b"content-type", b"application/json")
        if sku not in stock:
            request.setResponseCode(404)
            return json.dumps({"error": f"no such sku {sku!r}"})
        return json.dumps({"sku": sku, "in_stock": stock[sku]})

    # Tell other modules where the stock service is. Nothing waits for it: a module
    # must start even when the orchestrator does not serve discovery.
    registered = state.register_service_provider(
        STOCK_SERVICE, "inventory", address=state.module_id, version="1"
    )
    registered.addCallbacks(
        lambda provider_id: state.log.info("registered as stock provider {id}", id=provider_id),
        lambda failure: state.log.warn(
            "stock provider registration failed: {error}", error=str(failure.value)
        ),
    )
    return app
