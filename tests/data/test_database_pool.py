"""
L{pywatt_twisted.data._database._pool.ConnectionPool.run_in_thread}: calls handed to the
pool's threads in bursts (drain loops), results handed back in batches.

The logic is tested step by step with a thread pool and a reactor that only record what
they are asked to do (the test runs the recorded work when it chooses); one test runs
real threads under the real reactor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data._database._errors import TransactionClosed
from pywatt_twisted.data._database._pool import ConnectionPool


class _RecordingThreadPool:
    """
    A C{ThreadPool} stand-in: C{callInThread} only records the task.
    """

    name = "recording"
    joined = False

    def __init__(self) -> None:
        self.tasks: list[Callable[[], object]] = []

    def callInThread(self, f: Callable[..., object], *args: Any) -> None:
        self.tasks.append(lambda: f(*args))

    def run_next(self) -> None:
        self.tasks.pop(0)()


class _RecordingReactor(MemoryReactorClock):
    """
    A memory reactor whose C{callFromThread} only records the call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[..., object], *args: Any, **kw: Any) -> None:
        self.from_thread.append(lambda: f(*args, **kw))

    def deliver(self) -> None:
        calls, self.from_thread = self.from_thread, []
        for call in calls:
            call()


def _pool(
    reactor: Any, cp_max: int, max_waiting: int | None = None
) -> tuple[ConnectionPool, _RecordingThreadPool]:
    pool = ConnectionPool(
        "sqlite3",
        ":memory:",
        check_same_thread=False,
        cp_min=1,
        cp_max=cp_max,
        cp_reactor=reactor,
        max_waiting=max_waiting,
    )
    threads = _RecordingThreadPool()
    pool.threadpool = threads  # type: ignore[assignment]
    return pool, threads


class RunInThreadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _RecordingReactor()
        self.pool, self.threads = _pool(self.reactor, cp_max=2)

    def test_at_most_max_loops(self) -> None:
        """
        Each call starts a drain loop in the thread pool until C{max} loops are
        running; later calls wait for a running loop to take them.
        """
        for i in range(5):
            self.pool.run_in_thread(str, i)
        self.assertEqual(len(self.threads.tasks), 2)

    def test_loop_runs_every_waiting_call_in_order(self) -> None:
        """
        One drain loop runs the calls waiting when it starts and those made while it
        runs, oldest first, then ends; the next call starts a new loop.
        """
        ran: list[int] = []
        pool, threads = _pool(self.reactor, cp_max=1)
        for i in range(3):
            pool.run_in_thread(ran.append, i)

        def more() -> None:
            ran.append(3)
            # (a call made while the only loop is busy: the loop takes it)
            pool.run_in_thread(ran.append, 4)

        pool.run_in_thread(more)
        self.assertEqual(len(threads.tasks), 1)
        threads.run_next()
        self.assertEqual(ran, [0, 1, 2, 3, 4])
        self.assertEqual(threads.tasks, [])
        pool.run_in_thread(ran.append, 5)
        self.assertEqual(len(threads.tasks), 1)
        threads.run_next()
        self.assertEqual(ran, [0, 1, 2, 3, 4, 5])

    def test_results_fire_in_the_reactor_thread_in_one_batch(self) -> None:
        """
        Nothing fires in the pool thread; the results of every call finished before the
        reactor runs the delivery fire together, from one C{callFromThread}; a result
        finished after that asks for a new delivery.
        """
        results = [self.pool.run_in_thread(lambda i=i: i * 10) for i in range(3)]
        self.threads.run_next()
        for d in results:
            self.assertNoResult(d)
        self.assertEqual(len(self.reactor.from_thread), 1)
        self.reactor.deliver()
        self.assertEqual([self.successResultOf(d) for d in results], [0, 10, 20])

        later = self.pool.run_in_thread(lambda: "later")
        self.threads.run_next()
        self.assertEqual(len(self.reactor.from_thread), 1)
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(later), "later")

    def test_result_finished_during_delivery_is_not_lost(self) -> None:
        """
        A result that a pool thread adds while the reactor fires the batch before it goes
        into the next batch, with its own delivery.
        """

        def second() -> int:
            # (the reactor thread fires the first batch while this loop runs)
            self.reactor.deliver()
            return 2

        first = self.pool.run_in_thread(lambda: 1)
        then = self.pool.run_in_thread(second)
        self.threads.run_next()
        self.assertEqual(self.successResultOf(first), 1)
        self.assertNoResult(then)
        self.assertEqual(len(self.reactor.from_thread), 1)
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(then), 2)

    def test_result_delivered_after_a_bad_one(self) -> None:
        """
        A result whose L{Deferred} was fired meanwhile (by someone else) is logged; the
        results after it in the same batch are still delivered.
        """
        first = self.pool.run_in_thread(lambda: 1)
        second = self.pool.run_in_thread(lambda: 2)
        self.threads.run_next()
        first.callback("fired elsewhere")
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(first), "fired elsewhere")
        self.assertEqual(self.successResultOf(second), 2)
        self.assertEqual(len(self.flushLoggedErrors(defer.AlreadyCalledError)), 1)

    def test_exception_becomes_failure_with_traceback(self) -> None:
        """
        An exception raised by the call fails its L{Deferred} with a L{Failure} made in
        the pool thread, traceback included; the loop goes on with the next call.
        """

        def boom() -> None:
            raise ZeroDivisionError("nope")

        bad = self.pool.run_in_thread(boom)
        good = self.pool.run_in_thread(lambda: "ok")
        self.threads.run_next()
        self.reactor.deliver()
        failure = self.failureResultOf(bad, ZeroDivisionError)
        self.assertIsInstance(failure, Failure)
        self.assertIn("boom", failure.getTraceback())
        self.assertEqual(self.successResultOf(good), "ok")

    def test_full(self) -> None:
        """
        The pool is full once a loop is started on every thread and C{max_waiting}
        calls wait beyond those the loops are about to take (or are running); it is
        not any more once a loop took them.
        """
        pool, threads = _pool(self.reactor, cp_max=2, max_waiting=3)
        for _ in range(5):
            self.assertFalse(pool.full())
            pool.run_in_thread(str)
        self.assertTrue(pool.full())
        threads.run_next()
        self.assertFalse(pool.full())

    def test_full_counts_running_calls(self) -> None:
        """
        A call a loop is running does not wait; the calls behind it do.
        """
        pool, threads = _pool(self.reactor, cp_max=1, max_waiting=2)
        seen: list[bool] = []

        def first() -> None:
            # running: one loop, busy with this call; two calls wait behind it
            seen.append(pool.full())

        pool.run_in_thread(first)
        pool.run_in_thread(str)
        self.assertFalse(pool.full())
        pool.run_in_thread(str)
        # (not run yet: the loop is about to take the first call, two wait behind)
        self.assertTrue(pool.full())
        threads.run_next()
        self.assertEqual(seen, [True])
        self.assertFalse(pool.full())

    def test_unbounded(self) -> None:
        """
        Without C{max_waiting} the pool is never full.
        """
        for _ in range(100):
            self.pool.run_in_thread(str)
        self.assertFalse(self.pool.full())

    def test_closed_pool_refuses_at_once(self) -> None:
        """
        After its thread pool was stopped, a call fails at once, saying so, and is not
        queued (it would wait forever).
        """
        self.threads.joined = True
        failure = self.failureResultOf(self.pool.run_in_thread(lambda: 1), TransactionClosed)
        self.assertIn("already closed", str(failure.value))
        self.assertIn("recording", str(failure.value))
        self.assertEqual(self.threads.tasks, [])
        self.assertEqual(len(self.pool._waiting), 0)


class RealThreadsTests(TestCase):
    """
    The pool's own C{ThreadPool} under the running reactor.
    """

    def test_many_calls(self) -> None:
        """
        Hundreds of calls in flight all fire with their own results, run in at most
        C{max} threads, none of them the reactor's.
        """
        from twisted.internet import reactor

        pool = ConnectionPool(
            "sqlite3", ":memory:", check_same_thread=False, cp_min=1, cp_max=3, cp_reactor=reactor
        )
        pool.start()
        self.addCleanup(pool.close)
        reactor_thread = threading.get_ident()
        seen: set[int] = set()

        def work(i: int) -> int:
            seen.add(threading.get_ident())
            return i * i

        d = defer.gatherResults([pool.run_in_thread(work, i) for i in range(500)])

        def check(results: list[int]) -> None:
            self.assertEqual(results, [i * i for i in range(500)])
            self.assertNotIn(reactor_thread, seen)
            self.assertLessEqual(len(seen), 3)

        return d.addCallback(check)


class WaitingBoundTests(TestCase):
    """
    L{Database} with C{max_waiting}: once every connection is busy and that many calls
    wait, further calls and transactions fail at once (real threads, a SQLite file).
    """

    def setUp(self) -> None:
        from twisted.logger import globalLogPublisher

        from pywatt_twisted.data import Database

        path = os.path.abspath(self.mktemp()) + ".db"
        self.db = Database.from_url(f"sqlite:///{path}", max_pool=1, max_waiting=2)
        self.addCleanup(self.db.close)
        self.gate = threading.Event()
        # (cleanups run last first: the held thread is let go before the close)
        self.addCleanup(self.gate.set)
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    async def test_refused_beyond_max_waiting(self) -> None:
        from prometheus_client import CollectorRegistry

        from pywatt_twisted.data import DatabaseCollector, DatabaseUnavailable

        started = threading.Event()

        def hold(tx: Any) -> str:
            started.set()
            self.gate.wait(30)
            return "held"

        held = self.db.run_interaction(hold)
        self.assertTrue(await deferToThread(started.wait, 30))
        waiting = [self.db.query_one("SELECT :n AS n", {"n": n}) for n in (1, 2)]
        refused = [self.db.query_one("SELECT 3 AS n"), self.db.execute("SELECT 4")]
        for d in refused:
            error = self.failureResultOf(d, DatabaseUnavailable).value
            self.assertIn("max_waiting=2", str(error))
            self.assertIn("not run", str(error))
        with self.assertRaises(DatabaseUnavailable):
            async with self.db.transaction():
                pass
        health = self.db.health()
        self.assertEqual(health["refused"], 3)
        self.assertEqual(health["errors"], 3)
        warnings = [e for e in self.log if "refusing calls" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)

        self.gate.set()
        self.assertEqual(await held, "held")
        self.assertEqual([await d for d in waiting], [{"n": 1}, {"n": 2}])
        self.assertEqual(await self.db.query_one("SELECT 5 AS n"), {"n": 5})
        again = [e for e in self.log if "accepting calls again" in e.get("log_format", "")]
        self.assertEqual(len(again), 1)
        self.assertEqual(again[0]["count"], 3)
        registry = CollectorRegistry()
        registry.register(DatabaseCollector(self.db))
        refused_total = registry.get_sample_value(
            "pywatt_db_refused_total", {"database": self.db.name, "dialect": "sqlite"}
        )
        self.assertEqual(refused_total, 3.0)

    async def test_transaction_accepted_after_refusals(self) -> None:
        """
        A transaction accepted after refusals logs the INFO with their count, as a call
        does.
        """
        from pywatt_twisted.data import DatabaseUnavailable

        started = threading.Event()

        def hold(tx: Any) -> None:
            started.set()
            self.gate.wait(30)

        held = self.db.run_interaction(hold)
        self.assertTrue(await deferToThread(started.wait, 30))
        waiting = [self.db.execute("SELECT 1") for _ in range(2)]
        self.failureResultOf(self.db.execute("SELECT 2"), DatabaseUnavailable)
        self.gate.set()
        await held
        for d in waiting:
            await d
        async with self.db.transaction() as tx:
            self.assertEqual(await tx.query_one("SELECT 3 AS n"), {"n": 3})
        again = [e for e in self.log if "accepting calls again" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in again], [1])


class DrainedTests(TestCase):
    """
    L{Database._pool_drained} (what a rotation waits for before it closes the old pool)
    fires once no call submitted to that pool is running or waiting, whether the last
    one succeeded or failed.
    """

    async def test_fires_when_the_last_call_ends(self) -> None:
        from pywatt_twisted.data import Database, DatabaseError

        path = os.path.abspath(self.mktemp()) + ".db"
        db = Database.from_url(f"sqlite:///{path}", max_pool=1)
        self.addCleanup(db.close)
        pool = db._pool
        self.assertIsNone(self.successResultOf(db._pool_drained(pool)))
        gate = threading.Event()
        self.addCleanup(gate.set)
        started = threading.Event()

        def hold(tx: Any) -> str:
            started.set()
            gate.wait(30)
            return "held"

        held = db.run_interaction(hold)
        failing = db.execute("SELECT * FROM nowhere")
        self.assertTrue(await deferToThread(started.wait, 30))
        drained = db._pool_drained(pool)
        self.assertNoResult(drained)
        gate.set()
        self.assertEqual(await held, "held")
        with self.assertRaises(DatabaseError):
            await failing
        self.assertIsNone(self.successResultOf(drained))
        self.assertEqual(db._pool_in_flight, {})
        self.assertEqual(db.health()["errors"], 1)
