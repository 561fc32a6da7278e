"""
Proxied databases and caches (C{state.service(name)}) in memory: the conformance suites
of the direct backends (L{tests.data.test_cache.CacheSuiteMixin},
L{tests.data.test_database.DatabaseSuiteMixin}) run unchanged against a L{MemoryCache}
and SQLite provided by L{FakeOrchestrator}, through the module's real runtime (its
stdio protocol, its L{ServiceClient} and the orchestrator's L{ServiceHost}). The same
suites against PostgreSQL and Redis through a real C{pywatt dev} are in
L{tests.dev.test_proxied_services}.
"""

from __future__ import annotations

import os
from typing import Any

from klein import Klein
from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pywatt_twisted.data import Database, MemoryCache
from pywatt_twisted.testing import FakeOrchestrator
from tests.data.test_cache import CacheSuiteMixin
from tests.data.test_database import DatabaseSuiteMixin


def create_app(state: Any) -> Klein:
    return Klein()


class ProxiedMemoryCacheTests(CacheSuiteMixin, TestCase):
    """
    The cache suite against a L{MemoryCache} provided by a L{FakeOrchestrator}; time
    (TTLs, lock waits, timeouts) is the module's L{MemoryReactorClock}.
    """

    def make(self, namespace: str) -> Any:
        if self.fake_clock is None:
            clock = MemoryReactorClock()
            self.fake_clock = clock  # type: ignore[assignment]
            self.orch = FakeOrchestrator(
                reactor=clock, services={"cache-main": MemoryCache(clock=clock)}
            )
            self.module = self.successResultOf(self.orch.start(create_app))
        # one proxied connection per cache made, as a direct backend opens one each
        d = self.module.state.service("cache-main")
        return self.successResultOf(d).namespace(namespace)


class ProxiedSQLiteTests(DatabaseSuiteMixin, TestCase):
    """
    The database suite against a SQLite file provided by a L{FakeOrchestrator} on the
    real reactor (a L{Database} runs in threads).
    """

    pool = {"max_pool": 3}

    def url(self) -> str:
        if not hasattr(self, "_path"):
            self._path = os.path.abspath(self.mktemp()) + ".db"
        return f"sqlite:///{self._path}"

    async def open_db(self) -> Any:
        served = Database.from_url(self.url(), **self.pool)
        self.addCleanup(served.close)
        self.orch = FakeOrchestrator(reactor=reactor, services={"db-main": served})
        self.module = await self.orch.start(create_app)
        self.addCleanup(self.orch.shutdown)
        return await self.module.state.service("db-main")


class ValueCodecTests(SynchronousTestCase):
    """
    SQL parameters and row values survive the trip as JSON.
    """

    def test_round_trip(self) -> None:
        import datetime
        import decimal
        import json
        import uuid

        from pywatt_twisted.data._proxied import decode_value, encode_value

        values = [
            None,
            True,
            7,
            -1.5,
            "text",
            b"\x00\xff",
            decimal.Decimal("12.340"),
            datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
            datetime.date(2026, 1, 2),
            datetime.time(3, 4, 5),
            datetime.timedelta(seconds=90.5),
            uuid.UUID(int=5),
            float("inf"),
            [1, b"x", {"a": None}],
            {"$t": "looks like a tag", "n": [decimal.Decimal("1")]},
        ]
        for value in values:
            wire = json.loads(json.dumps(encode_value(value)))
            self.assertEqual(decode_value(wire), value)
            self.assertIs(type(decode_value(wire)), type(value))

    def test_refused(self) -> None:
        from pywatt_twisted.data._proxied import ProxyValueError, decode_value, encode_value

        self.assertRaises(ProxyValueError, encode_value, object())
        self.assertRaises(ProxyValueError, encode_value, {1: "int key"})
        self.assertRaises(ProxyValueError, decode_value, {"$t": "nope", "v": 1})
        self.assertRaises(ProxyValueError, decode_value, {"$t": "bytes", "v": "not base64!"})

    def test_errors_by_name(self) -> None:
        from pywatt_twisted.data import IntegrityError, StatementInterrupted
        from pywatt_twisted.data._proxied import error_from_info, error_info

        info = error_info(IntegrityError("dup", dialect="postgresql", code="23505"))
        self.assertEqual(info, {"kind": "IntegrityError", "dialect": "postgresql", "code": "23505"})
        again = error_from_info(info, "dup")
        self.assertIsInstance(again, IntegrityError)
        self.assertEqual(again.code, "23505")  # type: ignore[union-attr]
        lost = error_from_info(error_info(StatementInterrupted("x", connection_lost=False)), "x")
        self.assertFalse(lost.connection_lost)  # type: ignore[union-attr]
        self.assertIsNone(error_info(ValueError("not ours")))
        self.assertIsNone(error_from_info({"kind": "SomethingElse"}, "x"))


class ReallyProxiedTests(TestCase):
    """
    The suites above do go through the orchestrator's end (so they can fail there).
    """

    async def test_database_calls_reach_the_host(self) -> None:
        served = Database.from_url("sqlite://")
        self.addCleanup(served.close)
        orch = FakeOrchestrator(reactor=reactor, services={"db-main": served})
        module = await orch.start(create_app)
        self.addCleanup(orch.shutdown)
        db = await module.state.service("db-main")
        self.assertNotIsInstance(db, Database)
        await db.ping()
        assert orch.services is not None
        self.assertEqual(orch.services.operations["db-main"], 2)  # describe, ping
        self.assertIn(db, module.service.parts.databases)


del CacheSuiteMixin, DatabaseSuiteMixin
_ = defer
