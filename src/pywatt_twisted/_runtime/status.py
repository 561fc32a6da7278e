# -*- test-case-name: tests.runtime.test_status -*-
"""
L{ModuleStatus} and L{StatusMachine}: where a module is in its life, with every allowed
transition in one table.

::

    STARTING --announce--> READY --stop--> STOPPING --stopped--> STOPPED
        |                    |                 |
        +---- start-up fails (any of the three) ---> FAILED

A stop may begin before the module is ready (STARTING -> STOPPING), and a start-up that
fails while the stop runs still ends FAILED (STOPPING -> FAILED). A failed module is
stopped too, but keeps the status FAILED.
"""

from __future__ import annotations

from enum import StrEnum

from twisted.logger import Logger

__all__ = ["ModuleStatus", "StatusMachine"]


class ModuleStatus(StrEnum):
    """
    A module's status; the value is what C{GET /health} reports in C{status}.
    """

    STARTING = "starting"
    READY = "ok"
    STOPPING = "stopping"
    FAILED = "failed"
    STOPPED = "stopped"


_ALLOWED: dict[ModuleStatus, frozenset[ModuleStatus]] = {
    ModuleStatus.STARTING: frozenset(
        {ModuleStatus.READY, ModuleStatus.STOPPING, ModuleStatus.FAILED}
    ),
    ModuleStatus.READY: frozenset({ModuleStatus.STOPPING, ModuleStatus.FAILED}),
    ModuleStatus.STOPPING: frozenset({ModuleStatus.STOPPED, ModuleStatus.FAILED}),
    ModuleStatus.FAILED: frozenset(),
    ModuleStatus.STOPPED: frozenset(),
}


class StatusMachine:
    """
    The current L{ModuleStatus}; L{move_to} is the only way to change it.
    """

    log = Logger()

    def __init__(self) -> None:
        self.current = ModuleStatus.STARTING

    def move_to(self, status: ModuleStatus) -> bool:
        """
        Move to C{status} if the table allows it from the current status; otherwise
        stay (logged at debug level: a late event, e.g. a start-up that completes while
        the module is already stopping).

        @return: whether the status changed.
        """
        if status not in _ALLOWED[self.current]:
            self.log.debug(
                "module status stays {current}: {status} is not reachable from it",
                current=self.current.value,
                status=status.value,
            )
            return False
        self.current = status
        return True

    @property
    def accepting(self) -> bool:
        """
        Whether requests are still taken (served now, or held until the module is ready).
        """
        return self.current in (ModuleStatus.STARTING, ModuleStatus.READY)

    @staticmethod
    def allowed(source: ModuleStatus, target: ModuleStatus) -> bool:
        """
        Whether the table allows C{source -> target}.
        """
        return target in _ALLOWED[source]
