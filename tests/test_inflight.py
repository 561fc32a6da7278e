"""
Tests for L{pywatt_twisted._inflight}: the drain primitive the site, the bridge and the
routed handlers share.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._inflight import InFlight


class InFlightTests(SynchronousTestCase):
    def test_drained_at_once_when_empty(self) -> None:
        self.assertIsNone(self.successResultOf(InFlight[object]().drained()))

    def test_drained_when_the_last_item_finishes(self) -> None:
        work: InFlight[str] = InFlight()
        work.add("a")
        work.add("b")
        drained = work.drained()
        work.discard("a")
        self.assertNoResult(drained)
        self.assertEqual((len(work), "b" in work, list(work)), (1, True, ["b"]))
        work.discard("b")
        self.assertIsNone(self.successResultOf(drained))

    def test_every_waiter_fires_once(self) -> None:
        work: InFlight[str] = InFlight()
        work.add("a")
        first, second = work.drained(), work.drained()
        work.discard("a")
        work.discard("a")  # finishing twice wakes nobody twice
        self.successResultOf(first)
        self.successResultOf(second)

    def test_track_holds_a_deferred_until_it_fires(self) -> None:
        work: InFlight[Deferred[int]] = InFlight()
        d: Deferred[int] = Deferred()
        tracked = work.track(d)
        drained = work.drained()
        self.assertEqual(len(work), 1)
        self.assertNoResult(drained)
        d.callback(7)
        self.assertEqual(self.successResultOf(tracked), 7)
        self.successResultOf(drained)

    def test_track_a_failure_passes_it_on(self) -> None:
        work: InFlight[Deferred[int]] = InFlight()
        d: Deferred[int] = Deferred()
        work.track(d)
        d.errback(ValueError("no"))
        self.assertEqual(len(work), 0)
        self.failureResultOf(d, ValueError)

    def test_track_a_fired_deferred_holds_nothing(self) -> None:
        work: InFlight[Deferred[int]] = InFlight()
        work.track(succeed(1))
        self.assertEqual(len(work), 0)

    def test_idle_condition_holds_the_drain(self) -> None:
        """
        With an extra idle condition (a queue), the last item finishing does not drain
        while the condition is false; L{InFlight.check} drains once it is true.
        """
        queue = ["queued"]
        work: InFlight[str] = InFlight(idle=lambda: not queue)
        self.assertNoResult(work.drained())
        work.add("a")
        drained = work.drained()
        work.discard("a")
        self.assertNoResult(drained)
        queue.clear()
        work.check()
        self.successResultOf(drained)
