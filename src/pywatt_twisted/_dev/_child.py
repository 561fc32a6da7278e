# -*- test-case-name: tests.dev.test_supervisor_requests, tests.dev.test_crash_loop -*-
"""
The module process as C{pywatt dev} spawns it: the command a real orchestrator would
run (L{module_command}) and the L{ProcessProtocol} that splits its stdout into protocol
lines and its stderr into log lines for its L{ModuleSupervisor
<pywatt_twisted._dev.supervisor.ModuleSupervisor>}.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from pywatt_twisted.errors import LineTooLong
from pywatt_twisted.wire.codec import encode_line
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH
from pywatt_twisted.wire.lines import LineDecoder

if TYPE_CHECKING:
    from pywatt_twisted._dev.supervisor import ModuleSupervisor


def free_port(host: str = "127.0.0.1") -> int:
    """
    A TCP port that is free right now on C{host}.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def module_command(module: str) -> list[str]:
    """
    The command a real orchestrator would run: C{twistd -n pywatt --module=...}, with the
    twistd of this Python environment.
    """
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [twistd, "-n", "pywatt", f"--module={module}"]


class _ChildProtocol(ProcessProtocol):
    def __init__(self, supervisor: ModuleSupervisor) -> None:
        self.supervisor = supervisor
        # (a module's runtime stdout lines may be as long as a frame)
        self._out = LineDecoder(DEFAULT_MAX_FRAME_LENGTH)
        self._err = b""
        self.ended: Deferred[int | None] = Deferred()

    def connectionMade(self) -> None:
        self.supervisor._child_started(self)

    def outReceived(self, data: bytes) -> None:
        for line in self._out.feed(data):
            if isinstance(line, LineTooLong):
                self.supervisor.console.say(self.supervisor.module_id, str(line), "warn")
                continue
            self.supervisor._line_from_module(line)

    def errReceived(self, data: bytes) -> None:
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            self.supervisor._module_log(self, line)

    def processEnded(self, reason: Failure) -> None:
        if self._err:
            self.supervisor._module_log(self, self._err)
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.supervisor._child_ended(self, code, signal)
        self.ended.callback(code)

    def send(self, message: Any) -> None:
        if self.transport is not None:
            self.transport.write(encode_line(message))
