# -*- test-case-name: tests.runtime.test_correlation -*-
"""
The one request/response correlation primitive: requests that wait for a reply, each
with a deadline on an injected clock.

L{CorrelationTable} keeps, by key, the callers waiting for a reply. Every request that
waits for a reply has a timeout (ARCHITECTURE.md section 2). Giving each one its own
C{DelayedCall} costs a noticeable share of a round trip at tens of thousands of requests
per second, so the table keeps its deadlines in a heap and runs B{one} timer, set for the
earliest live deadline. Resolved entries leave the heap lazily (the heap is rebuilt when
stale entries outnumber live ones), and the timer is cancelled as soon as the table is
empty, so an idle table leaves no timer behind.

What the table offers, for every client of the orchestrator:
  - L{CorrelationTable.add}: one caller per key (a request id);
  - L{CorrelationTable.join}: callers sharing one request under a key (secrets by name);
  - L{CorrelationTable.wait}: an object that fires its own outcome (a L{Waiting}) is the
    entry itself, no Deferred (module-to-module requests);
  - a C{retry} hook that, at a deadline, sends the same request again and waits longer
    instead of failing (port negotiation);
  - L{CorrelationTable.oldest}: the oldest waiting key (that matches), for replies that
    carry no id;
  - cancelling a caller's Deferred frees its place (the entry when it was the last one);
  - L{CorrelationTable.stop} fails every waiter and refuses new ones.

L{FifoCalls} builds on it for replies that carry no id at all: per line (one kind of
reply), first in, first out, with only the oldest call on the wire.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from pywatt_twisted.errors import NotAvailable, RequestTimeout

K = TypeVar("K", bound=Hashable)
L = TypeVar("L", bound=Hashable)

__all__ = ["CorrelationTable", "FifoCalls", "Pending", "Waiting"]


class Pending:
    """
    One waiting request, and the callers waiting for its reply.

    @ivar waiters: the callers' Deferreds (one, unless they share it:
        L{CorrelationTable.join}).
    @ivar deadline: when it times out (clock seconds).
    @ivar context: whatever the caller stored with it (used to decode the reply).
    @ivar describe: the text of its timeout error, or C{None}: the table's
        C{timeout_text} writes it from the key and the context if it times out.
    """

    __slots__ = ("context", "deadline", "describe", "seq", "waiters")

    def __init__(self, deadline: float, context: Any, describe: str | None, seq: int) -> None:
        self.waiters: list[Deferred[Any]] = []
        self.deadline = deadline
        self.context = context
        self.describe = describe
        self.seq = seq

    def callback(self, value: Any) -> None:
        """
        Fire every waiter with C{value} (the entry has left its table).
        """
        for waiter in self.waiters:
            if not waiter.called:  # a waiter's callback may cancel another one
                waiter.callback(value)

    def errback(self, error: BaseException | Failure) -> None:
        """
        Fail every waiter with C{error} (the entry has left its table).
        """
        for waiter in self.waiters:
            if not waiter.called:
                waiter.errback(error)


class Waiting(Pending):
    """
    An entry of its own in a L{CorrelationTable} (L{CorrelationTable.wait}): the
    object that waits for the reply is the table's entry, and the table fires its
    L{callback} or L{errback} with the outcome, once, as it fires a L{Pending}'s
    waiters (it has no C{waiters} list, and nothing can L{join<CorrelationTable.join>}
    it). Its context (what C{timeout_text} and C{abandoned} are given) is the object
    itself, and the text of its timeout error comes from the table's C{timeout_text}.
    The table sets its C{deadline} and C{seq}.

    (issue 17: a routed request's call is its own entry: no L{Pending}, waiters list or
    extra call per request; callgrind, a wait, a pop and a callback in a loop with 64
    waiting: 14.2k -> 10.0k instructions, the loop's own work included.)
    """

    __slots__ = ()

    def __init__(self) -> None:
        """
        (Nothing to set: unlike a L{Pending} it has no waiters list, and the table sets
        its C{deadline} and C{seq} when it waits.)
        """

    #: (the timeout text comes from the table's C{timeout_text})
    describe = None
    #: (the table's waiter protocol: it is fired at most once per wait)
    called = False

    @property
    def context(self) -> Any:
        """
        What the table's C{timeout_text} and C{abandoned} are given: the entry itself.
        """
        return self

    def callback(self, value: Any) -> Any:
        """The reply (the entry has left its table)."""
        raise NotImplementedError

    def errback(self, error: BaseException | Failure) -> Any:
        """The failure (the entry has left its table)."""
        raise NotImplementedError


def _abandoned(key: Any, context: Any, reason: str) -> BaseException:
    return NotAvailable(f"request {key!r} abandoned: {reason}")


class _Deadlines(Generic[K]):
    """
    The deadlines of a L{CorrelationTable}'s entries: a heap of C{(deadline, seq, key)}
    and B{one} timer, set for the earliest live deadline. An item stands for its entry
    only while the entry's C{seq} is the item's (an answered or re-armed entry leaves
    a stale item behind, dropped lazily); the heap is rebuilt when stale items
    outnumber live ones.

    @ivar heap: the items, earliest first.
    """

    def __init__(self, clock: IReactorTime, entries: dict[K, Pending], expire: Callable[[], None]):
        self.clock = clock
        self.heap: list[tuple[float, int, K]] = []
        self._entries = entries
        self._expire = expire
        self._seq = 0
        self._timer: IDelayedCall | None = None
        # The timer's time (its getTime()), kept when it is set: only this object sets
        # or resets it, so a new deadline is compared without a call (issue 17).
        self._due = math.inf

    def push(self, key: K, deadline: float) -> int:
        """
        Add C{key}'s deadline (its entry takes the returned C{seq}); the timer runs by
        then.
        """
        self._seq = seq = self._seq + 1
        heapq.heappush(self.heap, (deadline, seq, key))
        # (arm(), inline: with requests of one timeout in flight, a new deadline is the
        # latest and the timer stays)
        if deadline < self._due:
            self.arm(deadline)
        return seq

    def arm(self, deadline: float) -> None:
        """
        Make sure the timer runs by C{deadline}.
        """
        timer = self._timer
        # The clock is read only when the timer moves.
        if timer is None:
            timer = self._timer = self.clock.callLater(
                max(0.0, deadline - self.clock.seconds()), self._fire
            )
        elif deadline < self._due:
            timer.reset(max(0.0, deadline - self.clock.seconds()))
        else:
            return
        self._due = timer.getTime()

    def _fire(self) -> None:
        self._timer = None
        self._due = math.inf
        self._expire()

    def rearm(self) -> None:
        """
        After expiry: set the timer for the earliest live deadline, or stop it when
        nothing waits.
        """
        if not self._entries:
            self.idle()
        else:
            self.drop_stale()  # so the timer is set for a live deadline
            self.arm(self.heap[0][0])

    def idle(self) -> None:
        """
        Nothing waits: forget the heap, cancel the timer (an idle table leaves none).
        """
        self.heap.clear()
        timer, self._timer = self._timer, None
        self._due = math.inf
        if timer is not None and timer.active():
            timer.cancel()

    def compact_if_stale(self) -> None:
        """
        Rebuild the heap from the live entries when stale items outnumber them.
        """
        if len(self.heap) > 2 * len(self._entries) + 64:
            self.heap = [(e.deadline, e.seq, k) for k, e in self._entries.items()]
            heapq.heapify(self.heap)

    def drop_stale(self) -> None:
        """
        Drop the heap's head items that no longer stand for a waiting entry (answered,
        or re-armed, already).
        """
        heap = self.heap
        entries = self._entries
        while heap:
            _, seq, key = heap[0]
            entry = entries.get(key)
            if entry is not None and entry.seq == seq:
                return
            heapq.heappop(heap)

    def due(self, now: float) -> list[tuple[K, Pending]]:
        """
        Take the entries whose deadline passed off the heap (they stay in the table).
        """
        heap = self.heap
        due: list[tuple[K, Pending]] = []
        while True:
            self.drop_stale()
            if not heap or heap[0][0] > now:
                return due
            key = heapq.heappop(heap)[2]
            due.append((key, self._entries[key]))


class CorrelationTable(Generic[K]):
    """
    Requests waiting for replies, by key (see the module docstring).

    @param clock: the clock deadlines are measured and enforced on.
    @param on_discard: called with the key of an entry that left the table without a
        reply (timed out or cancelled by its last caller), after it left.
    @param timeout_error: makes the error a timed-out entry fails with, from its
        C{describe} text.
    @param retry: called with C{(key, entry)} when an entry's deadline passed: it may
        send the request again and return the seconds to wait once more, or return
        C{None} to let the entry time out.
    @param abandoned: makes the error of the waiters that L{stop} fails, from the key,
        the context and the reason.
    @param timeout_text: writes the text of a timed-out entry's error from its key and
        context, for the entries added without a C{describe} text (so that a request
        that is answered, as nearly all are, never formats one).
    """

    def __init__(
        self,
        clock: IReactorTime,
        on_discard: Callable[[K], object] | None = None,
        *,
        timeout_error: Callable[[str], BaseException] = RequestTimeout,
        retry: Callable[[K, Pending], float | None] | None = None,
        abandoned: Callable[[K, Any, str], BaseException] = _abandoned,
        timeout_text: Callable[[K, Any], str] | None = None,
    ) -> None:
        self.clock = clock
        self._timeout_text = timeout_text
        self._on_discard = on_discard
        self._timeout_error = timeout_error
        self._retry = retry
        self._abandoned = abandoned
        self._entries: dict[K, Pending] = {}
        self._deadlines: _Deadlines[K] = _Deadlines(clock, self._entries, self._expire)
        self._stop_reason: str | None = None
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

    @property
    def stopped(self) -> bool:
        """
        Whether L{stop} was called: the table takes no new requests.
        """
        return self._stop_reason is not None

    def context(self, key: K) -> Any:
        """
        The context stored with C{key}.

        @raise KeyError: if nothing waits under C{key}.
        """
        return self._entries[key].context

    def oldest(self, match: Callable[[K, Any], bool] | None = None) -> K | None:
        """
        The oldest waiting key (for which C{match(key, context)} is true, if given), or
        C{None}: how a reply that carries no id finds its request.
        """
        for key, entry in self._entries.items():
            if match is None or match(key, entry.context):
                return key
        return None

    # -- waiting --------------------------------------------------------------------------

    def add(
        self,
        key: K,
        timeout: float,
        describe: str | None,
        context: Any = None,
        now: float | None = None,
    ) -> Deferred[Any]:
        """
        Wait for a reply under C{key} for at most C{timeout} seconds.

        @param describe: the message of the error the Deferred fails with when no reply
            came in time (say what was asked, and what to do); C{None} when the table
            has a C{timeout_text} to write it only then.
        @param now: the clock's time, when the caller just read it (not read again).
        @raise KeyError: if something already waits under C{key}.
        @return: a Deferred that fires with what L{resolve}'s caller gives it, or fails
            with the timeout error (L{RequestTimeout} unless told otherwise).
            Cancelling it removes the entry. Once the table is stopped, it has failed
            already.
        """
        if key in self._entries:
            raise KeyError(f"a request already waits under {key!r}")
        if self._stop_reason is not None:
            return fail(self._abandoned(key, context, self._stop_reason))
        deadline = (self.clock.seconds() if now is None else now) + timeout
        entry = self._entries[key] = Pending(deadline, context, describe, 0)
        entry.seq = self._deadlines.push(key, deadline)
        self._deadlines.compact_if_stale()
        return self._waiter(key, entry)

    def wait(
        self, key: K, timeout: float, entry: Waiting, now: float | None = None
    ) -> BaseException | None:
        """
        L{add} for a caller that handles the outcome itself, without a Deferred: the
        C{entry} (a L{Waiting}) is the table's entry under C{key}, and the table fires
        its C{callback(value)} or C{errback(error)} once, as it would fire a Deferred;
        L{pop} gives it back. The text of its timeout error comes from the table's
        C{timeout_text}. To give up waiting, the caller calls L{forget} (the entry is
        not fired then).

        @param now: the clock's time, when the caller just read it.
        @raise KeyError: if something already waits under C{key}.
        @return: C{None} once it waits; the C{abandoned} error (and nothing waits) when
            the table is stopped.
        """
        entries = self._entries
        if key in entries:
            raise KeyError(f"a request already waits under {key!r}")
        if self._stop_reason is not None:
            return self._abandoned(key, entry, self._stop_reason)
        entry.deadline = deadline = (self.clock.seconds() if now is None else now) + timeout
        entries[key] = entry
        deadlines = self._deadlines
        entry.seq = deadlines.push(key, deadline)
        if len(deadlines.heap) > 2 * len(entries) + 64:  # (compact_if_stale, inline)
            deadlines.compact_if_stale()
        return None

    def forget(self, key: K) -> bool:
        """
        The caller of L{wait} gives up (it was cancelled): the entry under C{key} leaves
        the table without firing its waiter, as a cancelled Deferred's entry does.
        C{False} if nothing waits under C{key}.
        """
        if self.pop(key) is None:
            return False
        if self._on_discard is not None:
            self._on_discard(key)
        return True

    def join(
        self, key: K, timeout: float, describe: str, context: Any = None
    ) -> tuple[Deferred[Any], bool]:
        """
        Wait for the reply under C{key}, sharing the request already waiting there (its
        deadline, description and context stay), or making one like L{add}.

        @raise KeyError: if an entry of its own (L{wait}) waits under C{key}: it is not
            shared.
        @return: the caller's own Deferred, and whether the request is new (then the
            caller sends it). Cancelling the Deferred leaves the others waiting; the
            entry goes with its last waiter.
        """
        entry = self._entries.get(key)
        if entry is None:
            return self.add(key, timeout, describe, context), self._stop_reason is None
        if isinstance(entry, Waiting):
            raise KeyError(f"a request of its own already waits under {key!r}")
        return self._waiter(key, entry), False

    def _waiter(self, key: K, entry: Pending) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(lambda d: self._cancelled(key, entry, d))
        entry.waiters.append(d)
        return d

    # -- answering ------------------------------------------------------------------------

    def pop(self, key: K) -> Pending | None:
        """
        Take the entry waiting under C{key} out of the table (the caller fires its
        waiters), or C{None} when nothing waits under it.
        """
        entry = self._entries.pop(key, None)
        if entry is not None and not self._entries:
            self._deadlines.idle()
        return entry

    def resolve(self, key: K, value: Any) -> bool:
        """
        Fire the waiters under C{key} with C{value}; C{False} if none waits.
        """
        entry = self.pop(key)
        if entry is None:
            return False
        entry.callback(value)
        return True

    def fail(self, key: K, error: BaseException | Failure) -> bool:
        """
        Fail the waiters under C{key} with C{error}; C{False} if none waits.
        """
        entry = self.pop(key)
        if entry is None:
            return False
        entry.errback(error)
        return True

    def fail_all(self, make_error: Callable[[K, Pending], BaseException]) -> int:
        """
        Fail every waiting request (the peer went away); returns how many. New requests
        are still taken.
        """
        entries = dict(self._entries)
        self._entries.clear()  # (the deadlines read the same dict)
        self._deadlines.idle()
        for key, entry in entries.items():
            entry.errback(make_error(key, entry))
        return len(entries)

    def stop(self, reason: str) -> int:
        """
        Fail every waiting request with the C{abandoned} error for C{reason}, and fail
        every later one at once the same way (the module is stopping). Returns how many
        waited.
        """
        self._stop_reason = reason
        return self.fail_all(lambda key, entry: self._abandoned(key, entry.context, reason))

    # -- internals ------------------------------------------------------------------------

    def _cancelled(self, key: K, entry: Pending, d: Deferred[Any]) -> None:
        if self._entries.get(key) is not entry:
            return  # it left the table and its waiters are being fired
        entry.waiters.remove(d)
        if entry.waiters:
            return
        self.pop(key)
        if self._on_discard is not None:
            self._on_discard(key)

    def _expire(self) -> None:
        now = self.clock.seconds()
        entries = self._entries
        deadlines = self._deadlines
        expired: list[tuple[K, Pending]] = []
        for key, entry in deadlines.due(now):
            if self._retry is not None:
                wait = self._retry(key, entry)
                if entries.get(key) is not entry:
                    continue  # the retry failed it
                if wait is not None:
                    entry.deadline = now + wait
                    entry.seq = deadlines.push(key, entry.deadline)
                    continue
            # All of them leave before any caller hears of it.
            del entries[key]
            expired.append((key, entry))
        deadlines.rearm()
        self.timeouts += len(expired)
        for key, entry in expired:
            text = entry.describe
            if text is None:
                text = (
                    self._timeout_text(key, entry.context)
                    if self._timeout_text is not None
                    else f"no reply to {key!r} within the timeout"
                )
            entry.errback(self._timeout_error(text))
            if self._on_discard is not None:
                self._on_discard(key)


class FifoCalls(Generic[L]):
    """
    Calls whose replies carry no id, correlated first in, first out per line (one line
    per kind of reply): only the oldest call of a line is on the wire, and the next one
    goes out once it was answered, timed out, failed or cancelled. Each call waits for
    at most its own timeout, queued or not.

    @param table: where the calls wait, under C{(line, sequence number)} keys; other
        kinds of keys may share it.
    @param send: sends a call's message (its context); returns a Deferred that fails
        when it could not be sent (the call then fails with that error).
    """

    def __init__(
        self, table: CorrelationTable[tuple[L, int]], send: Callable[[Any], Deferred[None]]
    ) -> None:
        self._table = table
        self._send = send
        self._seq = 0
        self._queues: dict[L, deque[int]] = {}
        self._on_wire: dict[L, int] = {}

    def call(self, line: L, timeout: float, describe: str, message: Any) -> Deferred[Any]:
        """
        Queue C{message} on C{line}; it is sent when it reaches the head.

        @return: a Deferred that fires with the reply given to L{reply}, or fails (see
            L{CorrelationTable.add}).
        """
        self._seq += 1
        key = (line, self._seq)
        d = self._table.add(key, timeout, describe, context=message)
        if d.called:
            return d  # the table is stopped
        d.addBoth(self._done, key)
        self._queues.setdefault(line, deque()).append(self._seq)
        self._advance(line)
        return d

    def reply(self, line: L, value: Any) -> bool:
        """
        A reply for C{line} came: fire the call on the wire with it. C{False} (and
        nothing happens) when no call of that line is on the wire.
        """
        seq = self._on_wire.get(line)
        if seq is None:
            return False
        return self._table.resolve((line, seq), value)

    def _done(self, result: Any, key: tuple[L, int]) -> Any:
        line, seq = key
        if self._on_wire.get(line) == seq:
            del self._on_wire[line]
        self._advance(line)
        return result

    def _advance(self, line: L) -> None:
        queue = self._queues.get(line)
        while queue and line not in self._on_wire:
            key = (line, queue[0])
            if key not in self._table:
                queue.popleft()  # answered, timed out, failed or cancelled
                continue
            self._on_wire[line] = queue[0]
            self._send(self._table.context(key)).addErrback(self._send_failed, key)

    def _send_failed(self, failure: Failure, key: tuple[L, int]) -> None:
        self._table.fail(key, failure.value)
