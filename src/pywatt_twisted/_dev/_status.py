# -*- test-case-name: tests.dev.test_supervisor_status -*-
"""
L{SupervisorStatus}: where one supervised module process is in its life, as the
orchestrator side sees it, with every allowed transition in one table.

::

    STOPPED --start--> STARTING --announce--> RUNNING
       ^                  |                      |
       |                  +------ it exits ------+--> RESTARTING --announce--> RUNNING
       |                                         |        |
       |                                         |        +-- too many exits --> CRASHED
       +--- exited --- STOPPING <---- stop ------+                              (start again)

The values are the strings C{/_pywatt/modules} has always shown.
"""

from __future__ import annotations

from enum import StrEnum

from twisted.logger import Logger

__all__ = ["SupervisorStatus", "check_transition"]

log = Logger()


class SupervisorStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


_S = SupervisorStatus
_ENDED = frozenset({_S.RESTARTING, _S.CRASHED, _S.STOPPING, _S.STOPPED})

ALLOWED: dict[SupervisorStatus, frozenset[SupervisorStatus]] = {
    # start() (a first run, or a later one after a crash loop or a stop); stop() when idle.
    _S.STOPPED: frozenset({_S.STARTING, _S.RESTARTING, _S.STOPPED}),
    _S.STARTING: frozenset({_S.RUNNING}) | _ENDED,
    _S.RUNNING: _ENDED,
    # A restart's spawn sets RESTARTING again; it ends like a first run.
    _S.RESTARTING: frozenset({_S.RUNNING}) | _ENDED,
    # stop() again while stopping; a start() during a stop (a reload) spawns a new run.
    _S.STOPPING: frozenset({_S.STOPPING, _S.STOPPED, _S.STARTING, _S.RESTARTING}),
    _S.CRASHED: frozenset({_S.STARTING, _S.RESTARTING, _S.STOPPED}),
}


def check_transition(module_id: str, old: SupervisorStatus, new: SupervisorStatus) -> None:
    """
    Log a transition the table does not allow. The supervisor still records C{new}: it
    reports what the process did, and a missing row is a bug in the table, not in the
    process, so it is made loud rather than hidden.
    """
    if new not in ALLOWED[old]:
        log.error(
            "pywatt dev: module {module_id} moved from {old} to {new}, which the supervisor's "
            "status table does not allow (a bug: please report it)",
            module_id=module_id,
            old=str(old),
            new=str(new),
        )
