# -*- test-case-name: tests.dev.test_dev_orchestrator -*-
"""
The heartbeats C{pywatt dev} sends a running module on every link (stdin and each
open channel); a module that acknowledges none for the heartbeat timeout is killed,
and its supervisor restarts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.task import LoopingCall

from pywatt_twisted.wire.messages import Heartbeat

if TYPE_CHECKING:
    from pywatt_twisted._dev.supervisor import ModuleSupervisor


class Heartbeats:
    """
    The heartbeat loop of one supervised module, on its supervisor's reactor.
    """

    def __init__(self, supervisor: ModuleSupervisor) -> None:
        self._supervisor = supervisor
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        self.stop()
        self._loop = LoopingCall(self._beat)
        self._loop.clock = self._supervisor.reactor
        self._loop.start(self._supervisor.heartbeat_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _beat(self) -> None:
        supervisor = self._supervisor
        child = supervisor._child
        if child is None:
            return
        now = supervisor.reactor.seconds()
        last_ack = supervisor.last_ack
        if last_ack is not None and now - last_ack > supervisor.heartbeat_timeout:
            supervisor.console.say(
                "pywatt-dev",
                f"{supervisor.module_id} answered no heartbeat for {now - last_ack:.0f} s; "
                "killing it",
                "warn",
            )
            self.stop()
            supervisor.kill("KILL")
            return
        # Every link gets a heartbeat; an ack on any of them shows the module is alive.
        child.send(Heartbeat())
        for connection in list(supervisor.channels.connections):
            if not connection.lost:
                connection.send(Heartbeat())
