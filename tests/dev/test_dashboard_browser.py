"""
The C{pywatt dev} dashboard in a real headless browser: Chromium from the system
packages, driven by Playwright (C{executable_path=} the system browser; Playwright's own
browser download is not used). The page loads without console errors, shows the running
module, its requests and log lines, and updates by itself when the module restarts; a
screenshot is saved (its path is printed).

Without Chromium or Playwright the test is skipped with the reason; under
C{PYWATT_REQUIRE_SERVICES=1} (CI: C{.ci/run} installs the C{chromium} package) it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.process import PROJECT_ROOT, child_environment
from tests.services import services_required

#: where to look for the browser (PYWATT_CHROMIUM overrides)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> tuple[Any, str]:
    """
    Playwright's sync API and the system Chromium; skip (or fail under
    PYWATT_REQUIRE_SERVICES=1) when either is missing.
    """
    problem = None
    executable = os.environ.get("PYWATT_CHROMIUM") or next(
        (found for name in BROWSERS if (found := shutil.which(name))), None
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        problem = f"playwright is not installed ({e}); pip install playwright"
    else:
        if executable is None:
            problem = (
                "no Chromium found (looked for " + ", ".join(BROWSERS) + " on PATH and "
                "PYWATT_CHROMIUM); install the Debian package: apt-get install chromium"
            )
    if problem is not None:
        if services_required():
            raise AssertionError(f"PYWATT_REQUIRE_SERVICES=1 but {problem}")
        raise SkipTest(problem)
    assert executable is not None
    return sync_playwright, executable


class DevConsole:
    """
    C{pywatt dev} in a subprocess; its console goes to a file that L{wait_for} reads.
    """

    def __init__(self, *args: str) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="pwdash-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pywatt_twisted._cli", "dev", *args, "--port=0"],
            cwd=PROJECT_ROOT,
            env=child_environment(PYTHONUNBUFFERED="1"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_for(self, regex: str, after: int = 0, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(regex).search(self.output, after)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {regex!r} within {timeout} s:\n{self.output[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        os.unlink(self.log_path)


class DashboardBrowserTests(SynchronousTestCase):
    def test_dashboard_in_chromium(self) -> None:
        sync_playwright, executable = browser()
        workdir = tempfile.mkdtemp(prefix="pwdash-")
        self.addCleanup(shutil.rmtree, workdir, True)
        secrets = os.path.join(workdir, "secrets.json")
        with open(secrets, "w") as f:
            json.dump({"API_KEY": "dash-key-1"}, f)
        dev = DevConsole("--module=examples.counter.module", f"--secrets-file={secrets}")
        self.addCleanup(dev.stop)
        base = dev.wait_for(r"front port: (http://127\.0\.0\.1:\d+)/").group(1)
        dev.wait_for(r"counter announced")
        for _ in range(3):
            with urllib.request.urlopen(f"{base}/counter/count", timeout=10) as response:
                self.assertEqual(response.status, 200)

        problems: list[str] = []
        screenshot = os.path.abspath("dashboard.png")
        with sync_playwright() as p:
            chromium = p.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            try:
                page = chromium.new_page(viewport={"width": 1300, "height": 1000})
                page.on(
                    "console",
                    lambda m: (
                        problems.append(f"console {m.type}: {m.text}")
                        if m.type in ("error", "warning")
                        else None
                    ),
                )
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on(
                    "requestfailed",
                    lambda r: (
                        problems.append(f"request failed: {r.url}")
                        if not r.url.endswith("/_pywatt/events")
                        else None
                    ),
                )
                page.goto(f"{base}/_pywatt/", wait_until="load")
                row = page.locator('#modules tr[data-module="counter"]')
                row.wait_for(timeout=15000)
                page.wait_for_selector('#modules tr[data-module="counter"][data-status="running"]')
                pid = int(row.locator("td.pid").inner_text())
                self.assertEqual(row.locator("td.restarts").inner_text(), "0")
                self.assertEqual(page.locator("#connection").inner_text(), "live")
                # The requests made before the page opened, and one made now (live).
                page.wait_for_function(
                    "document.querySelectorAll('#requests tbody tr').length >= 3"
                )
                with urllib.request.urlopen(f"{base}/counter/hello/dash", timeout=10):
                    pass
                page.wait_for_selector(
                    '#requests tbody tr:first-child >> text="/counter/hello/dash"'
                )
                self.assertIn("200", page.locator("#requests tbody tr").first.inner_text())
                # The module's log lines.
                page.wait_for_function("document.querySelectorAll('#log li').length > 0")

                # The module dies: the page shows the restart by itself.
                os.kill(pid, signal.SIGKILL)
                page.wait_for_selector(
                    '#modules tr[data-module="counter"] td.restarts >> text="1"', timeout=20000
                )
                page.wait_for_selector(
                    '#modules tr[data-module="counter"][data-status="running"]', timeout=20000
                )
                new_pid = int(row.locator("td.pid").inner_text())
                self.assertNotEqual(new_pid, pid)
                self.assertIn("signal 9", row.inner_text())
                page.locator('nav button[data-source="pywatt-dev"]').click()
                page.wait_for_selector('#log li:has-text("counter exited (signal 9)")')
            finally:
                # Also when something above failed: the picture shows what the page had.
                if "page" in locals():
                    page.screenshot(path=screenshot, full_page=True)
                    print(f"\ndashboard screenshot: {screenshot}")
                chromium.close()
        self.assertTrue(os.path.getsize(screenshot) > 1000)
        self.assertEqual(problems, [])
        self.assertNotIn("dash-key-1", dev.output)
