"""
Tests for proxied services at the module's end (L{pywatt_twisted._runtime.proxied},
C{state.service}): unknown names, unsupported operations, correlation in any order,
bounded in-flight, no write replayed on a lost reply, the circuit breaker. The
orchestrator is a L{FakeOrchestrator} on a L{MemoryReactorClock}: either its
L{ServiceHost} answers (a L{MemoryCache}), or the test scripts every reply.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data import (
    CacheUnavailable,
    DatabaseUnavailable,
    IDatabase,
    MemoryCache,
    QueryError,
    StatementInterrupted,
)
from pywatt_twisted.errors import (
    ServiceError,
    ServiceUnavailable,
    UnknownService,
    UnsupportedOperation,
)
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import (
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
)


def app(state: Any) -> Klein:
    return Klein()


class HostedTests(SynchronousTestCase):
    """
    Through the fake orchestrator's L{ServiceHost}.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.orch = FakeOrchestrator(
            reactor=self.clock, services={"cache-main": MemoryCache(clock=self.clock)}
        )
        self.module = self.successResultOf(self.orch.start(app))

    def test_unknown_service(self) -> None:
        failure = self.failureResultOf(self.module.state.service("nope"), UnknownService)
        self.assertEqual(failure.value.kind, "unknown_service")
        self.assertIn("'nope'", str(failure.value))
        self.assertIn("cache-main (Cache)", str(failure.value))

    def test_kind_mismatch(self) -> None:
        d = self.module.state.service("cache-main", kind="database")
        failure = self.failureResultOf(d, ServiceError)
        self.assertEqual(failure.value.kind, "service_type_mismatch")
        self.assertIn("it is a Cache", str(failure.value))

    def test_unsupported_operation(self) -> None:
        cache = self.successResultOf(self.module.state.service("cache-main", kind="cache"))
        failure = self.failureResultOf(
            cache._store._link.call("frobnicate", {}), UnsupportedOperation
        )
        self.assertIn("'frobnicate'", str(failure.value))
        self.assertIn("supported: clear, delete", str(failure.value))

    def test_round_trip_and_health(self) -> None:
        cache = self.successResultOf(self.module.state.service("cache-main"))
        self.successResultOf(cache.set("k", {"v": 1}))
        self.assertEqual(self.successResultOf(cache.get("k")), {"v": 1})
        self.assertEqual(cache.health()["backend"], "proxy")
        self.assertEqual(self.orch.services.operations["cache-main"], 2)
        # published on /health like a cache the module opened
        self.assertIn(cache, self.module.service.parts.caches)

    def test_closed_at_module_stop(self) -> None:
        cache = self.successResultOf(self.module.state.service("cache-main"))
        self.assertEqual(len(self.orch.services.connections()), 1)
        self.successResultOf(self.orch.shutdown())
        self.assertEqual(self.orch.services.connections(), [])
        self.failureResultOf(cache.get("k"))


class ScriptedTests(SynchronousTestCase):
    """
    The test plays the orchestrator, reply by reply.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.orch = FakeOrchestrator(reactor=self.clock)
        self.module = self.successResultOf(self.orch.start(app))

    def ops(self, operation: str | None = None) -> list[ServiceOperation]:
        return [
            m
            for m in self.orch.sent
            if isinstance(m, ServiceOperation) and operation in (None, m.operation)
        ]

    def answer(self, op: ServiceOperation, result: object = None, **kw: Any) -> None:
        self.orch.send(ServiceOperationResult(kw.pop("success", True), result, params=op, **kw))

    def connect(self, kind: ServiceType, **limits: int) -> Any:
        if limits:
            self.module.state._service_limits = (limits["in_flight"], limits["queued"])
        d = self.module.state.service("svc", timeout=5)
        (request,) = [m for m in self.orch.sent if isinstance(m, ServiceRequest)]
        self.assertEqual(request.config, {"name": "svc"})
        self.assertEqual(request.service_type, ServiceType.custom("any"))
        self.orch.send(ServiceResponse(request.id, kind, True, None, "conn-1"))
        if kind == ServiceType.DATABASE:
            (describe,) = self.ops("describe")
            self.answer(
                describe, {"dialect": "postgresql", "url": "postgresql://x@h/db", "max_pool": 4}
            )
        return self.successResultOf(d)

    def test_database_interface(self) -> None:
        db = self.connect(ServiceType.DATABASE)
        self.assertTrue(IDatabase.providedBy(db))
        self.assertEqual(db.dialect, "postgresql")
        self.assertIn("service:svc", db.url_redacted)

    def test_results_in_any_order(self) -> None:
        cache = self.connect(ServiceType.CACHE)
        a = cache.exists("a")
        b = cache.exists("b")
        op_a, op_b = self.ops("exists")
        self.assertNotEqual(op_a.id, op_b.id)
        self.answer(op_b, True)
        self.assertTrue(self.successResultOf(b))
        self.assertNoResult(a)
        self.answer(op_a, False)
        self.assertFalse(self.successResultOf(a))

    def test_typed_error(self) -> None:
        db = self.connect(ServiceType.DATABASE)
        d = db.query("SELEKT")
        (op,) = self.ops("query")
        self.answer(
            op,
            success=False,
            error="postgresql rejected the statement: syntax error at SELEKT",
            error_info={"kind": "QueryError", "dialect": "postgresql", "code": "42601"},
        )
        failure = self.failureResultOf(d, QueryError)
        self.assertEqual(failure.value.code, "42601")
        self.assertEqual(
            str(failure.value), "postgresql rejected the statement: syntax error at SELEKT"
        )

    def test_lost_reply_write_not_replayed(self) -> None:
        """
        A statement whose reply does not come fails with L{StatementInterrupted}
        (outcome unknown) and is not sent again.
        """
        db = self.connect(ServiceType.DATABASE)
        d = db.execute("INSERT INTO t VALUES (1)")
        self.clock.advance(5)
        failure = self.failureResultOf(d, StatementInterrupted)
        self.assertTrue(failure.value.connection_lost)
        self.assertIn("outcome is unknown", str(failure.value))
        self.assertEqual(len(self.ops("execute")), 1)
        self.assertEqual(db.interrupted, 1)
        self.assertEqual(db.retries, 0)

    def test_lost_reply_idempotent_sent_once_more(self) -> None:
        db = self.connect(ServiceType.DATABASE)
        d = db.execute("UPDATE t SET x = 5", idempotent=True)
        self.clock.advance(5)
        first, second = self.ops("execute")
        self.assertEqual(first.params, second.params)
        self.assertNotEqual(first.id, second.id)
        self.answer(second, 1)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(db.retries, 1)
        # the late reply to the first one goes nowhere
        self.answer(first, 1)
        self.assertEqual(len(self.ops("execute")), 2)

    def test_lost_reply_in_transaction_fails_whole(self) -> None:
        db = self.connect(ServiceType.DATABASE)

        async def work() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                await tx.execute("INSERT INTO t VALUES (2)")

        from twisted.internet.defer import Deferred

        d = Deferred.fromCoroutine(work())
        (begin,) = self.ops("begin_transaction")
        self.answer(begin, {"transaction_id": "tx-1"})
        self.clock.advance(5)
        self.failureResultOf(d, StatementInterrupted)
        self.assertEqual(len(self.ops("transaction_execute")), 1)
        self.assertEqual(self.ops("transaction_commit"), [])
        (rollback,) = self.ops("transaction_rollback")
        self.assertEqual(rollback.params, {"transaction_id": "tx-1"})

    def test_lost_reply_cache_write(self) -> None:
        cache = self.connect(ServiceType.CACHE)
        d = cache.increment("n")
        self.clock.advance(5)
        failure = self.failureResultOf(d, CacheUnavailable)
        self.assertIn("may or may not have been applied", str(failure.value))
        self.assertEqual(len(self.ops("increment")), 1)

    def test_bounded_in_flight(self) -> None:
        """
        Past C{max_in_flight} calls wait in order; past the queue they fail at once,
        unsent; a reply lets the next waiting call go.
        """
        cache = self.connect(ServiceType.CACHE, in_flight=2, queued=1)
        calls = [cache.exists(f"k{i}") for i in range(3)]
        self.assertEqual(len(self.ops("exists")), 2)
        refused = self.failureResultOf(cache.exists("k3"), CacheUnavailable)
        self.assertIn("2 operations in flight and 1 waiting", str(refused.value))
        self.assertEqual(len(self.ops("exists")), 2)
        self.answer(self.ops("exists")[0], True)
        self.assertTrue(self.successResultOf(calls[0]))
        self.assertEqual(len(self.ops("exists")), 3)
        self.assertEqual(self.ops("exists")[2].params["key"], "k2")

    def test_queued_call_times_out_unsent(self) -> None:
        cache = self.connect(ServiceType.CACHE, in_flight=1, queued=4)
        sent = cache.exists("a")
        waiting = cache.set("b", 1)
        self.clock.advance(5)
        self.failureResultOf(sent, CacheUnavailable)
        failure = self.failureResultOf(waiting, CacheUnavailable)
        self.assertIn("was not sent", str(failure.value))
        self.assertNotIn("may or may not", str(failure.value))
        self.assertEqual(self.ops("set"), [])

    def test_cancel_frees_slot(self) -> None:
        cache = self.connect(ServiceType.CACHE, in_flight=1, queued=4)
        first = cache._store._link.call("exists", {"namespace": [], "key": "a"})
        second = cache.exists("b")
        first.cancel()
        self.failureResultOf(first)
        self.assertEqual([o.params["key"] for o in self.ops("exists")], ["a", "b"])
        self.assertNoResult(second)

    def test_breaker_opens_and_fails_fast(self) -> None:
        """
        Five operations without a reply open the service's breaker: the next calls
        fail at once, unsent (so a database says unavailable, not interrupted); after
        the reset delay one probe goes through and its reply closes the breaker.
        """
        db = self.connect(ServiceType.DATABASE)
        for _ in range(5):
            d = db.query("SELECT 1", idempotent=False)
            self.clock.advance(5)
            self.failureResultOf(d, StatementInterrupted)
        sent = len(self.ops())
        fast = db.query("SELECT 1")
        failure = self.failureResultOf(fast, DatabaseUnavailable)
        self.assertNotIsInstance(failure.value, StatementInterrupted)
        self.assertIn("circuit breaker", str(failure.value))
        self.assertEqual(len(self.ops()), sent)
        self.assertEqual(db.health()["service"]["breaker"]["state"], "open")
        self.assertEqual(self.breakers()["service:svc"]["state"], "open")
        self.clock.advance(10)
        probe = db.query("SELECT 1")
        self.answer(self.ops("query")[-1], [])
        self.assertEqual(self.successResultOf(probe), [])
        self.assertEqual(db.health()["service"]["breaker"]["state"], "closed")
        self.assertEqual(self.breakers()["service:svc"]["state"], "closed")

    def breakers(self) -> Any:
        """
        The breakers in C{state.breakers}, after checking that C{/health} shows the same.
        """
        on_health = self.module.service.health_status()["messaging"]["breakers"]
        breakers = self.module.state.breakers
        self.assertEqual(dict(breakers), on_health)
        return breakers

    def test_service_breaker_is_the_modules(self) -> None:
        """
        The breaker of a proxied service is in the module's one registry of breakers,
        next to those of the modules it calls: C{state.breakers}, C{/health}, metrics.
        """
        db = self.connect(ServiceType.DATABASE)
        self.assertEqual(self.breakers()["service:svc"]["state"], "closed")
        self.assertIs(
            db._link.breaker, self.module.service.parts.messaging.breakers.get("service:svc")
        )

    def test_link_rejects_bad_timeout(self) -> None:
        cache = self.connect(ServiceType.CACHE)
        self.failureResultOf(cache._store._link.call("get", {}, timeout=0), ValueError)
        self.assertIsInstance(ServiceUnavailable("x"), ServiceError)
