# -*- test-case-name: tests.data.test_database_pool -*-
"""
L{ConnectionPool}: C{twisted.enterprise.adbapi}'s pool (its threads and per-thread
connections) with a cheaper way to hand a call to one of its threads and its result back.

Why: C{deferToThreadPool} on a Twisted C{ThreadPool} costs about 40 us of CPU per call
when many calls are in flight (a coordinator task, a worker hand-off, a C{Failure}-ready
wrapper, and one C{callFromThread}, so one reactor wake-up, per result). On a 2-CPU
machine that is more than a SQLite C{SELECT} itself, and it competes for the GIL with the
work in the pool threads. L{ConnectionPool.run_in_thread} keeps the calls waiting in its
own queue and lets up to C{max} I{drain loops} run in the pool's threads: each loop takes
the next waiting call until there is none, so a busy pool pays the C{ThreadPool}
hand-off once per burst instead of once per call; results go back to the reactor in
batches, one C{callFromThread} for all the results that finished while the reactor was
busy. C{bench data} measures it (SQLite, 32 in flight).

Nothing else changes: the threads are still the C{ThreadPool}'s (started and stopped by
the pool's C{start}/C{close}, named as before), each runs its calls on its own
connection, calls start in the order they were made, and a stopped pool runs every call
already queued before its threads end (as C{ThreadPool.stop} does).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from pywatt_twisted.data._database._errors import TransactionClosed

T = TypeVar("T")

_Call = tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]
_Result = tuple[Deferred[Any], bool, Any]

_log = Logger()


class ConnectionPool(adbapi.ConnectionPool):
    """
    An C{adbapi.ConnectionPool} whose L{run_in_thread} is the way L{Database} runs work
    in it. A call waits here until a thread is free; L{full} says when C{max_waiting}
    calls already wait (L{Database} then refuses the call instead of queueing it).
    """

    def __init__(
        self, dbapiName: str, *args: Any, max_waiting: int | None = None, **kw: Any
    ) -> None:
        super().__init__(dbapiName, *args, **kw)
        #: see L{full}; None: no bound
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        # calls not started yet, oldest first
        self._waiting: deque[_Call] = deque()
        # drain loops handed to the ThreadPool and not ended (at most self.max), and
        # how many of them are running a call (the others are about to take one)
        self._loops = 0
        self._running = 0
        # results not handed back yet, and whether a _deliver is on its way
        self._finished: list[_Result] = []
        self._delivering = False

    def full(self) -> bool:
        """
        Whether C{max_waiting} calls already wait for a thread (a drain loop is
        started on every thread, and the calls beyond those the loops are about to
        take number C{max_waiting}): the caller should refuse the next call rather
        than queue it. Reactor thread only (a loop ending meanwhile makes the answer
        cautious, never wrong the other way: only this thread adds calls).
        """
        bound = self.max_waiting
        if bound is None or self._loops < self.max:
            return False
        # (the calls a started loop is about to take do not wait for a thread)
        return len(self._waiting) - (self._loops - self._running) >= bound

    def run_in_thread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Call C{fn(*args)} in one of the pool's threads; the returned L{Deferred} fires in
        the reactor thread with its result or its exception (a L{Failure} made in that
        thread, with its traceback). Reactor thread only.
        """
        if self.threadpool.joined:
            # (stopped: by close(), or by adbapi's own shutdown trigger) a call queued
            # now would wait forever
            return fail(
                TransactionClosed(
                    f"expected an open connection pool, got {self.threadpool.name!r} "
                    "already closed (the reactor is shutting down?); nothing was run"
                )
            )
        d: Deferred[T] = Deferred()
        with self._lock:
            self._waiting.append((d, fn, args))
            start = self._loops < self.max
            if start:
                self._loops += 1
        if start:
            self.threadpool.callInThread(self._drain)
        return d

    def _drain(self) -> None:
        """
        In a pool thread: run waiting calls until there is none left.
        """
        lock = self._lock
        waiting = self._waiting
        while True:
            with lock:
                if not waiting:
                    self._loops -= 1
                    return
                d, fn, args = waiting.popleft()
                self._running += 1
            try:
                result: _Result = (d, True, fn(*args))
            except BaseException:
                result = (d, False, Failure())
            with lock:
                self._running -= 1
                self._finished.append(result)
                wake = not self._delivering
                self._delivering = True
            if wake:
                self._reactor.callFromThread(self._deliver)

    def _deliver(self) -> None:
        """
        In the reactor thread: fire the Deferreds of every call finished so far.
        """
        with self._lock:
            finished, self._finished = self._finished, []
            self._delivering = False
        for d, ok, value in finished:
            try:
                if ok:
                    d.callback(value)
                else:
                    d.errback(value)
            except Exception:
                # (AlreadyCalledError: someone fired the Deferred meanwhile) the other
                # results of the batch are still delivered
                _log.failure("Could not deliver the result of a database call")


__all__ = ["ConnectionPool"]
