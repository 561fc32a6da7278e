# -*- test-case-name: tests.data.test_database -*-
"""
Pool health of a L{Database} as Prometheus metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class DatabaseCollector(Collector):
    """
    A C{prometheus_client} collector reading a L{Database}'s pool statistics at scrape
    time. Register it once: C{registry.register(DatabaseCollector(db))}.

    Metrics (label C{database} is the L{Database}'s name, by default its dialect):
    C{pywatt_db_pool_connections} (open connections), C{pywatt_db_pool_max_connections},
    C{pywatt_db_pool_in_flight} (calls running or queued), C{pywatt_db_open_transactions},
    C{pywatt_db_calls_total}, C{pywatt_db_errors_total}, C{pywatt_db_reconnects_total},
    C{pywatt_db_interrupted_total} (calls failed with C{StatementInterrupted}),
    C{pywatt_db_retries_total} (C{idempotent=True} calls run again),
    C{pywatt_db_refused_total} (calls failed at once because C{max_waiting} calls
    already waited for a connection).
    """

    def __init__(self, db: Any) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        h = self._db.health()
        labels = ["database", "dialect"]
        values = [str(h["name"]), str(h["dialect"])]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, value)
            return c

        pool = h["pool"]
        yield gauge("pywatt_db_pool_connections", "Open database connections", pool["open"])
        yield gauge("pywatt_db_pool_max_connections", "Pool size limit", pool["max"])
        yield gauge(
            "pywatt_db_pool_in_flight", "Database calls running or queued", pool["in_flight"]
        )
        yield gauge("pywatt_db_open_transactions", "Open async transactions", pool["transactions"])
        yield counter("pywatt_db_calls", "Database calls made", h["calls"])
        yield counter("pywatt_db_errors", "Database calls that failed", h["errors"])
        yield counter("pywatt_db_reconnects", "Connections replaced after a drop", h["reconnects"])
        yield counter(
            "pywatt_db_interrupted",
            "Database calls failed because a sent statement was interrupted",
            h["interrupted"],
        )
        yield counter("pywatt_db_retries", "idempotent=True database calls run again", h["retries"])
        yield counter(
            "pywatt_db_refused",
            "Database calls refused because max_waiting calls already waited",
            h["refused"],
        )

    def describe(self) -> Iterator[Metric]:
        # collect() touches no I/O, so registering may call it; describe() lets
        # prometheus_client skip that
        return iter(())
