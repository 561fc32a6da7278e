# -*- test-case-name: tests.web.test_jwt -*-
"""
JWT-guarded routes: L{JwtConfig} (what a module declares in C{@pywatt_module(jwt=...)})
and L{JwtGuard} (what C{state.require_jwt} is).

Use it below C{@app.route}, directly above the view function::

    @pywatt_module(jwt=JwtConfig(secret="JWT_SECRET", issuer="auth.example"))
    def create_app(state):
        app = Klein()

        @app.route("/me", methods=["GET"])
        @state.require_jwt
        def me(request):
            return request.jwt_claims["sub"]

        return app

Rules (RFC 8725 in short):

  - the algorithms are fixed by L{JwtConfig.algorithms}, never taken from the token;
    C{none} is refused when the configuration is built, and symmetric (C{HS*}) and
    asymmetric algorithms cannot be mixed;
  - the key is the current value of the named secret, read at each request, so a
    rotation takes effect at once and the old key stops working;
  - an C{HS*} configuration whose secret looks like a public key (PEM, SSH, JWK) is
    refused: that is the classic algorithm-confusion set-up;
  - C{exp} is required; C{nbf} and C{iat} are checked when present; each must be a
    JSON number (a string such as C{"tomorrow"} or C{"1700000000"}, a list, C{null} or
    a boolean is refused: C{true} is not a time); C{iss} and C{aud}
    are required and compared exactly when configured; a small leeway (at most
    L{MAX_LEEWAY} seconds) absorbs clock skew;
  - a token with a C{crit} header is refused: no extension is understood here;
  - a token that verified is remembered (L{JwtConfig.token_cache} of them, the least
    recently used dropped first): the same token again is only checked against the
    clock (C{exp}, C{nbf}, C{iat} with the leeway, exactly as PyJWT compares them), and
    a change of key forgets them all;
  - every failure answers C{401} with a JSON body
    C{{"error": "invalid_token", "error_description": "..."}} and
    C{WWW-Authenticate: Bearer error="invalid_token"} (C{Bearer} alone when no token
    was sent). The description says why, never what the token was.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

import jwt as pyjwt
from attrs import field, frozen
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pywatt_twisted.errors import ConfigurationError, PyWattError, SecretError
from pywatt_twisted.web.discovery import mark_auth

if TYPE_CHECKING:  # pragma: no cover
    # Only for the annotation: at run time web/ imports nothing from runtime/ (no
    # runtime <-> web package cycle); the caller hands in the key function.
    from pywatt_twisted._runtime.secret import Secret

__all__ = [
    "MAX_LEEWAY",
    "SUPPORTED_ALGORITHMS",
    "JwtConfig",
    "JwtGuard",
    "JwtRejected",
    "install_jwt_guard",
]

#: The largest leeway accepted, in seconds: enough for clock skew, not a way to accept
#: expired tokens.
MAX_LEEWAY = 300.0

_HMAC = ("HS256", "HS384", "HS512")
_ASYMMETRIC = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

#: How many verified tokens a guard remembers by default (L{JwtConfig.token_cache}).
DEFAULT_TOKEN_CACHE = 1024

#: The largest L{JwtConfig.token_cache}.
MAX_TOKEN_CACHE = 1_000_000

#: Tokens longer than this (characters) are verified every time, never remembered.
MAX_CACHED_TOKEN_LENGTH = 8192

#: Algorithms a L{JwtConfig} may name.
SUPPORTED_ALGORITHMS: tuple[str, ...] = _HMAC + _ASYMMETRIC

#: The attribute a guarded view's request receives.
CLAIMS_ATTRIBUTE = "jwt_claims"

#: What marks a wrapper made by L{JwtGuard}.
_GUARD_ATTRIBUTE = "__pywatt_jwt_guard__"


class JwtRejected(PyWattError):
    """
    A request's bearer token was not accepted.

    @ivar description: why, fit for the client (never the token).
    @ivar has_token: whether a bearer token was sent at all.
    """

    def __init__(self, description: str, has_token: bool = True) -> None:
        super().__init__(description)
        self.description = description
        self.has_token = has_token


def _algorithms(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise ConfigurationError(
            f"JwtConfig.algorithms must be a list of algorithm names such as ['HS256'], "
            f"got {value!r}"
        ) from None
    if not names:
        raise ConfigurationError(
            "JwtConfig.algorithms is empty; name the algorithm(s) tokens are signed with, "
            "for example ('HS256',)"
        )
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"JwtConfig.algorithms holds {name!r}, not a name")
        if name.lower() == "none":
            raise ConfigurationError(
                "JwtConfig.algorithms must not contain 'none': unsigned tokens are never accepted"
            )
        if name not in SUPPORTED_ALGORITHMS:
            raise ConfigurationError(
                f"JwtConfig.algorithms: unknown algorithm {name!r}; expected one of "
                f"{', '.join(SUPPORTED_ALGORITHMS)} (names are case-sensitive)"
            )
    hmac = [n for n in names if n in _HMAC]
    if hmac and len(hmac) != len(names):
        raise ConfigurationError(
            f"JwtConfig.algorithms mixes symmetric ({', '.join(hmac)}) and asymmetric "
            f"algorithms ({', '.join(n for n in names if n not in _HMAC)}); one key cannot "
            "serve both safely (algorithm confusion). Pick one family."
        )
    return tuple(dict.fromkeys(names))


def _optional_text(what: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"JwtConfig.{what} must be a non-empty string or None, got {value!r}"
        )
    return value


def _audience(value: Any) -> str | None:
    return _optional_text("audience", value)


def _issuer(value: Any) -> str | None:
    return _optional_text("issuer", value)


def _secret_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"JwtConfig.secret must name the secret that holds the key (a non-empty string), "
            f"got {value!r}"
        )
    return value


def _leeway(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"JwtConfig.leeway must be a number of seconds, got {value!r}")
    leeway = float(value)
    if math.isnan(leeway) or leeway < 0 or leeway > MAX_LEEWAY:
        raise ConfigurationError(
            f"JwtConfig.leeway must be between 0 and {MAX_LEEWAY:g} seconds, got {value!r}; "
            "it absorbs clock skew, it does not extend a token's life"
        )
    return leeway


def _token_cache(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"JwtConfig.token_cache must be a whole number of tokens, got {value!r}"
        )
    if not 0 <= value <= MAX_TOKEN_CACHE:
        raise ConfigurationError(
            f"JwtConfig.token_cache must be between 0 (verify every token every time) and "
            f"{MAX_TOKEN_CACHE}, got {value!r}"
        )
    return value


@frozen
class JwtConfig:
    """
    How the module checks bearer tokens on routes guarded by C{state.require_jwt}.

    @ivar secret: the name of the secret that holds the key (the HMAC key for C{HS*},
        a PEM public key for the asymmetric algorithms). It is fetched at start-up like
        any other secret and follows its rotation.
    @ivar algorithms: the algorithms accepted; fixed here, never read from the token.
    @ivar audience: when set, the token's C{aud} must be this string (or a list that
        contains it); when C{None}, a token that carries an C{aud} is refused.
    @ivar issuer: when set, the token's C{iss} must be exactly this string.
    @ivar leeway: seconds of clock skew allowed on C{exp}, C{nbf} and C{iat}
        (0 to L{MAX_LEEWAY}).
    @ivar token_cache: how many tokens that verified are remembered, so that a client
        sending the same token again costs a clock check instead of a signature check
        (the least recently used is dropped beyond it; 0: verify every time).
    """

    secret: str = field(default="JWT_SECRET", converter=_secret_name)
    algorithms: tuple[str, ...] = field(default=("HS256",), converter=_algorithms)
    audience: str | None = field(default=None, converter=_audience)
    issuer: str | None = field(default=None, converter=_issuer)
    leeway: float = field(default=0, converter=_leeway)
    token_cache: int = field(default=DEFAULT_TOKEN_CACHE, converter=_token_cache)

    @property
    def symmetric(self) -> bool:
        """
        Whether the key is a shared HMAC secret (C{HS*}).
        """
        return self.algorithms[0] in _HMAC

    @property
    def required_claims(self) -> list[str]:
        """
        The claims a token must carry.
        """
        required = ["exp"]
        if self.issuer is not None:
            required.append("iss")
        if self.audience is not None:
            required.append("aud")
        return required


_PUBLIC_KEY_MARKERS = (
    b"-----BEGIN",
    b"ssh-rsa ",
    b"ssh-ed25519 ",
    b"ecdsa-sha2-",
    b"ssh-dss ",
)


def looks_like_public_key(key: bytes) -> bool:
    """
    Whether C{key} looks like asymmetric key material (PEM, OpenSSH or a JWK), which
    must never be used as an HMAC secret. (PyJWT refuses such HMAC keys too, DER
    included; this check runs first so the refusal names the secret.)
    """
    text = key.strip()
    if any(marker in text[:64] for marker in _PUBLIC_KEY_MARKERS):
        return True
    if text.startswith(b"{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return False
        return isinstance(parsed, dict) and "kty" in parsed
    return False


def check_key(config: JwtConfig, key: str) -> None:
    """
    Refuse a key that cannot be used safely with C{config}.

    @raise ConfigurationError: naming the secret (never its value).
    """
    if not key:
        raise ConfigurationError(
            f"the JWT key in secret {config.secret!r} is empty; give it a value"
        )
    if config.symmetric and looks_like_public_key(key.encode("utf-8", "replace")):
        raise ConfigurationError(
            f"secret {config.secret!r} holds what looks like a public key, but the JWT "
            f"algorithms are {', '.join(config.algorithms)} (HMAC): anyone who knows the "
            "public key could sign tokens (algorithm confusion). Use an RS*/ES*/EdDSA "
            "algorithm for a public key, or a random shared secret for HS*."
        )


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (pyjwt.ExpiredSignatureError, "the token has expired"),
    (pyjwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (pyjwt.InvalidIssuerError, "the token's issuer (iss) is not accepted"),
    (pyjwt.InvalidAudienceError, "the token's audience (aud) is not accepted"),
    (pyjwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (pyjwt.InvalidSignatureError, "the token's signature does not verify"),
    (pyjwt.DecodeError, "the token is malformed"),
)


def _reason(error: Exception) -> str:
    if isinstance(error, pyjwt.MissingRequiredClaimError):
        return f"the token lacks the required claim {error.claim!r}"
    for kind, text in _REASONS:
        if isinstance(error, kind):
            return text
    return "the token is not accepted"


class JwtGuard:
    """
    The decorator behind C{state.require_jwt}: wraps a Klein view so that it runs only
    for a request with a valid bearer token, with the claims in C{request.jwt_claims}.

    @param config: the module's L{JwtConfig}.
    @param key: C{callable()} returning the current key as a L{Secret} (the runtime
        passes C{lambda: state.secret(config.secret)}); called at each request.
    """

    log = Logger()

    def __init__(
        self,
        config: JwtConfig,
        key: Callable[[], Secret],
        now: Callable[[], float] = time.time,
    ) -> None:
        """
        @param now: the clock a remembered token's time claims are checked against
            (PyJWT's own is the system clock too).
        """
        if not isinstance(config, JwtConfig):
            raise ConfigurationError(
                f"@pywatt_module(jwt=...) expects a JwtConfig, got {type(config).__name__}"
            )
        self.config = config
        self._key = key
        self._now = now
        #: token -> its time claims and its claims as JSON text, for the tokens that
        #: verified with C{_verified_key}, least recently used first
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._verified_key: str | None = None
        # Kept per key value, so a rotation is seen at the next request: the last key
        # that passed check_key, and the asymmetric keys loaded from their PEM (per
        # algorithm; parsing a PEM public key is most of an RS256 check).
        self._checked: str | None = None
        self._loaded: tuple[str, dict[str, Any]] = ("", {})

    # -- decorating -----------------------------------------------------------------------

    def __call__(self, view: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(view):
            raise ConfigurationError(f"state.require_jwt decorates a route function, got {view!r}")
        if getattr(view, _GUARD_ATTRIBUTE, None) is not None:
            return view
        routed = _routed_in_caller(view, sys._getframe(1))
        if routed is not None:
            raise ConfigurationError(
                f"state.require_jwt is above @app.route({routed!r}) on "
                f"{getattr(view, '__qualname__', view)!r}: the route was registered "
                "unguarded. Put @app.route(...) first (outermost) and @state.require_jwt "
                "directly above the function."
            )
        guard = self

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            request = _find_request(args)
            try:
                claims = guard.verify(request)
            except JwtRejected as rejected:
                return guard.reject(request, rejected)
            setattr(request, CLAIMS_ATTRIBUTE, claims)
            return view(*args, **kwargs)

        setattr(guarded, _GUARD_ATTRIBUTE, self)
        return mark_auth(guarded, "jwt")

    # -- checking -------------------------------------------------------------------------

    def current_key(self) -> str:
        """
        The key to verify with now.

        @raise JwtRejected: when there is no usable key (the reason is logged).
        """
        try:
            key = self._key().expose()
            if key != self._checked:
                check_key(self.config, key)
                self._checked = key
        except (SecretError, ConfigurationError) as e:
            self.log.error("cannot verify bearer tokens: {error}", error=str(e))
            raise JwtRejected("the token cannot be verified by this module now") from None
        return key

    def verify_token(self, token: str) -> dict[str, Any]:
        """
        Verify C{token} and return its claims (a new C{dict} each time).

        A token that verified with the current key before is not verified again while
        its time claims still hold (see L{JwtConfig.token_cache}).

        @raise JwtRejected: with the reason, when it is not accepted.
        """
        verified = self._verified
        remembered = verified.get(token)
        if remembered is not None:
            key = self.current_key()
            if key != self._verified_key:
                self._forget_all(key)
            elif remembered.holds(self._now(), self.config.leeway):
                verified.move_to_end(token)
                claims: dict[str, Any] = json.loads(remembered.claims)
                return claims
            else:
                # its time is up: verified again, for PyJWT's exact reason
                del verified[token]
        key, claims = self._verify(token)
        self._remember(token, key, claims)
        return claims

    def _forget_all(self, key: str) -> None:
        """
        The key is now C{key} (a rotation): every token remembered under the old one
        must be verified again.
        """
        self._verified.clear()
        self._verified_key = key

    def _remember(self, token: str, key: str, claims: dict[str, Any]) -> None:
        size = self.config.token_cache
        if not size or len(token) > MAX_CACHED_TOKEN_LENGTH:
            return
        if key != self._verified_key:
            self._forget_all(key)
        verified = self._verified
        verified[token] = _Verified.of(claims)
        if len(verified) > size:
            verified.popitem(last=False)

    def _verify(self, token: str) -> tuple[str, dict[str, Any]]:
        """
        Verify C{token} with the current key, fully; return the key and the claims.
        """
        config = self.config
        header = _unverified_header(token)
        if "crit" in header:
            raise JwtRejected(
                "the token names critical header extensions (crit) this module does not understand"
            )
        alg = header.get("alg")
        if alg not in config.algorithms:
            raise JwtRejected(
                f"the token's algorithm is not accepted (expected {' or '.join(config.algorithms)})"
            )
        key = self.current_key()
        try:
            claims = pyjwt.decode(
                token,
                self._verifying_key(key, alg),
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": config.required_claims},
            )
        except pyjwt.InvalidKeyError as e:
            self.log.error(
                "the key in secret {secret} cannot be used for {algorithms}: {error}",
                secret=config.secret,
                algorithms=list(config.algorithms),
                error=str(e),
            )
            raise JwtRejected("the token cannot be verified by this module now") from None
        except pyjwt.PyJWTError as e:
            if not isinstance(e, pyjwt.InvalidSignatureError | pyjwt.InvalidAlgorithmError):
                # PyJWT reports a time claim of the wrong type as a malformed token, or
                # (for true, i.e. 1) as expired: say what is wrong, but only about a
                # payload whose signature verifies.
                problem = self._signed_time_claim_problem(token, key)
                if problem is not None:
                    raise JwtRejected(problem) from None
            raise JwtRejected(_reason(e)) from None
        except (ValueError, TypeError):
            # A key the crypto backend cannot load, or a claim of a strange type.
            raise JwtRejected("the token is not accepted") from None
        # PyJWT lets some non-numbers through (numeric strings, booleans, which are
        # ints in Python): every time claim present must be a real JSON number.
        problem = _time_claim_problem(claims)
        if problem is not None:
            raise JwtRejected(problem)
        # Belt and braces: exact comparisons whatever the PyJWT version does.
        if config.issuer is not None and claims.get("iss") != config.issuer:
            raise JwtRejected(_reason(pyjwt.InvalidIssuerError()))
        if config.audience is not None:
            aud = claims.get("aud")
            auds = [aud] if isinstance(aud, str) else aud
            if not isinstance(auds, list) or config.audience not in auds:
                raise JwtRejected(_reason(pyjwt.InvalidAudienceError()))
        return key, claims

    def _verifying_key(self, key: str, alg: str) -> Any:
        """
        What to give PyJWT for C{key} and C{alg}: for an asymmetric algorithm, the key
        loaded from its PEM text once per key value (PyJWT would load it again for every
        token); for C{HS*}, the text itself. A key that does not load is passed as text,
        so PyJWT reports it as before.
        """
        if self.config.symmetric:
            return key
        value, loaded = self._loaded
        if value != key:
            loaded = {}
            self._loaded = (key, loaded)
        prepared = loaded.get(alg)
        if prepared is None:
            try:
                prepared = pyjwt.get_algorithm_by_name(alg).prepare_key(key)
            except (pyjwt.PyJWTError, ValueError, TypeError, NotImplementedError):
                return key
            loaded[alg] = prepared
        return prepared

    def _signed_time_claim_problem(self, token: str, key: str) -> str | None:
        """
        L{_time_claim_problem} of C{token}'s payload once its signature verifies with
        C{key}; C{None} when it does not verify or its time claims are numbers.
        """
        try:
            payload = pyjwt.PyJWS().decode(token, key, algorithms=list(self.config.algorithms))
            claims = json.loads(payload)
        except (pyjwt.PyJWTError, ValueError, TypeError, RecursionError):
            return None
        return _time_claim_problem(claims)

    def verify(self, request: Any) -> dict[str, Any]:
        """
        Verify the request's C{Authorization: Bearer} token and return its claims.

        @raise JwtRejected: when it is missing or not accepted.
        """
        values = request.requestHeaders.getRawHeaders(b"authorization") or []
        if not values:
            raise JwtRejected(
                "no bearer token: send 'Authorization: Bearer <token>'", has_token=False
            )
        if len(values) > 1:
            raise JwtRejected("more than one Authorization header")
        raw = values[0]
        scheme, _, token = raw.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            raise JwtRejected(
                "the Authorization header does not use the Bearer scheme", has_token=False
            )
        token = token.strip()
        if not token:
            raise JwtRejected("the bearer token is empty")
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise JwtRejected("the token is malformed") from None
        return self.verify_token(text)

    def reject(self, request: Any, rejected: JwtRejected) -> bytes:
        """
        Answer C{request} with 401 and the JSON error body.
        """
        self.log.info(
            "bearer token refused for {method} {path}: {reason}",
            method=_text(getattr(request, "method", b"?")),
            path=_text(getattr(request, "path", b"?")),
            reason=rejected.description,
        )
        request.setResponseCode(401)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if rejected.has_token:
            challenge = b'Bearer error="invalid_token"'
        else:
            challenge = b"Bearer"
        request.setHeader(b"www-authenticate", challenge)
        return json.dumps(
            {"error": "invalid_token", "error_description": rejected.description}
        ).encode("utf-8")


class _Verified:
    """
    What a guard remembers of a token that verified: its time claims (as PyJWT reads
    them: C{int()} of the number) and its claims as JSON text (parsed anew for each
    request, so a view that changes its claims changes only its own copy).
    """

    __slots__ = ("claims", "exp", "iat", "nbf")

    def __init__(self, exp: int, nbf: int | None, iat: int | None, claims: str) -> None:
        self.exp = exp
        self.nbf = nbf
        self.iat = iat
        self.claims = claims

    @classmethod
    def of(cls, claims: dict[str, Any]) -> _Verified:
        """
        Remember C{claims}, which verified (so C{exp} is there, and every time claim
        present is a finite number).
        """
        nbf = claims.get("nbf")
        iat = claims.get("iat")
        return cls(
            int(claims["exp"]),
            None if nbf is None else int(nbf),
            None if iat is None else int(iat),
            json.dumps(claims),
        )

    def holds(self, now: float, leeway: float) -> bool:
        """
        Whether the time claims still hold at C{now}: PyJWT's own comparisons
        (C{exp <= now - leeway} is expired; C{nbf} or C{iat} C{> now + leeway} is
        not valid yet).
        """
        if self.exp <= now - leeway:
            return False
        late = now + leeway
        if self.nbf is not None and self.nbf > late:
            return False
        return self.iat is None or self.iat <= late


def _unverified_header(token: str) -> dict[str, Any]:
    """
    The JOSE header of a compact JWS, decoded without any check (PyJWT refuses some
    headers while parsing them, which would hide the reason).

    @raise JwtRejected: when it is not three dot-separated parts with a JSON object as
        the header.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[0]:
        raise JwtRejected("the token is malformed")
    segment = parts[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise JwtRejected("the token is malformed") from None
    if not isinstance(header, dict):
        raise JwtRejected("the token is malformed")
    return header


#: The claims that hold a NumericDate (RFC 7519 section 2).
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _time_claim_problem(claims: Any) -> str | None:
    """
    Why a time claim of C{claims} is not a NumericDate (a finite JSON number; never a
    boolean, a string, a list or C{null}), or C{None} when all that are present are.
    """
    if not isinstance(claims, dict):
        return None
    for name in _TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            return f"the token's {name} claim is not a number of seconds since the epoch"
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _find_request(args: tuple[Any, ...]) -> Any:
    for arg in args[:2]:
        if IRequest.providedBy(arg):
            return arg
    for arg in args[:2]:
        if hasattr(arg, "requestHeaders") and hasattr(arg, "setResponseCode"):
            return arg
    raise ConfigurationError(
        "a view guarded by state.require_jwt was called without a request; use it on Klein "
        "routes only (view(request, ...) or method(self, request, ...))"
    )


def _routed_in_caller(view: Any, frame: FrameType | None) -> str | None:
    """
    If C{view} is already a route of a Klein app visible in C{frame} (the function that
    applies the decorators), return that route's rule: the guard is above C{@app.route}.
    Best effort; it finds the usual C{app = Klein()} in C{create_app}.
    """
    if frame is None:
        return None
    try:
        from klein import Klein
    except ImportError:  # pragma: no cover - klein is a dependency
        return None
    apps = [
        value
        for scope in (frame.f_locals, frame.f_globals)
        for value in list(scope.values())
        if isinstance(value, Klein)
    ]
    for app in apps:
        for endpoint, executor in app.endpoints.items():
            if getattr(executor, "__original__", None) is view:
                for rule in app.url_map.iter_rules():
                    if rule.endpoint == endpoint:
                        return str(rule.rule)
                return str(endpoint)
    return None


def install_jwt_guard(state: Any, config: Any) -> JwtGuard:
    """
    Create the guard for C{config} and make it C{state.require_jwt}. Called by the
    runtime once the start-up secrets are in; checks the key at once, so a module
    configured with an unusable key fails at start-up.

    @raise ConfigurationError: when C{config} is not a L{JwtConfig} or the key is
        unusable.
    """
    if not isinstance(config, JwtConfig):
        raise ConfigurationError(
            f"@pywatt_module(jwt=...) expects a pywatt_twisted.JwtConfig, "
            f"got {type(config).__name__}"
        )
    check_key(config, state.secret(config.secret).expose())
    guard = JwtGuard(config, lambda: state.secret(config.secret))
    state._jwt_guard = guard
    return guard
