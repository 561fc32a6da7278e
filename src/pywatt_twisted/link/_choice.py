# -*- test-case-name: tests.link.test_choice -*-
"""
The channel choice: which channel a send goes to.

  - B{Fixed preference} (C{("ipc", "tcp")} or C{("tcp", "ipc")}): the first writable
    channel in that order.
  - B{Auto} (preference C{("auto",)}): L{AutoRouting} splits the sends between the
    writable channels by weight, and moves weight to the channel with the best recent
    round-trip latency (each channel's L{LatencyTracker} EWMA), a step at a time, only
    when it is clearly better (hysteresis), so noise does not make it flap.
  - B{Per send} (L{Route}): C{prefer} tries one channel first and falls back to the
    choice above; C{only} sends on that channel or waits for it (no fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import field, frozen
from twisted.internet.interfaces import IReactorTime

from pywatt_twisted.wire._value import Value

if TYPE_CHECKING:
    from pywatt_twisted.link._channel import LinkChannel

__all__ = ["AUTO", "AutoRouting", "FailoverChoice", "Route"]

#: the preference that routes by latency
AUTO = "auto"


@frozen(eq=False, repr=False)
class Route(Value):
    """
    Where one send may go.

    @ivar prefer: a channel to try first (else the configured choice).
    @ivar only: the one channel it may go to (it waits in the queue while that one is
        not writable).
    @ivar written: called with the name of the channel once the frame is written.
    """

    prefer: str | None = None
    only: str | None = None
    written: Callable[[str], object] | None = field(default=None, eq=False)


class AutoRouting:
    """
    Latency-driven weights over the channels (see the module docstring).

    Every C{interval} seconds (checked on the next send) the channel with the lowest
    EWMA takes up to C{step} of the weight from each channel it beats by more than
    C{margin} (a share: 0.2 = 20 % faster), so traffic moves a step at a time, and a
    difference inside the margin (noise) moves nothing. Every writable channel keeps at
    least C{explore} of the weight, so the latency of the one not leading stays known.
    Sends are spread by smooth weighted round robin: deterministic, no randomness.

    @param names: the channels, the first one leading at the start.
    """

    def __init__(
        self,
        channels: Mapping[str, LinkChannel],
        names: Iterable[str],
        clock: IReactorTime,
        interval: float = 1.0,
        margin: float = 0.2,
        step: float = 0.25,
        explore: float = 0.05,
        min_samples: int = 3,
    ) -> None:
        self.channels = channels
        self.names = [n for n in names if n in channels]
        self.clock = clock
        self.interval = interval
        self.margin = margin
        self.step = step
        self.explore = explore
        self.min_samples = min_samples
        n = len(self.names)
        self.weights: dict[str, float] = {
            name: (1.0 - explore * (n - 1)) if i == 0 else explore
            for i, name in enumerate(self.names)
        }
        self._credit: dict[str, float] = dict.fromkeys(self.names, 0.0)
        self._checked_at = clock.seconds()
        #: times the weights moved
        self.moves = 0

    @property
    def leader(self) -> str | None:
        """
        The channel with the most weight.
        """
        if not self.weights:
            return None
        return max(self.names, key=lambda n: self.weights[n])

    def rebalance(self) -> None:
        """
        Move weight toward a clearly faster channel, once per C{interval}.
        """
        now = self.clock.seconds()
        if now - self._checked_at < self.interval:
            return
        self._checked_at = now
        known = {
            name: c.latency.ewma
            for name, c in self.channels.items()
            if name in self.weights
            and c.writable
            and c.latency.ewma is not None
            and c.latency.count >= self.min_samples
        }
        if len(known) < 2:
            return
        best = min(known, key=lambda n: known[n] or 0.0)
        fast = known[best] or 0.0
        moved = 0.0
        share = self.step / (len(self.names) - 1)
        for name, ewma in known.items():
            # Only from a channel the best one beats by more than the margin.
            if name == best or fast >= (ewma or 0.0) * (1 - self.margin):
                continue
            give = min(share, self.weights[name] - self.explore)
            if give > 1e-9:
                self.weights[name] -= give
                moved += give
        if moved:
            self.weights[best] += moved
            self.moves += 1

    def pick(self) -> LinkChannel | None:
        """
        The next writable channel by weight (smooth weighted round robin).
        """
        self.rebalance()
        usable = [n for n in self.names if self.channels[n].writable]
        if not usable:
            return None
        if len(usable) == 1:
            return self.channels[usable[0]]
        total = 0.0
        best: str | None = None
        credit = self._credit
        for name in usable:
            w = self.weights[name]
            total += w
            credit[name] += w
            if best is None or credit[name] > credit[best]:
                best = name
        assert best is not None
        credit[best] -= total
        return self.channels[best]

    def snapshot(self) -> dict[str, float]:
        """
        The weights now, by channel.
        """
        return {name: round(w, 3) for name, w in self.weights.items()}


class FailoverChoice:
    """
    Picks a writable channel.

    @param channels: the configured channels by name.
    @param preference: channel names, most preferred first (names not configured are
        ignored), or C{("auto",)} to route by latency (L{AutoRouting}; then C{clock} is
        required).
    """

    def __init__(
        self,
        channels: Mapping[str, LinkChannel],
        preference: Iterable[str],
        clock: IReactorTime | None = None,
    ) -> None:
        self.channels = channels
        preference = tuple(preference)
        self.auto: AutoRouting | None = None
        if AUTO in preference:
            if clock is None:
                raise TypeError("the auto channel preference needs a clock")
            rest = [n for n in preference if n != AUTO] + ["ipc", "tcp"]
            order = list(dict.fromkeys(n for n in rest if n in channels))
            self.auto = AutoRouting(channels, order, clock)
            self.order = order
        else:
            self.order = [n for n in preference if n in channels]
        # The channels themselves in that order, for the send path (issue 20); the
        # configured channels never change after the manager is built.
        self._ordered = [channels[n] for n in self.order]

    def pick(self, prefer: str | Route | None = None) -> LinkChannel | None:
        """
        The channel a send goes to now: the route's C{only} channel if it is writable
        (else C{None}); else C{prefer} if it is writable; else the configured choice;
        else C{None}.
        """
        if prefer is not None:  # (None, the common case, goes straight to the choice)
            if isinstance(prefer, Route):
                if prefer.only is not None:
                    only = self.channels.get(prefer.only)
                    return only if only is not None and only.writable else None
                prefer = prefer.prefer
            if prefer is not None:
                first = self.channels.get(prefer)
                if first is not None and first.writable:
                    return first
        if self.auto is not None:
            return self.auto.pick()
        for channel in self._ordered:
            if channel.writable:
                return channel
        return None

    def rank(self, name: str) -> object:
        """
        How C{name} stands in the choice: its place in the fixed order (1 first), or its
        weight under auto routing.
        """
        if self.auto is not None:
            return self.auto.weights.get(name)
        return self.order.index(name) + 1 if name in self.order else None

    def describe(self) -> str:
        """
        Every channel's state and last error, for error messages.
        """
        if not self.channels:
            return "no channel is configured"
        return ", ".join(
            f"{c.name} {c.state.value}" + (f" ({c.last_error})" if c.last_error else "")
            for c in self.channels.values()
        )
