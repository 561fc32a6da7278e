"""
Direct HTTP: the module's site against a bare Klein app serving the same route, and
what JWT verification and metrics cost per request (issue 20).

Run: C{.venv/bin/python -m bench http} (add C{--quick} for a short run).

Ours is the site the runtime builds for a Klein app (L{build_root_resource} with
C{/health} and C{/metrics}, L{PyWattSite} with the default limits and per-request
metrics, and no access-log event, as at the runtime's default log level); the baseline
is C{twisted.web.server.Site(app.resource())}, the bare Klein app, with its access-log
line turned off like ours (Twisted's C{Site} formats and writes one for every request,
about 100k instructions of a GET that costs ~730k: left on, the row compared our
library with the baseline's logging rather than with its serving). Both serve C{GET
/items/<int:id>} (a small JSON body, the route of C{bench/bench_bridge.py}) on loopback
TCP to the same keep-alive HTTP/1.1 client, with 1 and with 32 connections, each on its
own fresh reactor, ours and the baseline alternating. The client runs in the same
process, so a rate is the whole loop: client, kernel and server; the ratio ours /
baseline is what the target (>= 0.95) is about.

Rates are requests per CPU second of this process (user + system,
C{time.process_time}): the loop never waits for another process, so on a quiet
machine that is the wall-clock rate, and on a busy one other processes do not move it.
Each row is the median of C{REPEAT} measurements of each side (C{HEADLINE_REPEAT} for
the two rows against bare Klein), the side measured first alternating from one to the
next (and C{make bench} takes the median of three runs).

The cost rows compare ours with and without one feature, same route, same client:

  - JWT: the route guarded by C{state.require_jwt} (L{JwtGuard}) with a valid
    C{Authorization: Bearer} token, HS256 (shared key) and RS256 (PEM public key),
    against the same route unguarded; the client sends the same token every time, so
    the plain rows are the guard's remembered-token path (its default), and the
    C{token_cache=0} rows verify the signature and claims on every request (what a
    token seen for the first time costs);
  - metrics: per-request metrics on (what the runtime always does) against a site with
    no L{ModuleMetrics}.

They print the cost in microseconds per request (the difference of CPU time per
request) and report the rate ratio (with / without; 1.0 means free).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.web.server import Site

from bench.bench_bridge import measure
from bench.record import row
from pywatt_twisted.web.metrics import ModuleMetrics
from pywatt_twisted.web.site import PyWattSite, build_root_resource, klein_resource

CONNECTIONS = (1, 32)
#: alternating measurements per row in one run (C{make bench} runs the bench 3 times and
#: takes the median of each row over the runs)
REPEAT = 1
#: the same for the rows with a target (ours vs bare Klein), whose ratio is close to it
HEADLINE_REPEAT = 3
TARGET = 0.95
URI = "/items/42?fields=name"


def build_app(guard: Callable[[Any], Any] | None = None) -> Klein:
    """
    The bench route, optionally under a JWT guard.
    """
    app = Klein()

    def item(request: Any, item_id: int) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"id": item_id, "name": "watt", "tags": ["a", "b"]}).encode()

    if guard is not None:
        item = guard(item)
    app.route("/items/<int:item_id>", methods=["GET"])(item)
    return app


def ours(app: Klein, reactor: Any, metrics: bool = True) -> PyWattSite:
    """
    The site the runtime builds for C{app} (see C{_build_site} in the bootstrap).
    """
    module_metrics = ModuleMetrics() if metrics else None
    root = build_root_resource(
        klein_resource(app),
        health_path="/health",
        metrics=module_metrics,
        status=lambda: {"status": "ok"},
    )
    # access_log as the runtime sets it at its default level (info): the per-request
    # access-log event is a debug event, built only when the level is debug.
    return PyWattSite(root, metrics=module_metrics, reactor=reactor, access_log=False)


class _NoAccessLogSite(Site):
    """
    Twisted's site without its access-log line, as ours runs at the runtime's default
    log level.
    """

    def log(self, request: Any) -> None:
        pass


def bare(app: Klein, reactor: Any) -> Site:
    """
    The bare Klein app (no access log, like ours).
    """
    return _NoAccessLogSite(app.resource(), reactor=reactor)


def _request(headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {URI} HTTP/1.1\r\nHost: module\r\n{extra}\r\n".encode()


def _pair(
    a: Callable[[Any], Any],
    b: Callable[[Any], Any],
    request_a: bytes,
    request_b: bytes,
    connections: int,
    seconds: float,
    repeat: int,
) -> tuple[float, float, float]:
    """
    Medians of (rate of a, rate of b, a/b) over C{repeat} pairs of measurements, b
    first in the even pairs and a first in the odd ones.
    """
    rates_a, rates_b, ratios = [], [], []
    for i in range(repeat):
        if i % 2 == 0:
            rb = measure(b, request_b, connections, seconds)
            ra = measure(a, request_a, connections, seconds)
        else:
            ra = measure(a, request_a, connections, seconds)
            rb = measure(b, request_b, connections, seconds)
        rates_a.append(ra)
        rates_b.append(rb)
        ratios.append(ra / rb)
    return statistics.median(rates_a), statistics.median(rates_b), statistics.median(ratios)


def _jwt_setups() -> dict[str, tuple[Any, str]]:
    """
    name -> (a guard for the route, a valid token for it).
    """
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pywatt_twisted import JwtConfig, Secret
    from pywatt_twisted.web._jwt import JwtGuard

    claims = {"sub": "bench", "exp": int(time.time()) + 3600}
    hmac_key = "bench-jwt-key-" + "k" * 40
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    hs_token = pyjwt.encode(claims, hmac_key, algorithm="HS256")
    rs_token = pyjwt.encode(claims, private, algorithm="RS256")
    setups: dict[str, tuple[Any, str]] = {}
    # the client sends the same token each time: remembered once verified (the default),
    # and with the memory off (token_cache=0), what every request of a new token costs
    for cache, label in ((1024, ""), (0, ", token_cache=0")):
        setups[f"HS256{label}"] = (
            JwtGuard(
                JwtConfig(secret="JWT_SECRET", token_cache=cache),
                lambda: Secret("JWT_SECRET", hmac_key),
            ),
            hs_token,
        )
        setups[f"RS256{label}"] = (
            JwtGuard(
                JwtConfig(secret="JWT_PUBLIC_KEY", algorithms="RS256", token_cache=cache),
                lambda: Secret("JWT_PUBLIC_KEY", public_pem),
            ),
            rs_token,
        )
    return setups


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    seconds = 0.4 if quick else 0.8
    repeat = REPEAT
    plain = _request()
    app = build_app()
    print(
        f"requests per CPU second, {seconds:g} s per measurement, median of "
        f"{HEADLINE_REPEAT} (cost rows: {repeat}); "
        f"ratio = ours / bare Klein (target >= {TARGET})"
    )
    print(f"{'GET ' + URI:<36} {'conns':>5} {'bare Klein':>11} {'ours':>9} {'ratio':>6}")
    for connections in CONNECTIONS:
        mine, base, ratio = _pair(
            lambda r: ours(app, r),
            lambda r: bare(app, r),
            plain,
            plain,
            connections,
            seconds,
            HEADLINE_REPEAT,
        )
        print(f"{'direct HTTP':<36} {connections:>5} {base:>11.0f} {mine:>9.0f} {ratio:>6.2f}")
        row(
            "http",
            f"direct HTTP GET /items/:id, {connections} connection(s), vs bare Klein",
            mine,
            base,
            unit="req/s",
            target=f">= {TARGET} (issue 20)",
            ratio=ratio,
        )

    print("\ncost per request (ours with / without; 1 connection and 32)")
    print(f"{'feature':<36} {'conns':>5} {'without':>11} {'with':>9} {'ratio':>6} {'us/req':>7}")
    costs: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], bytes]] = []
    for name, (guard, token) in _jwt_setups().items():
        guarded = build_app(guard)
        costs.append(
            (
                f"JWT verification ({name})",
                lambda r, guarded=guarded: ours(guarded, r),
                lambda r: ours(app, r),
                _request({"Authorization": f"Bearer {token}"}),
            )
        )
    costs.append(("metrics", lambda r: ours(app, r), lambda r: ours(app, r, metrics=False), plain))
    for name, with_, without, request in costs:
        for connections in CONNECTIONS:
            on, off, ratio = _pair(with_, without, request, plain, connections, seconds, repeat)
            micro = (1 / on - 1 / off) * 1e6
            print(
                f"{name:<36} {connections:>5} {off:>11.0f} {on:>9.0f} {ratio:>6.2f} {micro:>7.1f}"
            )
            row(
                "http",
                f"{name} on vs off, {connections} connection(s)",
                on,
                off,
                unit="req/s",
                target="-",
                ratio=ratio,
            )
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
