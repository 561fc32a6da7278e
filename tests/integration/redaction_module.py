"""
A careless module for the redaction test (tests/integration/test_redaction.py): it logs
every secret it holds in every way a careless author might, at start-up, on request and
after a rotation. Each way tags its line with a marker (C{LEAK:<way>}) so the test can
check that the line did reach stderr, redacted, rather than vanish.

Never copy this module: it shows what not to do.
"""

from __future__ import annotations

import gc
import logging
import sys
import warnings
from typing import Any

from klein import Klein
from twisted.internet import defer
from twisted.python import log as legacy_log

from pywatt_twisted import pywatt_module

#: Every way below, in order; the test expects one marker per way and occasion.
WAYS = (
    "field",
    "format-string",
    "braces-format-string",
    "secret-object",
    "secret-repr",
    "secret-str",
    "substring",
    "dict-field",
    "bytes-field",
    "object-field",
    "exception-message",
    "traceback",
    "stdlib",
    "stdlib-fstring",
    "stdlib-exception",
    "print",
    "stderr-write",
    "warning",
    "legacy-msg",
    "legacy-err",
    "unhandled-deferred",
)


class Holder:
    """
    An object whose repr shows the value, as many config objects do.
    """

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Holder(value={self.value!r})"


def leak_everything(state: Any, occasion: str) -> None:
    stdlib = logging.getLogger("careless.stdlib")
    for name in sorted(state._secrets.known()):
        secret = state.secret(name)
        v = secret.expose()
        tag = f"{occasion}:{name}"
        log = state.log
        log.info("LEAK:field {tag} {value}", tag=tag, value=v)
        log.info(f"LEAK:format-string {tag} " + v.replace("{", "{{").replace("}", "}}"))
        # Careless: the value itself in the format string, braces and all.
        log.info(f"LEAK:braces-format-string {tag} {v}")
        log.info("LEAK:secret-object {tag} {secret}", tag=tag, secret=secret)
        log.info("LEAK:secret-repr {tag} {secret!r}", tag=tag, secret=secret)
        log.info("LEAK:secret-str {tag} {text}", tag=tag, text=str(secret))
        log.info(
            "LEAK:substring {tag} connecting to {url}",
            tag=tag,
            url=f"postgresql://app:{v}@127.0.0.1:5432/app?x={v}{v}",
        )
        log.info(
            "LEAK:dict-field {tag} {cfg}",
            tag=tag,
            cfg={"password": v, "nested": [v, {"again": v}], v: "as a key"},
        )
        log.info("LEAK:bytes-field {tag} {raw}", tag=tag, raw=v.encode())
        log.info("LEAK:object-field {tag} {obj}", tag=tag, obj=Holder(v))
        try:
            raise ValueError(f"wrong credentials {v!r} / {v}")
        except ValueError as e:
            log.error("LEAK:exception-message {tag} {error}", tag=tag, error=e)
            log.failure("LEAK:traceback {tag}", tag=tag)
            stdlib.exception("LEAK:stdlib-exception %s", tag)
        stdlib.warning("LEAK:stdlib %s %s", tag, v)
        stdlib.warning(f"LEAK:stdlib-fstring {tag} {v}")
        print(f"LEAK:print {tag} {v}")
        sys.stderr.write(f"LEAK:stderr-write {tag} {v}\n")
        warnings.warn(f"LEAK:warning {tag} {v}", UserWarning, stacklevel=1)
        legacy_log.msg(f"LEAK:legacy-msg {tag} {v}")
        legacy_log.err(RuntimeError(f"{v}"), f"LEAK:legacy-err {tag}")
        d = defer.fail(RuntimeError(f"LEAK:unhandled-deferred {tag} {v}"))
        del d
        gc.collect()
    state.log.info("LEAK-DONE {occasion}", occasion=occasion)


@pywatt_module(secrets=["API_KEY", "DB_PASSWORD", "WEIRD"])
def careless_app(state):
    app = Klein()
    warnings.simplefilter("always")

    @app.route("/leak", methods=["GET"])
    def leak(request):
        leak_everything(state, "request")
        return b"leaked?"

    @app.route("/explode", methods=["GET"])
    def explode(request):
        raise RuntimeError(f"cannot connect with password {state.secret('DB_PASSWORD').expose()}")

    @state.on_rotation
    def after_rotation(names):
        leak_everything(state, "rotation")

    leak_everything(state, "start")
    return app
