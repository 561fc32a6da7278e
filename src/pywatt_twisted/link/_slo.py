# -*- test-case-name: tests.link.test_slo -*-
"""
Channel and module-to-module SLOs: what each path (a channel, a target module) did over
a sliding window, and alerts when it crosses a threshold.

A B{path} is C{("channel", name)} or C{("target", module_id)}. For each, L{SloMonitor}
keeps:

  - the round-trip latencies (a L{LatencyTracker}: p50/p90/p99 of the window) and a
    Prometheus histogram C{pywatt_round_trip_seconds{kind,name}};
  - the outcomes (C{ok}, C{error}, C{timeout}) of the window, for the error rate, the
    timeout rate and the availability (the share of round trips that got a good
    answer), and a counter C{pywatt_round_trips_total{kind,name,outcome}};
  - for a channel, since when it is down.

Thresholds (L{SloThresholds}; each can be off): latency p99, error rate (errors and
timeouts), and a channel down for N seconds. When one is crossed an L{Alert} with
C{firing=True} goes to the callback, one WARNING is logged and
C{pywatt_alerts_total{kind}} counts it; when the condition ends, an L{Alert} with
C{firing=False} and one INFO line. An alert does not fire again while it is active, and
a rate or latency alert needs C{min_samples} round trips in the window (one failed
request out of one is not an outage).

Memory is bounded: at most C{max_samples} outcomes and latencies per path (the oldest go
first, so at high rates the window is the last C{max_samples} round trips), and
C{FOLD_EVERY} good round trips kept aside until the window is read (see C{_PathState}),
and at most C{max_paths} paths; round trips of further targets count under the target
C{"other"}.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, cast

from attrs import field, frozen
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pywatt_twisted.link._latency import LatencyTracker
from pywatt_twisted.wire._value import Value

__all__ = [
    "CHANNEL_DOWN",
    "ERROR_RATE",
    "LATENCY_P99",
    "OUTCOMES",
    "Alert",
    "SloMonitor",
    "SloThresholds",
]

LATENCY_P99 = "latency_p99"
ERROR_RATE = "error_rate"
CHANNEL_DOWN = "channel_down"

#: What a round trip can end with.
OUTCOMES = ("ok", "error", "timeout")

#: Histogram buckets of C{pywatt_round_trip_seconds}.
ROUND_TRIP_BUCKETS = (
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
)

Path = tuple[str, str]


def _positive_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if value < 0:
        raise ValueError(f"an SLO threshold must be positive (or None: off), got {value!r}")
    return value or None


@frozen(eq=False, repr=False)
class SloThresholds(Value):
    """
    When an alert fires; C{None} (or 0) turns a threshold off.

    @ivar latency_p99: seconds the window's p99 round trip may take.
    @ivar error_rate: share (0-1) of the window's round trips that may fail or time out.
    @ivar channel_down: seconds a channel may stay down.
    @ivar window: the sliding window, in seconds.
    @ivar min_samples: round trips the window needs before a rate or latency alert.
    """

    latency_p99: float | None = field(default=1.0, converter=_positive_or_none)
    error_rate: float | None = field(default=0.05, converter=_positive_or_none)
    channel_down: float | None = field(default=30.0, converter=_positive_or_none)
    window: float = 60.0
    min_samples: int = 20

    def __attrs_post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError(f"the SLO window must be positive, got {self.window!r}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples!r}")
        if self.error_rate is not None and self.error_rate > 1:
            raise ValueError(f"error_rate is a share between 0 and 1, got {self.error_rate!r}")


@frozen(eq=False, repr=False)
class Alert(Value):
    """
    An SLO threshold crossed (C{firing}) or no longer crossed (not C{firing}).

    @ivar kind: L{LATENCY_P99}, L{ERROR_RATE} or L{CHANNEL_DOWN}.
    @ivar path_kind: C{"channel"} or C{"target"}.
    @ivar name: the channel name or the target module id.
    @ivar firing: whether the condition holds (C{False}: it cleared).
    @ivar value: the measured value (seconds, or a share) when it changed.
    @ivar threshold: the threshold it was compared with.
    @ivar at: clock time of the change.
    """

    kind: str
    path_kind: str
    name: str
    firing: bool
    value: float
    threshold: float
    at: float

    @property
    def summary(self) -> str:
        """
        One line a person can read.
        """
        what = {
            LATENCY_P99: f"p99 round trip {self.value * 1000:.1f} ms (threshold "
            f"{self.threshold * 1000:.1f} ms)",
            ERROR_RATE: f"error rate {self.value:.1%} (threshold {self.threshold:.1%})",
            CHANNEL_DOWN: f"down for {self.value:.1f} s (threshold {self.threshold:g} s)",
        }.get(self.kind, f"{self.kind} {self.value} (threshold {self.threshold})")
        state = "FIRING" if self.firing else "cleared"
        return f"{state} {self.kind} on {self.path_kind} {self.name}: {what}"


#: C{ok} round trips a path keeps aside before it folds them into its window
FOLD_EVERY = 256


class _PathState:
    """
    The window of one path: outcomes in time order with running counts, so the rates
    cost O(1) per round trip (entries leave the window from the left).

    An C{ok} round trip that cannot fire an alert (nothing firing, the channel up, no
    error or timeout in the window) is only kept aside (C{pending_times} and
    C{pending_seconds}; issue 17: observing the two paths of each reply was a tenth of
    the requester's CPU per request). L{fold} adds them, in order, to the window, the
    latencies and the histogram, with the results observing each at once would have
    had; whatever reads those folds first, and at most L{FOLD_EVERY} wait.
    """

    def __init__(self, clock: IReactorTime, window: float, max_samples: int) -> None:
        self.latency = LatencyTracker(clock, size=max_samples, window=window)
        self.max_samples = max_samples
        # (bounded: observe and fold drop the oldest first and count what they drop)
        self.outcomes: deque[tuple[float, str]] = deque(maxlen=max_samples)
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.totals = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(ROUND_TRIP_BUCKETS) + 1)
        self.sum = 0.0
        self.down_since: float | None = None
        self.active: dict[str, Alert] = {}
        self.pending_times: list[float] = []
        self.pending_seconds: list[float | None] = []

    def fold(self) -> None:
        """
        Add the C{ok} round trips kept aside as L{observe} would have, one by one.
        """
        times = self.pending_times
        if not times:
            return
        # (a None among them, a round trip of unknown length, fails the sum below)
        seconds = cast("list[float]", self.pending_seconds)
        self.pending_times, self.pending_seconds = [], []
        n = len(times)
        outcomes, counts = self.outcomes, self.counts
        self.totals["ok"] += n
        kept = min(n, self.max_samples)
        drop = len(outcomes) + kept - self.max_samples
        if drop > 0 and (counts["error"] or counts["timeout"]):
            for _ in range(drop):
                counts[outcomes.popleft()[1]] -= 1
        elif drop > 0:
            counts["ok"] -= drop  # (oks only: the deque drops them as it is extended)
        counts["ok"] += kept
        outcomes.extend(zip(times, repeat("ok")))
        total = self.sum
        try:
            for value in seconds:
                total += value
            plain = min(seconds) >= 0 and total == total
        except TypeError:
            plain = False
        if not plain:  # (None, negative or NaN among them)
            for now, value in zip(times, seconds, strict=True):
                self._add_latency(now, value)
            return
        self.sum = total
        self.latency.record_many(seconds, times)
        # the bucket of each: the first whose bound is >= it (the last: above them all)
        ordered, buckets, below = sorted(seconds), self.buckets, 0
        for index, bound in enumerate(ROUND_TRIP_BUCKETS):
            upto = bisect_right(ordered, bound)
            buckets[index] += upto - below
            below = upto
        buckets[-1] += n - below

    def _add_latency(self, now: float, seconds: float | None) -> None:
        if seconds is not None and seconds >= 0:
            self.latency.record(seconds, now)
            self.sum += seconds
            # the first bucket whose bound is >= seconds (the last one: above them all)
            self.buckets[bisect_left(ROUND_TRIP_BUCKETS, seconds)] += 1

    def observe(self, now: float, outcome: str, seconds: float | None) -> None:
        if len(self.outcomes) >= self.max_samples:
            _, dropped = self.outcomes.popleft()
            self.counts[dropped] -= 1
        self.outcomes.append((now, outcome))
        self.counts[outcome] += 1
        self.totals[outcome] += 1
        self._add_latency(now, seconds)

    def recent(self, since: float) -> dict[str, int]:
        self.fold()
        outcomes, counts = self.outcomes, self.counts
        while outcomes and outcomes[0][0] < since:
            _, old = outcomes.popleft()
            counts[old] -= 1
        return dict(counts)


class SloMonitor:
    """
    Per-path SLO windows and alerts (see the module docstring).

    @param clock: the time source.
    @param thresholds: when alerts fire.
    @param on_alert: called with each L{Alert} (firing and cleared); exceptions are
        logged.
    @param max_samples: outcomes and latencies kept per path.
    @param max_paths: paths tracked; further targets count as C{"other"}.
    @param tick_interval: seconds between re-evaluations while there is something to
        watch (round trips in the window, a channel down, an alert firing); no timer
        runs while there is nothing.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        thresholds: SloThresholds | None = None,
        on_alert: Callable[[Alert], object] | None = None,
        max_samples: int = 2048,
        max_paths: int = 256,
        tick_interval: float = 1.0,
    ) -> None:
        self.clock = clock
        self.tick_interval = tick_interval
        self._call: Any = None
        self._stopped = False
        self.thresholds = thresholds if thresholds is not None else SloThresholds()
        self.on_alert = on_alert
        self.max_samples = max_samples
        self.max_paths = max_paths
        self._paths: dict[Path, _PathState] = {}
        self.alerts_total: dict[str, int] = dict.fromkeys(
            (LATENCY_P99, ERROR_RATE, CHANNEL_DOWN), 0
        )

    def _path(self, kind: str, name: str) -> _PathState:
        key = (kind, name)
        state = self._paths.get(key)
        if state is None:
            if len(self._paths) >= self.max_paths and kind == "target":
                key = (kind, "other")
                state = self._paths.get(key)
            if state is None:
                state = _PathState(self.clock, self.thresholds.window, self.max_samples)
                self._paths[key] = state
        return state

    # -- observations ---------------------------------------------------------------------

    def observe(
        self,
        kind: str,
        name: str,
        outcome: str,
        seconds: float | None,
        now: float | None = None,
    ) -> None:
        """
        One round trip on path C{(kind, name)} ended with C{outcome} (C{"ok"},
        C{"error"}, C{"timeout"}) after C{seconds} (C{None}: unknown, not counted in the
        latencies), at C{now} (this monitor's clock, read here when not given: a caller
        that counts one round trip on two paths reads it once).
        """
        path = self._paths.get((kind, name))
        if now is None:
            now = self.clock.seconds()
        if outcome == "ok" and path is not None and not path.active and path.down_since is None:
            counts = path.counts
            if not (counts["error"] or counts["timeout"]):
                # It cannot fire an alert (a good round trip added to a window with no
                # bad one): kept aside until the window is read (see _PathState).
                times = path.pending_times
                times.append(now)
                path.pending_seconds.append(seconds)
                if len(times) >= FOLD_EVERY:
                    path.fold()
                if self._call is None:
                    self._schedule()
                return
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        if path is None:
            path = self._path(kind, name)
        path.fold()
        path.observe(now, outcome, seconds)
        # The rates are O(1) to evaluate; the latency percentiles (a sort) wait for
        # the next tick.
        if path.active or path.down_since is not None:
            self._evaluate(kind, name, path, latency=False)
        else:
            # Nothing firing and the channel up: only the error rate can start firing.
            self._check_error_rate(kind, name, path, now)
        if self._call is None:
            self._schedule()

    def _check_error_rate(self, kind: str, name: str, path: _PathState, now: float) -> None:
        """
        L{_evaluate}'s error-rate check, for a path with no alert firing: the same
        window and rule, without copying the counts.
        """
        t = self.thresholds
        if t.error_rate is None:
            return
        outcomes, counts = path.outcomes, path.counts
        since = now - t.window
        while outcomes and outcomes[0][0] < since:
            counts[outcomes.popleft()[1]] -= 1
        total = len(outcomes)
        if total < t.min_samples:
            return
        rate = (counts["error"] + counts["timeout"]) / total
        if rate > t.error_rate:
            self._set(path, kind, name, ERROR_RATE, True, rate, t.error_rate, now)

    def channel_up(self, name: str, up: bool) -> None:
        """
        Channel C{name} is up (connected) or not, now.
        """
        path = self._path("channel", name)
        if up:
            path.down_since = None
        elif path.down_since is None:
            path.down_since = self.clock.seconds()
        self._evaluate("channel", name, path, latency=False)
        self._schedule()

    def tick(self) -> None:
        """
        Re-evaluate every path (windows slide and channels stay down without any new
        observation); call it every second or so.
        """
        for (kind, name), path in list(self._paths.items()):
            self._evaluate(kind, name, path)

    def stop(self) -> None:
        """
        Cancel the timer; no re-evaluation is scheduled any more.
        """
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _watching(self) -> bool:
        since = self.clock.seconds() - self.thresholds.window
        for path in self._paths.values():
            if path.active or path.down_since is not None:
                return True
            path.recent(since)
            if path.outcomes:
                return True
        return False

    def _schedule(self) -> None:
        if self._stopped or self._call is not None:
            return
        self._call = self.clock.callLater(self.tick_interval, self._timed_tick)

    def _timed_tick(self) -> None:
        self._call = None
        self.tick()
        if self._watching():
            self._schedule()

    # -- evaluation -----------------------------------------------------------------------

    def _evaluate(self, kind: str, name: str, path: _PathState, latency: bool = True) -> None:
        t = self.thresholds
        now = self.clock.seconds()
        counts = path.recent(now - t.window)
        total = sum(counts.values())
        if t.error_rate is not None:
            rate = (counts["error"] + counts["timeout"]) / total if total else 0.0
            self._set(
                path,
                kind,
                name,
                ERROR_RATE,
                total >= t.min_samples and rate > t.error_rate,
                rate,
                t.error_rate,
                now,
            )
        if t.latency_p99 is not None and latency:
            recent = path.latency.recent()
            p99 = path.latency.percentiles((0.99,)).get("p99", 0.0) if recent else 0.0
            self._set(
                path,
                kind,
                name,
                LATENCY_P99,
                len(recent) >= t.min_samples and p99 > t.latency_p99,
                p99,
                t.latency_p99,
                now,
            )
        if kind == "channel" and t.channel_down is not None:
            down = 0.0 if path.down_since is None else now - path.down_since
            self._set(
                path,
                kind,
                name,
                CHANNEL_DOWN,
                path.down_since is not None and down >= t.channel_down,
                down,
                t.channel_down,
                now,
            )

    def _set(
        self,
        path: _PathState,
        kind: str,
        name: str,
        alert_kind: str,
        firing: bool,
        value: float,
        threshold: float,
        now: float,
    ) -> None:
        active = alert_kind in path.active
        if firing == active:
            return
        alert = Alert(alert_kind, kind, name, firing, value, threshold, now)
        if firing:
            path.active[alert_kind] = alert
            self.alerts_total[alert_kind] += 1
            self.log.warn("SLO alert {summary}", summary=alert.summary, alert=alert_kind)
        else:
            del path.active[alert_kind]
            self.log.info("SLO alert {summary}", summary=alert.summary, alert=alert_kind)
        if self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:
                self.log.failure("an on_alert callback raised for {summary}", summary=alert.summary)

    # -- reading --------------------------------------------------------------------------

    def active(self) -> list[Alert]:
        """
        The alerts firing now.
        """
        return [a for path in self._paths.values() for a in path.active.values()]

    def snapshot(self, kind: str, name: str) -> dict[str, Any]:
        """
        One path over the window: C{requests}, C{errors}, C{timeouts}, C{error_rate},
        C{timeout_rate}, C{availability} (C{None} without round trips), the latency
        percentiles (C{p50_ms}...), C{down_seconds} for a channel, and the C{alerts}
        firing.
        """
        path = self._paths.get((kind, name))
        if path is None:
            return {}
        now = self.clock.seconds()
        counts = path.recent(now - self.thresholds.window)
        total = sum(counts.values())
        out: dict[str, Any] = {
            "requests": total,
            "errors": counts["error"],
            "timeouts": counts["timeout"],
            "error_rate": round(counts["error"] / total, 4) if total else None,
            "timeout_rate": round(counts["timeout"] / total, 4) if total else None,
            "availability": round(counts["ok"] / total, 4) if total else None,
        }
        out.update({f"{k}_ms": round(v * 1000, 3) for k, v in path.latency.percentiles().items()})
        if kind == "channel":
            out["down_seconds"] = (
                None if path.down_since is None else round(now - path.down_since, 3)
            )
        out["alerts"] = sorted(path.active)
        return out

    def health(self) -> dict[str, Any]:
        """
        For C{/health}: every path's L{snapshot} (C{"channel:tcp"}, C{"target:orders"})
        and the window.
        """
        return {
            "window_seconds": self.thresholds.window,
            "paths": {f"{k}:{n}": self.snapshot(k, n) for (k, n) in list(self._paths)},
        }

    def collect(self) -> Iterable[Any]:
        """
        Metric families: C{pywatt_round_trip_seconds{kind,name}},
        C{pywatt_round_trips_total{kind,name,outcome}},
        C{pywatt_slo_availability{kind,name}} (the window; absent without round trips),
        C{pywatt_alerts_total{kind}}, C{pywatt_alerts_active{kind}}.
        """
        hist = HistogramMetricFamily(
            "pywatt_round_trip_seconds",
            "Round-trip time of module-to-module requests, by channel and by target.",
            labels=["kind", "name"],
        )
        trips = CounterMetricFamily(
            "pywatt_round_trips",
            "Module-to-module round trips by channel or target and outcome (ok, error, timeout).",
            labels=["kind", "name", "outcome"],
        )
        avail = GaugeMetricFamily(
            "pywatt_slo_availability",
            "Share of the window's round trips that got a good answer, by channel and target.",
            labels=["kind", "name"],
        )
        now = self.clock.seconds()
        for (kind, name), path in list(self._paths.items()):
            path.fold()
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*(str(b) for b in ROUND_TRIP_BUCKETS), "+Inf"), path.buckets, strict=True
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            if cumulative:
                hist.add_metric([kind, name], buckets, path.sum)
            for outcome, count in path.totals.items():
                if count:
                    trips.add_metric([kind, name, outcome], count)
            counts = path.recent(now - self.thresholds.window)
            total = sum(counts.values())
            if total:
                avail.add_metric([kind, name], counts["ok"] / total)
        alerts = CounterMetricFamily("pywatt_alerts", "SLO alerts fired, by kind.", labels=["kind"])
        active = GaugeMetricFamily(
            "pywatt_alerts_active", "SLO alerts firing now.", labels=["kind"]
        )
        firing = [a.kind for a in self.active()]
        for alert_kind, count in self.alerts_total.items():
            alerts.add_metric([alert_kind], count)
            active.add_metric([alert_kind], firing.count(alert_kind))
        return [hist, trips, avail, alerts, active]
