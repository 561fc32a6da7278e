"""
Tests for L{pywatt_twisted.orchestrator._services.ServiceHost}, the orchestrator's end of
proxied services, driven with messages directly.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data import Database, MemoryCache
from pywatt_twisted.data._cache._base import StoreCache
from pywatt_twisted.orchestrator import ServiceHost
from pywatt_twisted.orchestrator._services import ANY_SERVICE
from pywatt_twisted.wire.messages import (
    ServiceOperation,
    ServiceOperationResult,
    ServiceRequest,
    ServiceResponse,
    ServiceType,
)


class Replies:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def __call__(self, message: Any) -> None:
        self.sent.append(message)


def connect(host: ServiceHost, name: str | None, kind: ServiceType = ANY_SERVICE) -> Any:
    replies = Replies()
    config = None if name is None else {"name": name}
    host.handle("mod", ServiceRequest("r-1", kind, config), replies)
    (reply,) = replies.sent
    assert isinstance(reply, ServiceResponse)
    return reply


def operate(
    host: ServiceHost,
    connection_id: str,
    op: str,
    params: Any,
    kind: ServiceType = ServiceType.CACHE,
) -> ServiceOperationResult:
    replies = Replies()
    host.handle("mod", ServiceOperation(connection_id, kind, op, params, id="op-1"), replies)
    (reply,) = replies.sent
    return reply  # type: ignore[no-any-return]


class HostTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.host = ServiceHost({"cache-main": MemoryCache(clock=Clock())})

    def test_unknown_name(self) -> None:
        reply = connect(self.host, "nope")
        self.assertFalse(reply.success)
        self.assertEqual(reply.error_info, {"kind": "unknown_service"})
        self.assertIn("provided: cache-main (Cache)", reply.error)

    def test_unnamed_request_gets_the_one_of_its_kind(self) -> None:
        reply = connect(self.host, None, ServiceType.CACHE)
        self.assertTrue(reply.success)
        self.assertEqual(reply.service_type, ServiceType.CACHE)
        self.assertFalse(connect(self.host, None, ServiceType.DATABASE).success)

    def test_kind_mismatch(self) -> None:
        reply = connect(self.host, "cache-main", ServiceType.DATABASE)
        self.assertEqual(reply.error_info, {"kind": "service_type_mismatch"})

    def test_operation_echoes_and_errors(self) -> None:
        conn = connect(self.host, "cache-main").connection_id
        ok = operate(
            self.host,
            conn,
            "set",
            {"namespace": ["a"], "key": "k", "value": "YWI=", "ttl_seconds": None},
        )
        self.assertTrue(ok.success)
        self.assertEqual(ok.params.id, "op-1")
        self.assertEqual(
            operate(self.host, conn, "get", {"namespace": ["a"], "key": "k"}).result, "YWI="
        )
        bad = operate(self.host, conn, "get", {"namespace": [], "key": "has space"})
        self.assertEqual(bad.error_info, {"kind": "InvalidKey"})
        unsupported = operate(self.host, conn, "frobnicate", {})
        self.assertEqual(unsupported.error_info, {"kind": "unsupported_operation"})
        other = Replies()
        self.host.handle("other-mod", ServiceOperation(conn, ServiceType.CACHE, "get", {}), other)
        self.assertEqual(other.sent[0].error_info, {"kind": "unknown_connection"})

    def test_close_and_module_gone(self) -> None:
        conn = connect(self.host, "cache-main").connection_id
        self.assertTrue(operate(self.host, conn, "close", {}).success)
        self.assertEqual(
            operate(self.host, conn, "get", {"key": "k"}).error_info, {"kind": "unknown_connection"}
        )
        connect(self.host, "cache-main")
        self.assertEqual(len(self.host.connections("mod")), 1)
        self.successResultOf(self.host.module_gone("mod"))
        self.assertEqual(self.host.connections(), [])

    def test_in_flight_bound(self) -> None:
        """
        Past C{max_in_flight} operations running for one connection, more are refused
        with the backend's unavailable error.
        """
        gate: Deferred[None] = Deferred()

        class SlowStore:
            clock = Clock()
            inflight: dict[Any, Any] = {}
            static_prefix = True

            def prefix(self, parts: tuple[str, ...]) -> str:
                return ""

            def exists(self, key: str) -> Deferred[None]:
                return gate

        host = ServiceHost({"slow": StoreCache(SlowStore())}, max_in_flight=2)
        conn = connect(host, "slow").connection_id
        replies = Replies()
        for _ in range(3):
            host.handle(
                "mod", ServiceOperation(conn, ServiceType.CACHE, "exists", {"key": "k"}), replies
            )
        (refused,) = replies.sent
        self.assertEqual(refused.error_info, {"kind": "CacheUnavailable"})
        self.assertIn("2 operations", refused.error)
        gate.callback(True)
        self.assertEqual(len(replies.sent), 3)

    def test_provide_refuses_other_things(self) -> None:
        self.assertRaises(TypeError, self.host.provide, "x", object())


class DatabaseHostTests(TestCase):
    async def test_module_gone_rolls_back(self) -> None:
        path = self.mktemp() + ".db"
        db = Database.from_url(f"sqlite:///{path}", reactor=reactor)
        self.addCleanup(db.close)
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        host = ServiceHost({"db": db})
        conn = connect(host, "db").connection_id

        async def op(name: str, params: Any) -> Any:
            d: Deferred[Any] = Deferred()
            host.handle(
                "mod", ServiceOperation(conn, ServiceType.DATABASE, name, params), d.callback
            )
            reply = await d
            self.assertTrue(reply.success, reply.error)
            return reply.result

        tid = (await op("begin_transaction", {}))["transaction_id"]
        await op(
            "transaction_execute",
            {"transaction_id": tid, "query": "INSERT INTO t (id) VALUES (1)", "params": None},
        )
        self.assertEqual(db.health()["pool"]["transactions"], 1)
        await host.module_gone("mod")
        self.assertEqual(db.health()["pool"]["transactions"], 0)
        self.assertEqual(await db.query("SELECT id FROM t"), [])
