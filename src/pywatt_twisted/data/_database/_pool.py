# -*- test-case-name: tests.data.test_database_pool -*-
"""
L{ConnectionPool}: C{twisted.enterprise.adbapi}'s pool (its threads and per-thread
connections) with a cheaper way to hand a call to one of its threads and its result back:
L{BurstRunner}'s drain loops, one per connection at most (see
L{pywatt_twisted.data._threads} for why and how). C{bench data} measures it (SQLite, 32
in flight).

Nothing else changes: the threads are still the C{ThreadPool}'s (started and stopped by
the pool's C{start}/C{close}, named as before), each runs its calls on its own
connection, calls start in the order they were made, and a stopped pool runs every call
already queued before its threads end (as C{ThreadPool.stop} does).
"""

from __future__ import annotations

from typing import Any

from twisted.enterprise import adbapi

from pywatt_twisted.data._database._errors import TransactionClosed
from pywatt_twisted.data._threads import BurstRunner


class ConnectionPool(BurstRunner, adbapi.ConnectionPool):
    """
    An C{adbapi.ConnectionPool} whose L{run_in_thread} is the way L{Database} runs work
    in it. A call waits here until a thread is free; L{full} says when C{max_waiting}
    calls already wait (L{Database} then refuses the call instead of queueing it).
    """

    what = "database call"

    def __init__(
        self, dbapiName: str, *args: Any, max_waiting: int | None = None, **kw: Any
    ) -> None:
        adbapi.ConnectionPool.__init__(self, dbapiName, *args, **kw)
        self._init_runner(max_waiting)

    def _closed(self) -> BaseException:
        # (stopped: by close(), or by adbapi's own shutdown trigger)
        return TransactionClosed(
            f"expected an open connection pool, got {self.threadpool.name!r} "
            "already closed (the reactor is shutting down?); nothing was run"
        )


__all__ = ["ConnectionPool"]
