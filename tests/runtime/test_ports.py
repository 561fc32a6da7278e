"""
Tests for port negotiation (L{pywatt_twisted._runtime.ports}): the negotiator on a
clock, and a module started without a C{listen} address.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._runtime.ports import (
    PortNegotiationFailed,
    PortNegotiationTimeout,
    PortNegotiator,
    RetryPolicy,
)
from pywatt_twisted.errors import BootstrapError, NotAvailable, RequestTimeout
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.messages import PortRequest, PortResponse


class NegotiatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[PortRequest] = []
        self.negotiator = PortNegotiator(self.sent.append, self.clock)

    def test_policy_matches_the_rust_sdk(self) -> None:
        policy = RetryPolicy()
        self.assertEqual([policy.wait(i) for i in range(3)], [3, 4, 5])
        self.assertEqual(RetryPolicy(initial=9).wait(5), 10)  # capped
        self.assertEqual(policy.total, 12)

    def test_answered(self) -> None:
        d = self.negotiator.request_port(8080)
        (request,) = self.sent
        self.assertEqual(request.specific_port, 8080)
        self.negotiator.response_received(PortResponse(request.request_id, True, 8080))
        self.assertEqual(self.successResultOf(d), 8080)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.negotiator), 0)

    def test_retries_then_times_out_without_a_fallback(self) -> None:
        d = self.negotiator.request_port()
        self.clock.advance(3)
        self.assertEqual(len(self.sent), 2)
        self.clock.advance(4)
        self.assertEqual(len(self.sent), 3)
        # The same request each time, so a late answer to any attempt counts once.
        self.assertEqual(len({r.request_id for r in self.sent}), 1)
        self.assertNoResult(d)
        self.clock.advance(5)
        failure = self.failureResultOf(d, PortNegotiationTimeout)
        self.assertIsInstance(failure.value, RequestTimeout)
        self.assertIsInstance(failure.value, BootstrapError)
        self.assertIn("listen", str(failure.value))
        self.assertEqual(len(self.sent), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_late_answer_during_a_retry(self) -> None:
        d = self.negotiator.request_port()
        self.clock.advance(3)
        self.negotiator.response_received(PortResponse(self.sent[0].request_id, True, 9001))
        self.assertEqual(self.successResultOf(d), 9001)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_fails_at_once(self) -> None:
        d = self.negotiator.request_port(8080)
        self.negotiator.response_received(
            PortResponse(self.sent[0].request_id, False, 0, "port 8080 in use")
        )
        failure = self.failureResultOf(d, PortNegotiationFailed)
        self.assertIn("port 8080 in use", str(failure.value))
        self.assertEqual(len(self.sent), 1)

    def test_success_with_port_zero_is_a_failure(self) -> None:
        d = self.negotiator.request_port()
        self.negotiator.response_received(PortResponse(self.sent[0].request_id, True, 0))
        self.failureResultOf(d, PortNegotiationFailed)

    def test_correlated_by_request_id(self) -> None:
        first = self.negotiator.request_port()
        second = self.negotiator.request_port()
        self.negotiator.response_received(PortResponse(self.sent[1].request_id, True, 2))
        self.negotiator.response_received(PortResponse(self.sent[0].request_id, True, 1))
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (1, 2))

    def test_wildcard_answers_the_oldest(self) -> None:
        first = self.negotiator.request_port()
        second = self.negotiator.request_port()
        self.negotiator.response_received(PortResponse("auto-assigned", True, 7))
        self.assertEqual(self.successResultOf(first), 7)
        self.assertNoResult(second)

    def test_unknown_and_duplicate_ids_are_ignored(self) -> None:
        events: list[Any] = []
        self.negotiator.log = Logger(observer=events.append)
        d = self.negotiator.request_port()
        response = PortResponse(self.sent[0].request_id, True, 5)
        self.negotiator.response_received(response)
        self.negotiator.response_received(response)
        self.negotiator.response_received(PortResponse("other", True, 6))
        self.assertEqual(self.successResultOf(d), 5)
        self.assertEqual(len(events), 2)

    def test_cancel_and_stop(self) -> None:
        d = self.negotiator.request_port()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        waiting = self.negotiator.request_port()
        self.negotiator.stop()
        self.failureResultOf(waiting, NotAvailable)
        self.failureResultOf(self.negotiator.request_port(), NotAvailable)

    def test_bad_port(self) -> None:
        self.failureResultOf(self.negotiator.request_port(70000), ValueError)


def app(state: Any) -> Klein:
    return Klein()


class ModuleWithoutListenTests(SynchronousTestCase):
    def test_binds_the_negotiated_port_and_announces_it(self) -> None:
        orch = FakeOrchestrator(listen=None)
        started = orch.start(app)
        (request,) = [m for m in orch.sent if isinstance(m, PortRequest)]
        self.assertIsNone(request.specific_port)
        self.assertNoResult(started)
        orch.send(PortResponse(request.request_id, True, 8123))
        self.successResultOf(started)
        (server,) = orch.listen_reactor.tcpServers
        self.assertEqual((server[0], server[3]), (8123, "127.0.0.1"))
        # (a memory reactor reports its ports on 0.0.0.0)
        self.assertTrue(orch.announcement.listen.endswith(":8123"), orch.announcement)

    def test_no_answer_fails_the_start_and_binds_nothing(self) -> None:
        orch = FakeOrchestrator(listen=None)
        started = orch.start(app)
        for seconds in (3, 4, 5):
            orch.reactor.advance(seconds)
        self.failureResultOf(started, PortNegotiationTimeout)
        self.assertEqual(orch.listen_reactor.tcpServers, [])
        self.assertIsNone(orch.announcement)
        self.assertEqual(orch.exit_codes, [1])
        self.assertEqual(len([m for m in orch.sent if isinstance(m, PortRequest)]), 3)

    def test_refusal_fails_the_start(self) -> None:
        orch = FakeOrchestrator(listen=None)
        started = orch.start(app)
        (request,) = [m for m in orch.sent if isinstance(m, PortRequest)]
        orch.send(PortResponse(request.request_id, False, 0, "no ports left"))
        failure = self.failureResultOf(started, PortNegotiationFailed)
        self.assertIn("no ports left", str(failure.value))

    def test_listen_given_sends_no_port_request(self) -> None:
        orch = FakeOrchestrator()
        self.successResultOf(orch.start(app))
        self.assertEqual([m for m in orch.sent if isinstance(m, PortRequest)], [])

    def test_state_request_port(self) -> None:
        orch = FakeOrchestrator()
        module = self.successResultOf(orch.start(app))
        d = module.state.request_port(9300)
        (request,) = [m for m in orch.sent if isinstance(m, PortRequest)]
        self.assertEqual(request.specific_port, 9300)
        orch.send(PortResponse(request.request_id, True, 9300))
        self.assertEqual(self.successResultOf(d), 9300)
