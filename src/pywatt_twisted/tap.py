"""
twistd entry point for C{twistd pywatt --module=...}.
"""

from __future__ import annotations

from twisted.python import usage


class Options(usage.Options):
    optParameters = [
        ["module", "m", None, "The module to run: pkg.mod or pkg.mod:attr."],
        ["log-level", None, None, "Log level (default: $PYWATT_LOG_LEVEL, else info)."],
    ]


def makeService(options: Options):  # type: ignore[no-untyped-def]
    raise SystemExit("pywatt: the module runtime is not implemented yet")
