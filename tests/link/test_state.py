"""
Tests for L{pywatt_twisted.link._state}: a channel's state machine.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.link._state import (
    TRANSITIONS,
    ChannelEvent,
    ChannelState,
    ChannelStateMachine,
)

S = ChannelState
E = ChannelEvent


def machine(*events: ChannelEvent) -> tuple[ChannelStateMachine, list[ChannelState]]:
    changes: list[ChannelState] = []
    m = ChannelStateMachine("tcp", changes.append)
    for event in events:
        m.fire(event)
    return m, changes


class TransitionTests(SynchronousTestCase):
    def test_starts_stopped(self) -> None:
        m, changes = machine()
        self.assertEqual(
            (m.state, m.ready_once, m.writable, changes), (S.STOPPED, False, False, [])
        )

    def test_connect_and_become_ready(self) -> None:
        m, changes = machine(E.ATTEMPT, E.READY)
        self.assertEqual(changes, [S.CONNECTING, S.CONNECTED])
        self.assertTrue(m.ready_once)
        self.assertTrue(m.writable)

    def test_ready_while_blocked_is_paused(self) -> None:
        m, _changes = machine(E.ATTEMPT, E.READY_BLOCKED)
        self.assertEqual(m.state, S.PAUSED)
        self.assertTrue(m.ready_once)
        self.assertFalse(m.writable)

    def test_blocked_and_unblocked(self) -> None:
        _m, changes = machine(E.ATTEMPT, E.READY, E.BLOCKED, E.BLOCKED, E.UNBLOCKED)
        self.assertEqual(changes, [S.CONNECTING, S.CONNECTED, S.PAUSED, S.CONNECTED])

    def test_failed_attempts_back_off_and_retry(self) -> None:
        m, changes = machine(E.ATTEMPT, E.ATTEMPT_FAILED, E.RETRY_SCHEDULED, E.ATTEMPT)
        self.assertEqual(changes, [S.CONNECTING, S.BACKOFF, S.CONNECTING])
        self.assertFalse(m.ready_once)

    def test_lost_backs_off_and_remembers_it_was_up(self) -> None:
        for up in (E.READY, E.READY_BLOCKED):
            m, _changes = machine(E.ATTEMPT, up, E.LOST)
            self.assertEqual(m.state, S.BACKOFF)
            self.assertTrue(m.ready_once)

    def test_connection_that_never_became_ready_backs_off_on_retry(self) -> None:
        m, _ = machine(E.ATTEMPT, E.RETRY_SCHEDULED)
        self.assertEqual(m.state, S.BACKOFF)

    def test_misconfigured_is_failed_for_good(self) -> None:
        _m, changes = machine(E.MISCONFIGURED, E.RETRY_SCHEDULED)
        self.assertEqual(changes, [S.FAILED])

    def test_stop_from_every_state(self) -> None:
        for state in ChannelState:
            self.assertEqual(TRANSITIONS[(state, E.STOPPED)], S.STOPPED)

    def test_no_change_no_callback(self) -> None:
        _m, changes = machine(E.ATTEMPT, E.ATTEMPT)
        self.assertEqual(changes, [S.CONNECTING])

    def test_impossible_event_is_logged_and_ignored(self) -> None:
        events: list[dict[str, Any]] = []
        m, _changes = machine(E.ATTEMPT, E.READY)
        m.log = Logger(observer=events.append)
        self.assertEqual(m.fire(E.ATTEMPT), S.CONNECTED)
        self.assertEqual(m.state, S.CONNECTED)
        [event] = events
        self.assertEqual((event["event"], event["state"]), ("attempt", "connected"))

    def test_every_transition_lands_on_a_state(self) -> None:
        """
        The table only names states and events that exist, and every state but
        STOPPED can be reached from STOPPED.
        """
        reached = {S.STOPPED}
        frontier = [S.STOPPED]
        while frontier:
            state = frontier.pop()
            for (source, _event), target in TRANSITIONS.items():
                if source is state and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        self.assertEqual(reached, set(ChannelState))

    def test_states_read_as_their_old_strings(self) -> None:
        self.assertEqual(
            [str(s) for s in ChannelState],
            ["stopped", "connecting", "connected", "paused", "backoff", "failed"],
        )
        from pywatt_twisted.runtime.channels import CONNECTED

        self.assertEqual(CONNECTED, "connected")
