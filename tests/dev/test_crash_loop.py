"""
A module that can never start, under C{pywatt dev}: after C{crash_limit} quick failures
it is marked crashed (console and status JSON) instead of being restarted forever, and a
repeated error is shown once, then collapsed to one line.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted._dev.front import FrontResource
from pywatt_twisted._dev.supervisor import CRASHED, RESTARTING, Console, ModuleSupervisor
from pywatt_twisted.orchestrator import MemorySecretProvider

ERROR = json.dumps(
    {
        "level": "critical",
        "message": "module start-up failed: RuntimeError: database host not configured",
        "traceback": 'Traceback (most recent call last):\n  File "m.py", line 5\nRuntimeError',
    }
).encode()


class _ProcessTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written: list[bytes] = []
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


class ProcessClock(Clock):
    """
    A clock that "spawns" processes: each C{spawnProcess} connects the protocol to a
    stand-in transport; the test ends the process when it likes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[Any] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any, **kwargs: Any) -> Any:
        transport = _ProcessTransport(1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append(protocol)
        return transport


def supervisor(**options: Any) -> tuple[ModuleSupervisor, ProcessClock, list[str]]:
    clock = ProcessClock()
    lines: list[str] = []
    sup = ModuleSupervisor(
        "badmod",
        "badmod",
        reactor=clock,
        secrets=MemorySecretProvider(),
        console=Console(lambda text: lines.append(text.rstrip("\n"))),
        **options,
    )
    return sup, clock, lines


def fail_once(sup: ModuleSupervisor, clock: ProcessClock, stderr: bytes = ERROR) -> None:
    """
    The current child logs C{stderr}, exits with status 1 after 0.2 s, and the restart
    delay passes.
    """
    child = clock.spawned[-1]
    child.errReceived(stderr + b"\n")
    clock.advance(0.2)
    child.processEnded(Failure(ProcessTerminated(exitCode=1)))
    if sup.status == RESTARTING:
        clock.advance(sup._restart_call.getTime() - clock.seconds())


class CrashLoopTests(SynchronousTestCase):
    def test_crashed_after_limit_and_not_restarted(self) -> None:
        """
        Five failures within 30 s: the module is C{crashed}, the console says so once
        with the error and the hint, and nothing is spawned any more.
        """
        sup, clock, lines = supervisor()
        sup.start()
        for _ in range(5):
            fail_once(sup, clock)
        self.assertEqual(sup.status, CRASHED)
        self.assertEqual(len(clock.spawned), 5)
        clock.advance(3600)
        self.assertEqual(len(clock.spawned), 5)
        text = "\n".join(lines)
        self.assertIn(
            "[pywatt-dev] ERROR badmod crashed: it failed 5 times within 30 s, "
            "so it is not restarted.",
            lines,
        )
        self.assertIn(
            "[pywatt-dev] ERROR error: module start-up failed: RuntimeError: database host "
            "not configured",
            lines,
        )
        self.assertIn("hint: fix the error, then restart pywatt dev (Ctrl-C stops it)", text)
        self.assertIn("--crash-limit=5 --crash-window=30", text)
        self.assertEqual(text.count("crashed:"), 1)

    def test_repeated_traceback_is_collapsed(self) -> None:
        """
        The first failure shows the error and its traceback; the same error again is one
        line, C{same error as before, xN}.
        """
        sup, clock, lines = supervisor()
        sup.start()
        for _ in range(4):
            fail_once(sup, clock)
        text = "\n".join(lines)
        self.assertEqual(text.count("Traceback (most recent call last)"), 1)
        self.assertEqual(text.count("database host not configured"), 1)
        self.assertEqual(
            [line for line in lines if "same error" in line],
            [f"[badmod] ERROR same error as before, x{n}" for n in (2, 3, 4)],
        )

    def test_a_different_error_is_shown(self) -> None:
        sup, clock, lines = supervisor()
        sup.start()
        fail_once(sup, clock)
        other = json.dumps({"level": "critical", "message": "another problem"}).encode()
        fail_once(sup, clock, other)
        self.assertIn("[badmod] CRITICAL another problem", lines)
        self.assertFalse([line for line in lines if "same error" in line])

    def test_slow_failures_are_not_a_crash_loop(self) -> None:
        """
        Failures further apart than the window keep being restarted.
        """
        sup, clock, _ = supervisor(crash_limit=2, crash_window=10)
        sup.start()
        for _ in range(4):
            clock.advance(11)
            fail_once(sup, clock)
        self.assertEqual(sup.status, RESTARTING)
        self.assertEqual(len(clock.spawned), 5)

    def test_status_json_shows_crashed_and_the_error(self) -> None:
        """
        C{/_pywatt/modules} shows C{"status": "crashed"} and the error.
        """
        sup, clock, _ = supervisor(crash_limit=2)
        sup.start()
        fail_once(sup, clock)
        fail_once(sup, clock)
        from twisted.web.test.requesthelper import DummyRequest

        front = FrontResource(lambda: {"badmod": sup})
        request = DummyRequest([b"_pywatt", b"modules"])
        request.uri = b"/_pywatt/modules"
        request.path = b"/_pywatt/modules"
        body = front.render(request)
        if not isinstance(body, bytes):
            body = b"".join(request.written)
        (info,) = json.loads(body)
        self.assertEqual(info["status"], "crashed")
        self.assertEqual(
            info["error"], "module start-up failed: RuntimeError: database host not configured"
        )

    def test_stop_when_crashed(self) -> None:
        """
        Ctrl-C on a crashed module: it is stopped at once.
        """
        sup, clock, _ = supervisor(crash_limit=1)
        sup.start()
        fail_once(sup, clock)
        self.assertEqual(sup.status, CRASHED)
        d = sup.stop()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(sup.status, "stopped")
