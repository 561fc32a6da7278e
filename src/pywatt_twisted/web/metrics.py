# -*- test-case-name: tests.web.test_metrics -*-
"""
Prometheus metrics of one module: HTTP traffic, channel states, protocol messages and
HTTP-over-IPC outcomes, rendered for C{GET /metrics}.

Every L{ModuleMetrics} owns its own L{CollectorRegistry} (never the process-global
C{prometheus_client.REGISTRY}), so two modules, or two tests, in one process never
collide. The metric names are part of the public contract; see C{docs/http.md}.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from pywatt_twisted.errors import ConfigurationError

__all__ = [
    "METRICS_CONTENT_TYPE",
    "RESERVED_PREFIX",
    "STANDARD_METHODS",
    "ModuleMetrics",
    "UserMetrics",
    "validate_metric_name",
]

#: The C{Content-Type} of L{ModuleMetrics.render}: the Prometheus text format 0.0.4.
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: Methods recorded under their own name in the C{method} label; any other method token
#: (clients may send any) is recorded as C{"other"} so label cardinality stays bounded.
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

#: At most this many label children are remembered per metric by L{ModuleMetrics}'s
#: hot-path methods (the label sets are bounded by design: known ops, transports,
#: routes, methods and status codes); past it, children are looked up through
#: C{labels()} on every call (correct, only slower).
CHILD_CACHE_SIZE = 1024

#: Latency buckets in seconds: sub-millisecond in-memory requests up to slow ones.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class _CallableCollector(Collector):
    """
    Adapt a plain callable returning metric families into a registry collector.
    """

    def __init__(self, produce: Callable[[], Iterable[Any]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Any]:
        return list(self._produce())

    def describe(self) -> Iterable[Any]:
        # Describing nothing keeps the registry from calling collect() at register
        # time (the producer may not be ready yet) and skips name-clash checks.
        return []


class _PlainCounter(Collector):
    """
    A labelled counter kept in plain numbers and turned into a metric family only when
    the registry is scraped (issue 20): a C{prometheus_client} child's C{inc()} takes a
    lock and costs about 0.3 us, which the per-message counters paid twice per
    heartbeat. The exposition is the one of a C{Counter} (C{NAME_total} and
    C{NAME_created} per label set) and every scrape shows every count made before it.

    Not thread-safe: increment it from the reactor thread only (the SDK's message
    counters are). The label sets are as bounded as the callers' label values.

    @ivar counts: C{label values -> [count, created]} (C{created} is the C{time.time()}
        of the first count, as a C{Counter}'s C{_created} sample).
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.counts: dict[tuple[str, ...], list[float]] = {}

    def inc(self, values: tuple[str, ...], amount: float = 1.0) -> None:
        """
        Add C{amount} (not negative) to the series of the label C{values}.
        """
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        entry = self.counts.get(values)
        if entry is None:
            self.counts[values] = [amount, time.time()]
        else:
            entry[0] += amount

    def labels(self, *values: object, **by_name: object) -> _PlainCounterChild:
        """
        The series of one label set, as C{Counter.labels} takes it (positional values,
        or values by label name); its C{inc(amount=1)} counts.
        """
        if values and by_name:
            raise ValueError("Can't pass both *args and **kwargs")
        if by_name:
            if sorted(by_name) != sorted(self.labelnames):
                raise ValueError("Incorrect label names")
            values = tuple(by_name[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        return _PlainCounterChild(self, tuple(str(v) for v in values))

    def describe(self) -> Iterable[Any]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Any]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, (value, created) in list(self.counts.items()):
            family.add_metric(values, value, created=created)
        return [family]


class _PlainCounterChild:
    """
    One label set of a L{_PlainCounter}.
    """

    def __init__(self, counter: _PlainCounter, values: tuple[str, ...]) -> None:
        self._counter = counter
        self._values = values

    def inc(self, amount: float = 1.0) -> None:
        self._counter.inc(self._values, amount)


class _PlainHistogram(Collector):
    """
    A labelled histogram kept in plain numbers and turned into a metric family only when
    the registry is scraped (issue 20), as L{_PlainCounter} is for a counter: a
    C{prometheus_client} C{Histogram} child's C{observe()} takes a lock for its sum and
    one for its bucket. The exposition is the one of a C{Histogram} (cumulative
    C{NAME_bucket} per upper bound and C{+Inf}, C{NAME_count}, C{NAME_sum},
    C{NAME_created} per label set); an observation counts in the first bucket whose
    upper bound is at least the amount, as with C{Histogram}.

    Not thread-safe: observe from the reactor thread only (the site does).

    @ivar series: C{label values -> [bucket counts, sum, created]}.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.upper_bounds = tuple(bounds)
        self._les = tuple(floatToGoString(b) for b in bounds)
        self.series: dict[tuple[str, ...], list[Any]] = {}

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        """
        Count C{amount} in the series of the label C{values}.
        """
        entry = self.series.get(values)
        if entry is None:
            entry = self.series[values] = [[0] * len(self.upper_bounds), 0.0, time.time()]
        entry[0][bisect_left(self.upper_bounds, amount)] += 1
        entry[1] += amount

    def describe(self) -> Iterable[Any]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Any]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, (counts, total, created) in list(self.series.items()):
            cumulative = list(accumulate(counts, initial=0.0))[1:]
            family.add_metric(values, list(zip(self._les, cumulative, strict=True)), total)
            labels = dict(zip(self.labelnames, values, strict=True))
            family.samples.append(Sample(f"{self.name}_created", labels, created))
        return [family]


class _PlainGauge(Collector):
    """
    An unlabelled gauge kept in a plain number, published at scrape time (as
    L{_PlainCounter}; reactor thread only).
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0.0

    def describe(self) -> Iterable[Any]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Any]:
        return [GaugeMetricFamily(self.name, self.documentation, value=self.value)]


#: Metric names the SDK owns; a module's own metrics may not start with it.
RESERVED_PREFIX = "pywatt_"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_M = TypeVar("_M", Counter, Gauge, Histogram)


def validate_metric_name(name: object, labelnames: Sequence[str] = (), kind: str = "metric") -> str:
    """
    Check a module-defined metric name and its label names against the Prometheus data
    model and this SDK's rules; return the name.

    A name matches C{[a-zA-Z_:][a-zA-Z0-9_:]*}, does not start with C{pywatt_} (the
    SDK's own metrics) nor C{__}; label names match C{[a-zA-Z_][a-zA-Z0-9_]*}, do not
    start with C{__}, appear once, and a histogram has no C{le} label.

    @raise ConfigurationError: naming the problem and the rule.
    """
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: a metric name must match "
            "[a-zA-Z_:][a-zA-Z0-9_:]* (letters, digits, '_' and ':'; not starting with a "
            "digit), e.g. 'orders_placed'"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: names starting with {RESERVED_PREFIX!r} belong to "
            "the SDK's own metrics; use a prefix of your module's, e.g. 'orders_placed'"
        )
    if name.startswith("__"):
        raise ConfigurationError(f"invalid {kind} name {name!r}: '__' prefixes are reserved")
    if isinstance(labelnames, str):
        raise ConfigurationError(
            f"labelnames of {name!r} must be a sequence of names, got the string "
            f"{labelnames!r}; write labelnames=({labelnames!r},)"
        )
    seen: set[str] = set()
    for label in labelnames:
        if not isinstance(label, str) or not _LABEL_NAME.fullmatch(label):
            raise ConfigurationError(
                f"invalid label name {label!r} on {name!r}: a label name must match "
                "[a-zA-Z_][a-zA-Z0-9_]*"
            )
        if label.startswith("__"):
            raise ConfigurationError(
                f"invalid label name {label!r} on {name!r}: '__' prefixes are reserved"
            )
        if label in seen:
            raise ConfigurationError(f"label {label!r} appears twice on {name!r}")
        if kind == "histogram" and label == "le":
            raise ConfigurationError(
                f"invalid label name 'le' on histogram {name!r}: 'le' holds the bucket bounds"
            )
        seen.add(label)
    return name


class UserMetrics:
    """
    A module author's own Prometheus metrics (C{state.metrics}): served on C{/metrics}
    after the SDK's, from a registry of their own (L{registry}).

    Each method returns a C{prometheus_client} object (L{Counter}, L{Gauge},
    L{Histogram}) to use as usual (C{.inc()}, C{.labels(...).observe(...)}). Asking
    again for a name already made returns the same object when kind and labels match
    (a C{create_app} that runs twice in a test does not fail), and raises
    L{ConfigurationError} when they differ.

    @ivar registry: the module's own C{CollectorRegistry}; register any other
        collector on it (C{registry.register(...)}) to publish it too.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._made: dict[str, tuple[str, tuple[str, ...], Any]] = {}

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """
        A counter; exposed as C{<name>_total} (a trailing C{_total} in C{name} is
        accepted and not doubled).
        """
        return self._make(Counter, "counter", name, documentation, labelnames)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """
        A gauge (C{.set()}, C{.inc()}, C{.dec()}, C{.set_function()}).
        """
        return self._make(Gauge, "gauge", name, documentation, labelnames)

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """
        A histogram; C{buckets} default to the SDK's latency buckets (0.5 ms to 60 s).
        """
        return self._make(
            Histogram, "histogram", name, documentation, labelnames, buckets=tuple(buckets)
        )

    def _make(
        self,
        cls: type[_M],
        kind: str,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        **extra: Any,
    ) -> _M:
        validate_metric_name(name, labelnames, kind)
        if not isinstance(documentation, str) or not documentation.strip():
            raise ConfigurationError(
                f"{kind} {name!r} needs a documentation string (the # HELP line), got "
                f"{documentation!r}"
            )
        labels = tuple(labelnames)
        key = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
        known = self._made.get(key)
        if known is not None:
            known_kind, known_labels, metric = known
            if known_kind == kind and known_labels == labels:
                made: _M = metric
                return made
            raise ConfigurationError(
                f"metric {name!r} was already made as a {known_kind} with labels "
                f"{list(known_labels)}; it cannot also be a {kind} with labels {list(labels)}"
            )
        try:
            metric = cls(name, documentation, labels, registry=self.registry, **extra)
        except ValueError as e:
            # A clash with a collector registered directly on the registry.
            raise ConfigurationError(f"cannot make {kind} {name!r}: {e}") from None
        self._made[key] = (kind, labels, metric)
        return metric

    def collect(self) -> Iterable[Any]:
        """
        Every metric family of the registry (what C{/metrics} shows after the SDK's).
        """
        return self.registry.collect()


class ModuleMetrics:
    """
    The metrics of one module, in a registry of its own.

    Metric names (all prefixed C{pywatt_}):
      - C{pywatt_http_requests_total{route,method,status}}: finished HTTP requests,
        direct and bridged alike. C{route} is the Klein rule in announce style
        (C{"/items/:id"}), C{"unmatched"} when no rule matched, the built-in path
        for /health and /metrics, C{"other"} for plain resources; C{status} is the
        numeric code, or C{"aborted"} when the connection went away first.
      - C{pywatt_http_request_duration_seconds{route}}: latency histogram.
      - C{pywatt_http_requests_in_flight}: requests being processed.
      - C{pywatt_channel_state{channel,state}}: 1 for the channel's current state,
        0 for every other state it has been in (a Prometheus "state set").
      - C{pywatt_messages_received_total{transport,op}} and
        C{pywatt_messages_sent_total{transport,op}}: protocol messages.
      - C{pywatt_ipc_requests_total{transport,outcome}}: HTTP-over-IPC requests by the
        transport they came on and how the bridge answered them.
      - C{pywatt_log_dropped_total}: log lines dropped because stderr was not read and
        the log buffer was full (in a module process; see L{watch_log_drops}).

    @ivar registry: the registry every metric lives in; L{render} exposes it.
    @ivar user: the module author's own metrics (C{state.metrics}), rendered after the
        SDK's from their own registry.
    @ivar http_requests: the C{pywatt_http_requests_total} counter (a L{_PlainCounter}).
    @ivar http_latency: the C{pywatt_http_request_duration_seconds} histogram (a
        L{_PlainHistogram}: C{.observe((route,), seconds)}).
    @ivar http_in_flight: the C{pywatt_http_requests_in_flight} gauge (a L{_PlainGauge}:
        its C{value}).
    @ivar channel_states: the C{pywatt_channel_state} gauge.
    @ivar messages_received: the C{pywatt_messages_received_total} counter (a
        L{_PlainCounter}: C{.labels(transport, op).inc()} as with a C{Counter}).
    @ivar messages_sent: the C{pywatt_messages_sent_total} counter (a L{_PlainCounter}).
    @ivar ipc_requests: the C{pywatt_ipc_requests_total} counter.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """
        @param registry: where to register the metrics; a fresh registry when
            C{None} (the default). Never pass C{prometheus_client.REGISTRY} unless
            exactly one module lives in the process.
        """
        self.registry = CollectorRegistry() if registry is None else registry
        # The per-request metrics are counted in plain numbers, published at scrape time
        # (_PlainCounter, _PlainHistogram, _PlainGauge; issue 20): the exposition is the
        # one of a Counter, a Histogram and a Gauge.
        self.http_requests = _PlainCounter(
            "pywatt_http_requests",
            "HTTP requests served by the module (direct and HTTP-over-IPC).",
            ("route", "method", "status"),
        )
        self.registry.register(self.http_requests)
        self.http_latency = _PlainHistogram(
            "pywatt_http_request_duration_seconds",
            "Time from the request entering the resource tree to its last byte.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.registry.register(self.http_latency)
        self.http_in_flight = _PlainGauge(
            "pywatt_http_requests_in_flight",
            "HTTP requests currently being processed.",
        )
        self.registry.register(self.http_in_flight)
        self._request_counts = self.http_requests.counts
        self._latency_series = self.http_latency.series
        self._latency_bounds = self.http_latency.upper_bounds
        self.channel_states = Gauge(
            "pywatt_channel_state",
            "1 for the current state of each channel, 0 for states it was in before.",
            ("channel", "state"),
            registry=self.registry,
        )
        # Counted in plain numbers, published at scrape time (_PlainCounter, issue 20).
        self.messages_received = _PlainCounter(
            "pywatt_messages_received",
            "Protocol messages received from the orchestrator, by transport and op.",
            ("transport", "op"),
        )
        self.registry.register(self.messages_received)
        self.messages_sent = _PlainCounter(
            "pywatt_messages_sent",
            "Protocol messages sent to the orchestrator, by transport and op.",
            ("transport", "op"),
        )
        self.registry.register(self.messages_sent)
        self._received_counts = self.messages_received.counts
        self._sent_counts = self.messages_sent.counts
        self.ipc_requests = Counter(
            "pywatt_ipc_requests",
            "HTTP-over-IPC requests by transport and outcome "
            "(completed, bad_request, overloaded, stopping, timeout, aborted, error).",
            ("transport", "outcome"),
            registry=self.registry,
        )
        self._channel_seen: dict[str, set[str]] = {}
        # Label children by label values, one table per metric: prometheus_client's
        # labels() validates and joins the values and takes a lock on every call, which
        # cost about a fifth of a pipelined heartbeat (issue 20). Children are never
        # removed from these metrics, so a remembered child stays the live one.
        self._ipc_children: dict[tuple[str, ...], Any] = {}
        #: called as C{listener(channel, state)} on every channel state change (the
        #: SLO monitor follows channels through it).
        self.channel_listeners: list[Callable[[str, str], object]] = []
        self.user = UserMetrics()
        self.add_collector(self.user.collect)

    @staticmethod
    def _remember(table: dict[tuple[str, ...], Any], metric: Any, values: tuple[str, ...]) -> Any:
        """
        Look up the label child of C{metric} for C{values} and remember it in
        C{table}, unless C{table} already holds L{CHILD_CACHE_SIZE} children.
        """
        child = metric.labels(*values)
        if len(table) < CHILD_CACHE_SIZE:
            table[values] = child
        return child

    # HTTP

    def request_started(self) -> None:
        """
        Count one more request in flight.
        """
        self.http_in_flight.value += 1

    def request_finished(self, route: str, method: str, status: str, seconds: float) -> None:
        """
        Record a finished (or aborted) request and take it out of the in-flight gauge.

        @param route: the route label (bounded: a rule, never a raw path).
        @param method: the request method; unknown tokens are recorded as C{"other"}.
        @param status: the status code as text, or C{"aborted"}.
        @param seconds: how long it took.
        """
        self.http_in_flight.value -= 1
        if method not in STANDARD_METHODS:
            method = "other"
        key = (route, method, status)
        entry = self._request_counts.get(key)
        if entry is None:
            self.http_requests.inc(key)
        else:
            entry[0] += 1
        if not seconds > 0.0:  # (a clock stepped back; NaN)
            seconds = 0.0
        # http_latency.observe((route,), seconds), without the call once the route has
        # its series
        series = self._latency_series.get((route,))
        if series is None:
            self.http_latency.observe((route,), seconds)
        else:
            series[0][bisect_left(self._latency_bounds, seconds)] += 1
            series[1] += seconds

    # Channels and messages

    def channel_state(self, name: str, state: str) -> None:
        """
        Record that channel C{name} is now in C{state} (for example C{"connected"}).

        The series for C{state} is set to 1 and every other state this channel has
        reported before is set to 0, so C{pywatt_channel_state{channel="tcp"} == 1}
        selects the current state.
        """
        seen = self._channel_seen.setdefault(name, set())
        seen.add(state)
        for other in seen:
            self.channel_states.labels(name, other).set(1 if other == state else 0)
        for listener in self.channel_listeners:
            listener(name, state)

    def message_in(self, transport: str, op: str) -> None:
        """
        Count one protocol message received on C{transport} (C{"stdio"}, C{"tcp"}...).
        Pass only known op names (or C{"unknown"}) to keep the label set bounded.
        """
        entry = self._received_counts.get((transport, op))
        if entry is None:
            self.messages_received.inc((transport, op))
        else:
            entry[0] += 1

    def message_out(self, transport: str, op: str) -> None:
        """
        Count one protocol message sent on C{transport}.
        """
        entry = self._sent_counts.get((transport, op))
        if entry is None:
            self.messages_sent.inc((transport, op))
        else:
            entry[0] += 1

    def ipc_request(self, transport: str, outcome: str) -> None:
        """
        Count one HTTP-over-IPC request answered by the bridge with C{outcome}.
        """
        child = self._ipc_children.get((transport, outcome))
        if child is None:
            child = self._remember(self._ipc_children, self.ipc_requests, (transport, outcome))
        child.inc()

    def watch_log_drops(self, total: Callable[[], int]) -> Collector:
        """
        Publish C{pywatt_log_dropped_total}, read from C{total} on every scrape: log lines
        dropped because stderr was not read and the log buffer was full.

        @param total: the count so far (L{pywatt_twisted._runtime.logging.StderrWriter}'s
            C{dropped_total}).
        @return: the registered collector.
        """

        def produce() -> Iterable[Any]:
            yield CounterMetricFamily(
                "pywatt_log_dropped",
                "Log lines dropped because stderr was not read and the log buffer "
                "(--log-buffer-bytes) was full.",
                value=total(),
            )

        return self.add_collector(produce)

    # Extension and exposition

    def add_collector(self, collector: Collector | Callable[[], Iterable[Any]]) -> Collector:
        """
        Publish more metrics through this module's registry (the data layer uses
        this for pool statistics).

        @param collector: a C{prometheus_client} collector (anything with
            C{collect()}), or a callable returning an iterable of metric families
            (for example C{GaugeMetricFamily}) that is called on every scrape.
        @return: the registered collector, for L{remove_collector}.
        """
        if not hasattr(collector, "collect"):
            if not callable(collector):
                raise TypeError(
                    "add_collector expects a prometheus_client collector or a callable "
                    f"returning metric families, got {type(collector).__name__}"
                )
            collector = _CallableCollector(collector)
        self.registry.register(collector)
        return collector

    def remove_collector(self, collector: Collector) -> None:
        """
        Stop publishing a collector added with L{add_collector}.
        """
        self.registry.unregister(collector)

    def render(self) -> bytes:
        """
        The Prometheus text exposition (format 0.0.4) of every metric in the registry;
        serve it with L{METRICS_CONTENT_TYPE}.
        """
        return generate_latest(self.registry)
