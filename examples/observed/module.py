"""
The observed module: its own metrics, health checks on what it depends on, and alerts.

Run it under the dev orchestrator or under any orchestrator with::

    twistd -n pywatt --module=examples.observed.module

Routes:

- ``POST /orders``: place an order (``{"region": "eu"}``); counted in
  ``orders_placed_total{region}`` and timed in ``order_seconds``.
- ``GET /orders``: how many were placed.

``/health`` checks the module's cache (made while starting, so checked without more code)
and the order queue (a check of the module's own); ``/metrics`` shows the module's
metrics after the SDK's, and ``pywatt_build_info``.
"""

from __future__ import annotations

import json
import os

from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.data import Cache

#: The queue is "lagging" above this many orders waiting.
MAX_WAITING = 1000


class Orders:
    def __init__(self) -> None:
        self.placed = 0
        self.waiting = 0


@pywatt_module
def create_app(state):
    orders = Orders()
    app = Klein()
    # A cache made while the module starts is checked on /health (degraded while its
    # server is down) and closed when the module stops.
    cache = Cache.from_url(os.environ.get("OBSERVED_CACHE_URL", "memory://"))

    placed = state.metrics.counter("orders_placed", "Orders placed.", ("region",))
    timing = state.metrics.histogram("order_seconds", "Time to place an order.")
    state.metrics.gauge("orders_waiting", "Orders not shipped yet.").set_function(
        lambda: orders.waiting
    )

    def queue_ok():
        if orders.waiting > MAX_WAITING:
            raise RuntimeError(f"{orders.waiting} orders waiting (limit {MAX_WAITING})")

    state.health_check("order-queue", queue_ok)

    @state.on_alert
    def alert(alert):
        state.log.warn("SLO alert: {alert}", alert=alert.summary)

    @app.route("/orders", methods=["POST"])
    async def place(request):
        with timing.time():
            body = json.loads(request.content.read() or b"{}")
            region = str(body.get("region", "other"))
            orders.placed += 1
            orders.waiting += 1
            await cache.set(f"last:{region}", orders.placed)
        placed.labels(region).inc()
        return {"placed": orders.placed}

    @app.route("/orders", methods=["GET"])
    def count(request):
        return {"placed": orders.placed, "waiting": orders.waiting}

    return app
