# -*- test-case-name: tests.web.test_bridge -*-
"""
The HTTP-over-IPC bridge's route timeouts (L{pywatt_twisted.web.bridge}): one timer
per bridge instead of a C{callLater} per request.

Every request of a bridge gets the same timeout, so deadlines come in the order the
requests start: they wait in a queue, and one timer, set for the earliest deadline
still waiting, expires them. A request that finishes is only marked (L{Pending.timer}
no longer L{QUEUED}) and dropped from the queue when it reaches the front, or when
finished entries pile up behind a slow one; when no request waits any more, the queue
is emptied and the timer cancelled, so an idle bridge holds no timer (with one request
in flight that is a C{callLater} and a cancel per request, as before; under load the
one timer serves them all). A deadline earlier than the last queued
one (the timeout was lowered, or the clock went back) gets a C{callLater} of its own,
as every request did before: the timeouts stay exact either way.

The bridge watches a request only once its route has returned unfinished (a route
that answered synchronously never waits here), with the deadline counted from before
the route ran.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["QUEUED", "BridgeDeadlines"]

#: L{Pending.timer} of a request whose deadline waits in a L{BridgeDeadlines} queue.
QUEUED: Any = object()


class BridgeDeadlines:
    """
    The deadlines of one bridge's requests.

    @ivar timer: the one C{DelayedCall} (for the earliest queued deadline, or a
        finished request's), or C{None}.
    """

    def __init__(self, reactor: Any, expired: Callable[[Any], None]) -> None:
        """
        @param reactor: provides C{seconds} and C{callLater}.
        @param expired: called with each L{Pending} whose deadline passed unfinished.
        """
        self._reactor = reactor
        self._expired = expired
        self._queue: deque[Any] = deque()
        #: how many queued requests are still waiting (the rest finished)
        self._waiting = 0
        self.timer: Any = None

    def watch(self, pending: Any, deadline: float) -> None:
        """
        Call C{expired(pending)} at C{deadline} (the reactor's C{seconds()}; at once,
        on the next turn, when that has passed) unless L{unwatch} is called first.
        """
        queue = self._queue
        if queue and queue[-1].deadline > deadline:
            # out of order: a timer of its own (what every request had before)
            pending.timer = self._reactor.callLater(self._delay(deadline), self._expired, pending)
            return
        pending.deadline = deadline
        pending.timer = QUEUED
        queue.append(pending)
        self._waiting += 1
        if self.timer is None:
            self.timer = self._reactor.callLater(self._delay(deadline), self._sweep)

    def _delay(self, deadline: float) -> float:
        return max(0.0, deadline - self._reactor.seconds())

    def unwatch(self, pending: Any) -> None:
        """
        C{pending} finished (or expired): forget its deadline.
        """
        timer, pending.timer = pending.timer, None
        if timer is QUEUED:
            self._waiting -= 1
            queue = self._queue
            if not self._waiting:
                # nothing waits: no timer outlives the bridge's idle moments
                queue.clear()
                if self.timer is not None and self.timer is not QUEUED:
                    self.timer.cancel()
                    self.timer = None
                return
            while queue and queue[0].timer is not QUEUED:
                queue.popleft()
            if len(queue) > 64 and len(queue) > 2 * self._waiting:
                # finished requests piled up behind a slow one: keep the waiting ones
                waiting = [p for p in queue if p.timer is QUEUED]
                queue.clear()
                queue.extend(waiting)
        elif timer is not None and timer.active():
            timer.cancel()

    def _sweep(self) -> None:
        self.timer = QUEUED  # (while sweeping, watch() sets no timer: it is set below)
        queue = self._queue
        now = self._reactor.seconds()
        try:
            while queue:
                head = queue[0]
                if head.timer is not QUEUED:
                    queue.popleft()
                elif head.deadline <= now:
                    queue.popleft()
                    self._waiting -= 1
                    head.timer = None
                    self._expired(head)
                else:
                    break
        finally:
            self.timer = None
            if queue:
                delay = max(0.0, queue[0].deadline - now)
                self.timer = self._reactor.callLater(delay, self._sweep)
