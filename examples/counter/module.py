"""
The counter module: the original SDK's quick-start module, in pywatt_twisted.

Run it under the dev orchestrator (``make demo``) or under any orchestrator with::

    twistd -n pywatt --module=examples.counter.module

Routes (all announced automatically from the Klein app):

- ``GET /count``: the current count as JSON.
- ``POST /count``: add ``{"by": n}`` (default 1); needs the ``x-api-key`` header to match
  the ``API_KEY`` secret, and follows its rotation.
- ``GET /hello/<name>``: a greeting (an ``async def`` route).
"""

from __future__ import annotations

import json

from klein import Klein
from twisted.internet.task import deferLater

from pywatt_twisted import pywatt_module


class Counter:
    """
    The module's own state, built once at start-up by ``state_builder``.
    """

    def __init__(self, start: int = 0) -> None:
        self.value = start


def build_counter(init, secrets):
    start = int(init.env.get("COUNTER_START", "0"))
    return Counter(start)


def _json(request, status: int, body: dict) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


@pywatt_module(secrets=["API_KEY"], state_builder=build_counter)
def create_app(state):
    app = Klein()
    counter: Counter = state.user_state

    @app.route("/count", methods=["GET"])
    def get_count(request):
        return _json(request, 200, {"count": counter.value, "module": state.module_id})

    @app.route("/count", methods=["POST"])
    def add(request):
        given = request.getHeader(b"x-api-key")
        if given is None or given.decode() != state.secret("API_KEY").expose():
            return _json(request, 401, {"error": "missing or wrong x-api-key"})
        raw = request.content.read()
        try:
            by = int(json.loads(raw).get("by", 1)) if raw else 1
        except (ValueError, AttributeError, TypeError):
            return _json(request, 400, {"error": 'expected a JSON body like {"by": 2}'})
        counter.value += by
        state.log.info("count is now {count}", count=counter.value)
        return _json(request, 200, {"count": counter.value})

    @app.route("/hello/<name>", methods=["GET"])
    async def hello(request, name):
        # An async route: wait a tick on the module's reactor, then answer.
        await deferLater(state.reactor, 0, lambda: None)
        return _json(request, 200, {"hello": name, "from": state.module_id})

    return app
