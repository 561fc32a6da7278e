"""
Run C{pywatt dev} as a real process in tests and read its console.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.integration.process import PROJECT_ROOT, child_environment


class DevProcess(ProcessProtocol):
    """
    A running C{pywatt dev}; C{output} is its console text.
    """

    def __init__(self) -> None:
        self.output = ""
        self.ended: Deferred[int | None] = Deferred()
        self.exit_code: int | None = None
        self._waiters: list[tuple[re.Pattern[str], int, Deferred[re.Match[str]]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        for entry in list(self._waiters):
            pattern, start, d = entry
            match = pattern.search(self.output, start)
            if match:
                self._waiters.remove(entry)
                d.callback(match)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if reason.check(ProcessDone):
            self.exit_code = 0
        elif reason.check(ProcessTerminated):
            self.exit_code = reason.value.exitCode
        for _, _, d in self._waiters:
            d.errback(AssertionError(f"pywatt dev ended; output:\n{self.output[-5000:]}"))
        self._waiters = []
        self.ended.callback(self.exit_code)

    def wait_for(self, regex: str, after: int = 0, timeout: float = 30) -> Deferred[re.Match[str]]:
        pattern = re.compile(regex)
        match = pattern.search(self.output, after)
        d: Deferred[re.Match[str]] = Deferred()
        if match:
            d.callback(match)
            return d
        self._waiters.append((pattern, after, d))

        def expire() -> None:
            for entry in list(self._waiters):
                if entry[2] is d:
                    self._waiters.remove(entry)
                    d.errback(
                        AssertionError(f"no {regex!r} within {timeout} s:\n{self.output[-5000:]}")
                    )

        timer = reactor.callLater(timeout, expire)
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def start_dev(
    case: Any, *args: str, cwd: str = PROJECT_ROOT, env: dict[str, str] | None = None
) -> tuple[DevProcess, str]:
    """
    Start C{pywatt dev ARGS --port=0} (with short heartbeat and stop timings) from the
    project root (or C{cwd}), stopped with Ctrl-C at C{case}'s cleanup; fires with the process and
    its front URL. C{env}: more environment variables for it (and so its modules).
    """
    proto = DevProcess()
    argv = [
        sys.executable,
        "-m",
        "pywatt_twisted._cli",
        "dev",
        *args,
        "--port=0",
        "--heartbeat-interval=0.5",
        "--heartbeat-timeout=5",
        "--stop-deadline=5",
    ]
    environment = child_environment(PYTHONUNBUFFERED="1", **(env or {}))
    reactor.spawnProcess(proto, argv[0], argv, env=environment, path=cwd)
    case.addCleanup(stop_dev, proto)
    match = await proto.wait_for(r"front port: (http://127\.0\.0\.1:\d+)/")
    return proto, match.group(1)


async def stop_dev(proto: DevProcess) -> None:
    """
    Ctrl-C the process (if it still runs) and wait for it to end.
    """
    if proto.exit_code is None:
        proto.transport.signalProcess("INT")
        await proto.ended
