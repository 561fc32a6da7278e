"""
Two modules for the resilience integration test, run by C{pywatt dev} as
C{caller=tests.dev.resilience_modules:caller} and C{callee=...:callee}.

C{GET /call?timeout=S} on the caller sends one request to the callee's C{echo} handler
and answers with the reply or the error kind, and with C{elapsed}: the seconds the
C{send_request} Deferred took, measured inside the caller (so the test sees the
caller's own wait, not the HTTP path's).
"""

from __future__ import annotations

import json
import time
from typing import Any

from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.errors import RemoteError


@pywatt_module()
def caller(state: Any) -> Klein:
    app = Klein()

    @app.route("/call", methods=["GET"])
    async def call(request: Any) -> str:
        timeout = float(request.args.get(b"timeout", [b"1"])[0])
        started = time.monotonic()
        body: dict[str, Any]
        try:
            body = {"reply": await state.send_request("callee", "echo", {"n": 1}, timeout=timeout)}
        except RemoteError as e:
            body = {"error": e.kind}
        body["elapsed"] = time.monotonic() - started
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body)

    return app


@pywatt_module()
def callee(state: Any) -> Klein:
    state.handler("echo")(lambda source, payload: payload)
    return Klein()
