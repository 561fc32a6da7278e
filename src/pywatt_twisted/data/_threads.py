# -*- test-case-name: tests.data.test_database_pool,tests.data.test_cache -*-
"""
L{BurstRunner}: hand blocking calls to a Twisted C{ThreadPool} in bursts and their results
back to the reactor in batches, with a bound on the calls that wait. The database's pool
(L{pywatt_twisted.data._database._pool.ConnectionPool}) and the file cache run their
blocking work through it.

Why not C{deferToThreadPool}: on a Twisted C{ThreadPool} it costs about 40 us of CPU per
call when many calls are in flight (a coordinator task, a worker hand-off, a
C{Failure}-ready wrapper, and one C{callFromThread}, so one reactor wake-up, per result),
and the pool's queue has no bound. Here the calls wait in the runner's own queue and up
to C{max} I{drain loops} run in the pool's threads: each loop takes the next waiting call
until there is none, so a busy runner pays the C{ThreadPool} hand-off once per burst
instead of once per call; results go back to the reactor in batches, one
C{callFromThread} for all the results that finished while the reactor was busy.

Calls start in the order they were made. A stopped C{ThreadPool} still runs every call
already queued before its threads end (as C{ThreadPool.stop} does); a call made once it
has stopped fails at once (L{BurstRunner._closed}) instead of waiting forever.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

T = TypeVar("T")

_Call = tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]
_Result = tuple[Deferred[Any], bool, Any]

_log = Logger()

#: the largest C{max_waiting} a runner's owner accepts (a waiting call holds its
#: arguments in memory)
MAX_WAITING_LIMIT = 1_000_000


def checked_bound(name: str, value: object, limit: int, error: type[Exception]) -> int:
    """
    C{value} if it is an C{int} from 1 to C{limit} (a C{bool} is not), else raise
    C{error} naming C{name}.
    """
    if value.__class__ is not int or not 1 <= value <= limit:  # type: ignore[operator]
        raise error(f"expected {name} as an int from 1 to {limit:,}, got {value!r}")
    return value  # type: ignore[return-value]


class Refusals:
    """
    The calls an owner of a bounded queue refused: C{total} in all, and the current run.
    The first refusal of a run logs a WARNING (C{refusing}); the next call accepted
    logs one INFO (C{accepting}) with how many the run refused (C{count}), and ends it.
    """

    def __init__(self, log: Logger, refusing: str, accepting: str) -> None:
        self._log = log
        self._refusing = refusing
        self._accepting = accepting
        self.total = 0
        #: refused since the last call accepted
        self.run = 0

    def refuse(self, **fields: object) -> None:
        self.total += 1
        self.run += 1
        if self.run == 1:
            self._log.warn(self._refusing, **fields)

    def accept(self, **fields: object) -> None:
        if self.run:
            self._log.info(self._accepting, count=self.run, **fields)
            self.run = 0


class BurstRunner:
    """
    Runs calls in C{self.threadpool}'s threads, at most C{self.max} at a time (a mixin:
    the class using it provides C{threadpool}, C{max} and C{_reactor}, overrides
    L{_closed}, and calls L{_init_runner} from its C{__init__}).

    @ivar max_waiting: see L{full}; C{None}: no bound.
    @ivar what: what a call is, for the log line of a result that cannot be delivered.
    """

    threadpool: Any
    max: int
    _reactor: Any
    what = "call"

    def _init_runner(self, max_waiting: int | None) -> None:
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

    def _closed(self) -> BaseException:
        """
        The error a call made after the thread pool stopped fails with.
        """
        return RuntimeError(f"the thread pool {self.threadpool.name!r} is stopped")

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
        thread, with its traceback). Reactor thread only. (It does not check L{full}:
        the caller decides what a refusal is.)
        """
        threadpool = self.threadpool
        if threadpool.joined:
            # (stopped: by its owner, or by a reactor shutdown trigger) a call queued
            # now would wait forever
            return fail(self._closed())
        d: Deferred[T] = Deferred()
        with self._lock:
            self._waiting.append((d, fn, args))
            start = self._loops < self.max
            if start:
                self._loops += 1
        if start:
            threadpool.callInThread(self._drain)
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
                _log.failure("Could not deliver the result of a {what}", what=self.what)


__all__ = ["MAX_WAITING_LIMIT", "BurstRunner", "Refusals", "checked_bound"]
