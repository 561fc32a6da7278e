# -*- test-case-name: tests.runtime.test_data_lifecycle -*-
"""
The databases and caches a module opened, so that its service closes them when it
stops without the module having to remember to.

A running module's service calls L{collecting} around its start-up (C{state_builder},
C{create_app}): every L{Database <pywatt_twisted.data.Database>} created meanwhile
(C{Database.from_url}...) calls L{track} and lands in that service's L{Resources}. The
service also finds the databases and caches (anything providing C{IDatabase} or
C{ICache}) in what C{state_builder} returned: see L{found_in}.

The collection is held in a L{contextvars.ContextVar}, so two modules started in one
process (tests) each collect their own.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_collector: contextvars.ContextVar[Resources | None] = contextvars.ContextVar(
    "pywatt_twisted_resources", default=None
)


class Resources:
    """
    Closeable resources (objects with a C{close()} returning a Deferred or None), in
    the order they were added; each one once.
    """

    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, resource: Any) -> Any:
        """
        Add C{resource} (again: no effect). Returns it.
        """
        if not any(item is resource for item in self._items):
            self._items.append(resource)
        return resource

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


@contextmanager
def collecting(resources: Resources) -> Iterator[Resources]:
    """
    Within the block (and the coroutines it runs), L{track} adds to C{resources}.
    """
    token = _collector.set(resources)
    try:
        yield resources
    finally:
        _collector.reset(token)


def start_collecting(resources: Resources) -> None:
    """
    From now on, in the current context (a coroutine run by C{ensureDeferred} has its
    own), L{track} adds to C{resources}.
    """
    _collector.set(resources)


def track(resource: Any) -> None:
    """
    Called by the library's factories for every database or cache they create: hand it
    to the module being started, if any, to be closed when it stops.
    """
    resources = _collector.get()
    if resources is not None:
        resources.add(resource)


# Where IDatabase and ICache are defined. Nothing can provide one before its module is
# imported, so a module that loaded neither does not load them here (at start-up).
_INTERFACES = (
    ("pywatt_twisted.data._database._core", "IDatabase"),
    ("pywatt_twisted.data._cache._base", "ICache"),
)


def _closeable(value: object) -> bool:
    for module_name, interface in _INTERFACES:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, interface).providedBy(value):
            return True
    return False


def found_in(value: object) -> list[Any]:
    """
    The databases and caches in C{value} (what C{state_builder} returned): C{value}
    itself, the values of a mapping, the items of a list or tuple, or the attributes of
    an object (a dataclass, an attrs class, a namespace), one level deep.
    """
    candidates: list[object] = [value]
    if isinstance(value, Mapping):
        candidates.extend(value.values())
    elif isinstance(value, list | tuple):
        candidates.extend(value)
    else:
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            candidates.extend(attributes.values())
        for name in getattr(type(value), "__slots__", ()):
            candidates.append(getattr(value, name, None))
    found: list[Any] = []
    for candidate in candidates:
        if _closeable(candidate) and not any(known is candidate for known in found):
            found.append(candidate)
    return found


__all__ = ["Resources", "collecting", "found_in", "start_collecting", "track"]
