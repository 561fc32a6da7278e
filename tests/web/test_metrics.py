"""
Tests for L{pywatt_twisted.web.metrics.ModuleMetrics}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web import metrics as metrics_module
from pywatt_twisted.web.metrics import METRICS_CONTENT_TYPE, ModuleMetrics


class ModuleMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = ModuleMetrics()

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def test_own_registry(self) -> None:
        other = ModuleMetrics()
        self.assertIsNot(self.metrics.registry, other.registry)
        self.assertIsNot(self.metrics.registry, REGISTRY)
        self.metrics.message_in("stdio", "init")
        self.assertIsNone(
            other.registry.get_sample_value(
                "pywatt_messages_received_total", {"transport": "stdio", "op": "init"}
            )
        )
        self.assertIsNone(
            REGISTRY.get_sample_value(
                "pywatt_messages_received_total", {"transport": "stdio", "op": "init"}
            )
        )

    def test_given_registry(self) -> None:
        registry = CollectorRegistry()
        metrics = ModuleMetrics(registry)
        self.assertIs(metrics.registry, registry)
        metrics.ipc_request("tcp", "completed")
        self.assertEqual(
            registry.get_sample_value(
                "pywatt_ipc_requests_total", {"transport": "tcp", "outcome": "completed"}
            ),
            1.0,
        )

    def test_requests(self) -> None:
        self.metrics.request_started()
        self.metrics.request_started()
        self.assertEqual(self.value("pywatt_http_requests_in_flight"), 2.0)
        self.metrics.request_finished("/a/:id", "GET", "200", 0.002)
        self.metrics.request_finished("/a/:id", "PROPFIND", "405", 0.5)
        self.assertEqual(self.value("pywatt_http_requests_in_flight"), 0.0)
        self.assertEqual(
            self.value("pywatt_http_requests_total", route="/a/:id", method="GET", status="200"),
            1.0,
        )
        self.assertEqual(
            self.value("pywatt_http_requests_total", route="/a/:id", method="other", status="405"),
            1.0,
        )
        self.assertEqual(
            self.value("pywatt_http_request_duration_seconds_count", route="/a/:id"), 2.0
        )
        self.assertEqual(
            self.value("pywatt_http_request_duration_seconds_bucket", route="/a/:id", le="0.0025"),
            1.0,
        )

    def test_channel_state(self) -> None:
        self.metrics.channel_state("tcp", "connecting")
        self.metrics.channel_state("tcp", "connected")
        self.metrics.channel_state("unix", "failed")
        self.assertEqual(self.value("pywatt_channel_state", channel="tcp", state="connected"), 1.0)
        self.assertEqual(self.value("pywatt_channel_state", channel="tcp", state="connecting"), 0.0)
        self.assertIsNone(self.value("pywatt_channel_state", channel="tcp", state="failed"))
        self.assertEqual(self.value("pywatt_channel_state", channel="unix", state="failed"), 1.0)
        self.metrics.channel_state("tcp", "connecting")
        self.assertEqual(self.value("pywatt_channel_state", channel="tcp", state="connected"), 0.0)
        self.assertEqual(self.value("pywatt_channel_state", channel="tcp", state="connecting"), 1.0)

    def test_messages(self) -> None:
        self.metrics.message_in("stdio", "heartbeat")
        self.metrics.message_in("stdio", "heartbeat")
        self.metrics.message_out("tcp", "announce")
        self.assertEqual(
            self.value("pywatt_messages_received_total", transport="stdio", op="heartbeat"), 2.0
        )
        self.assertEqual(
            self.value("pywatt_messages_sent_total", transport="tcp", op="announce"), 1.0
        )

    def test_repeated_labels_count_in_one_series(self) -> None:
        """
        The hot-path methods remember label children; repeated calls still add up in
        the one series of their labels, and the other label sets stay apart.
        """
        for _ in range(5):
            self.metrics.message_in("tcp", "heartbeat")
            self.metrics.message_out("tcp", "heartbeat_ack")
            self.metrics.ipc_request("ipc", "completed")
            self.metrics.request_finished("/a", "GET", "200", 0.001)
        self.metrics.message_in("ipc", "heartbeat")
        received = "pywatt_messages_received_total"
        self.assertEqual(self.value(received, transport="tcp", op="heartbeat"), 5.0)
        self.assertEqual(self.value(received, transport="ipc", op="heartbeat"), 1.0)
        self.assertEqual(
            self.value("pywatt_messages_sent_total", transport="tcp", op="heartbeat_ack"), 5.0
        )
        self.assertEqual(
            self.value("pywatt_ipc_requests_total", transport="ipc", outcome="completed"), 5.0
        )
        self.assertEqual(
            self.value("pywatt_http_requests_total", route="/a", method="GET", status="200"), 5.0
        )
        self.assertEqual(self.value("pywatt_http_request_duration_seconds_count", route="/a"), 5.0)

    def test_label_children_beyond_the_cache_bound(self) -> None:
        """
        Past C{CHILD_CACHE_SIZE} label sets nothing more is remembered, and every call
        is still counted.
        """
        self.patch(metrics_module, "CHILD_CACHE_SIZE", 2)
        for outcome in ("a", "b", "c", "d", "c", "d"):
            self.metrics.ipc_request("tcp", outcome)
        self.assertEqual(len(self.metrics._ipc_children), 2)
        requests = "pywatt_ipc_requests_total"
        for outcome, count in (("a", 1.0), ("b", 1.0), ("c", 2.0), ("d", 2.0)):
            self.assertEqual(self.value(requests, transport="tcp", outcome=outcome), count)

    def test_message_counts_are_exact_at_every_scrape(self) -> None:
        """
        The message counters are plain counts read at scrape time (issue 20): each
        scrape shows every message counted before it, per label set, as a counter
        with its C{_created} sample, the same exposition a C{Counter} gives.
        """
        received = "pywatt_messages_received_total"
        self.assertIsNone(self.value(received, transport="tcp", op="heartbeat"))
        for n in range(1, 4):
            self.metrics.message_in("tcp", "heartbeat")
            self.assertEqual(self.value(received, transport="tcp", op="heartbeat"), float(n))
        self.metrics.message_out("ipc", "heartbeat_ack")
        text = self.metrics.render().decode()
        self.assertIn("# TYPE pywatt_messages_received_total counter", text)
        self.assertIn("# TYPE pywatt_messages_sent_total counter", text)
        self.assertIn('pywatt_messages_sent_total{op="heartbeat_ack",transport="ipc"} 1.0', text)
        self.assertIsNotNone(
            self.value("pywatt_messages_received_created", transport="tcp", op="heartbeat")
        )

    def test_message_counter_labels(self) -> None:
        """
        The message counters take C{labels(...).inc(amount)} as a C{Counter} does
        (positional or by label name), into the same series the SDK counts in, and
        refuse a negative amount or a wrong label set.
        """
        counter = self.metrics.messages_received
        counter.labels("tcp", "heartbeat").inc()
        counter.labels(op="heartbeat", transport="tcp").inc(2)
        self.metrics.message_in("tcp", "heartbeat")
        self.assertEqual(
            self.value("pywatt_messages_received_total", transport="tcp", op="heartbeat"), 4.0
        )
        self.assertRaises(ValueError, counter.labels("tcp", "heartbeat").inc, -1)
        self.assertRaises(ValueError, counter.labels, "tcp")
        self.assertRaises(ValueError, counter.labels, transport="tcp", route="x")
        self.assertRaises(ValueError, counter.labels, "tcp", op="x")
        self.assertEqual(
            self.value("pywatt_messages_received_total", transport="tcp", op="heartbeat"), 4.0
        )

    def test_collector_callable(self) -> None:
        size = [3]

        def pool_stats() -> list[GaugeMetricFamily]:
            family = GaugeMetricFamily("pywatt_db_pool_size", "connections", labels=["db"])
            family.add_metric(["main"], size[0])
            return [family]

        collector = self.metrics.add_collector(pool_stats)
        self.assertEqual(self.value("pywatt_db_pool_size", db="main"), 3.0)
        size[0] = 5
        self.assertIn(b'pywatt_db_pool_size{db="main"} 5.0', self.metrics.render())
        self.metrics.remove_collector(collector)
        self.assertNotIn(b"pywatt_db_pool_size", self.metrics.render())

    def test_collector_object(self) -> None:
        class Collector:
            def collect(self) -> list[GaugeMetricFamily]:
                return [GaugeMetricFamily("pywatt_cache_items", "items", value=7)]

        self.metrics.add_collector(Collector())
        self.assertEqual(self.value("pywatt_cache_items"), 7.0)

    def test_collector_rejects_junk(self) -> None:
        self.assertRaises(TypeError, self.metrics.add_collector, 42)

    def test_render(self) -> None:
        self.metrics.ipc_request("stdio", "timeout")
        text = self.metrics.render().decode()
        self.assertIn("# TYPE pywatt_ipc_requests_total counter", text)
        self.assertIn('pywatt_ipc_requests_total{outcome="timeout",transport="stdio"} 1.0', text)
        self.assertIn("# TYPE pywatt_http_request_duration_seconds histogram", text)
        self.assertEqual(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")


class UserMetricsTests(SynchronousTestCase):
    """
    C{state.metrics}: a module author's own metrics, validated, rendered after the SDK's.
    """

    def setUp(self) -> None:
        from pywatt_twisted.web.metrics import ModuleMetrics

        self.metrics = ModuleMetrics()
        self.user = self.metrics.user

    def families(self) -> dict[str, Any]:
        from prometheus_client.parser import text_string_to_metric_families

        text = self.metrics.render().decode("utf-8")
        return {f.name: f for f in text_string_to_metric_families(text)}

    def test_counter_gauge_histogram_rendered(self) -> None:
        orders = self.user.counter("orders_placed", "Orders placed.", ("region",))
        orders.labels("eu").inc(3)
        self.user.gauge("queue_depth", "Jobs waiting.").set(7)
        self.user.histogram("job_seconds", "Job time.", buckets=(0.1, 1.0)).observe(0.5)
        families = self.families()
        [sample] = [s for s in families["orders_placed"].samples if s.name.endswith("_total")]
        self.assertEqual((sample.labels, sample.value), ({"region": "eu"}, 3.0))
        self.assertEqual(families["queue_depth"].samples[0].value, 7.0)
        self.assertEqual(families["job_seconds"].type, "histogram")
        # the SDK's own metrics are still there
        self.assertIn("pywatt_http_requests", families)

    def test_same_name_same_shape_returns_the_same_object(self) -> None:
        a = self.user.counter("hits_total", "Hits.")
        self.assertIs(self.user.counter("hits", "Hits."), a)
        with self.assertRaises(ConfigurationError) as e:
            self.user.gauge("hits", "Hits.")
        self.assertIn("already made as a counter", str(e.exception))

    def test_invalid_names(self) -> None:
        cases = [
            ("9lives", (), "must match"),
            ("has-dash", (), "must match"),
            ("pywatt_mine", (), "belong to the SDK"),
            ("__x", (), "reserved"),
            ("ok_name", ("bad-label",), "invalid label name"),
            ("ok_name", ("a", "a"), "appears twice"),
            ("ok_name", "region", "got the string"),
        ]
        for name, labels, text in cases:
            with self.assertRaises(ConfigurationError, msg=name) as e:
                self.user.counter(name, "doc", labels)
            self.assertIn(text, str(e.exception))
        with self.assertRaises(ConfigurationError) as e:
            self.user.histogram("h", "doc", ("le",))
        self.assertIn("'le' holds the bucket bounds", str(e.exception))
        with self.assertRaises(ConfigurationError) as e:
            self.user.gauge("g", "")
        self.assertIn("needs a documentation string", str(e.exception))
        # nothing half-made was left behind
        self.assertNotIn("ok_name", self.families())
