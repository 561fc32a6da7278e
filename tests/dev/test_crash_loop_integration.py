"""
Integration test: a module that can never start, under a real C{pywatt dev}.
"""

from __future__ import annotations

import json

import treq
from twisted.trial.unittest import TestCase

from tests.dev.process import start_dev, stop_dev

WINDOW = 100
"""
The crash window given to C{pywatt dev} and the longest wait for the crash: well within
the test's timeout, and independent of how fast the machine starts processes.
"""


class CrashLoopIntegrationTests(TestCase):
    timeout = 120

    async def test_crashed_module_waits_for_ctrl_c(self) -> None:
        """
        A module whose start fails: the console shows its error once as one critical
        line (no traceback, no C{ReactorNotRunning}), then "same error as before", then
        "crashed" with the error and the hint; the status JSON says C{crashed}; Ctrl-C
        exits 0.
        """
        # The window and the wait are wide: three Python starts and the restart delays
        # (1 + 2 s) took more than the default 30 s on a loaded two-core machine, so the
        # loop was never detected within the window, nor the line seen within the wait.
        proto, base = await start_dev(
            self,
            "--module=bad=tests.runtime.modules:failing_start",
            "--crash-limit=3",
            f"--crash-window={WINDOW}",
        )
        await proto.wait_for(rf"bad crashed: it failed 3 times within {WINDOW} s", timeout=WINDOW)
        await proto.wait_for(r"hint: fix the error")
        response = await treq.get(f"{base}/_pywatt/modules", persistent=False)
        (info,) = json.loads(await response.content())
        self.assertEqual(info["status"], "crashed")
        self.assertEqual(
            info["error"], "module start-up failed: RuntimeError: database host not configured"
        )
        response = await treq.get(f"{base}/bad/anything", persistent=False)
        self.assertEqual(response.code, 503)
        self.assertIn(b"is crashed: module start-up failed", await response.content())
        await stop_dev(proto)
        self.assertEqual(proto.exit_code, 0)
        output = proto.output
        self.assertEqual(
            output.count(
                "[bad] CRITICAL module start-up failed: RuntimeError: database host not configured"
            ),
            1,
        )
        self.assertIn("[bad] ERROR same error as before, x2", output)
        self.assertIn("[bad] ERROR same error as before, x3", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("ReactorNotRunning", output)
        self.assertEqual(output.count("started bad"), 3)

    async def test_debug_shows_the_traceback_once(self) -> None:
        """
        With C{--debug} the traceback of the failed start is shown, once.
        """
        proto, _ = await start_dev(
            self,
            "--module=bad=tests.runtime.modules:failing_start",
            "--crash-limit=2",
            f"--crash-window={WINDOW}",
            "--debug",
        )
        await proto.wait_for(r"bad crashed", timeout=WINDOW)
        await stop_dev(proto)
        self.assertEqual(proto.exit_code, 0)
        self.assertEqual(proto.output.count("Traceback (most recent call last)"), 1)
        self.assertIn("[bad] DEBUG module start-up failure details", proto.output)
