# -*- test-case-name: tests.link.test_latency -*-
"""
L{LatencyTracker}: the recent round-trip latency of one path (a channel, a target),
on an injected clock.

It keeps two views of the same samples:

  - an B{EWMA} (exponentially weighted moving average, weight C{alpha} for the newest
    sample), cheap and smooth: what routing decisions compare;
  - a B{bounded reservoir} of the last C{size} samples with the clock time each was
    taken, from which L{LatencyTracker.percentiles} reads p50/p90/p99 of the samples no
    older than C{window} seconds: what introspection and SLO alerts show.

Memory is bounded by C{size} samples whatever the rate: the oldest sample is overwritten
(a ring), so at high rates the percentiles cover the last C{size} samples rather than the
whole window. Recording is O(1); reading percentiles sorts at most C{size} values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from twisted.internet.interfaces import IReactorTime

__all__ = ["DEFAULT_ALPHA", "DEFAULT_RESERVOIR", "DEFAULT_WINDOW", "LatencyTracker"]

#: weight of the newest sample in the EWMA
DEFAULT_ALPHA = 0.2
#: samples the reservoir keeps
DEFAULT_RESERVOIR = 512
#: seconds a sample counts for the percentiles
DEFAULT_WINDOW = 60.0


class LatencyTracker:
    """
    Recent round-trip latencies of one path (see the module docstring).

    @param clock: what sample times are read from.
    @param alpha: the EWMA weight of the newest sample, in (0, 1].
    @param size: how many samples the reservoir keeps (at least 1).
    @param window: seconds a sample counts for the percentiles.
    @ivar ewma: the moving average in seconds, or C{None} before the first sample.
    @ivar count: samples recorded since the tracker was made.
    @ivar last_at: clock time of the newest sample, or C{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        alpha: float = DEFAULT_ALPHA,
        size: int = DEFAULT_RESERVOIR,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.clock = clock
        self.alpha = alpha
        self.size = size
        self.window = window
        self.ewma: float | None = None
        self.count = 0
        self.last_at: float | None = None
        self._values: list[float] = []
        self._times: list[float] = []
        self._next = 0

    def record(self, seconds: float, now: float | None = None) -> None:
        """
        Add one round trip of C{seconds} (negative or non-finite values are ignored: a
        clock that stepped back must not poison the average), ended at C{now} (the
        clock's time when not given).
        """
        if not 0 <= seconds < math.inf:  # (False for NaN too)
            return
        if now is None:
            now = self.clock.seconds()
        ewma = self.ewma
        self.ewma = seconds if ewma is None else ewma + self.alpha * (seconds - ewma)
        self.count += 1
        self.last_at = now
        if len(self._values) < self.size:
            self._values.append(seconds)
            self._times.append(now)
        else:
            i = self._next
            self._values[i] = seconds
            self._times[i] = now
            self._next = (i + 1) % self.size

    def record_many(self, values: Sequence[float], times: Sequence[float]) -> None:
        """
        L{record} C{values[i]} ended at C{times[i]} for each C{i}, in order, with the
        same results (the SLO windows fold the round trips they kept aside this way,
        issue 17: the reservoir is written by slices).
        """
        if not values:
            return
        if not (min(values) >= 0 and sum(values) < math.inf):  # (NaN: not < inf)
            for seconds, now in zip(values, times, strict=True):
                self.record(seconds, now)
            return
        alpha, ewma = self.alpha, self.ewma
        if ewma is None:
            ewma = values[0]
            rest = values[1:]
        else:
            rest = values
        for seconds in rest:
            ewma = ewma + alpha * (seconds - ewma)
        self.ewma = ewma
        self.count += len(values)
        self.last_at = times[-1]
        kept, stamps, size = self._values, self._times, self.size
        room = size - len(kept)
        if room > 0:  # the reservoir fills up first
            kept.extend(values[:room])
            stamps.extend(times[:room])
            values, times = values[room:], times[room:]
        n, i = len(values), self._next
        if n > size:  # the first ones would be overwritten within this batch
            i = (i + n - size) % size
            values, times, n = values[n - size :], times[n - size :], size
        end = i + n
        if end <= size:
            kept[i:end] = values
            stamps[i:end] = times
        else:
            first = size - i
            kept[i:] = values[:first]
            stamps[i:] = times[:first]
            kept[: end - size] = values[first:]
            stamps[: end - size] = times[first:]
        self._next = end % size

    def recent(self) -> list[float]:
        """
        The samples of the last C{window} seconds (at most C{size}), in no order.
        """
        since = self.clock.seconds() - self.window
        return [v for v, t in zip(self._values, self._times, strict=True) if t >= since]

    def percentiles(self, quantiles: Iterable[float] = (0.5, 0.9, 0.99)) -> dict[str, float]:
        """
        C{{"p50": s, "p90": s, "p99": s}} (seconds, nearest rank) over L{recent}; empty
        when there is no recent sample.
        """
        values = sorted(self.recent())
        if not values:
            return {}
        out: dict[str, float] = {}
        n = len(values)
        for q in quantiles:
            rank = min(n - 1, max(0, math.ceil(q * n) - 1))
            label = f"p{q * 100:g}".replace(".", "_")
            out[label] = values[rank]
        return out

    def snapshot(self) -> Mapping[str, object]:
        """
        What introspection shows: C{ewma_ms}, C{p50_ms}/C{p90_ms}/C{p99_ms} (recent
        samples), C{samples} (all time) and C{recent} (in the window).
        """
        recent = self.recent()
        out: dict[str, object] = {
            "ewma_ms": None if self.ewma is None else round(self.ewma * 1000, 3),
            "samples": self.count,
            "recent": len(recent),
        }
        for label, value in self.percentiles().items():
            out[f"{label}_ms"] = round(value * 1000, 3)
        return out
