# -*- test-case-name: tests.runtime.test_heap -*-
"""
The module process's heap after start-up, kept out of the garbage collector's way.

Everything a module builds on the way to its announce (the imported modules, classes
and functions of Twisted, Klein, the runtime, the module, OpenTelemetry's SDK when
tracing is on) lives as long as the process. CPython's full collections walk all of it
again and again: rare while the process makes no long-lived objects, but a process
that keeps objects for a while gets one every few thousand requests, e.g. tracing with
the SDK, whose batch processor holds each finished span until its batch is exported (up
to 5 s): there a full collection of the start-up heap was ~30 k instructions per request
(callgrind, C{bench tracing}), and more in wall-clock time, since walking a heap that
is not in the CPU's caches is slow.

Once the module has announced, L{freeze_start_up_heap} collects once (start-up garbage
is freed, not kept) and moves every object left into the permanent generation
(C{gc.freeze()}), which collections skip. The cost: a start-up object that later
becomes part of a garbage cycle is not freed (plain reference counting still frees
everything that is not in a cycle).
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.logger import Logger

__all__ = ["freeze_after_ready", "freeze_start_up_heap"]

_log = Logger()


def freeze_start_up_heap() -> None:
    """
    Collect once, then freeze every object left (see the module docstring).
    """
    gc.collect()
    gc.freeze()


def freeze_after_ready(module: Any, reactor: Any) -> None:
    """
    Freeze the start-up heap once C{module} (a L{ModuleService}) has announced, in the
    reactor's next turn (after the announce is written); nothing when the start fails.
    """

    def ready(_: object) -> None:
        reactor.callLater(0, _freeze)

    module.whenReady().addCallbacks(ready, lambda _: None)


def _freeze() -> None:
    try:
        freeze_start_up_heap()
    except Exception:  # pragma: no cover - gc.freeze does not fail
        _log.failure("freezing the start-up heap failed")
