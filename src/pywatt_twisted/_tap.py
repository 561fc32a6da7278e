# -*- test-case-name: tests.integration.test_module_process -*-
"""
twistd entry point: C{twistd -n pywatt --module=mymod}.

The plugin file (C{twisted/plugins/pywatt_plugin.py}) names this module lazily, so none of
this is imported when twistd merely lists its plugins.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.python import usage

from pywatt_twisted.errors import ConfigurationError, ModuleLoadError


def _setting_parameters() -> list[list[Any]]:
    from pywatt_twisted._runtime.config import option_parameters

    return option_parameters()


class Options(usage.Options):
    """
    Options of C{twistd pywatt} and C{python -m pywatt_twisted}.
    """

    synopsis = "--module=pkg.mod[:attr] [--log-level=LEVEL]"
    longdesc = (
        "Run a PyWatt module: read the init line from stdin, fetch secrets, serve the "
        "module's Klein app, announce it, and answer the orchestrator until shutdown. "
        "stdout carries protocol lines only; logs go to stderr as JSON lines."
    )
    optParameters = [
        [
            "module",
            "m",
            None,
            "The module to run: pkg.mod (its single @pywatt_module) or pkg.mod:attr.",
        ],
        [
            "log-level",
            None,
            None,
            "debug, info, warn, error or critical (default: $PYWATT_LOG_LEVEL, else info).",
        ],
        *_setting_parameters(),
    ]

    def postOptions(self) -> None:
        if not self["module"]:
            raise usage.UsageError("--module is required (pkg.mod or pkg.mod:attr)")
        try:
            with _loading():
                from pywatt_twisted._runtime.config import SETTINGS, RuntimeConfig
                from pywatt_twisted._runtime.loader import load_module_definition
                from pywatt_twisted._runtime.logging import level_from_environment

                self["level"] = level_from_environment(self["log-level"])
                self["config"] = RuntimeConfig.from_environment(
                    **{st.field: self[st.option] for st in SETTINGS if st.in_options}
                )
                self["definition"] = load_module_definition(self["module"])
        except (ConfigurationError, ModuleLoadError) as e:
            # stdout belongs to the protocol: report on stderr, as a JSON log line, and
            # exit non-zero (twistd would print a UsageError to stdout).
            _fatal(f"cannot start module {self['module']!r}: {e}")


@contextmanager
def _loading() -> Iterator[None]:
    """
    Pause the cyclic garbage collector while the module and the runtime are imported:
    importing makes many long-lived objects (modules, classes, functions) and next to
    no garbage, and the collector would walk the growing heap again and again for
    nothing (about 4% of the start-up). It is re-enabled afterwards if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fatal(message: str) -> None:
    import sys
    import time

    from twisted.logger import LogLevel

    from pywatt_twisted._runtime.logging import event_as_json
    from pywatt_twisted._runtime.redaction import default_redactor

    event = {
        "log_level": LogLevel.critical,
        "log_format": "{error}",
        "error": message,
        "log_namespace": "pywatt_twisted._tap",
        "log_time": time.time(),
    }
    line = event_as_json(event, default_redactor)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def makeService(options: Options) -> Any:
    """
    Build the module's service tree (see L{pywatt_twisted._runtime.process}).
    """
    with _loading():
        from pywatt_twisted._runtime.process import build_process_service

    parent = getattr(options, "parent", None)
    default_pidfile = os.path.abspath("twistd.pid")
    if parent is not None and parent.get("nodaemon") and parent.get("pidfile") == default_pidfile:
        # Several modules run side by side from one directory; a pid file would make the
        # second refuse to start.
        parent["pidfile"] = ""
    return build_process_service(
        options["definition"], level=options["level"], config=options["config"]
    )
