"""
Run a module as a real process and talk to it exactly as an orchestrator would: write
lines to its stdin, read protocol lines from its stdout, collect its stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def twistd_command(module: str, *extra: str) -> list[str]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [twistd, "-n", "pywatt", f"--module={module}", *extra]


def python_m_command(module: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pywatt_twisted", f"--module={module}", *extra]


def child_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATT_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + path if path else "")
    env.update(extra)
    return env


class ModuleProcess(ProcessProtocol):
    """
    A module child process. C{lines} holds every stdout line parsed as JSON (a line that
    is not JSON is kept as C{{"__not_json__": text}} so tests can see it).
    """

    def __init__(self) -> None:
        self.stdout = b""
        self.stderr = b""
        self.lines: list[Any] = []
        self._waiters: list[tuple[Callable[[Any], bool], Deferred[Any]]] = []
        self.ended: Deferred[int] = Deferred()
        self.exit_code: int | None = None
        self.exit_signal: int | None = None

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
        stderr_fd: int | None = None,
    ) -> ModuleProcess:
        """
        @param stderr_fd: a descriptor of this process to give the child as its stderr
            (then L{stderr} stays empty); a pipe read here when C{None}.
        """
        proto = cls()
        reactor.spawnProcess(
            proto,
            argv[0],
            list(argv),
            env=env if env is not None else child_environment(),
            path=path,
            childFDs={0: "w", 1: "r", 2: "r" if stderr_fd is None else stderr_fd},
        )
        return proto

    # -- orchestrator side -----------------------------------------------------------------

    def send(self, obj: Any) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.transport.write(data)

    def close_stdin(self) -> None:
        self.transport.closeStdin()

    def signal(self, name: str) -> None:
        self.transport.signalProcess(name)

    def expect(self, predicate: Callable[[Any], bool], timeout: float = 20) -> Deferred[Any]:
        """
        The first stdout line (already received or to come) matching C{predicate}.
        """
        for line in self.lines:
            if predicate(line):
                return Deferred.fromCoroutine(_value(line))
        d: Deferred[Any] = Deferred()
        self._waiters.append((predicate, d))
        timer = reactor.callLater(timeout, self._expire, predicate, d, timeout)
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def expect_op(self, op: str, timeout: float = 20) -> Deferred[Any]:
        return self.expect(lambda x: isinstance(x, dict) and x.get("op") == op, timeout)

    def expect_http(self, request_id: str, timeout: float = 20) -> Deferred[Any]:
        return self.expect(
            lambda x: (
                isinstance(x, dict)
                and isinstance(x.get("content"), dict)
                and x["content"].get("request_id") == request_id
            ),
            timeout,
        )

    def _expire(self, predicate: Any, d: Deferred[Any], timeout: float) -> None:
        if (predicate, d) in self._waiters:
            self._waiters.remove((predicate, d))
            d.errback(
                AssertionError(
                    f"no matching stdout line within {timeout} s; stdout={self.stdout[-2000:]!r} "
                    f"stderr={self.stderr[-4000:]!r}"
                )
            )

    def stderr_records(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.stderr.splitlines() if x.strip()]

    # -- ProcessProtocol ----------------------------------------------------------------------

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self._parse()

    _parsed_upto = 0

    def _parse(self) -> None:
        while True:
            end = self.stdout.find(b"\n", self._parsed_upto)
            if end < 0:
                return
            raw = self.stdout[self._parsed_upto : end]
            self._parsed_upto = end + 1
            try:
                line: Any = json.loads(raw)
            except ValueError:
                line = {"__not_json__": raw.decode("utf-8", "replace")}
            self.lines.append(line)
            for predicate, d in list(self._waiters):
                if predicate(line):
                    self._waiters.remove((predicate, d))
                    d.callback(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        if reason.check(ProcessDone):
            self.exit_code = 0
        elif reason.check(ProcessTerminated):
            self.exit_code = reason.value.exitCode
            self.exit_signal = reason.value.signal
        for _, d in self._waiters:
            d.errback(
                AssertionError(
                    f"process ended (code {self.exit_code}, signal {self.exit_signal}) "
                    f"before a matching line; stderr={self.stderr[-4000:]!r}"
                )
            )
        self._waiters = []
        self.ended.callback(self.exit_code)


async def _value(v: Any) -> Any:
    return v


def init_blob(
    module_id: str = "itest", listen: str = "127.0.0.1:0", **extra: Any
) -> dict[str, Any]:
    blob = {
        "orchestrator_api": "http://127.0.0.1:9900",
        "module_id": module_id,
        "env": {},
        "listen": listen,
        "security_level": "None",
    }
    blob.update(extra)
    return blob
