"""
Tests for L{pywatt_twisted.link._choice}: the fixed preference, per-send routes, and auto
routing by latency (moving gradually, not flapping on noise).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.link._choice import AutoRouting, FailoverChoice, Route
from pywatt_twisted.link._latency import LatencyTracker


class FakeChannel:
    def __init__(self, name: str, clock: Clock, writable: bool = True) -> None:
        self.name = name
        self.writable = writable
        self.latency = LatencyTracker(clock)


def channels(clock: Clock) -> dict[str, Any]:
    return {"ipc": FakeChannel("ipc", clock), "tcp": FakeChannel("tcp", clock)}


class FixedPreferenceTests(SynchronousTestCase):
    def test_order_and_failover(self) -> None:
        chans = channels(Clock())
        choice = FailoverChoice(chans, ("tcp", "ipc"))
        self.assertEqual(choice.pick().name, "tcp")  # type: ignore[union-attr]
        chans["tcp"].writable = False
        self.assertEqual(choice.pick().name, "ipc")  # type: ignore[union-attr]
        self.assertEqual((choice.rank("tcp"), choice.rank("ipc")), (1, 2))

    def test_route_prefer_and_only(self) -> None:
        chans = channels(Clock())
        choice = FailoverChoice(chans, ("tcp", "ipc"))
        self.assertEqual(choice.pick(Route(prefer="ipc")).name, "ipc")  # type: ignore[union-attr]
        self.assertEqual(choice.pick("ipc").name, "ipc")  # type: ignore[union-attr]
        chans["ipc"].writable = False
        self.assertEqual(choice.pick(Route(prefer="ipc")).name, "tcp")  # type: ignore[union-attr]
        self.assertIsNone(choice.pick(Route(only="ipc")))

    def test_auto_needs_a_clock(self) -> None:
        self.assertRaises(TypeError, FailoverChoice, channels(Clock()), ("auto",))


def feed(chan: FakeChannel, seconds: float, n: int = 5) -> None:
    for _ in range(n):
        chan.latency.record(seconds)


class AutoRoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.chans = channels(self.clock)
        self.choice = FailoverChoice(self.chans, ("auto", "ipc", "tcp"), self.clock)
        assert self.choice.auto is not None
        self.auto: AutoRouting = self.choice.auto

    def share(self, n: int = 100) -> Counter[str]:
        return Counter(self.choice.pick().name for _ in range(n))  # type: ignore[union-attr]

    def test_starts_on_the_first_named_channel_exploring_the_other(self) -> None:
        self.assertEqual(self.auto.leader, "ipc")
        self.assertEqual(self.share(), Counter({"ipc": 95, "tcp": 5}))

    def test_moves_to_the_faster_channel_gradually(self) -> None:
        feed(self.chans["ipc"], 0.010)
        feed(self.chans["tcp"], 0.002)
        weights = []
        for _ in range(5):
            self.clock.advance(1)
            self.auto.rebalance()
            weights.append(self.auto.weights["tcp"])
        # a quarter of the traffic per second, never all of it at once
        self.assertEqual([round(w, 2) for w in weights], [0.3, 0.55, 0.8, 0.95, 0.95])
        self.assertEqual(self.auto.leader, "tcp")
        self.assertEqual(self.share(), Counter({"tcp": 95, "ipc": 5}))

    def test_once_per_interval(self) -> None:
        feed(self.chans["ipc"], 0.010)
        feed(self.chans["tcp"], 0.002)
        self.clock.advance(1)
        for _ in range(50):
            self.choice.pick()
        self.assertEqual(self.auto.moves, 1)

    def test_does_not_flap_on_noise(self) -> None:
        # Both around 5 ms, each sometimes 15 % faster than the other: inside the margin.
        for step in range(60):
            self.chans["ipc"].latency.record(0.005 if step % 2 else 0.0056)
            self.chans["tcp"].latency.record(0.0056 if step % 2 else 0.005)
            self.clock.advance(1)
            self.choice.pick()
        self.assertEqual(self.auto.moves, 0)
        self.assertEqual(self.auto.leader, "ipc")

    def test_needs_samples_on_both(self) -> None:
        feed(self.chans["tcp"], 0.001)
        self.clock.advance(5)
        self.auto.rebalance()
        self.assertEqual(self.auto.moves, 0)

    def test_an_unwritable_channel_gets_nothing(self) -> None:
        self.chans["ipc"].writable = False
        self.assertEqual(self.share(), Counter({"tcp": 100}))
        self.chans["tcp"].writable = False
        self.assertIsNone(self.choice.pick())

    def test_rank_is_the_weight(self) -> None:
        self.assertEqual((self.choice.rank("ipc"), self.choice.rank("tcp")), (0.95, 0.05))
