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
from twisted.trial.unittest import TestCase

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


del CacheSuiteMixin, DatabaseSuiteMixin
_ = defer
