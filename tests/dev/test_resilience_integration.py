"""
Integration test (issue 17): two real module processes (C{caller} and C{callee} of
L{tests.dev.resilience_modules}) under a real C{pywatt dev}. Hanging the callee (SIGSTOP) opens the
caller's circuit breaker, after which requests fail fast; once the callee runs again
they recover within the breaker's reset timeout. The caller's module-to-module traffic
goes over its preferred channel (the Unix socket by default), counted by the dev
orchestrator.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.dev.process import DevProcess, start_dev

#: the caller's breaker waits this long before a probe (PYWATT_BREAKER_RESET)
RESET = 2.0


class ResilienceIntegrationTests(TestCase):
    timeout = 120

    async def start(self) -> tuple[DevProcess, str]:
        proto, base = await start_dev(
            self,
            "--module=callee=tests.dev.resilience_modules:callee",
            "--module=caller=tests.dev.resilience_modules:caller",
            env={"PYWATT_BREAKER_RESET": str(RESET), "PYWATT_BREAKER_FAILURES": "3"},
        )
        for module_id in ("callee", "caller"):
            await proto.wait_for(rf"{module_id} announced")
        return proto, base

    async def call(self, url: str) -> tuple[int, object, float]:
        started = time.monotonic()
        response = await treq.get(url, persistent=False)
        body = await response.content()
        return response.code, json.loads(body) if body else None, time.monotonic() - started

    async def modules(self, base: str) -> dict[str, dict[str, object]]:
        response = await treq.get(f"{base}/_pywatt/modules", persistent=False)
        listing = json.loads(await response.content())
        return {m["module_id"]: m for m in listing}

    async def test_hung_callee_fails_fast_then_recovers(self) -> None:
        proto, base = await self.start()
        code, body, _ = await self.call(f"{base}/caller/call")
        self.assertEqual((code, body["reply"]), (200, {"n": 1}))

        (pid,) = [int(p) for p in re.findall(r"started callee \(.*?\) pid (\d+)", proto.output)]
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(_continue, pid)
        try:
            # Three requests time out (the breaker's threshold here) ...
            for _ in range(3):
                code, body, _ = await self.call(f"{base}/caller/call?timeout=0.3")
                self.assertEqual(body["error"], "timeout")
                self.assertGreaterEqual(body["elapsed"], 0.3)
            # ... and from then on the requests fail at once (the time the caller waited
            # for send_request, measured in the caller), nothing sent to the callee.
            for _ in range(5):
                code, body, _ = await self.call(f"{base}/caller/call?timeout=0.3")
                self.assertEqual(body["error"], "circuit_open")
                self.assertLess(body["elapsed"], 0.05)
        finally:
            os.kill(pid, signal.SIGCONT)
        back = time.monotonic()

        # Once the reset timeout has passed, a probe goes through and closes the breaker.
        while True:
            code, body, _ = await self.call(f"{base}/caller/call?timeout=1")
            if "reply" in body:
                break
            self.assertEqual(body["error"], "circuit_open")
            self.assertLess(time.monotonic() - back, RESET + 1.0)
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(body["reply"], {"n": 1})
        self.assertLessEqual(time.monotonic() - back, RESET + 1.0)
        code, body, _ = await self.call(f"{base}/caller/call")
        self.assertEqual(body["reply"], {"n": 1})

    async def test_unix_socket_preferred_traffic_goes_on_the_unix_socket(self) -> None:
        _, base = await self.start()
        before = (await self.modules(base))["caller"]["routed_in"]
        for _ in range(10):
            _, body, _ = await self.call(f"{base}/caller/call")
            self.assertEqual(body["reply"], {"n": 1})
        modules = await self.modules(base)
        after = modules["caller"]["routed_in"]
        self.assertEqual(after["ipc"] - before["ipc"], 10)
        self.assertEqual(after["tcp"] - before["tcp"], 0)
        self.assertEqual(modules["caller"]["channel_preference"], ["ipc", "tcp"])
        # the callee's replies go back on the channel the request came in on
        self.assertEqual(modules["callee"]["routed_in"]["tcp"], 0)
        self.assertGreaterEqual(modules["callee"]["routed_in"]["ipc"], 10)


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
