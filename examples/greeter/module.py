"""
The greeter module: answers with a greeting taken from the ``GREETING`` secret, so a
rotation is visible in its responses at once.

    pywatt dev --module=examples.greeter.module --secrets-file=examples/greeter/secrets.json
"""

from __future__ import annotations

import json

from klein import Klein

from pywatt_twisted import pywatt_module


@pywatt_module(secrets=["GREETING"])
def create_app(state):
    app = Klein()
    rotations = []

    @state.on_rotation
    def remember(names):
        rotations.append(sorted(names))
        state.log.info("greeting rotated ({count} so far)", count=len(rotations))

    @app.route("/greet/<name>", methods=["GET"])
    def greet(request, name):
        request.setHeader(b"content-type", b"application/json")
        greeting = state.secret("GREETING").expose()
        return json.dumps({"message": f"{greeting}, {name}!", "rotations": len(rotations)})

    return app
