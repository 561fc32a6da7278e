# -*- test-case-name: tests.runtime.test_correlation -*-
"""
L{CorrelationTable}: requests that wait for a reply, by key, each with a deadline.

Every request that waits for a reply has a timeout (ARCHITECTURE.md section 2). Giving
each one its own C{DelayedCall} costs a noticeable share of a round trip at tens of
thousands of requests per second, so the table keeps its deadlines in a heap and runs
B{one} timer, set for the earliest live deadline. Resolved entries leave the heap lazily
(the heap is rebuilt when stale entries outnumber live ones), and the timer is cancelled
as soon as the table is empty, so an idle table leaves no timer behind.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from pywatt_twisted.errors import RequestTimeout

K = TypeVar("K", bound=Hashable)

__all__ = ["CorrelationTable", "Pending"]


class Pending:
    """
    One waiting request.

    @ivar deferred: fires with the reply (or fails).
    @ivar deadline: when it times out (clock seconds).
    @ivar context: whatever the caller stored with it (used to decode the reply).
    @ivar describe: the text of its L{RequestTimeout}.
    """

    __slots__ = ("context", "deadline", "deferred", "describe", "seq")

    def __init__(
        self, deferred: Deferred[Any], deadline: float, context: Any, describe: str, seq: int
    ) -> None:
        self.deferred = deferred
        self.deadline = deadline
        self.context = context
        self.describe = describe
        self.seq = seq


class CorrelationTable(Generic[K]):
    """
    Requests waiting for replies, by key.

    @param clock: the clock deadlines are measured and enforced on.
    @param on_discard: called with the key of an entry that left the table without a
        reply (timed out or cancelled by its caller), after it left.
    """

    def __init__(
        self, clock: IReactorTime, on_discard: Callable[[K], object] | None = None
    ) -> None:
        self.clock = clock
        self._on_discard = on_discard
        self._entries: dict[K, Pending] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._timer: IDelayedCall | None = None
        #: how many entries timed out since the table was made
        self.timeouts = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """
        The waiting keys, oldest first.
        """
        return iter(list(self._entries))

    def context(self, key: K) -> Any:
        """
        The context stored with C{key}.

        @raise KeyError: if nothing waits under C{key}.
        """
        return self._entries[key].context

    def add(self, key: K, timeout: float, describe: str, context: Any = None) -> Deferred[Any]:
        """
        Wait for a reply under C{key} for at most C{timeout} seconds.

        @param describe: the message of the L{RequestTimeout} the Deferred fails with
            when no reply came in time (say what was asked, and what to do).
        @raise KeyError: if something already waits under C{key}.
        @return: a Deferred that fires with what L{pop}'s caller gives it, or fails with
            L{RequestTimeout}. Cancelling it removes the entry.
        """
        if key in self._entries:
            raise KeyError(f"a request already waits under {key!r}")
        d: Deferred[Any] = Deferred(lambda _: self._cancelled(key))
        deadline = self.clock.seconds() + timeout
        self._seq += 1
        self._entries[key] = Pending(d, deadline, context, describe, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, key))
        timer = self._timer
        if timer is None:
            self._timer = self.clock.callLater(max(0.0, timeout), self._expire)
        elif deadline < timer.getTime():
            timer.reset(max(0.0, timeout))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._compact()
        return d

    def pop(self, key: K) -> Pending | None:
        """
        Take the entry waiting under C{key} out of the table (the caller fires its
        Deferred), or C{None} when nothing waits under it.
        """
        entry = self._entries.pop(key, None)
        if entry is not None and not self._entries:
            self._idle()
        return entry

    def resolve(self, key: K, value: Any) -> bool:
        """
        Fire the Deferred waiting under C{key} with C{value}; C{False} if none waits.
        """
        entry = self.pop(key)
        if entry is None:
            return False
        entry.deferred.callback(value)
        return True

    def fail(self, key: K, error: BaseException) -> bool:
        """
        Fail the Deferred waiting under C{key} with C{error}; C{False} if none waits.
        """
        entry = self.pop(key)
        if entry is None:
            return False
        entry.deferred.errback(error)
        return True

    def fail_all(self, make_error: Callable[[K, Pending], BaseException]) -> int:
        """
        Fail every waiting request (the module is stopping); returns how many.
        """
        entries, self._entries = self._entries, {}
        self._idle()
        for key, entry in entries.items():
            entry.deferred.errback(make_error(key, entry))
        return len(entries)

    # -- internals ------------------------------------------------------------------------

    def _cancelled(self, key: K) -> None:
        if self.pop(key) is not None and self._on_discard is not None:
            self._on_discard(key)

    def _idle(self) -> None:
        self._heap.clear()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _compact(self) -> None:
        self._heap = [(e.deadline, e.seq, k) for k, e in self._entries.items()]
        heapq.heapify(self._heap)

    def _expire(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        heap = self._heap
        entries = self._entries
        expired: list[tuple[K, Pending]] = []
        while heap:
            deadline, seq, key = heap[0]
            entry = entries.get(key)
            if entry is None or entry.seq != seq:
                heapq.heappop(heap)  # answered already
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            del entries[key]
            expired.append((key, entry))
        if heap:
            self._timer = self.clock.callLater(max(0.0, heap[0][0] - now), self._expire)
        self.timeouts += len(expired)
        for key, entry in expired:
            entry.deferred.errback(RequestTimeout(entry.describe))
            if self._on_discard is not None:
                self._on_discard(key)
