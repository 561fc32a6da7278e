"""
Mint a token for the example auth module (examples/auth/module.py).

    .venv/bin/python -m examples.auth.mint_token --secrets-file=examples/auth/secrets.json \\
        --sub alice --scope "notes:write" --ttl 600

The key comes from ``--secrets-file`` (the file ``pywatt dev`` serves) or from
``PYWATT_SECRET_JWT_SECRET``; the token is printed on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time

import jwt

from examples.auth.module import AUDIENCE, ISSUER
from pywatt_twisted.orchestrator import (
    ChainedSecretProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
)


def mint(key: str, sub: str, scope: str = "", ttl: int = 600, now: float | None = None) -> str:
    """
    A HS256 token for C{sub}, valid for C{ttl} seconds, with the example's issuer and
    audience.
    """
    issued = int(time.time() if now is None else now)
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl}
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--secrets-file", help="JSON file of secrets (as for pywatt dev)")
    parser.add_argument("--secret", default="JWT_SECRET", help="name of the key's secret")
    parser.add_argument("--sub", required=True, help="the token's subject")
    parser.add_argument("--scope", default="", help='space-separated scopes, e.g. "notes:write"')
    parser.add_argument("--ttl", type=int, default=600, help="seconds until it expires")
    args = parser.parse_args(argv)

    from twisted.internet.task import Clock

    providers = [EnvironmentSecretProvider()]
    if args.secrets_file:
        providers.insert(0, FileSecretProvider(args.secrets_file, Clock()))
    key = ChainedSecretProvider(providers).get(args.secret)
    if key is None:
        sys.stderr.write(
            f"no value for {args.secret}: pass --secrets-file or set PYWATT_SECRET_{args.secret}\n"
        )
        return 2
    sys.stdout.write(mint(key, args.sub, args.scope, args.ttl) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
