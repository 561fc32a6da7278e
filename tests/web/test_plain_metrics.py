"""
Tests for the plain-number HTTP metrics of L{pywatt_twisted.web.metrics} (issue 20):
L{_PlainHistogram} and L{_PlainGauge} expose exactly what C{prometheus_client}'s
C{Histogram} and C{Gauge} expose for the same observations, and L{ModuleMetrics}'s
request path gives the exposition the C{Counter} / C{Histogram} / C{Gauge} it replaced
gave.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.web.metrics import (
    LATENCY_BUCKETS,
    STANDARD_METHODS,
    ModuleMetrics,
    _PlainGauge,
    _PlainHistogram,
)

#: on, just under and just over bucket bounds, zero, past the last bound, infinity
AMOUNTS = (
    0.0,
    1e-9,
    0.0005,
    0.00050001,
    0.001,
    0.0024999,
    0.0025,
    0.3,
    1.0,
    59.99,
    60.0,
    60.0001,
    1e9,
    math.inf,
    0.0005,
    0.2,
)


def text(registry: CollectorRegistry) -> tuple[list[str], list[str]]:
    """
    The exposition's lines, without and with the C{_created} samples (timestamps).
    """
    lines = generate_latest(registry).decode().splitlines()
    created = [line.rsplit(" ", 1)[0] for line in lines if "_created" in line]
    return [line for line in lines if "_created" not in line], created


class PlainHistogramTests(SynchronousTestCase):
    def test_same_exposition_as_histogram(self) -> None:
        reference, plain_registry = CollectorRegistry(), CollectorRegistry()
        histogram = Histogram(
            "h_seconds", "Doc.", ("route",), buckets=LATENCY_BUCKETS, registry=reference
        )
        plain = _PlainHistogram("h_seconds", "Doc.", ("route",), LATENCY_BUCKETS)
        plain_registry.register(plain)
        self.assertEqual(text(plain_registry), text(reference))  # no series yet
        for i, amount in enumerate(AMOUNTS):
            route = "/a" if i % 3 else "/b/:id"
            histogram.labels(route).observe(amount)
            plain.observe((route,), amount)
        self.assertEqual(text(plain_registry), text(reference))
        self.assertIn('h_seconds_bucket{le="+Inf",route="/a"} 10.0', text(reference)[0])

    def test_infinity_bound_given_or_not(self) -> None:
        with_inf = _PlainHistogram("h", "Doc.", (), (1.0, math.inf))
        without = _PlainHistogram("h", "Doc.", (), (1.0,))
        self.assertEqual(with_inf.upper_bounds, (1.0, math.inf))
        self.assertEqual(without.upper_bounds, (1.0, math.inf))

    def test_unsorted_buckets_refused(self) -> None:
        self.assertRaises(ValueError, _PlainHistogram, "h", "Doc.", (), (1.0, 0.5))

    def test_registered_name_clashes_like_a_histogram(self) -> None:
        registry = CollectorRegistry()
        registry.register(_PlainHistogram("h", "Doc.", (), (1.0,)))
        self.assertRaises(ValueError, Counter, "h_count", "Doc.", registry=registry)


class PlainGaugeTests(SynchronousTestCase):
    def test_same_exposition_as_gauge(self) -> None:
        reference, plain_registry = CollectorRegistry(), CollectorRegistry()
        gauge = Gauge("g", "Doc.", registry=reference)
        plain = _PlainGauge("g", "Doc.")
        plain_registry.register(plain)
        self.assertEqual(text(plain_registry), text(reference))
        for delta in (1, 1, -1, 1, -1, -1, 1):
            gauge.inc(delta)
            plain.value += delta
        self.assertEqual(text(plain_registry), text(reference))


class RequestPathTests(SynchronousTestCase):
    """
    L{ModuleMetrics.request_started} / L{ModuleMetrics.request_finished} against what
    the prometheus_client metrics they replaced recorded.
    """

    def reference(self) -> tuple[CollectorRegistry, Counter, Histogram, Gauge]:
        registry = CollectorRegistry()
        counter = Counter(
            "pywatt_http_requests",
            "HTTP requests served by the module (direct and HTTP-over-IPC).",
            ("route", "method", "status"),
            registry=registry,
        )
        histogram = Histogram(
            "pywatt_http_request_duration_seconds",
            "Time from the request entering the resource tree to its last byte.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        gauge = Gauge(
            "pywatt_http_requests_in_flight",
            "HTTP requests currently being processed.",
            registry=registry,
        )
        return registry, counter, histogram, gauge

    def test_same_samples_as_the_prometheus_metrics(self) -> None:
        registry, counter, histogram, gauge = self.reference()
        metrics = ModuleMetrics()
        calls = [
            ("/items/:id", "GET", "200", 0.0004),
            ("/items/:id", "GET", "200", 0.003),
            ("/items/:id", "GET", "404", -1.0),  # a clock step back counts as 0
            ("unmatched", "PROPFIND", "405", 0.5),
            ("/echo", "POST", "aborted", 100.0),
            ("/items/:id", "GET", "200", 0.001),
        ]
        for _ in calls:
            metrics.request_started()
            gauge.inc()
        for route, method, status, seconds in calls[:-1]:
            metrics.request_finished(route, method, status, seconds)
            gauge.dec()
            counter.labels(route, method if method in STANDARD_METHODS else "other", status).inc()
            histogram.labels(route).observe(max(seconds, 0.0))
        ours_lines, ours_created = text(metrics.registry)
        reference_lines, reference_created = text(registry)
        for line in reference_lines:
            self.assertIn(line, ours_lines)
        for line in reference_created:
            self.assertIn(line, ours_created)
        self.assertEqual(metrics.registry.get_sample_value("pywatt_http_requests_in_flight"), 1.0)
