# -*- test-case-name: tests.link.test_state -*-
"""
The state of one channel as the link layer sees it, as one explicit state machine:
L{ChannelState} (what C{/health} and the C{pywatt_channel_state} metric show),
L{ChannelEvent} (what can happen to a channel) and L{TRANSITIONS}, the only place
that says which event moves a channel from which state to which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum, StrEnum

from twisted.logger import Logger

__all__ = ["TRANSITIONS", "ChannelEvent", "ChannelState", "ChannelStateMachine"]


class ChannelState(StrEnum):
    """
    A channel's state. The values are what C{/health} and the metrics show.
    """

    STOPPED = "stopped"
    """Not started, or stopped with the module."""
    CONNECTING = "connecting"
    """A connection attempt (or its TLS handshake) is under way."""
    CONNECTED = "connected"
    """Ready and writable: sends go to it."""
    PAUSED = "paused"
    """Ready, but the orchestrator does not read: sends go elsewhere or wait."""
    BACKOFF = "backoff"
    """The last attempt failed or the connection was lost; a retry is scheduled."""
    FAILED = "failed"
    """The channel cannot be configured (TLS material missing...); never retried."""


class ChannelEvent(Enum):
    """
    What can happen to a channel.
    """

    ATTEMPT = "attempt"
    """A connection attempt began."""
    ATTEMPT_FAILED = "attempt failed"
    """A connection attempt failed."""
    RETRY_SCHEDULED = "retry scheduled"
    """The reconnect backoff scheduled the next attempt."""
    READY = "ready"
    """A connection became ready, and its transport takes writes."""
    READY_BLOCKED = "ready blocked"
    """A connection became ready while its transport's buffer is full."""
    BLOCKED = "blocked"
    """The ready connection's transport buffer filled."""
    UNBLOCKED = "unblocked"
    """The ready connection's transport buffer drained."""
    LOST = "lost"
    """The ready connection went away."""
    MISCONFIGURED = "misconfigured"
    """The channel cannot be configured."""
    STOPPED = "stopped"
    """The module stopped the channel."""


_S = ChannelState
_E = ChannelEvent

TRANSITIONS: Mapping[tuple[ChannelState, ChannelEvent], ChannelState] = {
    (_S.STOPPED, _E.ATTEMPT): _S.CONNECTING,
    (_S.STOPPED, _E.MISCONFIGURED): _S.FAILED,
    (_S.CONNECTING, _E.ATTEMPT): _S.CONNECTING,
    (_S.CONNECTING, _E.ATTEMPT_FAILED): _S.BACKOFF,
    (_S.CONNECTING, _E.RETRY_SCHEDULED): _S.BACKOFF,
    (_S.CONNECTING, _E.READY): _S.CONNECTED,
    (_S.CONNECTING, _E.READY_BLOCKED): _S.PAUSED,
    (_S.CONNECTED, _E.BLOCKED): _S.PAUSED,
    (_S.CONNECTED, _E.UNBLOCKED): _S.CONNECTED,
    (_S.CONNECTED, _E.LOST): _S.BACKOFF,
    (_S.CONNECTED, _E.RETRY_SCHEDULED): _S.BACKOFF,
    (_S.PAUSED, _E.BLOCKED): _S.PAUSED,
    (_S.PAUSED, _E.UNBLOCKED): _S.CONNECTED,
    (_S.PAUSED, _E.LOST): _S.BACKOFF,
    (_S.PAUSED, _E.RETRY_SCHEDULED): _S.BACKOFF,
    (_S.BACKOFF, _E.ATTEMPT): _S.CONNECTING,
    (_S.BACKOFF, _E.ATTEMPT_FAILED): _S.BACKOFF,
    (_S.BACKOFF, _E.RETRY_SCHEDULED): _S.BACKOFF,
    (_S.FAILED, _E.RETRY_SCHEDULED): _S.FAILED,
    **{(state, _E.STOPPED): _S.STOPPED for state in ChannelState},
}
"""C{(state, event) -> next state}: every transition a channel can make."""

_READY_STATES = frozenset({ChannelState.CONNECTED, ChannelState.PAUSED})


class ChannelStateMachine:
    """
    One channel's state: it changes only through L{fire}, by L{TRANSITIONS}.

    @ivar state: the current state.
    @ivar ready_once: the channel was connected (ready) at least once.
    """

    log = Logger()

    def __init__(
        self, name: str, on_change: Callable[[ChannelState], object] | None = None
    ) -> None:
        """
        @param name: the channel's name, for the log line of an impossible event.
        @param on_change: called with the new state after every change.
        """
        self.name = name
        self.state = ChannelState.STOPPED
        self.ready_once = False
        self._on_change = on_change

    def fire(self, event: ChannelEvent) -> ChannelState:
        """
        Apply C{event}; return the (possibly unchanged) state. An event that is no
        transition from the current state is logged as an error and changes nothing.
        """
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            self.log.error(
                "{channel} channel: {event} cannot happen in state {state}; ignored "
                "(this is a bug in pywatt_twisted, please report it)",
                channel=self.name,
                event=event.value,
                state=self.state.value,
            )
            return self.state
        if new in _READY_STATES:
            self.ready_once = True
        if new is not self.state:
            self.state = new
            if self._on_change is not None:
                self._on_change(new)
        return new

    @property
    def writable(self) -> bool:
        """
        Whether sends may go to the channel now.
        """
        return self.state is ChannelState.CONNECTED
