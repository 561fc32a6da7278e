"""
L{HealthChecks}: results, timeouts, caching and the overall status, on a L{Clock};
the C{/health} resource answering a report that arrives through a Deferred.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web._health import DEGRADED, FAILING, OK, UNKNOWN, HealthChecks
from pywatt_twisted.web.site import PyWattSite, build_root_resource
from tests.web._apps import direct_exchange, parse_response


class Calls:
    """
    A check whose outcome the test sets, counting its calls.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.pending: Deferred[None] | None = None
        self.hang = False

    def __call__(self) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.hang:
            self.pending = Deferred()
            return self.pending
        return None


class HealthChecksTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.checks = HealthChecks(self.clock, timeout=2.0, cache_for=5.0)

    def test_no_checks_is_ok(self) -> None:
        self.assertEqual(self.successResultOf(self.checks.refresh()), None)
        self.assertEqual((self.checks.status(), self.checks.entries()), (OK, []))

    def test_optional_failure_is_degraded_required_is_failing(self) -> None:
        optional, required = Calls(), Calls()
        self.checks.add("cache", optional)
        self.checks.add("db", required, required=True)
        self.checks.refresh()
        self.assertEqual(self.checks.status(), OK)
        optional.error = RuntimeError("connection refused")
        self.clock.advance(5)
        self.checks.refresh()
        self.assertEqual(self.checks.status(), DEGRADED)
        [cache, db] = self.checks.entries()
        self.assertEqual(
            (cache["name"], cache["status"], cache["required"], cache["last_error"]),
            ("cache", FAILING, False, "RuntimeError: connection refused"),
        )
        self.assertEqual(db["status"], OK)
        required.error = ValueError("gone")
        self.clock.advance(5)
        self.checks.refresh()
        self.assertEqual(self.checks.status(), FAILING)

    def test_deferred_and_coroutine_checks(self) -> None:
        async def coro() -> None:
            raise KeyError("x")

        self.checks.add("d", lambda: succeed("anything"))
        self.checks.add("c", coro)
        self.checks.refresh()
        self.assertEqual([e["status"] for e in self.checks.entries()], [OK, FAILING])
        self.assertEqual(self.checks.entries()[1]["last_error"], "KeyError: 'x'")

    def test_timeout_fails_the_check_and_cancels_it(self) -> None:
        hang = Calls()
        hang.hang = True
        self.checks.add("slow", hang, required=True)
        done = self.checks.refresh()
        self.assertNoResult(done)
        self.assertEqual(self.checks.entries()[0]["status"], UNKNOWN)
        self.clock.advance(1.9)
        self.assertNoResult(done)
        self.clock.advance(0.1)
        self.successResultOf(done)
        [entry] = self.checks.entries()
        self.assertEqual(entry["status"], FAILING)
        self.assertEqual(entry["latency_ms"], 2000.0)
        self.assertIn("no answer within 2 s", entry["last_error"])
        # the hung call was cancelled, not left to pile up
        assert hang.pending is not None
        self.assertTrue(hang.pending.called)

    def test_results_are_cached(self) -> None:
        check = Calls()
        self.checks.add("c", check)
        for _ in range(10):
            self.checks.refresh()
        self.assertEqual(check.calls, 1)
        self.clock.advance(4.9)
        self.checks.refresh()
        self.assertEqual(check.calls, 1)
        self.clock.advance(0.1)
        self.checks.refresh()
        self.assertEqual(check.calls, 2)

    def test_a_running_check_is_not_started_again(self) -> None:
        check = Calls()
        check.hang = True
        self.checks.add("c", check)
        first, second = self.checks.refresh(), self.checks.refresh()
        self.assertEqual(check.calls, 1)
        assert check.pending is not None
        check.pending.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.checks.status(), OK)

    def test_recovers(self) -> None:
        check = Calls()
        check.error = OSError("down")
        self.checks.add("c", check)
        self.checks.refresh()
        self.assertEqual(self.checks.status(), DEGRADED)
        check.error = None
        self.clock.advance(5)
        self.checks.refresh()
        self.assertEqual(self.checks.status(), OK)
        # the last error stays visible after the recovery
        self.assertEqual(self.checks.entries()[0]["last_error"], "OSError: down")

    def test_bad_registrations(self) -> None:
        self.checks.add("c", Calls())
        with self.assertRaises(ConfigurationError) as e:
            self.checks.add("c", Calls())
        self.assertIn("already a health check named 'c'", str(e.exception))
        self.assertRaises(ConfigurationError, self.checks.add, "", Calls())
        self.assertRaises(ConfigurationError, self.checks.add, "x", "not callable")
        self.assertEqual(self.checks.free_name("c"), "c#2")
        self.assertRaises(ValueError, HealthChecks, self.clock, timeout=0)


class AsyncHealthResourceTests(SynchronousTestCase):
    def test_report_through_a_deferred(self) -> None:
        pending: Deferred[dict[str, object]] = Deferred()
        site = PyWattSite(
            build_root_resource(
                Resource(), health_path="/health", metrics=None, status=lambda: pending
            ),
            reactor=Clock(),
        )
        raw = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        transport, _ = direct_exchange(site, raw)
        self.assertEqual(transport.value(), b"")
        pending.callback({"status": "failing", "checks": []})
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, json.loads(body)["status"]), (503, "failing"))
