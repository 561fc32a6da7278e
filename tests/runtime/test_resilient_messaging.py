"""
Module-to-module requests that hold up in bad weather (issue 17, EXTENSIONS.md X4):
deadlines both ways, cancellation, the circuit breaker per target, retries bounded by the
deadline, typed errors at the caller, and the channel choice (configured, per call,
auto). Everything runs in memory on the orchestrator's clock.
"""

from __future__ import annotations

import itertools
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import RetryPolicy
from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.messaging import error_payload
from pywatt_twisted._runtime.resilience import BreakerPolicy
from pywatt_twisted.errors import (
    CircuitOpen,
    DeadlineExceeded,
    HandlerError,
    NoHandler,
    NotAvailable,
    Overloaded,
    RemoteError,
    RequestTimeout,
    TargetExited,
    Timeout,
    Unavailable,
    UnknownModule,
)
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.envelope import routed_request_payload
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    RoutedModuleMessage,
    RoutedModuleReply,
    RoutedModuleResponse,
    RouteToModule,
)


def plain_app(state: Any) -> Klein:
    return Klein()


class Requester:
    """
    A module (C{orders}) whose requests the test answers as the orchestrator.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        channels: tuple[str, ...] = ("tcp", "ipc"),
        **config: Any,
    ) -> None:
        config.setdefault("channel_preference", ("tcp", "ipc"))
        self.orch = FakeOrchestrator(
            module_id="orders", channels=channels, config=RuntimeConfig(**config)
        )
        self.module = case.successResultOf(self.orch.start(plain_app))
        case.addCleanup(self.orch.shutdown)
        self.state = self.module.state
        self.messaging = self.module.service.messaging
        self.clock = self.orch.reactor

    def timers(self) -> list[Any]:
        """
        The pending timers, but the SLO monitor's periodic tick (not messaging's).
        """
        return [
            c
            for c in self.clock.getDelayedCalls()
            if getattr(c.func, "__name__", "") != "_timed_tick"
        ]

    def requests(self, via: str = "tcp") -> list[RouteToModule]:
        connection = self.orch.connection(via)
        assert connection is not None
        return [e.content for e in connection.received if isinstance(e.content, RouteToModule)]

    def last(self, via: str = "tcp") -> RouteToModule:
        return self.requests(via)[-1]

    def answer(self, request: RouteToModule, value: Any, via: str = "tcp") -> None:
        self.orch.send(
            RoutedModuleResponse("inventory", request.request_id, EncodedPayload.from_json(value)),
            via=via,
        )

    def refuse(self, request: RouteToModule, kind: str, via: str = "tcp") -> None:
        self.orch.send(
            RoutedModuleResponse("inventory", request.request_id, error_payload(kind, "no")),
            via=via,
        )


class TypedErrorTests(SynchronousTestCase):
    def test_each_kind_is_its_own_class_at_the_caller(self) -> None:
        r = Requester(self)
        for kind, cls in (
            ("unknown_endpoint", NoHandler),
            ("handler_error", HandlerError),
            ("deadline_exceeded", DeadlineExceeded),
            ("overloaded", Overloaded),
            ("unavailable", Unavailable),
            ("unknown_module", UnknownModule),
            ("target_exited", TargetExited),
        ):
            d = r.state.send_request("inventory", "x", {})
            r.refuse(r.last(), kind)
            error = self.failureResultOf(d, cls).value
            self.assertEqual(error.kind, kind)
            self.assertIsInstance(error, RemoteError)

    def test_no_reply_is_a_timeout_also_a_request_timeout(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {}, timeout=2)
        r.clock.advance(2)
        error = self.failureResultOf(d, Timeout).value
        self.assertIsInstance(error, RequestTimeout)
        self.assertEqual(error.kind, "timeout")


class DeadlineTests(SynchronousTestCase):
    def test_deadline_ms_is_now_plus_timeout(self) -> None:
        r = Requester(self)
        r.clock.advance(1000)
        r.state.send_request("inventory", "x", {}, timeout=2.5).addErrback(lambda f: None)
        properties = r.last().payload.json()["metadata"]["properties"]
        self.assertEqual(properties["deadline_ms"], 1_002_500)

    def test_default_timeout_from_config_and_per_target(self) -> None:
        r = Requester(self, routed_timeout=7)
        r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
        self.assertEqual(r.last().payload.json()["metadata"]["properties"]["deadline_ms"], 7000)
        r.state.configure_target("inventory", timeout=3)
        d = r.state.send_request("inventory", "x", {})
        self.assertEqual(r.last().payload.json()["metadata"]["properties"]["deadline_ms"], 3000)
        r.clock.advance(3)
        self.failureResultOf(d, Timeout)

    def test_cancelling_frees_the_slot(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {})
        self.assertEqual(len(r.messaging.pending), 1)
        self.assertEqual(r.state.channels["tcp"]["in_flight"], 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(r.messaging.pending), 0)
        self.assertEqual(r.state.channels["tcp"]["in_flight"], 0)
        self.assertEqual(r.timers(), [])
        # a reply that comes anyway is ignored, and counts nothing against the target
        r.answer(r.last(), 1)
        self.assertEqual(r.messaging.requests.replies_ignored, 1)
        self.assertEqual(r.state.breakers["inventory"]["consecutive_failures"], 0)

    def test_cancelling_a_queued_request_withdraws_its_frame(self) -> None:
        r = Requester(self, channels=("tcp",))
        r.orch.connection("tcp").drop()
        d = r.state.send_request("inventory", "x", {})
        self.assertEqual(r.module.service.parts.channels.queued, 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(r.module.service.parts.channels.queued, 0)


class Hanging:
    def __init__(self) -> None:
        self.cancelled = 0
        self.calls = 0

    def __call__(self, source: str, payload: Any) -> Deferred[Any]:
        self.calls += 1
        return Deferred(lambda _: setattr(self, "cancelled", self.cancelled + 1))


class CalleeDeadlineTests(SynchronousTestCase):
    def start(self) -> tuple[FakeOrchestrator, Hanging]:
        hanging = Hanging()

        def app(state: Any) -> Klein:
            state.handler("hang")(hanging)
            state.handler("now")(lambda source, payload: {"ok": True})
            return Klein()

        orch = FakeOrchestrator(module_id="inventory", channels=("tcp",))
        self.successResultOf(orch.start(app))
        self.addCleanup(orch.shutdown)
        return orch, hanging

    def ask(self, orch: FakeOrchestrator, endpoint: str, deadline_ms: int | None) -> None:
        payload = routed_request_payload({}, endpoint, "orders", deadline_ms=deadline_ms)
        orch.send(RoutedModuleMessage("orders", _uuid(), payload), via="tcp")

    def replies(self, orch: FakeOrchestrator) -> list[Any]:
        connection = orch.connection("tcp")
        assert connection is not None
        return [
            e.content.payload.json()
            for e in connection.received
            if isinstance(e.content, RoutedModuleReply)
        ]

    def test_expired_work_is_refused_without_running(self) -> None:
        orch, hanging = self.start()
        orch.reactor.advance(10)
        self.ask(orch, "hang", 9_500)
        (reply,) = self.replies(orch)
        self.assertEqual(reply["error"]["kind"], "deadline_exceeded")
        self.assertIn("500 ms after its deadline", reply["error"]["message"])
        self.assertEqual(hanging.calls, 0)

    def test_running_handler_is_cancelled_at_the_deadline(self) -> None:
        orch, hanging = self.start()
        self.ask(orch, "hang", 2_000)  # 2 s, far below the 30 s handler timeout
        self.assertEqual((hanging.calls, self.replies(orch)), (1, []))
        orch.reactor.advance(1.999)
        self.assertEqual(hanging.cancelled, 0)
        orch.reactor.advance(0.001)
        self.assertEqual(hanging.cancelled, 1)
        (reply,) = self.replies(orch)
        self.assertEqual(reply["error"]["kind"], "deadline_exceeded")
        self.assertIn("deadline", reply["error"]["message"])

    def test_in_time_work_runs(self) -> None:
        orch, _ = self.start()
        self.ask(orch, "now", 1_000)
        self.assertEqual(self.replies(orch), [{"ok": True}])

    def test_without_a_deadline_the_handler_timeout_applies(self) -> None:
        orch, hanging = self.start()
        self.ask(orch, "hang", None)
        orch.reactor.advance(29.9)
        self.assertEqual(hanging.cancelled, 0)
        orch.reactor.advance(0.1)
        self.assertEqual(hanging.cancelled, 1)


def _uuid() -> Any:
    import uuid

    return uuid.uuid4()


class SloClockTests(SynchronousTestCase):
    def test_slo_windows_on_their_own_clock(self) -> None:
        """
        A reply is counted in the SLO windows at their own clock's time when it is not
        the requests' clock (the requests' own reading serves only when it is).
        """
        from twisted.internet.task import Clock

        from pywatt_twisted.link import SloMonitor

        r = Requester(self)
        slo_clock = Clock()
        slo_clock.advance(1000)
        r.messaging.requests.slo = slo = SloMonitor(slo_clock)
        d = r.state.send_request("inventory", "get_stock", {})
        r.answer(r.last(), {"in_stock": 1})
        self.successResultOf(d)
        self.assertEqual(slo.snapshot("target", "inventory")["requests"], 1)
        slo.stop()


class BreakerTests(SynchronousTestCase):
    def test_opens_after_five_timeouts_then_fails_fast_without_sending(self) -> None:
        r = Requester(self)
        for _ in range(5):
            d = r.state.send_request("inventory", "x", {}, timeout=1)
            r.clock.advance(1)
            self.failureResultOf(d, Timeout)
        self.assertEqual(r.state.breakers["inventory"]["state"], "open")
        sent = len(r.requests())
        d = r.state.send_request("inventory", "x", {}, timeout=1)
        error = self.failureResultOf(d, CircuitOpen).value
        self.assertEqual(
            (error.kind, error.target, error.retry_after), ("circuit_open", "inventory", 10.0)
        )
        self.assertEqual(len(r.requests()), sent)
        # another target is not affected
        r.state.send_request("billing", "x", {}).addErrback(lambda f: None)
        self.assertEqual(len(r.requests()), sent + 1)

    def test_probe_after_reset_closes_on_success(self) -> None:
        r = Requester(self)
        for _ in range(5):
            d = r.state.send_request("inventory", "x", {})
            r.refuse(r.last(), "target_exited")
            self.failureResultOf(d, TargetExited)
        r.clock.advance(10)
        self.assertEqual(r.state.breakers["inventory"]["state"], "half_open")
        probe = r.state.send_request("inventory", "x", {})
        self.failureResultOf(r.state.send_request("inventory", "x", {}), CircuitOpen)
        r.answer(r.last(), {"ok": 1})
        self.assertEqual(self.successResultOf(probe), {"ok": 1})
        self.assertEqual(r.state.breakers["inventory"]["state"], "closed")

    def test_failed_probe_doubles_the_reset(self) -> None:
        r = Requester(self)
        for _ in range(5):
            r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
            r.refuse(r.last(), "unavailable")
        r.clock.advance(10)
        d = r.state.send_request("inventory", "x", {})
        r.refuse(r.last(), "unavailable")
        self.failureResultOf(d, Unavailable)
        snap = r.state.breakers["inventory"]
        self.assertEqual((snap["state"], snap["reset_delay"]), ("open", 20.0))

    def test_cancelled_probe_frees_the_probe_slot(self) -> None:
        r = Requester(self)
        for _ in range(5):
            r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
            r.refuse(r.last(), "unavailable")
        r.clock.advance(10)
        probe = r.state.send_request("inventory", "x", {})
        probe.cancel()
        self.failureResultOf(probe, CancelledError)
        d = r.state.send_request("inventory", "x", {})
        self.assertNoResult(d)
        r.answer(r.last(), 1)
        self.assertEqual(self.successResultOf(d), 1)

    def test_handler_errors_do_not_open_it(self) -> None:
        r = Requester(self)
        for _ in range(10):
            d = r.state.send_request("inventory", "x", {})
            r.refuse(r.last(), "handler_error")
            self.failureResultOf(d, HandlerError)
        self.assertEqual(r.state.breakers["inventory"]["state"], "closed")

    def test_per_target_policy(self) -> None:
        r = Requester(self)
        r.state.configure_target(
            "inventory", breaker=BreakerPolicy(failures=1, reset=2, max_reset=4)
        )
        d = r.state.send_request("inventory", "x", {})
        r.refuse(r.last(), "unavailable")
        self.failureResultOf(d, Unavailable)
        self.failureResultOf(r.state.send_request("inventory", "x", {}), CircuitOpen)
        r.clock.advance(2)
        self.assertEqual(r.state.breakers["inventory"]["state"], "half_open")

    def test_breaker_settings_from_config(self) -> None:
        r = Requester(self, breaker_failures=2, breaker_reset=3, breaker_max_reset=5)
        for _ in range(2):
            r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
            r.refuse(r.last(), "unavailable")
        self.assertEqual(r.state.breakers["inventory"]["retry_after"], 3.0)

    def test_breaker_in_health_and_metrics(self) -> None:
        r = Requester(self)
        for _ in range(5):
            r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
            r.refuse(r.last(), "unavailable")
        health = r.module.service.health_status()["messaging"]
        self.assertEqual(health["breakers"]["inventory"]["state"], "open")
        families = {f.name: f for f in r.messaging.collect()}
        (sample,) = families["pywatt_circuit_state"].samples
        self.assertEqual((sample.labels, sample.value), ({"target": "inventory"}, 2))


class RetryTests(SynchronousTestCase):
    def test_retry_needs_idempotent(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {}, retry=RetryPolicy())
        self.assertIn("idempotent=True", str(self.failureResultOf(d, ValueError).value))
        self.assertEqual(r.requests(), [])

    def test_retries_unavailable_with_backoff_then_succeeds(self) -> None:
        r = Requester(self)
        r.messaging.requests.random = lambda: 0.0
        policy = RetryPolicy(attempts=3, backoff=0.1, multiplier=2)
        d = r.state.send_request("inventory", "x", {}, timeout=10, retry=policy, idempotent=True)
        r.refuse(r.last(), "unavailable")
        self.assertEqual(len(r.requests()), 1)
        r.clock.advance(0.1)
        self.assertEqual(len(r.requests()), 2)
        r.refuse(r.last(), "unavailable")
        r.clock.advance(0.19)
        self.assertEqual(len(r.requests()), 2)
        r.clock.advance(0.01)
        self.assertEqual(len(r.requests()), 3)
        self.assertNotEqual(r.requests()[0].request_id, r.requests()[2].request_id)
        r.answer(r.last(), "ok")
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(r.messaging.requests.retries, 2)

    def test_timeouts_share_the_deadline_and_never_pass_it(self) -> None:
        r = Requester(self)
        r.messaging.requests.random = lambda: 0.0
        policy = RetryPolicy(attempts=3, backoff=0.5)
        d = r.state.send_request("inventory", "x", {}, timeout=9, retry=policy, idempotent=True)
        ended: list[float] = []
        d.addBoth(lambda result: (ended.append(r.clock.seconds()), result)[1])
        deadlines = []
        sent_at = []
        while not d.called:
            if len(r.requests()) > len(deadlines):
                deadlines.append(r.last().payload.json()["metadata"]["properties"]["deadline_ms"])
                sent_at.append(r.clock.seconds())
            # to the next timer exactly (a timeout or the end of a backoff)
            now = r.clock.seconds()
            r.clock.advance(min(c.getTime() for c in r.clock.getDelayedCalls()) - now)
        self.failureResultOf(d, Timeout)
        self.assertEqual(len(deadlines), 3)
        self.assertEqual(deadlines[0], 3000)  # 9 s shared by 3 attempts
        self.assertTrue(all(ms <= 9000 for ms in deadlines), deadlines)
        self.assertLessEqual(ended[0], 9.0 + 1e-6)

    def test_no_retry_of_other_errors(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {}, retry=RetryPolicy(), idempotent=True)
        r.refuse(r.last(), "handler_error")
        self.failureResultOf(d, HandlerError)
        self.assertEqual(len(r.requests()), 1)

    def test_no_retry_once_the_breaker_opened(self) -> None:
        r = Requester(self)
        r.state.configure_target("inventory", breaker=BreakerPolicy(failures=1))
        d = r.state.send_request("inventory", "x", {}, retry=RetryPolicy(), idempotent=True)
        r.refuse(r.last(), "unavailable")
        self.failureResultOf(d, Unavailable)
        self.assertEqual(len(r.requests()), 1)
        self.assertEqual(r.timers(), [])

    def test_per_target_retry_applies_to_idempotent_requests_only(self) -> None:
        r = Requester(self)
        r.messaging.requests.random = lambda: 0.0
        r.state.configure_target("inventory", retry=RetryPolicy(attempts=2, backoff=0.1))
        d = r.state.send_request("inventory", "x", {})
        r.refuse(r.last(), "unavailable")
        self.failureResultOf(d, Unavailable)
        d = r.state.send_request("inventory", "x", {}, idempotent=True)
        r.refuse(r.last(), "unavailable")
        r.clock.advance(0.1)
        r.answer(r.last(), 5)
        self.assertEqual(self.successResultOf(d), 5)

    def test_retry_after_stop_is_abandoned(self) -> None:
        """
        A retry whose backoff ends after the requester stopped is abandoned (the table
        takes no new request), and counts nothing in flight.
        """
        r = Requester(self)
        r.messaging.requests.random = lambda: 0.0
        policy = RetryPolicy(attempts=3, backoff=0.1)
        d = r.state.send_request("inventory", "x", {}, timeout=10, retry=policy, idempotent=True)
        r.refuse(r.last(), "unavailable")
        r.messaging.requests.stop("stopping")
        self.assertNoResult(d)
        r.clock.advance(0.1)
        self.assertIn("was abandoned: stopping", str(self.failureResultOf(d, NotAvailable).value))
        self.assertEqual(r.state.channels["tcp"]["in_flight"], 0)
        self.assertEqual(len(r.messaging.pending), 0)

    def test_cancel_during_backoff(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {}, retry=RetryPolicy(), idempotent=True)
        r.refuse(r.last(), "unavailable")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        r.clock.advance(10)
        self.assertEqual(len(r.requests()), 1)


class ChannelChoiceTests(SynchronousTestCase):
    def test_configured_preference_is_honoured(self) -> None:
        for preference, used in ((("ipc", "tcp"), "ipc"), (("tcp", "ipc"), "tcp")):
            r = Requester(self, channel_preference=preference)
            r.state.send_request("inventory", "x", {}).addErrback(lambda f: None)
            r.state.send_message("inventory", "y", {})
            self.assertEqual(len(r.requests(used)), 2, preference)

    def test_prefer_per_call_falls_back(self) -> None:
        r = Requester(self, channel_preference=("tcp", "ipc"))
        r.state.send_request("inventory", "x", {}, prefer="ipc").addErrback(lambda f: None)
        self.assertEqual(len(r.requests("ipc")), 1)
        r.orch.connection("ipc").drop()
        r.state.send_request("inventory", "x", {}, prefer="ipc").addErrback(lambda f: None)
        self.assertEqual(len(r.requests("tcp")), 1)

    def test_channel_per_call_waits_for_that_channel(self) -> None:
        r = Requester(self, channel_preference=("tcp", "ipc"))
        r.orch.connection("ipc").drop()
        d = r.state.send_request("inventory", "x", {}, channel="ipc", timeout=5)
        self.assertEqual(r.requests("tcp"), [])
        r.clock.advance(5)
        self.failureResultOf(d, Timeout)

    def test_unknown_channel_name(self) -> None:
        r = Requester(self, channels=("tcp",))
        for kwargs in ({"prefer": "ipc"}, {"channel": "udp"}, {"prefer": "tcp", "channel": "tcp"}):
            d = r.state.send_request("inventory", "x", {}, **kwargs)
            self.failureResultOf(d, ValueError)

    def test_channels_introspection(self) -> None:
        r = Requester(self, channel_preference=("tcp", "ipc"))
        d = r.state.send_request("inventory", "x", {})
        r.clock.advance(0.004)
        r.answer(r.last(), 1)
        self.successResultOf(d)
        view = r.state.channels
        self.assertEqual(sorted(view), ["ipc", "tcp"])
        tcp = view["tcp"]
        self.assertEqual(
            (tcp["state"], tcp["preference"], tcp["in_flight"], tcp["queued"], tcp["reconnects"]),
            ("connected", 1, 0, 0, 0),
        )
        self.assertEqual(tcp["latency"]["p50_ms"], 4.0)
        self.assertEqual(view["ipc"]["preference"], 2)
        with self.assertRaises(TypeError):
            view["x"] = {}  # type: ignore[index]
        health = r.module.service.health_status()["channels"]
        self.assertEqual(health["tcp"]["latency"]["samples"], 1)

    def test_timeouts_count_as_channel_request_errors(self) -> None:
        r = Requester(self)
        d = r.state.send_request("inventory", "x", {}, timeout=1)
        r.clock.advance(1)
        self.failureResultOf(d, Timeout)
        self.assertEqual(r.state.channels["tcp"]["request_errors"], 1)


class AutoRoutingTests(SynchronousTestCase):
    def test_traffic_moves_to_the_channel_that_answers_faster(self) -> None:
        r = Requester(self, channel_preference=("auto", "tcp", "ipc"))
        received = {v: r.orch.connection(v).received for v in ("tcp", "ipc")}  # type: ignore[union-attr]
        seen = {v: len(received[v]) for v in received}
        share_of_ipc = []
        while r.clock.seconds() < 8:
            d = r.state.send_request("inventory", "x", {})
            (via,) = [v for v in seen if len(received[v]) > seen[v]]
            seen[via] = len(received[via])
            request = received[via][-1].content
            # the Unix socket answers in 1 ms, TCP in 10 ms
            r.clock.advance(0.001 if via == "ipc" else 0.010)
            r.answer(request, 1, via=via)
            self.successResultOf(d)
            share_of_ipc.append(r.state.channels["ipc"]["preference"])
        self.assertEqual(share_of_ipc[0], 0.05)  # it starts on tcp, as configured
        self.assertEqual(share_of_ipc[-1], 0.95)
        # gradually: several distinct steps on the way, each a quarter at most
        steps = sorted(set(share_of_ipc))
        self.assertGreater(len(steps), 3)
        self.assertTrue(all(b - a <= 0.25 + 1e-9 for a, b in itertools.pairwise(steps)))
        self.assertLess(r.state.channels["ipc"]["latency"]["ewma_ms"], 2)
