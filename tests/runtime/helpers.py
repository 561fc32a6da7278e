"""
Drive a L{ModuleService} in memory: a L{StringTransport} for stdio and a
L{MemoryReactorClock}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport

from pywatt_twisted._runtime.config import RuntimeConfig
from pywatt_twisted._runtime.redaction import Redactor
from pywatt_twisted._runtime.service import ModuleService


def init_line(
    module_id: str = "demo", listen: str = "127.0.0.1:0", env: dict[str, str] | None = None
) -> bytes:
    return (
        json.dumps(
            {
                "orchestrator_api": "http://127.0.0.1:9900",
                "module_id": module_id,
                "env": env or {},
                "listen": listen,
                "security_level": "None",
            }
        ).encode()
        + b"\n"
    )


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


class Harness:
    """
    One module service with its fake stdio and reactor.
    """

    def __init__(self, definition: Any, config: RuntimeConfig | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.transport = StringTransport()
        self.exits: list[int] = []
        self.redactor = Redactor()
        self.service = ModuleService(
            definition,
            reactor=self.reactor,
            connect_stdio=lambda p: p.makeConnection(self.transport),
            stop_process=self.exits.append,
            config=config or RuntimeConfig(),
            redactor=self.redactor,
        )
        self._read = 0

    def start(self) -> None:
        self.service.startService()

    def feed(self, data: bytes) -> None:
        assert self.service.stdio is not None
        self.service.stdio.dataReceived(data)

    def sent(self) -> list[dict[str, Any]]:
        """
        Every line written to stdout so far, parsed.
        """
        raw = self.transport.value()
        assert raw == b"" or raw.endswith(b"\n"), raw
        return [json.loads(x) for x in raw.splitlines()]

    def new(self) -> list[dict[str, Any]]:
        """
        Lines written since the last call.
        """
        lines = self.sent()
        fresh = lines[self._read :]
        self._read = len(lines)
        return fresh

    def answer_secrets(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.feed(line({"op": "secret", "name": name, "value": value}))
