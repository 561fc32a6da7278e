# -*- test-case-name: tests.test_inflight -*-
"""
L{InFlight}: the work a component has started and not finished, and who waits for it
to drain.

The HTTP site, the HTTP-over-IPC bridge and the routed-message handlers each track
their in-flight work so a graceful stop can wait for it; this is the one primitive they
share. It lives below C{web/} and C{runtime/} so both can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["InFlight"]


def _always_idle() -> bool:
    return True


class InFlight(Generic[T]):
    """
    A set of in-flight items with drain waiters.

    @param idle: an extra condition for being drained (e.g. "nothing is queued"); the
        owner calls L{check} after making it true without removing an item.
    """

    def __init__(self, idle: Callable[[], bool] = _always_idle) -> None:
        self._items: set[T] = set()
        self._waiters: list[Deferred[None]] = []
        self._idle = idle

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def add(self, item: T) -> None:
        """
        C{item} has started.
        """
        self._items.add(item)

    def discard(self, item: T) -> None:
        """
        C{item} has finished (or never started): wake the drain waiters if it was the
        last one.
        """
        self._items.discard(item)
        if self._waiters:  # (check() would find none to wake)
            self.check()

    def track(self: InFlight[Deferred[R]], d: Deferred[R]) -> Deferred[R]:
        """
        Hold C{d} in flight until it fires (either way); return it, result untouched.
        A Deferred that has already fired is never held.
        """
        if d.called:
            return d
        self.add(d)

        def done(result: R) -> R:
            self.discard(d)
            return result

        return d.addBoth(done)

    def drained(self) -> Deferred[None]:
        """
        A Deferred that fires once nothing is in flight (at once when nothing is). It
        does not refuse new work; the owner stops accepting first, and the caller
        bounds the wait (a graceful stop has a deadline).
        """
        if self._is_drained():
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def check(self) -> None:
        """
        Wake the drain waiters if nothing is in flight any more.
        """
        if self._waiters and self._is_drained():
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _is_drained(self) -> bool:
        return not self._items and self._idle()
