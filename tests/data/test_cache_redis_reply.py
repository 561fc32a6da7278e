"""
The Redis pool's reply timeout (C{reply_timeout}): one timer per connection
(L{_PoolProtocol._sweep}) in place of txredisapi's timer per command, with the same
results. On L{StringTransport}s and a L{task.Clock} (no server).
"""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet import error, task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data._cache.redis import _PoolFactory, _PoolProtocol


class ReplyTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        # txredisapi hands ready connections to the pool with a callLater(0) on the
        # global reactor: keep that off the real reactor
        self.reactor = task.Clock()
        self.patch(txredisapi, "reactor", self.reactor)
        self.clock = task.Clock()

    def connect(self, reply_timeout: float | None = 5.0) -> tuple[_PoolProtocol, StringTransport]:
        factory = _PoolFactory(
            db=0,
            password=None,
            username=None,
            poolsize=1,
            reply_timeout=reply_timeout,
            connect_wait=10.0,
            clock=self.clock,
            url_redacted="redis://127.0.0.1:6379/0",
        )
        proto = factory.buildProtocol(None)
        proto.clock = self.clock
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_no_per_command_timer(self) -> None:
        """
        txredisapi arms no timer of its own, and 32 commands in flight share one.
        """
        proto, _ = self.connect()
        self.assertIsNone(proto.replyTimeout)
        sent = [proto.get(b"k%d" % i) for i in range(32)]
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for _ in sent:
            proto.dataReceived(b"$1\r\nv\r\n")
        self.assertEqual([self.successResultOf(d) for d in sent], [b"v"] * 32)

    def test_answered_in_time(self) -> None:
        """
        Commands answered within the timeout succeed; the timer ends once none waits.
        """
        proto, transport = self.connect()
        first = proto.get(b"a")
        self.clock.advance(3)
        second = proto.get(b"b")
        self.clock.advance(1.9)
        proto.dataReceived(b"$1\r\n1\r\n")
        self.assertEqual(self.successResultOf(first), b"1")
        self.clock.advance(0.1)  # the sweep: "b" has 3 s left
        self.assertNoResult(second)
        [timer] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(timer.getTime(), 8.0)
        proto.dataReceived(b"$1\r\n2\r\n")
        self.assertEqual(self.successResultOf(second), b"2")
        self.clock.advance(3)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(transport.disconnecting)

    def test_late_reply_fails_all_and_drops(self) -> None:
        """
        The oldest command unanswered after C{reply_timeout} fails with txredisapi's
        L{txredisapi.TimeoutError}, exactly on time; so does every command waiting on
        that connection; the connection is aborted.
        """
        proto, transport = self.connect()
        first = proto.get(b"a")
        self.clock.advance(2)
        second = proto.set(b"b", b"v")
        self.clock.advance(2.9)
        self.assertNoResult(first)
        self.clock.advance(0.1)
        for d in (first, second):
            failure = self.failureResultOf(d, txredisapi.TimeoutError)
            self.assertEqual(str(failure.value), "Not received Redis response in 5.0 seconds")
        self.assertTrue(transport.disconnected)
        proto.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_second_command_times_out_on_its_own_deadline(self) -> None:
        proto, transport = self.connect()
        first = proto.get(b"a")
        self.clock.advance(4)
        second = proto.get(b"b")
        proto.dataReceived(b"$1\r\n1\r\n")
        self.successResultOf(first)
        self.clock.advance(4.9)  # 8.9: "b" was sent at 4
        self.assertNoResult(second)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.failureResultOf(second, txredisapi.TimeoutError)
        self.assertTrue(transport.disconnected)

    def test_same_as_txredisapi(self) -> None:
        """
        The same failures, at the same time, as txredisapi's own per-command timers.
        """
        results = []
        for ours in (True, False):
            if ours:
                proto, transport = self.connect()
            else:
                proto = txredisapi.RedisProtocol(
                    charset=None, replyTimeout=5.0, convertNumbers=False
                )
                proto.callLater = self.clock.callLater  # type: ignore[method-assign]
                transport = StringTransport()
                proto.makeConnection(transport)
            start = self.clock.seconds()
            a = proto.get(b"a")
            self.clock.advance(1)
            b = proto.get(b"b")
            proto.dataReceived(b"$1\r\n1\r\n")
            self.clock.advance(4.5)
            self.assertNoResult(b)
            self.clock.advance(0.5)
            late = self.failureResultOf(b).value
            results.append(
                (
                    self.successResultOf(a),
                    late.__class__,
                    str(late),
                    transport.disconnecting,
                    self.clock.seconds() - start,
                )
            )
            self.clock.advance(10)  # txredisapi's cancelled timers are gone too
        self.assertEqual(results[0], results[1])

    def test_unbounded_commands_not_timed(self) -> None:
        """
        Commands sent with C{apply_timeout=False} (blocking ones) arm no timer, as
        with txredisapi; without C{reply_timeout} nothing is timed.
        """
        proto, _ = self.connect()
        blocked = proto.blpop([b"q"], timeout=0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertNoResult(blocked)
        proto, _ = self.connect(reply_timeout=None)
        waiting = proto.get(b"k")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertNoResult(waiting)

    def test_connection_lost_ends_timer(self) -> None:
        proto, _ = self.connect()
        waiting = proto.get(b"k")
        proto.connectionLost(Failure(error.ConnectionLost()))
        self.failureResultOf(waiting, txredisapi.ConnectionError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answered_entries_dropped(self) -> None:
        """
        Answered commands are not kept until the sweep: each new command drops them.
        """
        proto, _ = self.connect()
        for _ in range(100):
            d = proto.get(b"k")
            proto.dataReceived(b"$1\r\nv\r\n")
            self.successResultOf(d)
        self.assertLessEqual(len(proto._replies), 1)

    def test_store_reports_timeout(self) -> None:
        """
        The store turns the timeout into the cache's L{CacheUnavailable}, naming the
        option (as before).
        """
        from pywatt_twisted.data import CacheUnavailable
        from pywatt_twisted.data._cache.redis import RedisStore

        store: Any = RedisStore.__new__(RedisStore)
        store.url_redacted = "redis://127.0.0.1:6379/0"
        store.reply_timeout = 5.0
        store._password = None
        failures: list[Any] = []
        store.availability = type(
            "A", (), {"failed": lambda self, e, connecting: failures.append(e)}
        )()
        proto, _ = self.connect()
        d = proto.get(b"k").addErrback(store._fail)
        self.clock.advance(5)
        failure = self.failureResultOf(d, CacheUnavailable)
        self.assertIn("reply_timeout=5 s", str(failure.value))
        self.assertEqual(len(failures), 1)
