r"""
A module with JWT-guarded routes.

Run it under the dev orchestrator, which serves the secret from the file (edit the file
to rotate the key while it runs)::

    .venv/bin/pywatt dev --module=examples.auth.module --secrets-file=examples/auth/secrets.json

Mint a token signed with that key and call the guarded route through the front port::

    TOKEN=$(.venv/bin/python -m examples.auth.mint_token \
            --secrets-file=examples/auth/secrets.json --sub alice)
    curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/auth/me
    curl -i http://127.0.0.1:8080/auth/me          # 401, WWW-Authenticate: Bearer

Routes:

- ``GET /me`` (``auth: "jwt"``): the caller's ``sub`` and the token's claims.
- ``POST /notes`` (``auth: "jwt"``, needs the ``notes:write`` scope): an ``async def``
  guarded route.
- ``GET /public``: no token needed.
"""

from __future__ import annotations

import json

from klein import Klein

from pywatt_twisted import JwtConfig, pywatt_module

#: Tokens must come from this issuer, for this audience. mint_token uses the same values.
ISSUER = "pywatt-example-auth"
AUDIENCE = "notes-api"


def _json(request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


@pywatt_module(
    jwt=JwtConfig(secret="JWT_SECRET", issuer=ISSUER, audience=AUDIENCE, leeway=5),
)
def create_app(state):
    app = Klein()
    notes: list[dict[str, str]] = []

    @app.route("/public", methods=["GET"])
    def public(request):
        return _json(request, 200, {"hello": "anyone"})

    # Order matters: @app.route outermost, @state.require_jwt directly above the function.
    @app.route("/me", methods=["GET"])
    @state.require_jwt
    def me(request):
        claims = request.jwt_claims
        return _json(request, 200, {"sub": claims.get("sub"), "claims": claims})

    @app.route("/notes", methods=["POST"])
    @state.require_jwt
    async def add_note(request):
        claims = request.jwt_claims
        if "notes:write" not in str(claims.get("scope", "")).split():
            return _json(request, 403, {"error": "insufficient_scope", "needed": "notes:write"})
        text = request.content.read().decode("utf-8", "replace")
        notes.append({"by": claims["sub"], "text": text})
        state.log.info("{who} added a note", who=claims["sub"])
        return _json(request, 201, {"count": len(notes)})

    @state.on_rotation
    def key_rotated(names):
        if "JWT_SECRET" in names:
            state.log.info("JWT key rotated; tokens signed with the old key are now refused")

    return app
