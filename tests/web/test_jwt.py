"""
Tests for L{pywatt_twisted.web._jwt}: the configuration, the guard, and the negative
matrix through real HTTP, both against a module service listening on 127.0.0.1 in this
process and against the example auth module run as a real C{twistd -n pywatt} process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import jwt as pyjwt
import treq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from klein import Klein
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted import JwtConfig, pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted._runtime.service import READY, ModuleService
from pywatt_twisted.errors import ConfigurationError, NotAvailable
from pywatt_twisted.web._jwt import (
    MAX_LEEWAY,
    JwtGuard,
    JwtRejected,
    check_key,
    looks_like_public_key,
)
from tests.integration.process import ModuleProcess, init_blob, twistd_command
from tests.runtime.helpers import Harness, init_line, line

KEY = "jwt-test-key-0123456789abcdef-0123456789abcdef"
OTHER_KEY = "some-other-key-0123456789abcdef-0123456789ab"
NEW_KEY = "rotated-jwt-key-9876543210fedcba-9876543210fe"
ISSUER = "https://issuer.test"
AUDIENCE = "orders-api"


# -- tokens -------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_token(
    payload: dict[str, Any],
    key: str | bytes = KEY,
    header: dict[str, Any] | None = None,
    alg: str = "HS256",
) -> str:
    """
    Build an HMAC token by hand, so tests control every header byte (PyJWT refuses to
    produce some of the hostile tokens below).
    """
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    signing_input = (
        b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(payload).encode())
    ).encode()
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    raw_key = key.encode() if isinstance(key, str) else key
    signature = hmac.new(raw_key, signing_input, digest).digest()
    return signing_input.decode() + "." + b64url(signature)


def unsigned_token(payload: dict[str, Any]) -> str:
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return head + "." + b64url(json.dumps(payload).encode()) + "."


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


_RSA: list[Any] = []


def rsa_key() -> Any:
    if not _RSA:
        _RSA.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA[0]


def rsa_public_pem() -> str:
    return (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rs_token(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    return pyjwt.encode(payload, rsa_key(), algorithm="RS256", headers=header)


# -- modules ------------------------------------------------------------------------------

HS_CONFIG = JwtConfig(secret="JWT_SECRET", issuer=ISSUER, audience=AUDIENCE, leeway=10)


@pywatt_module(jwt=HS_CONFIG)
def hs_module(state):
    app = Klein()

    @app.route("/open", methods=["GET"])
    def open_route(request):
        return b"open"

    @app.route("/me", methods=["GET"])
    @state.require_jwt
    def me(request):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"claims": request.jwt_claims}).encode()

    @app.route("/orders/<int:order_id>", methods=["POST"])
    @state.require_jwt
    async def order(request, order_id):
        return json.dumps({"order": order_id, "by": request.jwt_claims["sub"]}).encode()

    return app


@pywatt_module(jwt=JwtConfig(secret="JWT_PUBLIC_KEY", algorithms=("RS256",)))
def rs_module(state):
    app = Klein()

    @app.route("/me", methods=["GET"])
    @state.require_jwt
    def me(request):
        return request.jwt_claims["sub"].encode()

    return app


@pywatt_module(jwt=JwtConfig())
def wrong_order_module(state):
    app = Klein()

    @state.require_jwt
    @app.route("/me", methods=["GET"])
    def me(request):
        return b"unguarded!"

    return app


@pywatt_module
def no_jwt_module(state):
    app = Klein()

    @app.route("/me", methods=["GET"])
    @state.require_jwt
    def me(request):
        return b"x"

    return app


# -- configuration ----------------------------------------------------------------------------


class JwtConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = JwtConfig()
        self.assertEqual(config.secret, "JWT_SECRET")
        self.assertEqual(config.algorithms, ("HS256",))
        self.assertEqual((config.audience, config.issuer, config.leeway), (None, None, 0.0))
        self.assertTrue(config.symmetric)
        self.assertEqual(config.required_claims, ["exp"])

    def test_required_claims_follow_issuer_and_audience(self) -> None:
        self.assertEqual(HS_CONFIG.required_claims, ["exp", "iss", "aud"])

    def test_single_algorithm_string_and_list(self) -> None:
        self.assertEqual(JwtConfig(algorithms="RS256").algorithms, ("RS256",))
        self.assertEqual(JwtConfig(algorithms=["HS256", "HS512"]).algorithms, ("HS256", "HS512"))
        self.assertFalse(JwtConfig(algorithms=["ES256"]).symmetric)

    def test_none_refused_in_any_case(self) -> None:
        for name in ("none", "None", "NONE"):
            e = self.assertRaises(ConfigurationError, JwtConfig, algorithms=[name])
            self.assertIn("'none'", str(e))

    def test_unknown_and_empty_algorithms(self) -> None:
        e = self.assertRaises(ConfigurationError, JwtConfig, algorithms=["hs256"])
        self.assertIn("unknown algorithm 'hs256'", str(e))
        self.assertRaises(ConfigurationError, JwtConfig, algorithms=[])
        self.assertRaises(ConfigurationError, JwtConfig, algorithms=[256])

    def test_families_cannot_mix(self) -> None:
        e = self.assertRaises(ConfigurationError, JwtConfig, algorithms=["HS256", "RS256"])
        self.assertIn("algorithm confusion", str(e))

    def test_leeway_bounds(self) -> None:
        self.assertEqual(JwtConfig(leeway=MAX_LEEWAY).leeway, MAX_LEEWAY)
        for bad in (-1, MAX_LEEWAY + 1, float("nan"), "5", True):
            self.assertRaises(ConfigurationError, JwtConfig, leeway=bad)

    def test_names(self) -> None:
        self.assertRaises(ConfigurationError, JwtConfig, secret="")
        self.assertRaises(ConfigurationError, JwtConfig, issuer="")
        self.assertRaises(ConfigurationError, JwtConfig, audience=["a", "b"])

    def test_lazy_public_name(self) -> None:
        import pywatt_twisted
        from pywatt_twisted.web import _jwt as module

        self.assertIs(pywatt_twisted.JwtConfig, module.JwtConfig)

    def test_module_fetches_the_key_secret(self) -> None:
        self.assertEqual(hs_module.secrets, ("JWT_SECRET",))


class KeyCheckTests(SynchronousTestCase):
    def test_public_key_shapes(self) -> None:
        self.assertTrue(looks_like_public_key(rsa_public_pem().encode()))
        self.assertTrue(looks_like_public_key(b"ssh-ed25519 AAAAC3Nza... me@host"))
        self.assertTrue(looks_like_public_key(b'{"kty": "RSA", "n": "x", "e": "AQAB"}'))
        self.assertFalse(looks_like_public_key(KEY.encode()))
        self.assertFalse(looks_like_public_key(b'{"not": "a jwk"}'))

    def test_hmac_config_refuses_public_key_without_showing_it(self) -> None:
        pem = rsa_public_pem()
        e = self.assertRaises(ConfigurationError, check_key, JwtConfig(), pem)
        self.assertIn("'JWT_SECRET'", str(e))
        self.assertIn("algorithm confusion", str(e))
        self.assertNotIn(pem.splitlines()[1], str(e))

    def test_asymmetric_config_accepts_pem_and_empty_refused(self) -> None:
        check_key(JwtConfig(algorithms=["RS256"]), rsa_public_pem())
        self.assertRaises(ConfigurationError, check_key, JwtConfig(), "")


class GuardWiringTests(SynchronousTestCase):
    """
    Start-up behaviour, in memory.
    """

    def start(self, definition: Any, secrets: dict[str, str]) -> Harness:
        h = Harness(definition)
        h.start()
        h.feed(init_line())
        h.answer_secrets(secrets)
        return h

    def test_guarded_routes_announced_with_auth(self) -> None:
        h = self.start(hs_module, {"JWT_SECRET": KEY})
        self.assertEqual(h.service.status, READY)
        announce = next(x for x in h.sent() if x.get("op") == "announce")
        auth = {e["path"]: e.get("auth") for e in announce["endpoints"]}
        self.assertEqual(auth["/me"], "jwt")
        self.assertEqual(auth["/orders/:order_id"], "jwt")
        self.assertIsNone(auth["/open"])
        self.assertIsNone(auth["/health"])

    def test_wrong_decorator_order_fails_start_up(self) -> None:
        h = self.start(wrong_order_module, {"JWT_SECRET": KEY})
        failure = self.failureResultOf(h.service.whenReady(), ConfigurationError)
        self.assertIn("@app.route('/me')", str(failure.value))
        self.assertIn("Put @app.route(...) first", str(failure.value))
        self.assertEqual(h.exits, [1])

    def test_require_jwt_without_config_fails_start_up(self) -> None:
        h = self.start(no_jwt_module, {})
        failure = self.failureResultOf(h.service.whenReady(), NotAvailable)
        self.assertIn("jwt=JwtConfig", str(failure.value))
        self.assertEqual(h.exits, [1])

    def test_hmac_config_with_public_key_secret_fails_start_up(self) -> None:
        pem = rsa_public_pem()
        h = self.start(hs_module, {"JWT_SECRET": pem})
        failure = self.failureResultOf(h.service.whenReady(), ConfigurationError)
        self.assertIn("algorithm confusion", str(failure.value))
        self.assertEqual(h.exits, [1])

    def test_guard_is_idempotent_and_keeps_the_view(self) -> None:
        guard = JwtGuard(JwtConfig(), lambda: None)  # type: ignore[arg-type,return-value]

        def view(request):
            return b"v"

        wrapped = guard(view)
        self.assertIs(guard(wrapped), wrapped)
        self.assertIs(wrapped.__wrapped__, view)  # type: ignore[attr-defined]
        self.assertEqual(wrapped.__name__, "view")
        self.assertFalse(hasattr(view, "__pywatt_auth__"), "the unguarded view must stay unmarked")


# -- through real HTTP, in this process -----------------------------------------------------


class _StdioTransport(StringTransport):
    """
    A L{StringTransport} that tells its protocol when stdout is closed, as
    C{StandardIO} does, so a graceful stop does not wait for its flush deadline.
    """

    def connect(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)

    def loseConnection(self) -> None:
        super().loseConnection()
        reactor.callLater(0, self.protocol.writeConnectionLost)


class LiveModule:
    """
    A L{ModuleService} on the real reactor, listening on 127.0.0.1:0; stdio is a
    L{StringTransport} the test writes to and reads from.
    """

    def __init__(self, definition: Any, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.transport = _StdioTransport()
        self.exits: list[int] = []
        self.service = ModuleService(
            definition,
            reactor=reactor,
            connect_stdio=self.transport.connect,
            stop_process=self.exits.append,
            config=RuntimeConfig(secret_timeout=5),
            redactor=Redactor(),
        )

    async def start(self) -> LiveModule:
        self.service.startService()
        self.feed(init_line(listen="127.0.0.1:0"))
        for name, value in self.secrets.items():
            self.feed(line({"op": "secret", "name": name, "value": value}))
        await self.service.whenReady()
        return self

    def feed(self, data: bytes) -> None:
        assert self.service.stdio is not None
        self.service.stdio.dataReceived(data)

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.transport.value().splitlines()]

    def url(self, path: str) -> str:
        return f"http://{self.service.listen_address}{path}"

    async def stop(self) -> None:
        await self.service.stopService()


class JwtHttpTests(TestCase):
    """
    The negative matrix of issue 5, each through a real TCP connection to the module's
    site: everything but a valid token is a 401 with the JSON body and the challenge.
    """

    timeout = 30

    def setUp(self) -> Deferred[None]:
        self.module = LiveModule(hs_module, {"JWT_SECRET": KEY})
        self.addCleanup(lambda: Deferred.fromCoroutine(self.module.stop()))
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.module.start()

    async def get(self, token: str | None = None, raw: str | None = None, path: str = "/me"):
        headers = {}
        if token is not None:
            headers[b"authorization"] = [f"Bearer {token}".encode()]
        if raw is not None:
            headers[b"authorization"] = [raw.encode()]
        response = await treq.get(self.module.url(path), headers=headers, persistent=False)
        body = await response.content()
        return response, body

    async def assert_rejected(
        self, token: str | None = None, why: str = "", raw: str | None = None, bare: bool = False
    ) -> dict[str, Any]:
        response, body = await self.get(token, raw)
        self.assertEqual(response.code, 401, body)
        challenge = response.headers.getRawHeaders(b"www-authenticate")
        self.assertEqual(challenge, [b"Bearer"] if bare else [b'Bearer error="invalid_token"'])
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        document = json.loads(body)
        self.assertEqual(set(document), {"error", "error_description"})
        self.assertEqual(document["error"], "invalid_token")
        self.assertIn(why, document["error_description"])
        if token:
            for part in token.split("."):
                if len(part) > 8:
                    self.assertNotIn(part.encode(), body, "the token must not be echoed")
        return document

    async def test_valid_token_gets_claims(self) -> None:
        payload = claims(scope="read")
        response, body = await self.get(hs_token(payload))
        self.assertEqual(response.code, 200, body)
        self.assertEqual(json.loads(body), {"claims": payload})

    async def test_valid_token_async_route_with_path_argument(self) -> None:
        response = await treq.post(
            self.module.url("/orders/42"),
            headers={b"authorization": [f"Bearer {hs_token(claims())}".encode()]},
            persistent=False,
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(await response.content()), {"order": 42, "by": "alice"})

    async def test_unguarded_route_needs_nothing(self) -> None:
        response, body = await self.get(path="/open")
        self.assertEqual((response.code, body), (200, b"open"))

    async def test_no_token(self) -> None:
        await self.assert_rejected(why="Authorization: Bearer", bare=True)

    async def test_other_scheme(self) -> None:
        await self.assert_rejected(raw="Basic YWxpY2U6cHc=", why="Bearer scheme", bare=True)

    async def test_empty_bearer(self) -> None:
        await self.assert_rejected(raw="Bearer ", why="empty")

    async def test_malformed(self) -> None:
        for token in ("not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.%%%.xyz", "...."):
            await self.assert_rejected(token, why="malformed")

    async def test_alg_none(self) -> None:
        await self.assert_rejected(unsigned_token(claims()), why="algorithm is not accepted")

    async def test_alg_none_with_a_signature_too(self) -> None:
        token = unsigned_token(claims()) + b64url(b"sig")
        await self.assert_rejected(token, why="algorithm is not accepted")

    async def test_signed_with_another_key(self) -> None:
        await self.assert_rejected(hs_token(claims(), key=OTHER_KEY), why="signature")

    async def test_other_hmac_algorithm_than_configured(self) -> None:
        await self.assert_rejected(hs_token(claims(), alg="HS512"), why="algorithm")

    async def test_rs256_token_against_hs256_config(self) -> None:
        await self.assert_rejected(rs_token(claims()), why="algorithm is not accepted")

    async def test_tampered_payload(self) -> None:
        head, _, signature = hs_token(claims()).split(".")
        forged = b64url(json.dumps(claims(sub="mallory")).encode())
        await self.assert_rejected(f"{head}.{forged}.{signature}", why="signature")

    async def test_expired(self) -> None:
        await self.assert_rejected(hs_token(claims(exp=int(time.time()) - 60)), why="expired")

    async def test_expired_within_leeway_is_accepted(self) -> None:
        response, body = await self.get(hs_token(claims(exp=int(time.time()) - 3)))
        self.assertEqual(response.code, 200, body)

    async def test_not_yet_valid(self) -> None:
        await self.assert_rejected(
            hs_token(claims(nbf=int(time.time()) + 3600)), why="not valid yet"
        )

    async def test_issued_in_the_future(self) -> None:
        await self.assert_rejected(
            hs_token(claims(iat=int(time.time()) + 3600)), why="not valid yet"
        )

    async def test_missing_exp(self) -> None:
        await self.assert_rejected(hs_token(claims(exp=None)), why="'exp'")

    async def test_time_claims_that_are_not_numbers(self) -> None:
        # Each is signed with the right key: only the claim's type is wrong.
        for name, value in [("exp", "tomorrow"), ("nbf", []), ("iat", "x"), ("iat", True)]:
            await self.assert_rejected(hs_token(claims(**{name: value})), why=f"{name} claim")

    async def test_wrong_issuer(self) -> None:
        await self.assert_rejected(hs_token(claims(iss="https://evil.test")), why="issuer")
        # Exact comparison: neither a prefix nor a superstring passes.
        await self.assert_rejected(hs_token(claims(iss=ISSUER[:-1])), why="issuer")
        await self.assert_rejected(hs_token(claims(iss=ISSUER + "/x")), why="issuer")

    async def test_missing_issuer(self) -> None:
        await self.assert_rejected(hs_token(claims(iss=None)), why="'iss'")

    async def test_wrong_audience(self) -> None:
        await self.assert_rejected(hs_token(claims(aud="billing-api")), why="audience")
        await self.assert_rejected(hs_token(claims(aud="orders")), why="audience")
        await self.assert_rejected(hs_token(claims(aud=["billing-api"])), why="audience")

    async def test_audience_list_containing_ours(self) -> None:
        response, body = await self.get(hs_token(claims(aud=["billing-api", AUDIENCE])))
        self.assertEqual(response.code, 200, body)

    async def test_unknown_crit_header(self) -> None:
        token = hs_token(claims(), header={"crit": ["urn:example:x"], "urn:example:x": 1})
        await self.assert_rejected(token, why="crit")

    async def test_crit_b64_header(self) -> None:
        # PyJWT knows b64; a JWT never uses it, so it is refused like any other.
        token = hs_token(claims(), header={"crit": ["b64"], "b64": True})
        await self.assert_rejected(token, why="crit")

    async def test_two_authorization_headers(self) -> None:
        token = hs_token(claims())
        response = await treq.get(
            self.module.url("/me"),
            headers={b"authorization": [f"Bearer {token}".encode(), b"Bearer x"]},
            persistent=False,
        )
        self.assertEqual(response.code, 401)

    async def test_rotation_old_key_stops_new_key_works(self) -> None:
        old_token = hs_token(claims())
        new_token = hs_token(claims(), key=NEW_KEY)
        self.module.feed(line({"op": "rotated", "keys": ["JWT_SECRET"], "rotation_id": "rot-jwt"}))
        # Until the new value is in, the old key still verifies (no half-rotated state).
        response, _ = await self.get(old_token)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.module.sent()[-1], {"op": "get_secret", "name": "JWT_SECRET"})
        self.module.feed(
            line({"op": "secret", "name": "JWT_SECRET", "value": NEW_KEY, "rotation_id": "rot-jwt"})
        )
        self.assertEqual(
            self.module.sent()[-1],
            {"op": "rotation_ack", "rotation_id": "rot-jwt", "status": "success"},
        )
        await self.assert_rejected(old_token, why="signature")
        response, body = await self.get(new_token)
        self.assertEqual(response.code, 200, body)

    async def test_rotation_to_a_public_key_refuses_tokens(self) -> None:
        self.module.feed(line({"op": "secret", "name": "JWT_SECRET", "value": rsa_public_pem()}))
        await self.assert_rejected(hs_token(claims()), why="cannot be verified")

    async def test_guard_over_http_over_ipc(self) -> None:
        def request(request_id: str, headers: dict[str, str]) -> bytes:
            return line(
                {
                    "op": "http_request",
                    "request_id": request_id,
                    "method": "GET",
                    "uri": "/me",
                    "headers": headers,
                    "body": None,
                }
            )

        self.module.feed(request("ipc-ok", {"authorization": f"Bearer {hs_token(claims())}"}))
        self.module.feed(request("ipc-no", {}))
        for _ in range(50):
            replies = {
                x["content"]["request_id"]: x["content"]
                for x in self.module.sent()
                if "content" in x
            }
            if len(replies) == 2:
                break
            await Deferred.fromCoroutine(_tick())
        self.assertEqual(replies["ipc-ok"]["status_code"], 200)
        self.assertEqual(json.loads(bytes(replies["ipc-ok"]["body"]))["claims"]["sub"], "alice")
        self.assertEqual(replies["ipc-no"]["status_code"], 401)
        self.assertEqual(replies["ipc-no"]["headers"]["www-authenticate"], "Bearer")


async def _tick() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)


class AsymmetricJwtHttpTests(TestCase):
    """
    A module configured for RS256 with a PEM public key: the mirror image of algorithm
    confusion (an HS256 token HMAC-signed with the public key) is refused.
    """

    timeout = 30

    def setUp(self) -> Deferred[None]:
        self.module = LiveModule(rs_module, {"JWT_PUBLIC_KEY": rsa_public_pem()})
        self.addCleanup(lambda: Deferred.fromCoroutine(self.module.stop()))
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.module.start()

    async def call(self, token: str) -> int:
        response = await treq.get(
            self.module.url("/me"),
            headers={b"authorization": [f"Bearer {token}".encode()]},
            persistent=False,
        )
        await response.content()
        return int(response.code)

    async def test_rs256_token_accepted(self) -> None:
        self.assertEqual(await self.call(rs_token(claims(iss=None, aud=None))), 200)

    async def test_hs256_signed_with_the_public_key_refused(self) -> None:
        forged = hs_token(claims(iss=None, aud=None), key=rsa_public_pem())
        self.assertEqual(await self.call(forged), 401)

    async def test_rs256_token_with_no_exp_refused(self) -> None:
        self.assertEqual(await self.call(rs_token(claims(iss=None, aud=None, exp=None))), 401)


# -- through a real module process ----------------------------------------------------------


class JwtModuleProcessTests(TestCase):
    """
    The example auth module (examples/auth/module.py) as a real C{twistd -n pywatt}
    process: announce, valid and invalid tokens, and a rotation of the key.
    """

    timeout = 60

    async def test_example_module(self) -> None:
        from examples.auth.mint_token import mint

        path = self.mktemp()
        os.makedirs(path)
        proc = ModuleProcess.spawn(twistd_command("examples.auth.module"), path=path)
        self.addCleanup(_kill, proc)
        proc.send(init_blob(module_id="auth"))
        request = await proc.expect_op("get_secret")
        self.assertEqual(request["name"], "JWT_SECRET")
        proc.send({"op": "secret", "name": "JWT_SECRET", "value": KEY})
        announce = await proc.expect_op("announce")
        auth = {e["path"]: e.get("auth") for e in announce["endpoints"]}
        self.assertEqual((auth["/me"], auth["/notes"], auth.get("/public")), ("jwt", "jwt", None))
        base = f"http://{announce['listen']}"

        async def call(method: str, path: str, token: str | None = None, body: bytes = b""):
            headers = {b"authorization": [f"Bearer {token}".encode()]} if token else {}
            response = await treq.request(
                method, base + path, headers=headers, data=body or None, persistent=False
            )
            return response.code, await response.content(), response.headers

        old = mint(KEY, "alice", scope="notes:write")
        code, body, _ = await call("GET", "/me", old)
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["sub"], "alice")
        code, body, _ = await call("POST", "/notes", old, b"hello")
        self.assertEqual((code, json.loads(body)), (201, {"count": 1}))
        code, body, _ = await call("POST", "/notes", mint(KEY, "bob"), b"hello")
        self.assertEqual(code, 403)
        code, body, headers = await call("GET", "/me")
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders(b"www-authenticate"), [b"Bearer"])
        for bad in (
            unsigned_token(claims(iss="pywatt-example-auth", aud="notes-api")),
            mint(OTHER_KEY, "alice"),
            rs_token(claims(iss="pywatt-example-auth", aud="notes-api")),
            mint(KEY, "alice", ttl=-60),
        ):
            code, body, headers = await call("GET", "/me", bad)
            self.assertEqual(code, 401, body)
            self.assertEqual(json.loads(body)["error"], "invalid_token")

        proc.send({"op": "rotated", "keys": ["JWT_SECRET"], "rotation_id": "r-1"})
        await proc.expect(lambda x: x.get("op") == "get_secret" and proc.lines.count(x) == 2)
        proc.send({"op": "secret", "name": "JWT_SECRET", "value": NEW_KEY, "rotation_id": "r-1"})
        ack = await proc.expect_op("rotation_ack")
        self.assertEqual(ack, {"op": "rotation_ack", "rotation_id": "r-1", "status": "success"})
        code, body, _ = await call("GET", "/me", old)
        self.assertEqual(code, 401, body)
        self.assertIn("signature", json.loads(body)["error_description"])
        code, body, _ = await call("GET", "/me", mint(NEW_KEY, "alice"))
        self.assertEqual(code, 200, body)

        proc.send({"op": "shutdown"})
        self.assertEqual(await proc.ended, 0)
        for value in (KEY, NEW_KEY):
            self.assertNotIn(value.encode(), proc.stderr)
            self.assertNotIn(value.encode(), proc.stdout)
        self.assertNotIn(old.encode(), proc.stderr, "tokens are not logged")


async def _kill(proc: ModuleProcess) -> None:
    if proc.exit_code is None and proc.exit_signal is None:
        try:
            proc.signal("KILL")
        except Exception:
            pass
        await proc.ended


class DocsExampleTests(TestCase):
    """
    The test shown in docs/auth.md, kept runnable: the example module under the
    in-memory FakeOrchestrator.
    """

    async def test_me(self) -> None:
        from examples.auth.mint_token import mint
        from examples.auth.module import create_app

        from pywatt_twisted.testing import FakeOrchestrator

        orch = FakeOrchestrator(secrets={"JWT_SECRET": KEY})
        module = await orch.start(create_app)
        token = mint(KEY, "alice")
        ok = await module.request("GET", "/me", headers={"authorization": f"Bearer {token}"})
        self.assertEqual(ok.json()["sub"], "alice")
        refused = await module.request("GET", "/me")
        self.assertEqual(refused.code, 401)
        self.assertEqual(refused.headers["www-authenticate"], "Bearer")
        await orch.rotate({"JWT_SECRET": NEW_KEY})
        self.assertEqual(orch.acks[-1].status, "success")
        again = await module.request("GET", "/me", headers={"authorization": f"Bearer {token}"})
        self.assertEqual(again.code, 401)
        await orch.shutdown()


class ClassBasedAppTests(TestCase):
    """
    The guard on a method of a class-based Klein app (C{self, request}), in memory.
    """

    async def test_method_route(self) -> None:
        from treq.testing import StubTreq

        from pywatt_twisted._runtime.secret import Secret

        guard = JwtGuard(JwtConfig(), lambda: Secret("JWT_SECRET", KEY))

        class Api:
            app = Klein()

            def __init__(self) -> None:
                self.greeting = "hello"

            @app.route("/me", methods=["GET"])
            @guard
            def me(self, request):
                return f"{self.greeting} {request.jwt_claims['sub']}".encode()

        stub = StubTreq(Api().app.resource())
        token = hs_token(claims(iss=None, aud=None))
        ok = await stub.get(
            "http://module/me", headers={b"authorization": [f"Bearer {token}".encode()]}
        )
        self.assertEqual((ok.code, await ok.content()), (200, b"hello alice"))
        refused = await stub.get("http://module/me")
        self.assertEqual(refused.code, 401)
        self.assertEqual(json.loads(await refused.content())["error"], "invalid_token")


class TimeClaimTypeTests(SynchronousTestCase):
    """
    C{exp}, C{nbf} and C{iat} must be JSON numbers; PyJWT lets numeric strings and
    booleans (ints in Python) through, the guard does not.
    """

    def setUp(self) -> None:
        from pywatt_twisted._runtime.secret import Secret

        self.guard = JwtGuard(JwtConfig(), lambda: Secret("JWT_SECRET", KEY))
        self.now = int(time.time())

    def refused(self, **overrides: Any) -> str:
        token = hs_token(claims(iss=None, aud=None, **overrides))
        with self.assertRaises(JwtRejected) as raised:
            self.guard.verify_token(token)
        return raised.exception.description

    def test_not_numbers_refused(self) -> None:
        later = self.now + 600
        cases: list[tuple[str, Any]] = [
            ("exp", "tomorrow"),
            ("exp", str(later)),  # PyJWT accepts a numeric string
            ("exp", True),
            ("exp", [later]),
            ("nbf", []),
            ("nbf", False),  # PyJWT accepts it: False == 0
            ("nbf", str(self.now)),
            ("iat", "x"),
            ("iat", True),  # PyJWT accepts it: True == 1
            ("iat", {"t": self.now}),
        ]
        for name, value in cases:
            with self.subTest(claim=name, value=value):
                self.assertEqual(
                    self.refused(**{name: value}),
                    f"the token's {name} claim is not a number of seconds since the epoch",
                )

    def test_null_time_claim_refused(self) -> None:
        token = hs_token({"sub": "alice", "exp": self.now + 600, "nbf": None})
        with self.assertRaises(JwtRejected) as raised:
            self.guard.verify_token(token)
        self.assertIn("nbf claim", raised.exception.description)

    def test_numbers_accepted(self) -> None:
        payload = claims(iss=None, aud=None, exp=self.now + 600.5, nbf=self.now - 1, iat=self.now)
        self.assertEqual(self.guard.verify_token(hs_token(payload)), payload)

    def test_bad_signature_wins_over_claim_types(self) -> None:
        token = hs_token(claims(iss=None, aud=None, exp="tomorrow"), key=OTHER_KEY)
        with self.assertRaises(JwtRejected) as raised:
            self.guard.verify_token(token)
        self.assertIn("signature", raised.exception.description)


class LoadedKeyCacheTests(SynchronousTestCase):
    """
    An asymmetric key is loaded from its PEM once per key value (issue 20), and a
    rotation is still seen at the next request.
    """

    def test_loaded_once_and_rotation_seen(self) -> None:
        from pywatt_twisted import Secret

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_pem = (
            other.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        current = {"pem": rsa_public_pem()}
        guard = JwtGuard(
            JwtConfig(secret="JWT_PUBLIC_KEY", algorithms="RS256"),
            lambda: Secret("JWT_PUBLIC_KEY", current["pem"]),
        )
        token = rs_token(claims(iss=None, aud=None))
        self.assertEqual(guard.verify_token(token)["sub"], "alice")
        loaded = guard._loaded[1]["RS256"]
        self.assertEqual(guard.verify_token(token)["sub"], "alice")
        self.assertIs(guard._loaded[1]["RS256"], loaded)  # not loaded again

        current["pem"] = other_pem  # rotated: the old signer's tokens stop verifying
        with self.assertRaises(JwtRejected) as caught:
            guard.verify_token(token)
        self.assertIn("signature", str(caught.exception))
        other_token = pyjwt.encode(claims(iss=None, aud=None), other, algorithm="RS256")
        self.assertEqual(guard.verify_token(other_token)["sub"], "alice")
        self.assertIsNot(guard._loaded[1]["RS256"], loaded)

    def test_key_that_does_not_load_reported_as_before(self) -> None:
        from pywatt_twisted import Secret

        guard = JwtGuard(
            JwtConfig(secret="JWT_PUBLIC_KEY", algorithms="RS256"),
            lambda: Secret("JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnot a key\n"),
        )
        with self.assertRaises(JwtRejected) as caught:
            guard.verify_token(rs_token(claims(iss=None, aud=None)))
        self.assertIn("cannot be verified", str(caught.exception))
        self.assertEqual(guard._loaded[1], {})


class TokenCacheTests(SynchronousTestCase):
    """
    A token that verified is remembered: the same token again costs a check of its time
    claims, not of its signature, until the key changes or its time is up.
    """

    def setUp(self) -> None:
        from pywatt_twisted._runtime.secret import Secret

        self.key = KEY
        self.now = time.time()
        self.decoded = 0
        decode = pyjwt.decode

        self.expired = False  # PyJWT's clock agrees that the token expired

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.decoded += 1
            if self.expired:
                raise pyjwt.ExpiredSignatureError("Signature has expired")
            return decode(*args, **kwargs)

        self.patch(pyjwt, "decode", counting)

        def guard(config: JwtConfig) -> JwtGuard:
            return JwtGuard(config, lambda: Secret("JWT_SECRET", self.key), now=lambda: self.now)

        self.guard_for = guard
        self.guard = guard(JwtConfig())

    def test_same_token_verified_once(self) -> None:
        token = hs_token(claims(iss=None, aud=None, roles=["a"]))
        first = self.guard.verify_token(token)
        second = self.guard.verify_token(token)
        self.assertEqual(self.decoded, 1)
        self.assertEqual(first, second)
        self.assertEqual(second["roles"], ["a"])
        # each request gets its own claims: a view that changes them changes only its own
        self.assertIsNot(first, second)
        second["roles"].append("admin")
        self.assertEqual(self.guard.verify_token(token)["roles"], ["a"])

    def test_other_token_verified(self) -> None:
        self.guard.verify_token(hs_token(claims(iss=None, aud=None, sub="a")))
        self.assertEqual(
            self.guard.verify_token(hs_token(claims(iss=None, aud=None)))["sub"], "alice"
        )
        self.assertEqual(self.decoded, 2)

    def test_rotation_forgets_every_token(self) -> None:
        token = hs_token(claims(iss=None, aud=None))
        self.guard.verify_token(token)
        self.key = NEW_KEY
        with self.assertRaises(JwtRejected) as raised:
            self.guard.verify_token(token)
        self.assertEqual(raised.exception.description, "the token's signature does not verify")
        fresh = hs_token(claims(iss=None, aud=None), key=NEW_KEY)
        self.guard.verify_token(fresh)
        self.guard.verify_token(fresh)
        self.assertEqual(self.decoded, 3)
        # and back: the token signed with the first key is verified again, not taken
        # from before the rotation
        self.key = KEY
        self.guard.verify_token(token)
        self.assertEqual(self.decoded, 4)

    def test_tokens_of_the_old_key_stay_forgotten(self) -> None:
        """
        Once a token of the new key is remembered, none remembered under the old key is
        taken as verified (they are all dropped at the rotation).
        """
        old = [hs_token(claims(iss=None, aud=None, sub=s)) for s in "ab"]
        for token in old:
            self.guard.verify_token(token)
        self.key = NEW_KEY
        self.guard.verify_token(hs_token(claims(iss=None, aud=None), key=NEW_KEY))
        for token in old:
            self.assertRaises(JwtRejected, self.guard.verify_token, token)
        self.assertEqual(self.decoded, 5)

    def test_refused_tokens_are_not_remembered(self) -> None:
        token = hs_token(claims(iss=None, aud=None), key=OTHER_KEY)
        for _ in range(2):
            self.assertRaises(JwtRejected, self.guard.verify_token, token)
        self.assertEqual(self.decoded, 2)

    def assert_remembered_until(self, guard: JwtGuard, leeway: float) -> None:
        """
        A token whose C{exp} is 100 s away is answered from memory by C{guard} until
        C{leeway} seconds past its C{exp}, and verified again from then on (PyJWT's own
        check, on the real clock where the token is still good, decides).
        """
        exp = int(self.now) + 100
        token = hs_token(claims(iss=None, aud=None, exp=exp))
        guard.verify_token(token)
        self.now = exp + leeway - 0.5
        guard.verify_token(token)
        self.assertEqual(self.decoded, 1)
        self.now = exp + leeway
        guard.verify_token(token)
        self.assertEqual(self.decoded, 2)

    def test_expired_while_remembered_is_verified_again(self) -> None:
        self.assert_remembered_until(self.guard, 0)

    def test_leeway_counts_for_remembered_tokens(self) -> None:
        self.assert_remembered_until(self.guard_for(JwtConfig(leeway=10)), 10)

    def test_expired_token_is_dropped_from_memory(self) -> None:
        exp = int(self.now) + 100
        token = hs_token(claims(iss=None, aud=None, exp=exp))
        self.guard.verify_token(token)
        self.now = exp
        self.expired = True
        with self.assertRaises(JwtRejected) as raised:
            self.guard.verify_token(token)
        self.assertEqual(raised.exception.description, "the token has expired")
        self.assertNotIn(token, self.guard._verified)

    def test_not_before_while_remembered(self) -> None:
        nbf = int(self.now) - 5
        token = hs_token(claims(iss=None, aud=None, nbf=nbf, iat=None))
        self.guard.verify_token(token)
        self.now = nbf - 1  # the clock went back
        self.guard.verify_token(token)
        self.assertEqual(self.decoded, 2)

    def test_bounded_least_recently_used(self) -> None:
        guard = self.guard_for(JwtConfig(token_cache=2))
        a, b, c = (hs_token(claims(iss=None, aud=None, sub=s)) for s in "abc")
        guard.verify_token(a)
        guard.verify_token(b)
        guard.verify_token(a)  # remembered; a is now the most recently used
        guard.verify_token(c)  # drops b
        self.assertEqual(self.decoded, 3)
        guard.verify_token(a)
        self.assertEqual(self.decoded, 3)
        guard.verify_token(b)
        self.assertEqual(self.decoded, 4)

    def test_cache_off(self) -> None:
        guard = self.guard_for(JwtConfig(token_cache=0))
        token = hs_token(claims(iss=None, aud=None))
        guard.verify_token(token)
        guard.verify_token(token)
        self.assertEqual(self.decoded, 2)

    def test_long_tokens_are_not_remembered(self) -> None:
        token = hs_token(claims(iss=None, aud=None, pad="x" * 9000))
        self.guard.verify_token(token)
        self.guard.verify_token(token)
        self.assertEqual(self.decoded, 2)

    def test_token_cache_bounds(self) -> None:
        self.assertEqual(JwtConfig().token_cache, 1024)
        for bad in (-1, 1_000_001, 1.5, "10", True, None):
            self.assertRaises(ConfigurationError, JwtConfig, token_cache=bad)

    @given(
        exp=st.integers(-(10**6), 10**6) | st.floats(-(10**6), 10**6),
        nbf=st.none() | st.integers(-(10**6), 10**6) | st.floats(-(10**6), 10**6),
        iat=st.none() | st.integers(-(10**6), 10**6) | st.floats(-(10**6), 10**6),
        now=st.floats(-(10**6), 10**6),
        leeway=st.sampled_from([0.0, 0.5, 1.0, 10.0, MAX_LEEWAY]),
    )
    def test_time_check_is_pyjwts(
        self, exp: float, nbf: float | None, iat: float | None, now: float, leeway: float
    ) -> None:
        """
        A remembered token holds at C{now} exactly when PyJWT's own checks of its time
        claims pass at C{now}.
        """
        from pywatt_twisted.web._jwt import _Verified

        payload: dict[str, Any] = {"exp": exp}
        if nbf is not None:
            payload["nbf"] = nbf
        if iat is not None:
            payload["iat"] = iat
        checker = pyjwt.PyJWT()
        try:
            for name in ("iat", "nbf", "exp"):
                if name in payload:
                    getattr(checker, f"_validate_{name}")(payload, now, leeway)
            accepted = True
        except (pyjwt.ExpiredSignatureError, pyjwt.ImmatureSignatureError):
            accepted = False
        self.assertEqual(_Verified.of(payload).holds(now, leeway), accepted)
