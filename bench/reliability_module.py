"""
The module that C{python -m bench reliability} runs as a real process: a route with a
64 KiB reply, a routed handler that takes 50 ms, and a secret that is rotated.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import deferLater

from pywatt_twisted import pywatt_module

REPLY = b"x" * (64 * 1024)


@pywatt_module(secrets=["API_KEY"])
def create_app(state: Any) -> Klein:
    app = Klein()

    @app.route("/big", methods=["GET"])
    def big(request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/octet-stream")
        return REPLY

    @state.handler("work")
    def work(source: str, payload: Any) -> Any:
        return deferLater(reactor, 0.05, lambda: {"done": payload})

    return app
